//! `ringfs cluster` itself: the one command a newcomer runs. It starts, is usable through
//! its generated configuration, survives datanode and namenode restarts, stops every child
//! on SIGTERM, and a second start on the same base directory finds the data again.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdfs_native::{Client as NativeClient, ClientBuilder, WriteOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{parse_env_sh, parse_fields, pattern_bytes, Cluster, ClusterOptions};

fn native(uri: &str) -> NativeClient {
    ClientBuilder::new().with_url(uri).build().expect("hdfs-native client")
}

async fn put(client: &NativeClient, path: &str, data: &[u8]) {
    let mut writer = client.create(path, WriteOptions::default().overwrite(true)).await.expect("create");
    writer.write_bytes(bytes::Bytes::copy_from_slice(data)).await.expect("write");
    writer.close().await.expect("close");
}

async fn get(client: &NativeClient, path: &str) -> Result<Vec<u8>, hdfs_native::HdfsError> {
    let mut reader = client.read(path).await?;
    let length = reader.file_length();
    Ok(reader.read_bytes(length).await?.to_vec())
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn generated_configuration_and_node_restarts() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let core = std::fs::read_to_string(cluster.conf_dir().join("core-site.xml")).expect("core-site.xml");
    let hdfs = std::fs::read_to_string(cluster.conf_dir().join("hdfs-site.xml")).expect("hdfs-site.xml");
    assert!(
        core.contains(&format!("<value>{}</value>", cluster.uri())),
        "core-site.xml names fs.defaultFS:\n{core}"
    );
    assert!(
        hdfs.contains("<name>dfs.blocksize</name><value>1048576</value>"),
        "hdfs-site.xml has the -D block size:\n{hdfs}"
    );
    for i in 0..cluster.datanode_count() {
        let node = cluster.datanode(i).clone();
        assert!(node.xfer.starts_with("127.0.0.1:") && node.pid != 0, "datanode {i} reported: {node:?}");
        assert!(cluster.datanode_log(i).exists(), "datanode {i} log exists");
    }
    assert!(cluster.namenode_log().exists());

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let data = pattern_bytes(3 * (1 << 20) + 5, 4);
    runtime.block_on(put(&native(cluster.uri()), "/restart/data.bin", &data));

    // A crashed datanode comes back with the same storage and ports; the data stays readable.
    let old = cluster.datanode(1).clone();
    cluster.kill_datanode(1);
    assert!(!alive(old.pid), "datanode 1 (pid {}) still runs after kill-datanode", old.pid);
    let read = runtime.block_on(get(&native(cluster.uri()), "/restart/data.bin"));
    assert!(
        read.as_ref().is_ok_and(|r| *r == data),
        "read with one datanode down: {:?}",
        read.map(|r| r.len())
    );
    cluster.restart_datanode(1);
    let new = cluster.datanode(1).clone();
    assert_ne!(new.pid, old.pid);
    // Same identity; the same ports unless another socket took one meanwhile.
    assert_eq!(new.uuid, old.uuid, "the restarted datanode keeps its storage identity");

    // The namenode restarts from its own metadata on the same port.
    cluster.restart_namenode();
    let deadline = Instant::now() + Duration::from_secs(120);
    let read = loop {
        // Until the datanodes have re-registered, reads may find no locations.
        let read = runtime.block_on(get(&native(cluster.uri()), "/restart/data.bin"));
        if read.as_ref().is_ok_and(|r| *r == data) || Instant::now() > deadline {
            break read;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        read.as_ref().is_ok_and(|r| *r == data),
        "read after a namenode restart: {:?}\n{}",
        read.map(|r| r.len()),
        cluster.diagnostics()
    );
}

/// `ringfs cluster` started the way a user does (no control channel); killed on drop if a
/// check fails before the test stops it.
struct PlainCluster {
    child: std::process::Child,
    uri: String,
    pids: Vec<u32>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for PlainCluster {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl PlainCluster {
    fn start(base: &std::path::Path) -> PlainCluster {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringfs"))
            .args([
                "cluster",
                "--datanodes",
                "2",
                "--namenode-port",
                "0",
                "-D",
                "dfs.blocksize=1048576",
                "--base-dir",
            ])
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ringfs cluster");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = PlainCluster { child, uri: String::new(), pids: Vec::new(), lines };
        let mut transcript = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let Ok(line) = cluster.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                panic!("ringfs cluster did not print CLUSTER READY; it printed:\n{}", transcript.join("\n"));
            };
            transcript.push(line.clone());
            if line.starts_with("CLUSTER NAMENODE ") || line.starts_with("CLUSTER DATANODE ") {
                cluster.pids.push(parse_fields(&line)["pid"].parse().expect("pid"));
            }
            if let Some(rest) = line.strip_prefix("CLUSTER READY ") {
                let text = transcript.join("\n");
                assert!(
                    text.contains("hadoop fs -fs hdfs://"),
                    "the banner shows a hadoop fs command:\n{text}"
                );
                assert!(
                    text.contains("ringfs dfs -fs hdfs://"),
                    "the banner shows a ringfs dfs command:\n{text}"
                );
                assert!(text.contains("logs"), "the banner says where the logs are:\n{text}");
                cluster.uri = parse_fields(rest)["uri"].clone();
                return cluster;
            }
        }
    }

    /// SIGTERMs the supervisor; it must stop every child and exit 0.
    fn sigterm_and_wait(&mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM the supervisor");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "ringfs cluster did not exit within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "ringfs cluster exits 0 after SIGTERM, saw {status}");
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.iter().any(|l| l == "CLUSTER STOPPED"), "CLUSTER STOPPED printed; saw {rest:?}");
        for pid in &self.pids {
            assert!(!alive(*pid), "child pid {pid} still runs after the supervisor stopped");
        }
    }
}

