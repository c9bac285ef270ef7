//! The cluster a run measures: spawned by `ringfs cluster --control-stdin` in a temporary
//! directory (one per datanode engine), or an existing one named by URI.
//!
//! The supervisor's machine-readable stdout lines give the process ids (for CPU and memory
//! accounting) and its control channel stops and starts single nodes (for the restart
//! measurements).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a spawned cluster may take to print `CLUSTER READY`.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one control command (a node stop or start) may take to be answered.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the supervisor gets to stop its children after stdin closes.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(40);

/// What to spawn.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub ringfs_bin: PathBuf,
    pub base_dir: PathBuf,
    pub datanodes: usize,
    /// `dfs.datanode.io.engine`: uring, threads or auto.
    pub engine: String,
    /// Extra `-D key=value` settings for every node.
    pub defines: Vec<(String, String)>,
    /// The supervisor's stderr (and its own stdout lines) go here.
    pub log_path: PathBuf,
}

/// A cluster under test.
pub struct Cluster {
    /// `hdfs://host:port`.
    pub uri: String,
    /// `host:port` of the namenode RPC server.
    pub namenode_addr: String,
    /// The datanode engine when we started it; "external" otherwise.
    pub engine: String,
    pub namenode_pid: Option<u32>,
    /// Datanode pids by index (0 when stopped or unknown).
    pub datanode_pids: Vec<u32>,
    /// Base directory of a spawned cluster (data under `data/dn<i>`).
    pub base_dir: Option<PathBuf>,
    supervisor: Option<Supervisor>,
}

struct Supervisor {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: std::fs::File,
}

impl Cluster {
    /// Starts `ringfs cluster` and waits until it reports ready.
    pub fn spawn(spec: &SpawnSpec) -> Result<Cluster> {
        std::fs::create_dir_all(&spec.base_dir)
            .with_context(|| format!("create {}", spec.base_dir.display()))?;
        let log = std::fs::File::create(&spec.log_path)
            .with_context(|| format!("create {}", spec.log_path.display()))?;
        let mut command = Command::new(&spec.ringfs_bin);
        command
            .arg("cluster")
            .arg("--control-stdin")
            .args(["--datanodes", &spec.datanodes.to_string()])
            .args(["--namenode-port", "0"])
            .arg("--base-dir")
            .arg(&spec.base_dir)
            .args(["-D", &format!("dfs.datanode.io.engine={}", spec.engine)]);
        for (key, value) in &spec.defines {
            command.args(["-D", &format!("{key}={value}")]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("start {} cluster", spec.ringfs_bin.display()))?;
        let stdout = child.stdout.take().context("supervisor stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = Cluster {
            uri: String::new(),
            namenode_addr: String::new(),
            engine: spec.engine.clone(),
            namenode_pid: None,
            datanode_pids: vec![0; spec.datanodes],
            base_dir: Some(spec.base_dir.clone()),
            supervisor: Some(Supervisor { stdin: child.stdin.take(), child, lines, log }),
        };
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        loop {
            let line = cluster.next_line(deadline).with_context(|| {
                format!(
                    "waiting for `ringfs cluster` to be ready ({}); see {}",
                    last_error_lines(&spec.log_path),
                    spec.log_path.display()
                )
            })?;
            if let Some(fields) = fields_after(&line, "CLUSTER READY") {
                cluster.uri = fields.get("uri").cloned().context("CLUSTER READY without uri=")?;
                cluster.namenode_addr = cluster.uri.trim_start_matches("hdfs://").to_string();
                return Ok(cluster);
            }
        }
    }

    /// A cluster started by someone else: its processes are found in /proc when they run
    /// on this host, so CPU and memory can still be accounted.
    pub fn external(uri: &str) -> Result<Cluster> {
        let namenode_addr = uri.trim_start_matches("hdfs://").trim_end_matches('/').to_string();
        if namenode_addr.is_empty() || !namenode_addr.contains(':') {
            bail!("--namenode wants hdfs://HOST:PORT, got {uri:?}");
        }
        let (namenodes, datanodes) = find_ringfs_processes();
        Ok(Cluster {
            uri: format!("hdfs://{namenode_addr}"),
            namenode_addr,
            engine: "external".to_string(),
            namenode_pid: namenodes.first().copied(),
            datanode_pids: datanodes,
            base_dir: None,
            supervisor: None,
        })
    }

    pub fn is_spawned(&self) -> bool {
        self.supervisor.is_some()
    }

    /// The data directory of datanode `index` of a spawned cluster.
    pub fn data_dir(&self, index: usize) -> Option<PathBuf> {
        self.base_dir.as_ref().map(|b| b.join("data").join(format!("dn{index}")))
    }

    /// Pids of the running datanodes.
    pub fn live_datanode_pids(&self) -> Vec<u32> {
        self.datanode_pids.iter().copied().filter(|p| *p != 0).collect()
    }

    fn next_line(&mut self, deadline: Instant) -> Result<String> {
        let supervisor = self.supervisor.as_mut().context("not a spawned cluster")?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let line = match supervisor.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => bail!("timed out"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = supervisor.child.try_wait().ok().flatten();
                bail!("`ringfs cluster` exited ({status:?})")
            }
        };
        let _ = writeln!(supervisor.log, "{line}");
        if let Some(fields) = fields_after(&line, "CLUSTER NAMENODE") {
            self.namenode_pid = fields.get("pid").and_then(|p| p.parse().ok());
        } else if let Some(fields) = fields_after(&line, "CLUSTER DATANODE") {
            let index: Option<usize> = fields.get("index").and_then(|i| i.parse().ok());
            let pid: Option<u32> = fields.get("pid").and_then(|p| p.parse().ok());
            if let (Some(index), Some(pid)) = (index, pid) {
                if index < self.datanode_pids.len() {
                    self.datanode_pids[index] = pid;
                }
            }
        }
        Ok(line)
    }

