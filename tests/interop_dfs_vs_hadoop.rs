//! `ringfs dfs` against `hadoop fs`: the same commands on the same cluster must print the
//! same bytes on stdout and stderr and exit with the same code (the issue: "same syntax and
//! output format as hadoop fs, exit codes as Hadoop's"). Data is set up with `hadoop fs`;
//! the compared commands only read, or fail, so both shells see one state.

#[path = "interop/shell.rs"]
mod shell;
mod support;

use std::process::Command;
use std::time::Duration;

use shell::{filter_noise, Batch};
use support::{clip, pattern_bytes, run, Client, Cluster, ClusterOptions, RealClients};

/// Lines where two outputs first differ, for messages.
fn first_line_difference(hadoop: &str, ours: &str) -> String {
    let (h, o): (Vec<&str>, Vec<&str>) = (hadoop.lines().collect(), ours.lines().collect());
    for i in 0..h.len().max(o.len()) {
        if h.get(i) != o.get(i) {
            return format!("line {}: hadoop fs {:?} vs ringfs dfs {:?}", i + 1, h.get(i), o.get(i));
        }
    }
    "same lines; different line endings or trailing bytes".to_string()
}

#[test]
fn ringfs_dfs_prints_what_hadoop_fs_prints() {
    let Some(clients) = RealClients::require(Client::HadoopFs) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let work = support::test_dir("work");
    let classes = clients.compile_java(&["FsShellBatch.java"]);
    std::fs::write(work.join("small.txt"), b"one two three\nfour\n").expect("write small.txt");
    std::fs::write(work.join("big.bin"), pattern_bytes(2 * (1 << 20) + 4321, 5)).expect("write big.bin");
    let w = |name: &str| work.join(name).display().to_string();

    let mut setup = Batch::new("setup");
    setup.fs(&["-mkdir", "-p", "/cmp/dir/sub", "/cmp/empty-dir"]).ok();
    setup.fs(&["-put", &w("small.txt"), "/cmp/small.txt"]).ok();
    setup.fs(&["-put", &w("big.bin"), "/cmp/big.bin"]).ok();
    setup.fs(&["-put", &w("small.txt"), "/cmp/dir/inner.txt"]).ok();
    setup.fs(&["-touchz", "/cmp/empty"]).ok();
    setup.fs(&["-chmod", "640", "/cmp/dir/inner.txt"]).ok();
    setup.fs(&["-chown", "alice:staff", "/cmp/dir/inner.txt"]).ok();
    setup.fs(&["-setrep", "2", "/cmp/small.txt"]).ok();
    let failures = setup.run(&clients, &cluster, &classes, &work);
    assert!(failures.is_empty(), "setup with hadoop fs failed:\n{}", failures.join("\n\n"));

    let local_small = w("small.txt");
    let commands: Vec<Vec<&str>> = vec![
        vec!["-ls", "/cmp"],
        vec!["-ls", "-R", "/cmp"],
        vec!["-ls", "-h", "/cmp"],
        vec!["-ls", "-d", "/cmp", "/cmp/dir"],
        vec!["-ls", "/cmp/*.txt"],
        vec!["-ls", "/cmp/nope"],
        vec!["-count", "/cmp"],
        vec!["-count", "-q", "/cmp"],
        vec!["-count", "-h", "/cmp", "/cmp/big.bin"],
        vec!["-du", "/cmp"],
        vec!["-du", "-s", "/cmp"],
        vec!["-du", "-h", "/cmp"],
        vec!["-du", "-s", "-h", "/cmp/dir", "/cmp/big.bin"],
        vec!["-du", "/cmp/nope"],
        vec!["-stat", "/cmp/big.bin"],
        vec!["-stat", "%b %r %o %n %F %u %g %a %A %y %Y", "/cmp/big.bin", "/cmp/dir", "/cmp/dir/inner.txt"],
        vec!["-stat", "%n", "/cmp/nope"],
        vec!["-checksum", "/cmp/big.bin", "/cmp/small.txt"],
        vec!["-cat", "/cmp/small.txt", "/cmp/dir/inner.txt"],
        vec!["-cat", "/cmp/nope"],
        vec!["-cat", "/cmp/dir"],
        vec!["-text", "/cmp/small.txt"],
        vec!["-tail", "/cmp/big.bin"],
        vec!["-head", "/cmp/big.bin"],
        vec!["-test", "-e", "/cmp/nope"],
        vec!["-test", "-d", "/cmp/dir"],
        vec!["-test", "-z", "/cmp/empty"],
        vec!["-find", "/cmp", "-name", "*.txt"],
        vec!["-mkdir", "/cmp/dir"],
        vec!["-mkdir", "/cmp/x/y"],
        vec!["-rm", "/cmp/nope"],
        vec!["-rm", "/cmp/dir"],
        vec!["-rmdir", "/cmp/dir"],
        vec!["-touchz", "/cmp/big.bin"],
        vec!["-put", &local_small, "/cmp/small.txt"],
        vec!["-cp", "/cmp/small.txt", "/cmp/big.bin"],
        vec!["-mv", "/cmp/nope", "/cmp/x"],
        vec!["-chmod", "644", "/cmp/nope"],
        vec!["-setrep", "2", "/cmp/nope"],
    ];
    let mut batch = Batch::new("compare");
    for command in &commands {
        batch.fs(command);
    }
    let (outcomes, mut failures) = batch.execute(&clients, &cluster, &classes, &work);
    // The comparison means something only if hadoop fs saw the data.
    let listing = outcomes.first().and_then(Option::as_ref).map(|o| o.stdout_text()).unwrap_or_default();
    assert!(listing.starts_with("Found 5 items"), "hadoop fs -ls /cmp printed {listing:?}");
    for ((args, hadoop), index) in commands.iter().zip(outcomes).zip(0..) {
        let Some(hadoop) = hadoop else {
            failures.push(format!("{}: did not run in the hadoop fs batch", batch.command_line(index)));
            continue;
        };
        let ours = run(
            Command::new(env!("CARGO_BIN_EXE_ringfs"))
                .arg("dfs")
                .args(args)
                .env("HADOOP_CONF_DIR", cluster.conf_dir())
                .env("TZ", "UTC")
                .env("RUST_LOG", "warn"),
            None,
            Duration::from_secs(120),
        );
        let mut differences = Vec::new();
        if ours.code != Some(hadoop.code) {
            differences.push(format!("exit code: hadoop fs {} vs ringfs dfs {:?}", hadoop.code, ours.code));
        }
        if ours.stdout != hadoop.stdout {
            differences.push(format!(
                "stdout ({} vs {} bytes): {}",
                hadoop.stdout.len(),
                ours.stdout.len(),
                first_line_difference(&hadoop.stdout_text(), &ours.stdout_text())
            ));
        }
        let hadoop_err = filter_noise(&hadoop.stderr);
        let ours_err = ours.stderr_text();
        if hadoop_err.trim_end() != ours_err.trim_end() {
            differences.push(format!("stderr: {}", first_line_difference(&hadoop_err, &ours_err)));
        }
        if !differences.is_empty() {
            failures.push(format!(
                "ringfs dfs {} (compared with hadoop fs):\n    {}\n    hadoop fs:  {}\n    ringfs dfs: exit {:?}; stdout {:?}; stderr {:?}",
                args.join(" "),
                differences.join("\n    "),
                hadoop.describe(),
                ours.code,
                clip(&ours.stdout_text(), 1500),
                clip(&ours_err, 1500),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "ringfs dfs vs hadoop fs: {} command(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
