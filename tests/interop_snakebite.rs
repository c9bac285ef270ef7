//! snakebite (snakebite-py3's CLI, the classic pure-Python client speaking Hadoop 2's
//! protocols) against a fresh ringfs cluster. Files are written with hdfs-native first,
//! since snakebite cannot write data.

mod support;

use std::time::Duration;

use hdfs_native::{ClientBuilder, WriteOptions};
use support::{first_difference, pattern_bytes, run, Client, Cluster, ClusterOptions, Output, RealClients};

const SMALL: &[u8] = b"hello snakebite\nsecond line\n";
const BIG_SIZE: usize = 2 * (1 << 20) + (1 << 19) + 7;

struct Snakebite<'a> {
    clients: &'a RealClients,
    host: String,
    port: String,
    failures: Vec<String>,
}

impl Snakebite<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = self.clients.command("snakebite");
        command.args(["-n", &self.host, "-p", &self.port]).args(args);
        run(&mut command, None, Duration::from_secs(120))
    }

    /// Runs `snakebite <args>` and records a failure unless `good` accepts the output.
    fn expect(&mut self, args: &[&str], expected: &str, good: impl FnOnce(&Output) -> bool) -> Output {
        let output = self.run(args);
        if !good(&output) {
            self.failures.push(format!(
                "snakebite {}\n    expected: {expected}\n    saw:      exit {:?}, stdout {:?}, stderr {:?}",
                args.join(" "),
                output.code,
                support::clip(&output.stdout_text(), 1500),
                support::clip(&output.stderr_text(), 2500)
            ));
        }
        output
    }
}