    /// Sends one control command and waits for its `OK`; returns the rest of that line.
    pub fn control(&mut self, command: &str) -> Result<String> {
        let supervisor = self.supervisor.as_mut().context("node control needs a spawned cluster")?;
        let stdin = supervisor.stdin.as_mut().context("control channel closed")?;
        writeln!(stdin, "{command}").context("write to the cluster's control channel")?;
        stdin.flush()?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            let line = self.next_line(deadline).with_context(|| format!("waiting for `{command}`"))?;
            if let Some(rest) = line.strip_prefix(&format!("OK {command}")) {
                if let Some(index) =
                    command.strip_prefix("stop-datanode ").or(command.strip_prefix("kill-datanode "))
                {
                    if let Ok(index) = index.trim().parse::<usize>() {
                        self.datanode_pids[index] = 0;
                    }
                }
                if command == "stop-namenode" || command == "kill-namenode" {
                    self.namenode_pid = None;
                }
                return Ok(rest.trim().to_string());
            }
            if let Some(reason) = line.strip_prefix(&format!("ERR {command}")) {
                bail!("`{command}` failed{reason}");
            }
        }
    }

    /// Stops a spawned cluster (closing the control channel stops every node).
    pub fn shutdown(&mut self) {
        let Some(mut supervisor) = self.supervisor.take() else { return };
        drop(supervisor.stdin.take());
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = supervisor.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = supervisor.child.kill();
        let _ = supervisor.child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The supervisor's and its children's own error lines at the end of its log, which say
/// why a start failed.
fn last_error_lines(log_path: &Path) -> String {
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ringfs ") && !l.contains("formatting a new namenode"))
        .collect();
    lines[lines.len().saturating_sub(2)..].join(" | ")
}

/// Parses `PREFIX k=v k=v` lines.
fn fields_after(line: &str, prefix: &str) -> Option<BTreeMap<String, String>> {
    let rest = line.strip_prefix(prefix)?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some(
        rest.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    )
}

/// Pids of `ringfs namenode` and `ringfs datanode` processes on this host.
fn find_ringfs_processes() -> (Vec<u32>, Vec<u32>) {
    let mut namenodes = Vec::new();
    let mut datanodes = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return (namenodes, datanodes) };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ringfs =
            args.first().is_some_and(|a| Path::new(&*String::from_utf8_lossy(a)).ends_with("ringfs"));
        if !is_ringfs {
            continue;
        }
        match args.get(1).copied() {
            Some(b"namenode") => namenodes.push(pid),
            Some(b"datanode") => datanodes.push(pid),
            _ => {}
        }
    }
    (namenodes, datanodes)
}

/// The ringfs binary: `$RINGFS_BIN`, else next to this executable (target/<profile>/).
pub fn find_ringfs_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("RINGFS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locate ringfs-bench")?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("ringfs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no ringfs binary next to {} (build it with `cargo build --release -p ringfs`, or set RINGFS_BIN)",
                exe.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supervisor_lines() {
        let f = fields_after("CLUSTER DATANODE index=2 xfer=127.0.0.1:1 pid=77 log=/x", "CLUSTER DATANODE")
            .unwrap();
        assert_eq!(f["index"], "2");
        assert_eq!(f["pid"], "77");
        assert!(fields_after("CLUSTER DATANODEX index=2", "CLUSTER DATANODE").is_none());
        let ready =
            fields_after("CLUSTER READY uri=hdfs://127.0.0.1:9 conf=/c base=/b", "CLUSTER READY").unwrap();
        assert_eq!(ready["uri"], "hdfs://127.0.0.1:9");
    }
}