#[test]
fn sigterm_stops_everything_and_a_second_start_finds_the_data() {
    let dir = support::test_dir("plain");
    let base = dir.join("cluster");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let data = pattern_bytes((1 << 20) + 99, 8);

    let mut first = PlainCluster::start(&base);
    assert_eq!(first.pids.len(), 3, "one namenode and two datanodes reported");
    runtime.block_on(put(&native(&first.uri), "/persist/data.bin", &data));
    first.sigterm_and_wait();
    drop(first);

    let mut second = PlainCluster::start(&base);
    let read = runtime.block_on(get(&native(&second.uri), "/persist/data.bin"));
    let logs = std::fs::read_to_string(base.join("logs/namenode.log")).unwrap_or_default();
    second.sigterm_and_wait();
    assert!(
        read.as_ref().is_ok_and(|r| *r == data),
        "the second start finds the file written by the first: {:?}\nnamenode log:\n{}",
        read.map(|r| r.len()),
        support::tail(&logs, 40)
    );
}

#[test]
fn harness_helpers() {
    let env = parse_env_sh(
        "# comment\nexport RINGFS_DEPS='/x/deps'\nexport JAVA_HOME=\"/jvm\"\nexport PLAIN=abc\ncase \":$PATH:\" in\n    *) export PATH='/x/bin':\"$PATH\" ;;\nesac\n",
    );
    assert_eq!(env["RINGFS_DEPS"], "/x/deps");
    assert_eq!(env["JAVA_HOME"], "/jvm");
    assert_eq!(env["PLAIN"], "abc");
    assert!(!env.contains_key("PATH"), "PATH is composed by the harness, not copied");
    let fields = parse_fields("uri=hdfs://127.0.0.1:9000 conf=/a/b");
    assert_eq!(fields["uri"], "hdfs://127.0.0.1:9000");
    assert_eq!(support::tail("a\nb\nc", 2), "b\nc");
    assert_eq!(pattern_bytes(100, 7), pattern_bytes(100, 7));
    assert_ne!(pattern_bytes(100, 7), pattern_bytes(100, 8));
    assert_eq!(support::first_difference(b"abc", b"abc"), "identical");
    assert!(support::first_difference(b"abc", b"abd").contains("byte 2"));
    assert!(support::clip(&"x".repeat(100), 10).contains("bytes"));
    let output = support::run(
        Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
        Some(b"in"),
        Duration::from_secs(10),
    );
    assert_eq!(
        (output.code, output.stdout.as_slice(), output.stderr_text().trim()),
        (Some(3), &b"in"[..], "err")
    );
    let slow = support::run(Command::new("sleep").arg("10"), None, Duration::from_millis(200));
    assert!(slow.timed_out && slow.code.is_none());
}
