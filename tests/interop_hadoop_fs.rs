//! `hadoop fs` (Apache Hadoop 3.5's Java FsShell) against a fresh ringfs cluster: every
//! command of HDFS's File System Shell Guide plus appendToFile, checksum, truncate, head,
//! find and df, with trash off and on. Contents are compared byte for byte with local
//! files; listings, messages and exit codes with what HDFS prints.
//!
//! Most commands run in one JVM (tests/interop/java/FsShellBatch.java runs FsShell exactly
//! as its main does, once per command); a few go through the real `hadoop` launcher to
//! prove the process path (stdin, stdout bytes, exit codes).

#[path = "interop/shell.rs"]
mod shell;
mod support;

use std::path::Path;
use std::time::Duration;

use shell::{expected_file_checksum, is_recent_utc, login_user, Batch};
use support::{pattern_bytes, run, Client, Cluster, ClusterOptions, RealClients};

const BLOCK_SIZE: usize = 1 << 20;
/// 3.5 MiB and a bit: four blocks, the last one partial.
const BIG_SIZE: usize = 3 * BLOCK_SIZE + BLOCK_SIZE / 2 + 123;
/// HDFS's superuser group, the group of `/`.
const SUPERGROUP: &str = "supergroup";

struct LocalFiles {
    small: Vec<u8>,
    big: Vec<u8>,
    exact: Vec<u8>,
    almost: Vec<u8>,
    parts: Vec<Vec<u8>>,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn local_files(work: &Path) -> LocalFiles {
    let files = LocalFiles {
        small: b"hello ringfs\nhello hdfs\nthe quick brown fox\n".to_vec(),
        big: pattern_bytes(BIG_SIZE, 1),
        exact: pattern_bytes(2 * BLOCK_SIZE, 2),
        almost: pattern_bytes(BLOCK_SIZE - 1, 3),
        parts: (0..3).map(|i| format!("part {i} line a\npart {i} line b").into_bytes()).collect(),
    };
    write(work, "small.txt", &files.small);
    write(work, "big.bin", &files.big);
    write(work, "exact.bin", &files.exact);
    write(work, "almost.bin", &files.almost);
    write(work, "tomove.txt", b"moved from local\n");
    for (i, part) in files.parts.iter().enumerate() {
        write(work, &format!("part-{i}"), part);
    }
    let gzip = run(
        std::process::Command::new("gzip").args(["-k", "-f"]).arg(work.join("small.txt")),
        None,
        Duration::from_secs(30),
    );
    assert!(gzip.success(), "gzip (to make a .gz for -text) failed\n{}", gzip.describe());
    files
}

fn report(client: &str, failures: Vec<String>, cluster: &Cluster) {
    if !failures.is_empty() {
        panic!(
            "{client}: {} expectation(s) failed:\n\n{}\n\n{}",
            failures.len(),
            failures.join("\n\n"),
            cluster.diagnostics()
        );
    }
}

/// `-ls` line fields: permission, replication, owner, group, size, date, time, path.
fn ls_line<'a>(lines: &'a [String], path: &str) -> Option<Vec<&'a str>> {
    lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() == 8 && fields[7] == path)
}

fn expect_ls_entry(
    step: &mut shell::Step,
    path: &str,
    permission: &str,
    replication: &str,
    owner: &str,
    size: usize,
) {
    let path = path.to_string();
    let expected =
        format!("{permission} {replication} {owner} {SUPERGROUP} {size} <recent date> <time> {path}");
    let (permission, replication, owner) =
        (permission.to_string(), replication.to_string(), owner.to_string());
    step.check(format!("-ls line {expected:?}"), move |o| {
        let lines = o.stdout_lines();
        let Some(f) = ls_line(&lines, &path) else {
            return Err(format!("no line for {path}: {lines:?}"));
        };
        let seen = f.join(" ");
        let fields_ok = f[0] == permission
            && f[1] == replication
            && f[2] == owner
            && f[3] == SUPERGROUP
            && f[4] == size.to_string()
            && is_recent_utc(&format!("{} {}", f[5], f[6]), 1800);
        if fields_ok {
            Ok(())
        } else {
            Err(format!("line {seen:?}"))
        }
    });
}