fn fields(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn snakebite_cli() {
    let Some(clients) = RealClients::require(Client::Snakebite) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let big = pattern_bytes(BIG_SIZE, 77);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client = ClientBuilder::new().with_url(cluster.uri()).build().expect("hdfs-native client");
        client.mkdirs("/snake/dir", 0o755, true).await.expect("mkdirs");
        for (path, data) in
            [("/snake/small.txt", SMALL), ("/snake/big.bin", &big[..]), ("/snake/dir/inner.txt", SMALL)]
        {
            let mut writer = client.create(path, WriteOptions::default()).await.expect("create");
            writer.write_bytes(bytes::Bytes::copy_from_slice(data)).await.expect("write");
            writer.close().await.expect("close");
        }
    });
    let user =
        String::from_utf8_lossy(&std::process::Command::new("id").arg("-un").output().expect("id").stdout)
            .trim()
            .to_string();
    let (host, port) = cluster.nn_addr().rsplit_once(':').expect("host:port");
    let mut s =
        Snakebite { clients: &clients, host: host.to_string(), port: port.to_string(), failures: Vec::new() };

    let small_len = SMALL.len().to_string();
    let big_len = BIG_SIZE.to_string();
    let listing_ok = |o: &Output| {
        let text = o.stdout_text();
        let lines: Vec<&str> = text.lines().collect();
        let line_for = |path: &str| lines.iter().map(|l| fields(l)).find(|f| f.last() == Some(&path));
        let file_ok = |path: &str, size: &str| {
            line_for(path).is_some_and(|f| {
                f.len() == 8
                    && f[0] == "-rw-r--r--"
                    && f[1] == "3"
                    && f[2] == user
                    && f[3] == "supergroup"
                    && f[4] == size
            })
        };
        o.success()
            && lines.first() == Some(&"Found 3 items")
            && file_ok("/snake/small.txt", &small_len)
            && file_ok("/snake/big.bin", &big_len)
            && line_for("/snake/dir").is_some_and(|f| f[0] == "drwxr-xr-x" && f[1] == "-")
    };
    s.expect(
        &["ls", "/snake"],
        "\"Found 3 items\", then -rw-r--r-- 3 <user> supergroup <size> lines and a drwxr-xr-x line",
        listing_ok,
    );
    s.expect(&["ls", "-h", "/snake/big.bin"], "a human-readable size 2.5M", |o| {
        o.success() && o.stdout_text().lines().any(|l| fields(l).contains(&"2.5M"))
    });
    s.expect(&["ls", "-R", "/snake"], "4 entries including /snake/dir/inner.txt", |o| {
        let text = o.stdout_text();
        o.success()
            && text.lines().filter(|l| !l.trim().is_empty()).count() == 4
            && text.contains("/snake/dir/inner.txt")
    });
    s.expect(&["ls", "-d", "/snake/dir"], "one drwxr-xr-x line for /snake/dir", |o| {
        o.success()
            && o.stdout_text()
                .lines()
                .any(|l| fields(l).first() == Some(&"drwxr-xr-x") && l.ends_with("/snake/dir"))
    });
    s.expect(&["ls", "/snake/nope"], "a non-zero exit and \"No such file or directory\"", |o| {
        !o.success() && (o.stdout_text() + &o.stderr_text()).contains("No such file or directory")
    });
    let cat =
        s.expect(&["cat", "/snake/small.txt"], "the file's bytes", |o| o.success() && o.stdout == SMALL);
    drop(cat);
    let cat = s.run(&["cat", "-checkcrc", "/snake/big.bin"]);
    if !(cat.success() && cat.stdout == big) {
        s.failures.push(format!(
            "snakebite cat -checkcrc /snake/big.bin\n    expected: exit 0 and {BIG_SIZE} bytes with verified CRCs\n    saw:      exit {:?}, {}; stderr {:?}",
            cat.code,
            first_difference(&big, &cat.stdout),
            support::clip(&cat.stderr_text(), 2500)
        ));
    }
    // snakebite-py3's CLI prints the tail as a Python bytes literal (`print(b'...')`);
    // decode it with Python to compare bytes.
    let tail = s.expect(&["tail", "/snake/big.bin"], "exit 0 and a bytes literal", |o| {
        o.success() && (o.stdout.starts_with(b"b'") || o.stdout.starts_with(b"b\""))
    });
    let mut decode = clients.command("python");
    decode.args(["-c", "import ast,sys; sys.stdout.buffer.write(ast.literal_eval(sys.stdin.read()))"]);
    let decoded = run(&mut decode, Some(&tail.stdout), Duration::from_secs(60));
    if decoded.stdout != big[BIG_SIZE - 1024..] {
        s.failures.push(format!(
            "snakebite tail /snake/big.bin\n    expected: the last 1024 bytes\n    saw:      {}",
            first_difference(&big[BIG_SIZE - 1024..], &decoded.stdout)
        ));
    }
    let local = support::test_dir("snakebite");
    let target = local.join("big.bin");
    s.expect(&["get", "/snake/big.bin", &target.display().to_string()], "exit 0 and a local copy", |o| {
        o.success() && std::fs::read(&target).is_ok_and(|d| d == big)
    });
    let total = SMALL.len() * 2 + BIG_SIZE;
    s.expect(&["du", "/snake"], "one line per child with its length", |o| {
        let text = o.stdout_text();
        let has =
            |size: usize, path: &str| text.lines().any(|l| fields(l) == [size.to_string().as_str(), path]);
        o.success()
            && has(BIG_SIZE, "/snake/big.bin")
            && has(SMALL.len(), "/snake/small.txt")
            && has(SMALL.len(), "/snake/dir")
    });
    s.expect(&["du", "-s", "/snake"], &format!("\"{total} /snake\""), |o| {
        o.success() && o.stdout_text().lines().any(|l| fields(l) == [total.to_string().as_str(), "/snake"])
    });
    s.expect(&["count", "/snake"], &format!("\"2 3 {total} /snake\""), |o| {
        o.success()
            && o.stdout_text().lines().any(|l| fields(l) == ["2", "3", total.to_string().as_str(), "/snake"])
    });
    s.expect(&["df"], "a Filesystem/Size/Used/Available/Use% header and a row with a positive size", |o| {
        let text = o.stdout_text();
        let lines: Vec<&str> = text.lines().collect();
        o.success()
            && lines.first().is_some_and(|l| fields(l) == ["Filesystem", "Size", "Used", "Available", "Use%"])
            && lines
                .get(1)
                .and_then(|l| fields(l).get(1).and_then(|v| v.parse::<u64>().ok()))
                .is_some_and(|v| v > 0)
    });
    s.expect(&["stat", "/snake/small.txt"], "length, owner and file_type lines", |o| {
        let text = o.stdout_text();
        let has = |key: &str, value: &str| text.lines().any(|l| fields(l) == [key, value]);
        o.success()
            && has("length", &small_len)
            && has("owner", &user)
            && has("file_type", "f")
            && has("block_replication", "3")
    });
    s.expect(&["mkdir", "/snake/new"], "\"OK: /snake/new\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/new")
    });
    s.expect(&["mkdirp", "/snake/p/q/r"], "\"OK: /snake/p/q/r\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/p/q/r")
    });
    s.expect(&["test", "-d", "/snake/p/q/r"], "exit 0 (a directory)", |o| o.code == Some(0));
    s.expect(&["test", "-e", "/snake/nope"], "exit 1 (missing)", |o| o.code == Some(1));
    s.expect(&["touchz", "/snake/empty"], "\"OK: /snake/empty\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/empty")
    });
    // snakebite refuses an existing path itself, before any RPC (its _find_items).
    s.expect(&["touchz", "/snake/empty"], "\"ERROR: /snake/empty (reason: File already exists)\"", |o| {
        o.stdout_text().contains("ERROR: /snake/empty (reason: File already exists)")
    });
    s.expect(&["test", "-z", "/snake/empty"], "exit 0 (zero length)", |o| o.code == Some(0));
    s.expect(&["mv", "/snake/empty", "/snake/empty2"], "\"OK: /snake/empty\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/empty")
    });
    s.expect(&["test", "-e", "/snake/empty2"], "exit 0 (renamed)", |o| o.code == Some(0));
    s.expect(&["chmod", "700", "/snake/small.txt"], "\"OK: /snake/small.txt\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/small.txt")
    });
    s.expect(&["ls", "/snake/small.txt"], "permission -rwx------", |o| {
        o.success() && o.stdout_text().contains("-rwx------")
    });
    s.expect(&["setrep", "2", "/snake/small.txt"], "\"OK: /snake/small.txt\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/small.txt")
    });
    s.expect(&["stat", "/snake/small.txt"], "block_replication 2", |o| {
        o.success() && o.stdout_text().lines().any(|l| fields(l) == ["block_replication", "2"])
    });
    s.expect(&["rm", "/snake/dir"], "a refusal: `/snake/dir' is a directory", |o| {
        (o.stdout_text() + &o.stderr_text()).contains("Is a directory")
    });
    s.expect(&["rm", "/snake/small.txt"], "\"OK: /snake/small.txt\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/small.txt")
    });
    s.expect(&["rm", "-R", "/snake/dir"], "\"OK: /snake/dir\"", |o| {
        o.success() && o.stdout_text().contains("OK: /snake/dir")
    });
    s.expect(&["test", "-e", "/snake/small.txt"], "exit 1 (deleted)", |o| o.code == Some(1));
    s.expect(&["test", "-e", "/snake/dir/inner.txt"], "exit 1 (deleted recursively)", |o| o.code == Some(1));
    s.expect(&["rm", "/snake/nope"], "\"No such file or directory\" and a non-zero exit", |o| {
        !o.success() && (o.stdout_text() + &o.stderr_text()).contains("No such file or directory")
    });
    s.expect(&["ls", "/snake"], "big.bin, empty2, new, p remain", |o| {
        let text = o.stdout_text();
        o.success()
            && text.lines().next() == Some("Found 4 items")
            && ["/snake/big.bin", "/snake/empty2", "/snake/new", "/snake/p"].iter().all(|p| text.contains(p))
    });
    let failures = std::mem::take(&mut s.failures);
    assert!(
        failures.is_empty(),
        "snakebite: {} failure(s):\n\n{}\n\n{}",
        failures.len(),
        failures.join("\n\n"),
        cluster.diagnostics()
    );
}