#[test]
fn hadoop_fs_shell_commands_trash_off() {
    let Some(clients) = RealClients::require(Client::HadoopFs) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let work = support::test_dir("work");
    let files = local_files(&work);
    let classes = clients.compile_java(&["FsShellBatch.java"]);
    let user = login_user();
    let w = |name: &str| work.join(name).display().to_string();
    let uri = cluster.uri().to_string();
    let (big_algorithm, big_hex) = expected_file_checksum(&files.big, BLOCK_SIZE);
    let (small_algorithm, small_hex) = expected_file_checksum(&files.small, BLOCK_SIZE);
    assert_eq!(big_algorithm, "MD5-of-2048MD5-of-512CRC32C");
    assert_eq!(small_algorithm, "MD5-of-0MD5-of-512CRC32C");

    let mut b = Batch::new("shell");
    // mkdir
    b.fs(&["-mkdir", "-p", "/interop/a/b/c"]).ok();
    b.fs(&["-mkdir", "/interop/a"]).fails("mkdir: `/interop/a': File exists");
    b.fs(&["-mkdir", "-p", "/interop/a"]).ok();
    // FsShell names the missing parent by its qualified URI.
    b.fs(&["-mkdir", "/interop/x/y"]).fails(&format!("mkdir: `{uri}/interop/x': No such file or directory"));
    // put / copyFromLocal, including from stdin, multi-block and block-boundary sizes
    b.fs(&["-put", &w("big.bin"), "/interop/big.bin"]).ok().stdout_lines(&[]);
    b.fs(&["-put", &w("small.txt"), "/interop/a"]).ok();
    b.fs(&["-put", &w("small.txt"), "/interop/a/small.txt"])
        .fails("put: `/interop/a/small.txt': File exists");
    b.fs(&["-put", "-f", &w("small.txt"), "/interop/a/small.txt"]).ok();
    b.fs(&["-copyFromLocal", &w("exact.bin"), "/interop/exact.bin"]).ok();
    b.fs(&["-put", &w("almost.bin"), &format!("{uri}/interop/almost.bin")]).ok();
    b.fs(&["-put", "-", "/interop/stdin.txt"]).stdin(&work.join("small.txt")).ok();
    b.fs(&["-put", &w("nope.txt"), "/interop/nope.txt"]).code(1);
    // touchz
    b.fs(&["-touchz", "/interop/empty"]).ok();
    b.fs(&["-touchz", "/interop/empty"]).ok();
    b.fs(&["-touchz", "/interop/big.bin"]).fails("touchz: `/interop/big.bin': Not a zero-length file");
    // cat / get / copyToLocal
    b.fs(&["-cat", "/interop/big.bin"]).ok().stdout_bytes(files.big.clone());
    b.fs(&["-cat", "/interop/stdin.txt"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-cat", "/interop/exact.bin", "/interop/almost.bin"])
        .ok()
        .stdout_bytes([files.exact.clone(), files.almost.clone()].concat());
    b.fs(&["-cat", &format!("{uri}/interop/a/small.txt")]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-cat", "/interop/empty"]).ok().stdout_bytes(Vec::new());
    b.fs(&["-cat", "/interop/nope"]).fails("cat: `/interop/nope': No such file or directory");
    b.fs(&["-cat", "/interop/a"]).fails("cat: `/interop/a': Is a directory");
    b.fs(&["-get", "/interop/big.bin", &w("got-big.bin")])
        .ok()
        .local_file(&work.join("got-big.bin"), files.big.clone());
    b.fs(&["-copyToLocal", "/interop/exact.bin", &w("got-exact.bin")])
        .ok()
        .local_file(&work.join("got-exact.bin"), files.exact.clone());
    b.fs(&["-get", "/interop/empty", &w("got-empty")]).ok().local_file(&work.join("got-empty"), Vec::new());
    b.fs(&["-get", "/interop/nope", &w("got-nope")]).fails("get: `/interop/nope': No such file or directory");
    b.fs(&["-get", "/interop/a", &w("got-dir")])
        .ok()
        .local_file(&work.join("got-dir/small.txt"), files.small.clone())
        .check("local directory got-dir/b/c", {
            let dir = work.join("got-dir/b/c");
            move |_| if dir.is_dir() { Ok(()) } else { Err(format!("{} is not a directory", dir.display())) }
        });
    // ls, lsr
    let step = b.fs(&["-ls", "/interop"]);
    step.ok().check("first line \"Found 6 items\"", |o| match o.stdout_lines().first() {
        Some(line) if line == "Found 6 items" => Ok(()),
        other => Err(format!("first line {other:?}")),
    });
    expect_ls_entry(step, "/interop/a", "drwxr-xr-x", "-", &user, 0);
    expect_ls_entry(step, "/interop/almost.bin", "-rw-r--r--", "3", &user, files.almost.len());
    expect_ls_entry(step, "/interop/big.bin", "-rw-r--r--", "3", &user, files.big.len());
    expect_ls_entry(step, "/interop/empty", "-rw-r--r--", "3", &user, 0);
    expect_ls_entry(step, "/interop/exact.bin", "-rw-r--r--", "3", &user, files.exact.len());
    expect_ls_entry(step, "/interop/stdin.txt", "-rw-r--r--", "3", &user, files.small.len());
    step.check("entries sorted by name", |o| {
        let names: Vec<String> = o
            .stdout_lines()
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        if names == sorted && names.len() == 6 {
            Ok(())
        } else {
            Err(format!("names {names:?}"))
        }
    });
    let step = b.fs(&["-ls", "-R", "/interop/a"]);
    step.ok().check("3 lines, depth first: b, b/c, small.txt", |o| {
        let paths: Vec<String> =
            o.stdout_lines().iter().filter_map(|l| l.split_whitespace().nth(7).map(str::to_string)).collect();
        if paths == ["/interop/a/b", "/interop/a/b/c", "/interop/a/small.txt"] && o.stdout_lines().len() == 3
        {
            Ok(())
        } else {
            Err(format!("lines {:?}", o.stdout_lines()))
        }
    });
    expect_ls_entry(step, "/interop/a/b/c", "drwxr-xr-x", "-", &user, 0);
    expect_ls_entry(step, "/interop/a/small.txt", "-rw-r--r--", "3", &user, files.small.len());
    let step = b.fs(&["-ls", "-d", "/interop/a"]);
    step.ok().check("one line", |o| {
        if o.stdout_lines().len() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", o.stdout_lines()))
        }
    });
    expect_ls_entry(step, "/interop/a", "drwxr-xr-x", "-", &user, 0);
    b.fs(&["-ls", "/interop/*.bin"]).ok().check("the three .bin files (glob)", |o| {
        let paths: Vec<String> =
            o.stdout_lines().iter().filter_map(|l| l.split_whitespace().nth(7).map(str::to_string)).collect();
        if paths == ["/interop/almost.bin", "/interop/big.bin", "/interop/exact.bin"] {
            Ok(())
        } else {
            Err(format!("lines {:?}", o.stdout_lines()))
        }
    });
    b.fs(&["-ls", "/interop/nope"]).fails("ls: `/interop/nope': No such file or directory");
    b.fs(&["-ls", "-h", "/interop/big.bin"]).ok().check("size column \"3.5 M\"", |o| {
        if o.stdout_text().contains(" 3.5 M ") {
            Ok(())
        } else {
            Err(o.stdout_text())
        }
    });
    let step = b.fs(&["-ls", "/"]);
    step.ok();
    expect_ls_entry(step, "/interop", "drwxr-xr-x", "-", &user, 0);
    // stat
    b.fs(&["-stat", "%b %r %o %n %F %u %g %a %A", "/interop/big.bin"]).ok().stdout_lines(&[&format!(
        "{} 3 {BLOCK_SIZE} big.bin regular file {user} {SUPERGROUP} 644 rw-r--r--",
        files.big.len()
    )]);
    b.fs(&["-stat", "%F %b %r", "/interop/empty"]).ok().stdout_lines(&["regular file 0 3"]);
    b.fs(&["-stat", "%F %u:%g %a %b %r", "/interop/a"])
        .ok()
        .stdout_lines(&[&format!("directory {user}:{SUPERGROUP} 755 0 0")]);
    b.fs(&["-stat", "%g", "/"]).ok().stdout_lines(&[SUPERGROUP]);
    b.fs(&["-stat", "/interop/big.bin"]).ok().check("a recent \"yyyy-MM-dd HH:mm:ss\" (UTC)", |o| {
        let text = o.stdout_text();
        if is_recent_utc(text.trim(), 1800) {
            Ok(())
        } else {
            Err(format!("{text:?}"))
        }
    });
    b.fs(&["-stat", "%n", "/interop/nope"]).fails("stat: `/interop/nope': No such file or directory");
    // count, du, dus
    let tree_bytes = files.small.len() * 2 + files.big.len() + files.exact.len() + files.almost.len();
    b.fs(&["-count", "/interop"]).ok().stdout_fields(&["4", "6", &tree_bytes.to_string(), "/interop"]);
    b.fs(&["-count", "-q", "/interop"]).ok().stdout_fields(&[
        "none",
        "inf",
        "none",
        "inf",
        "4",
        "6",
        &tree_bytes.to_string(),
        "/interop",
    ]);
    b.fs(&["-count", "/interop/big.bin"]).ok().stdout_fields(&[
        "0",
        "1",
        &files.big.len().to_string(),
        "/interop/big.bin",
    ]);
    let du = b.fs(&["-du", "/interop"]);
    du.ok();
    for (path, size) in [
        ("/interop/a", files.small.len()),
        ("/interop/big.bin", files.big.len()),
        ("/interop/empty", 0),
        ("/interop/exact.bin", files.exact.len()),
    ] {
        du.stdout_fields(&[&size.to_string(), &(size * 3).to_string(), path]);
    }
    b.fs(&["-du", "-s", "/interop"]).ok().stdout_fields(&[
        &tree_bytes.to_string(),
        &(tree_bytes * 3).to_string(),
        "/interop",
    ]);
    b.fs(&["-du", "-s", "-h", "/interop/big.bin"]).ok().stdout_fields(&[
        "3.5",
        "M",
        "10.5",
        "M",
        "/interop/big.bin",
    ]);
    b.fs(&["-du", "/interop/nope"]).fails("du: `/interop/nope': No such file or directory");
    // tail, head, text
    b.fs(&["-tail", "/interop/big.bin"]).ok().stdout_bytes(files.big[files.big.len() - 1024..].to_vec());
    b.fs(&["-tail", "/interop/stdin.txt"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-head", "/interop/big.bin"]).ok().stdout_bytes(files.big[..1024].to_vec());
    b.fs(&["-text", "/interop/stdin.txt"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-put", &w("small.txt.gz"), "/interop/small.txt.gz"]).ok();
    b.fs(&["-text", "/interop/small.txt.gz"]).ok().stdout_bytes(files.small.clone());
    // test
    for (flag, path, code) in [
        ("-e", "/interop/big.bin", 0),
        ("-e", "/interop/nope", 1),
        ("-d", "/interop/a", 0),
        ("-d", "/interop/big.bin", 1),
        ("-f", "/interop/big.bin", 0),
        ("-f", "/interop/a", 1),
        ("-s", "/interop/big.bin", 0),
        ("-s", "/interop/empty", 1),
        ("-z", "/interop/empty", 0),
        ("-z", "/interop/big.bin", 1),
        ("-r", "/interop/big.bin", 0),
        ("-w", "/interop/big.bin", 0),
    ] {
        b.fs(&["-test", flag, path]).code(code).stdout_lines(&[]);
    }
    // cp, mv, moveFromLocal
    b.fs(&["-cp", "/interop/big.bin", "/interop/copy.bin"]).ok();
    b.fs(&["-cat", "/interop/copy.bin"]).ok().stdout_bytes(files.big.clone());
    b.fs(&["-cp", "/interop/stdin.txt", "/interop/copy.bin"]).fails("cp: `/interop/copy.bin': File exists");
    b.fs(&["-cp", "-f", "/interop/stdin.txt", "/interop/copy.bin"]).ok();
    b.fs(&["-cat", "/interop/copy.bin"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-cp", "/interop/a", "/interop/a-copy"]).ok();
    b.fs(&["-cat", "/interop/a-copy/small.txt"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-test", "-d", "/interop/a-copy/b/c"]).ok();
    b.fs(&["-mv", "/interop/copy.bin", "/interop/moved.bin"]).ok();
    b.fs(&["-test", "-e", "/interop/copy.bin"]).code(1);
    b.fs(&["-cat", "/interop/moved.bin"]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-mv", "/interop/moved.bin", "/interop/a"]).ok();
    b.fs(&["-test", "-f", "/interop/a/moved.bin"]).ok();
    b.fs(&["-mv", "/interop/nope", "/interop/x"]).fails("mv: `/interop/nope': No such file or directory");
    b.fs(&["-mv", "/interop/stdin.txt", "/interop/big.bin"]).fails("mv: `/interop/big.bin': File exists");
    b.fs(&["-mv", "/interop/a-copy", "/interop/a-renamed"]).ok();
    b.fs(&["-test", "-d", "/interop/a-renamed/b"]).ok();
    b.fs(&["-test", "-e", "/interop/a-copy"]).code(1);
    b.fs(&["-moveFromLocal", &w("tomove.txt"), "/interop/from-local.txt"]).ok().check(
        "the local file is gone",
        {
            let local = work.join("tomove.txt");
            move |_| if local.exists() { Err(format!("{} still exists", local.display())) } else { Ok(()) }
        },
    );
    b.fs(&["-cat", "/interop/from-local.txt"]).ok().stdout_bytes(b"moved from local\n".to_vec());
    // getmerge
    b.fs(&["-mkdir", "/interop/merge"]).ok();
    b.fs(&["-put", &w("part-0"), &w("part-1"), &w("part-2"), "/interop/merge"]).ok();
    b.fs(&["-getmerge", "/interop/merge", &w("merged.txt")])
        .ok()
        .local_file(&work.join("merged.txt"), files.parts.concat());
    let with_newlines: Vec<u8> = files.parts.iter().flat_map(|p| [p.as_slice(), b"\n"].concat()).collect();
    b.fs(&["-getmerge", "-nl", "/interop/merge", &w("merged-nl.txt")])
        .ok()
        .local_file(&work.join("merged-nl.txt"), with_newlines);
    // appendToFile: new file, partial last block, full last block, across a block boundary, stdin
    b.fs(&["-appendToFile", &w("small.txt"), "/interop/append.txt"]).ok();
    b.fs(&["-appendToFile", &w("big.bin"), "/interop/append.txt"]).ok();
    b.fs(&["-appendToFile", "-", "/interop/append.txt"]).stdin(&work.join("small.txt")).ok();
    b.fs(&["-cat", "/interop/append.txt"])
        .ok()
        .stdout_bytes([files.small.clone(), files.big.clone(), files.small.clone()].concat());
    b.fs(&["-appendToFile", &w("small.txt"), "/interop/exact.bin"]).ok();
    b.fs(&["-cat", "/interop/exact.bin"])
        .ok()
        .stdout_bytes([files.exact.clone(), files.small.clone()].concat());
    b.fs(&["-appendToFile", &w("small.txt"), "/interop/almost.bin"]).ok();
    b.fs(&["-cat", "/interop/almost.bin"])
        .ok()
        .stdout_bytes([files.almost.clone(), files.small.clone()].concat());
    // checksum: equal contents, equal checksums; computed independently here
    b.fs(&["-cp", "/interop/big.bin", "/interop/big2.bin"]).ok();
    b.fs(&["-checksum", "/interop/big.bin"])
        .ok()
        .stdout_lines(&[&format!("/interop/big.bin\t{big_algorithm}\t{big_hex}")]);
    b.fs(&["-checksum", "/interop/big2.bin"])
        .ok()
        .stdout_lines(&[&format!("/interop/big2.bin\t{big_algorithm}\t{big_hex}")]);
    b.fs(&["-checksum", "/interop/stdin.txt"])
        .ok()
        .stdout_lines(&[&format!("/interop/stdin.txt\t{small_algorithm}\t{small_hex}")]);
    // truncate: inside a block (needs block recovery, -w waits) and on a block boundary
    b.fs(&["-cp", "/interop/big.bin", "/interop/trunc.bin"]).ok();
    b.fs(&["-truncate", "-w", "100", "/interop/trunc.bin"])
        .ok()
        .stdout_contains("Truncated /interop/trunc.bin to length: 100");
    b.fs(&["-cat", "/interop/trunc.bin"]).ok().stdout_bytes(files.big[..100].to_vec());
    b.fs(&["-cp", "/interop/big.bin", "/interop/trunc2.bin"]).ok();
    b.fs(&["-truncate", "2097152", "/interop/trunc2.bin"])
        .ok()
        .stdout_lines(&["Truncated /interop/trunc2.bin to length: 2097152"]);
    b.fs(&["-cat", "/interop/trunc2.bin"]).ok().stdout_bytes(files.big[..2 * BLOCK_SIZE].to_vec());
    b.fs(&["-appendToFile", &w("small.txt"), "/interop/trunc.bin"]).ok();
    b.fs(&["-cat", "/interop/trunc.bin"]).ok().stdout_bytes([&files.big[..100], &files.small[..]].concat());
    // setrep
    b.fs(&["-setrep", "2", "/interop/big.bin"]).ok().stdout_lines(&["Replication 2 set: /interop/big.bin"]);
    b.fs(&["-stat", "%r", "/interop/big.bin"]).ok().stdout_lines(&["2"]);
    b.fs(&["-setrep", "-w", "3", "/interop/big.bin"])
        .ok()
        .stdout_contains("Replication 3 set: /interop/big.bin");
    b.fs(&["-stat", "%r", "/interop/big.bin"]).ok().stdout_lines(&["3"]);
    b.fs(&["-setrep", "1", "/interop/a"]).ok().stdout_lines(&[
        "Replication 1 set: /interop/a/moved.bin",
        "Replication 1 set: /interop/a/small.txt",
    ]);
    b.fs(&["-setrep", "2", "/interop/nope"]).fails("setrep: `/interop/nope': No such file or directory");
    // chmod, chown, chgrp
    b.fs(&["-chmod", "600", "/interop/a/small.txt"]).ok();
    b.fs(&["-stat", "%a %A", "/interop/a/small.txt"]).ok().stdout_lines(&["600 rw-------"]);
    b.fs(&["-chmod", "-R", "go+w", "/interop/a"]).ok();
    b.fs(&["-stat", "%a", "/interop/a", "/interop/a/small.txt", "/interop/a/b/c"])
        .ok()
        .stdout_lines(&["777", "622", "777"]);
    b.fs(&["-mkdir", "/interop/sticky"]).ok();
    b.fs(&["-chmod", "1777", "/interop/sticky"]).ok();
    b.fs(&["-stat", "%a %A", "/interop/sticky"]).ok().stdout_lines(&["1777 rwxrwxrwt"]);
    b.fs(&["-chown", "alice:staff", "/interop/a/small.txt"]).ok();
    b.fs(&["-stat", "%u:%g", "/interop/a/small.txt"]).ok().stdout_lines(&["alice:staff"]);
    b.fs(&["-chgrp", "devs", "/interop/a/small.txt"]).ok();
    b.fs(&["-stat", "%u:%g", "/interop/a/small.txt"]).ok().stdout_lines(&["alice:devs"]);
    b.fs(&["-chown", "-R", "bob", "/interop/a"]).ok();
    b.fs(&["-stat", "%u:%g", "/interop/a", "/interop/a/b/c", "/interop/a/small.txt"]).ok().stdout_lines(&[
        &format!("bob:{SUPERGROUP}"),
        &format!("bob:{SUPERGROUP}"),
        "bob:devs",
    ]);
    b.fs(&["-chmod", "755", "/interop/nope"]).fails("chmod: `/interop/nope': No such file or directory");
    // permissions are enforced for other users
    b.fs(&["-put", &w("small.txt"), "/interop/denied.txt"])
        .user("mallory")
        .fails_containing("put: Permission denied: user=mallory, access=WRITE, inode=\"/interop");
    b.fs(&["-mkdir", "/interop/mallory"])
        .user("mallory")
        .fails_containing("Permission denied: user=mallory, access=WRITE");
    b.fs(&["-rm", "/interop/big.bin"])
        .user("mallory")
        .fails_containing("Permission denied: user=mallory, access=WRITE");
    b.fs(&["-cat", "/interop/a/small.txt"])
        .user("mallory")
        .fails_containing("Permission denied: user=mallory, access=READ");
    b.fs(&["-chmod", "777", "/interop/big.bin"]).user("mallory").fails_containing("Permission denied");
    b.fs(&["-cat", "/interop/stdin.txt"]).user("mallory").ok().stdout_bytes(files.small.clone());
    b.fs(&["-test", "-e", "/interop/denied.txt"]).code(1);
    // find, df
    b.fs(&["-find", "/interop", "-name", "*.bin"]).ok().check("every .bin path", |o| {
        let mut seen = o.stdout_lines();
        seen.sort();
        let expected = [
            "/interop/a/moved.bin",
            "/interop/almost.bin",
            "/interop/big.bin",
            "/interop/big2.bin",
            "/interop/exact.bin",
            "/interop/trunc.bin",
            "/interop/trunc2.bin",
        ];
        if seen == expected {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    b.fs(&["-find", "/interop/a", "-name", "small*", "-print"]).ok().stdout_lines(&["/interop/a/small.txt"]);
    let df_uri = uri.clone();
    b.fs(&["-df", "/"]).ok().check("header and a line for the cluster with positive sizes", move |o| {
        let lines = o.stdout_lines();
        let header: Vec<&str> = lines.first().map(|l| l.split_whitespace().collect()).unwrap_or_default();
        let row: Vec<&str> = lines.get(1).map(|l| l.split_whitespace().collect()).unwrap_or_default();
        let number = |i: usize| row.get(i).and_then(|v| v.parse::<u64>().ok());
        let good = header == ["Filesystem", "Size", "Used", "Available", "Use%"]
            && row.first() == Some(&df_uri.as_str())
            && number(1).is_some_and(|size| size > 0)
            && number(2).is_some()
            && number(3).is_some_and(|available| available > 0)
            && row.get(4).is_some_and(|pct| pct.ends_with('%'));
        if good {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
    b.fs(&["-df", "-h", "/"]).ok().stdout_contains("Filesystem");
    // rm, rmr, rmdir, expunge (trash off: deletes are immediate)
    b.fs(&["-rm", "/interop/a"]).fails("rm: `/interop/a': Is a directory");
    b.fs(&["-rm", "/interop/nope"]).fails("rm: `/interop/nope': No such file or directory");
    b.fs(&["-rm", "-f", "/interop/nope"]).ok();
    b.fs(&["-rm", "/interop/big2.bin"]).ok().stdout_lines(&["Deleted /interop/big2.bin"]);
    b.fs(&["-test", "-e", "/interop/big2.bin"]).code(1);
    b.fs(&["-rmdir", "/interop/a"]).fails("rmdir: `/interop/a': Directory is not empty");
    b.fs(&["-mkdir", "/interop/emptydir"]).ok();
    b.fs(&["-rmdir", "/interop/emptydir"]).ok();
    b.fs(&["-test", "-e", "/interop/emptydir"]).code(1);
    b.fs(&["-rm", "-r", "/interop/a-renamed"]).ok().stdout_lines(&["Deleted /interop/a-renamed"]);
    b.fs(&["-test", "-e", "/interop/a-renamed"]).code(1);
    b.fs(&["-rm", "/interop/merge/part-*"]).ok().stdout_lines(&[
        "Deleted /interop/merge/part-0",
        "Deleted /interop/merge/part-1",
        "Deleted /interop/merge/part-2",
    ]);
    b.fs(&["-count", "/interop/merge"]).ok().stdout_fields(&["1", "0", "0", "/interop/merge"]);
    b.fs(&["-expunge"]).ok();
    b.fs(&["-test", "-e", &format!("/user/{user}/.Trash")]).code(1);
    // relative paths resolve against the home directory /user/<user>
    b.fs(&["-mkdir", "-p", &format!("/user/{user}")]).ok();
    b.fs(&["-put", &w("small.txt"), "relative.txt"]).ok();
    b.fs(&["-cat", &format!("/user/{user}/relative.txt")]).ok().stdout_bytes(files.small.clone());
    let home_file = format!("/user/{user}/relative.txt");
    b.fs(&["-ls"]).ok().check(format!("a listing of the home directory with {home_file}"), move |o| {
        if o.stdout_lines().iter().any(|l| l.split_whitespace().nth(7) == Some("relative.txt")) {
            Ok(())
        } else {
            Err(format!("{:?}", o.stdout_lines()))
        }
    });
    // the data written before is still intact after all of the above
    b.fs(&["-cat", "/interop/big.bin"]).ok().stdout_bytes(files.big.clone());

    let failures = b.run(&clients, &cluster, &classes, &work);
    report("hadoop fs (trash off)", failures, &cluster);
}

#[test]
fn hadoop_fs_trash_on() {
    let Some(clients) = RealClients::require(Client::HadoopFs) else { return };
    let cluster = Cluster::start(ClusterOptions { trash: true, ..ClusterOptions::default() });
    let work = support::test_dir("work");
    let files = local_files(&work);
    let classes = clients.compile_java(&["FsShellBatch.java"]);
    let user = login_user();
    let trash = format!("/user/{user}/.Trash");
    let small = work.join("small.txt").display().to_string();

    let mut b = Batch::new("trash");
    b.fs(&["-mkdir", "-p", "/trash-test/d"]).ok();
    for target in ["/trash-test/f.txt", "/trash-test/d/g.txt", "/trash-test/skip.txt"] {
        b.fs(&["-put", &small, target]).ok();
    }
    b.fs(&["-rm", "/trash-test/f.txt"]).ok();
    b.fs(&["-test", "-e", "/trash-test/f.txt"]).code(1);
    b.fs(&["-cat", &format!("{trash}/Current/trash-test/f.txt")]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-rm", "-r", "/trash-test/d"]).ok();
    b.fs(&["-test", "-e", "/trash-test/d"]).code(1);
    b.fs(&["-cat", &format!("{trash}/Current/trash-test/d/g.txt")]).ok().stdout_bytes(files.small.clone());
    b.fs(&["-rm", "-skipTrash", "/trash-test/skip.txt"]).ok().stdout_lines(&["Deleted /trash-test/skip.txt"]);
    b.fs(&["-test", "-e", &format!("{trash}/Current/trash-test/skip.txt")]).code(1);
    b.fs(&["-test", "-e", "/trash-test/skip.txt"]).code(1);
    b.fs(&["-stat", "%a", &trash]).ok().stdout_lines(&["700"]);
    // A second delete of the same name does not overwrite the first one in the trash.
    b.fs(&["-put", &small, "/trash-test/f.txt"]).ok();
    b.fs(&["-rm", "/trash-test/f.txt"]).ok();
    b.fs(&["-count", &format!("{trash}/Current/trash-test")]).ok().check(
        "2 dirs (trash-test, d), 3 files",
        |o| {
            let fields: Vec<String> = o.stdout_text().split_whitespace().map(str::to_string).collect();
            if fields.get(..2) == Some(&["2".to_string(), "3".to_string()]) {
                Ok(())
            } else {
                Err(format!("{fields:?}"))
            }
        },
    );
    // expunge: Current becomes a checkpoint (yyMMddHHmmss); -immediate empties the trash.
    b.fs(&["-expunge"]).ok();
    b.fs(&["-test", "-e", &format!("{trash}/Current")]).code(1);
    let checkpoint_prefix = format!("{trash}/");
    b.fs(&["-ls", &trash]).ok().check("one checkpoint directory named yyMMddHHmmss", move |o| {
        let lines = o.stdout_lines();
        let names: Vec<String> = lines
            .iter()
            .filter_map(|l| l.split_whitespace().nth(7))
            .filter_map(|p| p.strip_prefix(&checkpoint_prefix).map(str::to_string))
            .collect();
        let good = lines.first().map(String::as_str) == Some("Found 1 items")
            && names.len() == 1
            && names[0].len() == 12
            && names[0].chars().all(|c| c.is_ascii_digit());
        if good {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
    b.fs(&["-expunge", "-immediate"]).ok();
    b.fs(&["-count", &trash]).ok().stdout_fields(&["1", "0", "0", &trash]);
    // Trash settings do not leak into files outside the trash.
    b.fs(&["-ls", "/trash-test"]).ok().stdout_lines(&[]);

    let failures = b.run(&clients, &cluster, &classes, &work);
    report("hadoop fs (trash on)", failures, &cluster);
}

/// A datanode crashes (SIGKILL; the namenode still lists it): reads fail over to the other
/// replicas, a new write routes its pipeline around it (abandonBlock + excludeNodes, or
/// pipeline recovery), checksums come from the live nodes; after a restart all is readable.
#[test]
fn hadoop_fs_with_a_dead_datanode() {
    let Some(clients) = RealClients::require(Client::HadoopFs) else { return };
    let mut cluster = Cluster::start(ClusterOptions::default());
    let work = support::test_dir("work");
    let files = local_files(&work);
    let classes = clients.compile_java(&["FsShellBatch.java"]);
    let big = work.join("big.bin").display().to_string();
    let (algorithm, hex) = expected_file_checksum(&files.big, BLOCK_SIZE);

    let mut b = Batch::new("before");
    b.fs(&["-mkdir", "/dead"]).ok();
    b.fs(&["-put", &big, "/dead/big.bin"]).ok();
    report("hadoop fs (before killing a datanode)", b.run(&clients, &cluster, &classes, &work), &cluster);

    cluster.kill_datanode(0);
    let mut b = Batch::new("dead");
    b.fs(&["-cat", "/dead/big.bin"]).ok().stdout_bytes(files.big.clone());
    b.fs(&["-checksum", "/dead/big.bin"]).ok().stdout_lines(&[&format!("/dead/big.bin\t{algorithm}\t{hex}")]);
    for i in 0..3 {
        let target = format!("/dead/after-{i}.bin");
        b.fs(&["-put", &big, &target]).ok();
        b.fs(&["-cat", &target]).ok().stdout_bytes(files.big.clone());
    }
    report("hadoop fs (datanode 0 killed)", b.run(&clients, &cluster, &classes, &work), &cluster);

    cluster.restart_datanode(0);
    let mut b = Batch::new("restarted");
    for i in 0..3 {
        b.fs(&["-cat", &format!("/dead/after-{i}.bin")]).ok().stdout_bytes(files.big.clone());
    }
    b.fs(&["-put", &big, "/dead/restarted.bin"]).ok();
    b.fs(&["-cat", "/dead/restarted.bin"]).ok().stdout_bytes(files.big.clone());
    report("hadoop fs (datanode 0 restarted)", b.run(&clients, &cluster, &classes, &work), &cluster);
}

/// The real `hadoop` launcher, one JVM per command: stdin and stdout are the process's own,
/// exit codes are what a shell script sees, and no HADOOP_CONF_DIR (`-fs` names the cluster).
#[test]
fn hadoop_launcher_processes() {
    let Some(clients) = RealClients::require(Client::HadoopFs) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let uri = cluster.uri().to_string();
    let data = pattern_bytes(BLOCK_SIZE + BLOCK_SIZE / 2, 9);
    let hadoop = |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = clients.command("hadoop");
        command.env("HADOOP_OPTS", "-Duser.timezone=UTC").arg("fs").args(["-fs", &uri]).args(args);
        run(&mut command, stdin, Duration::from_secs(180))
    };
    let mut failures = Vec::new();
    let mut expect = |what: &str, output: &support::Output, good: bool| {
        if !good {
            failures.push(format!("{what}\n{}", output.describe()));
        }
    };

    let put = hadoop(&["-D", "dfs.blocksize=1048576", "-put", "-", "/launcher/stdin.bin"], Some(&data));
    expect("hadoop fs -put - (1.5 MiB from the process's stdin): exit 0", &put, put.success());
    let cat = hadoop(&["-cat", "/launcher/stdin.bin"], None);
    expect(
        &format!(
            "hadoop fs -cat: exit 0 and the same {} bytes on stdout ({})",
            data.len(),
            support::first_difference(&data, &cat.stdout)
        ),
        &cat,
        cat.success() && cat.stdout == data,
    );
    let stat = hadoop(&["-stat", "%b %o %r", "/launcher/stdin.bin"], None);
    expect(
        "hadoop fs -stat: 1572864 bytes, 1 MiB blocks as asked with -D, replication 3",
        &stat,
        stat.success() && stat.stdout_text().trim() == "1572864 1048576 3",
    );
    let ls = hadoop(&["-ls", "/nope"], None);
    expect(
        "hadoop fs -ls /nope: exit 1, \"ls: `/nope': No such file or directory\"",
        &ls,
        ls.code == Some(1) && ls.stderr_text().contains("ls: `/nope': No such file or directory"),
    );
    let test = hadoop(&["-test", "-d", "/launcher"], None);
    expect("hadoop fs -test -d /launcher: exit 0", &test, test.success());
    if !failures.is_empty() {
        panic!(
            "hadoop (launcher): {} failure(s):\n\n{}\n\n{}",
            failures.len(),
            failures.join("\n\n"),
            cluster.diagnostics()
        );
    }
}
