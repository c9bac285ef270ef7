//! Shared harness of the root package's multi-process tests.
//!
//! - [`Cluster`]: a real `ringfs cluster` (one namenode, N datanodes, separate processes) in a
//!   fresh temporary directory, driven through the supervisor's `--control-stdin` channel:
//!   kill, stop and restart single nodes; everything is stopped when the value drops (and
//!   when the test process dies, since the supervisor stops on stdin EOF).
//! - [`RealClients`]: the Hadoop-ecosystem clients installed by `scripts/install-clients.sh`
//!   (`hadoop`, `javac`, `snakebite`, Python with `hdfs_native`, `spark-submit`). Missing
//!   clients skip the test with the reason, except under `CI=true` where they fail it.
//! - [`run`]: runs a client command with a time limit and captures everything it printed.
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long `ringfs cluster` may take to report READY (format, start, registration).
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(240);

/// How long one control command (restart waits for READY) may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the supervisor may take to stop its children when the test is done.
const CLUSTER_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Log lines quoted when a cluster fails to start.
const LOG_TAIL_LINES: usize = 40;

/// Shape and settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub datanodes: usize,
    pub replication: u32,
    pub block_size: u64,
    /// `dfs.datanode.io.engine` (`uring`, `threads`, `auto`); `None` keeps the default.
    pub engine: Option<String>,
    /// Any further `-D key=value` settings.
    pub conf: Vec<(String, String)>,
    /// Trash on (`fs.trash.interval=1`, minutes) or off (`0`).
    pub trash: bool,
}

impl Default for ClusterOptions {
    /// Three datanodes, replication 3, 1 MiB blocks so that small files span blocks; the
    /// datanode engine from `RINGFS_TEST_ENGINE` (`uring`, `threads`) if set, else the
    /// datanode's default (`auto`).
    fn default() -> Self {
        ClusterOptions {
            datanodes: 3,
            replication: 3,
            block_size: 1 << 20,
            engine: std::env::var("RINGFS_TEST_ENGINE").ok().filter(|e| !e.is_empty()),
            conf: Vec::new(),
            trash: false,
        }
    }
}

impl ClusterOptions {
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.conf.push((key.to_string(), value.to_string()));
        self
    }

    fn defines(&self) -> Vec<(String, String)> {
        let mut defines = vec![
            ("dfs.replication".to_string(), self.replication.to_string()),
            ("dfs.blocksize".to_string(), self.block_size.to_string()),
            ("fs.trash.interval".to_string(), if self.trash { "1" } else { "0" }.to_string()),
        ];
        if let Some(engine) = &self.engine {
            defines.push(("dfs.datanode.io.engine".to_string(), engine.clone()));
        }
        defines.extend(self.conf.iter().cloned());
        defines
    }
}

/// What the supervisor reported about one datanode at its last start.
#[derive(Debug, Clone, Default)]
pub struct DatanodeInfo {
    pub xfer: String,
    pub ipc: String,
    pub http: String,
    pub uuid: String,
    pub pid: u32,
}

/// A running `ringfs cluster` in a temporary directory.
pub struct Cluster {
    supervisor: Child,
    control: Option<ChildStdin>,
    lines: Receiver<String>,
    dir: TestDir,
    uri: String,
    nn_addr: String,
    namenode_pid: u32,
    datanodes: Vec<DatanodeInfo>,
    /// Supervisor output seen so far (for failure messages).
    transcript: Vec<String>,
}

static CLUSTER_SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test, named after the test (libtest names the thread so);
/// removed on drop unless the test is failing or `RINGFS_KEEP_TEST_DIRS` is set.
pub fn test_dir(kind: &str) -> TestDir {
    let thread = std::thread::current();
    let test_name = thread.name().unwrap_or("test").replace("::", "-");
    let dir = std::env::temp_dir().join("ringfs-tests").join(format!(
        "{test_name}-{kind}-{}-{}",
        std::process::id(),
        CLUSTER_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    TestDir(dir)
}

/// See [`test_dir`].
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TestDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("RINGFS_KEEP_TEST_DIRS").is_some() {
            eprintln!("test directory kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Cluster {
    /// Starts a cluster; panics with the logs if it does not come up.
    pub fn start(options: ClusterOptions) -> Cluster {
        match Cluster::try_start(options) {
            Ok(cluster) => cluster,
            Err(e) => panic!("ringfs cluster did not start: {e:#}"),
        }
    }

    pub fn try_start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = test_dir("cluster");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringfs"));
        command
            .arg("cluster")
            .args(["--datanodes", &options.datanodes.to_string()])
            .arg("--base-dir")
            .arg(dir.join("base"))
            .args(["--namenode-port", "0", "--control-stdin"]);
        for (key, value) in options.defines() {
            command.arg("-D").arg(format!("{key}={value}"));
        }
        let stderr = std::fs::File::create(dir.join("cluster.err")).context("create cluster.err")?;
        let mut supervisor = command
            .env_remove("HADOOP_CONF_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawn `ringfs cluster`")?;
        let control = supervisor.stdin.take();
        let lines = spawn_line_reader(
            supervisor.stdout.take().context("supervisor stdout")?,
            dir.join("cluster.out"),
        );
        let mut cluster = Cluster {
            supervisor,
            control,
            lines,
            dir,
            uri: String::new(),
            nn_addr: String::new(),
            namenode_pid: 0,
            datanodes: vec![DatanodeInfo::default(); options.datanodes],
            transcript: Vec::new(),
        };
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        loop {
            let line = match cluster.next_line(deadline) {
                Ok(line) => line,
                Err(e) => bail!("{e:#}\n{}", cluster.diagnostics()),
            };
            if let Some(fields) = line.strip_prefix("CLUSTER READY ") {
                let fields = parse_fields(fields);
                cluster.uri = fields.get("uri").cloned().context("CLUSTER READY without uri=")?;
                cluster.nn_addr = cluster.uri.trim_start_matches("hdfs://").to_string();
                return Ok(cluster);
            }
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The namenode's `host:port`.
    pub fn nn_addr(&self) -> &str {
        &self.nn_addr
    }

    /// `hdfs://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.uri)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn base_dir(&self) -> PathBuf {
        self.dir.join("base")
    }

    /// The generated `core-site.xml`/`hdfs-site.xml`, usable as `HADOOP_CONF_DIR`.
    pub fn conf_dir(&self) -> PathBuf {
        self.base_dir().join("conf")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.base_dir().join("logs")
    }

    pub fn namenode_log(&self) -> PathBuf {
        self.log_dir().join("namenode.log")
    }

    pub fn datanode_log(&self, index: usize) -> PathBuf {
        self.log_dir().join(format!("datanode-{index}.log"))
    }

    pub fn datanode(&self, index: usize) -> &DatanodeInfo {
        &self.datanodes[index]
    }

    pub fn datanode_count(&self) -> usize {
        self.datanodes.len()
    }

    pub fn namenode_pid(&self) -> u32 {
        self.namenode_pid
    }

    /// SIGKILLs datanode `index` (a crash: no clean shutdown).
    pub fn kill_datanode(&mut self, index: usize) {
        self.control_or_panic(&format!("kill-datanode {index}"));
    }

    /// SIGTERMs datanode `index` and waits for it to exit.
    pub fn stop_datanode(&mut self, index: usize) {
        self.control_or_panic(&format!("stop-datanode {index}"));
    }

    /// Starts datanode `index` again (stopping it first if it runs) with the same data
    /// directory and ports, and waits for its READY line.
    pub fn restart_datanode(&mut self, index: usize) {
        if self.is_running(&format!("role=datanode index={index}")) {
            self.stop_datanode(index);
        }
        self.control_or_panic(&format!("start-datanode {index}"));
    }

    /// SIGKILLs the namenode.
    pub fn kill_namenode(&mut self) {
        self.control_or_panic("kill-namenode");
    }

    /// Starts the namenode again on the same port and name directory (stopping it first if
    /// it runs), and waits for its READY line.
    pub fn restart_namenode(&mut self) {
        if self.is_running("role=namenode") {
            self.control_or_panic("stop-namenode");
        }
        self.control_or_panic("start-namenode");
    }

    fn is_running(&mut self, role_fields: &str) -> bool {
        let reply = self.control_or_panic("status");
        reply.iter().any(|line| line.contains(role_fields) && line.contains(" running "))
    }

    /// Sends a control command; returns the supervisor lines up to and including its `OK`.
    pub fn control(&mut self, command: &str) -> anyhow::Result<Vec<String>> {
        let control = self.control.as_mut().context("the control channel is closed")?;
        writeln!(control, "{command}").and_then(|()| control.flush()).context("write to the supervisor")?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let mut reply = Vec::new();
        loop {
            let line = self.next_line(deadline).with_context(|| format!("control command `{command}`"))?;
            reply.push(line.clone());
            if line == format!("OK {command}") || line.starts_with(&format!("OK {command} ")) {
                return Ok(reply);
            }
            if let Some(reason) = line.strip_prefix(&format!("ERR {command}: ")) {
                bail!("control command `{command}` failed: {reason}");
            }
        }
    }

    fn control_or_panic(&mut self, command: &str) -> Vec<String> {
        match self.control(command) {
            Ok(reply) => reply,
            Err(e) => panic!("{e:#}\n{}", self.diagnostics()),
        }
    }

    /// The next supervisor line, keeping node details up to date.
    fn next_line(&mut self, deadline: Instant) -> anyhow::Result<String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => bail!("no answer from `ringfs cluster` in time"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.supervisor.wait().map(|s| s.to_string()).unwrap_or_default();
                bail!("`ringfs cluster` exited ({status})");
            }
        };
        self.transcript.push(line.clone());
        if let Some(fields) = line.strip_prefix("CLUSTER DATANODE ") {
            let fields = parse_fields(fields);
            let index: usize = fields.get("index").and_then(|i| i.parse().ok()).unwrap_or(usize::MAX);
            if let Some(info) = self.datanodes.get_mut(index) {
                let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
                *info = DatanodeInfo {
                    xfer: field("xfer"),
                    ipc: field("ipc"),
                    http: field("http"),
                    uuid: field("uuid"),
                    pid: field("pid").parse().unwrap_or(0),
                };
            }
        } else if let Some(fields) = line.strip_prefix("CLUSTER NAMENODE ") {
            self.namenode_pid = parse_fields(fields).get("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
        }
        Ok(line)
    }

    /// The supervisor's output and the tail of every log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = format!("--- ringfs cluster in {} ---\n", self.dir.display());
        text.push_str(&self.transcript.join("\n"));
        text.push('\n');
        let mut logs = vec![
            self.dir.join("cluster.err"),
            self.log_dir().join("namenode-format.log"),
            self.namenode_log(),
        ];
        logs.extend((0..self.datanodes.len()).map(|i| self.datanode_log(i)));
        for log in logs {
            if let Ok(content) = std::fs::read_to_string(&log) {
                text.push_str(&format!(
                    "--- last lines of {} ---\n{}\n",
                    log.display(),
                    tail(&content, LOG_TAIL_LINES)
                ));
            }
        }
        text
    }

    /// The last `lines` lines of the namenode's log.
    pub fn namenode_log_tail(&self, lines: usize) -> String {
        tail(&std::fs::read_to_string(self.namenode_log()).unwrap_or_default(), lines)
    }

    fn shutdown(&mut self) -> Option<ExitStatus> {
        if let Some(mut control) = self.control.take() {
            let _ = writeln!(control, "shutdown");
            // Dropping stdin is the second signal: the supervisor stops on EOF too.
        }
        let deadline = Instant::now() + CLUSTER_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.supervisor.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The supervisor is stuck: kill it and every child it reported.
        let _ = self.supervisor.kill();
        let mut pids = vec![self.namenode_pid];
        pids.extend(self.datanodes.iter().map(|d| d.pid));
        for pid in pids.into_iter().filter(|&p| p != 0) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        self.supervisor.wait().ok()
    }
}

impl Drop for Cluster {
    /// Stops the cluster; its directory goes with the [`TestDir`] (kept if the test failed).
    fn drop(&mut self) {
        let status = self.shutdown();
        if !status.is_some_and(|s| s.success()) {
            eprintln!("ringfs cluster in {} stopped with {status:?}", self.dir.display());
        }
    }
}

/// Reads `source` line by line on a thread, copying each line to `transcript`.
fn spawn_line_reader(source: impl Read + Send + 'static, transcript: PathBuf) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&transcript).ok();
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `k=v k=v` into a map.
pub fn parse_fields(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ----------------------------------------------------------------------------------------
// Running client commands

/// What a finished (or timed-out) command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code; `None` if killed by a signal or by the time limit.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A description for failure messages: command, exit code and (trimmed) output.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit: {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code.map_or("killed".to_string(), |c| c.to_string()),
            if self.timed_out { " (timed out)" } else { "" },
            clip(&self.stdout_text(), 4000),
            clip(&self.stderr_text(), 8000),
        )
    }

    /// Panics with the description unless the exit code is 0.
    pub fn assert_success(&self, client: &str) -> &Self {
        assert!(self.success(), "{client}: command failed\n{}", self.describe());
        self
    }
}

/// Keeps the start and the end of long text.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head_end = (0..=max / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let tail_start =
        (text.len() - max / 2..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    format!("{}\n[... {} bytes ...]\n{}", &text[..head_end], tail_start - head_end, &text[tail_start..])
}

/// Runs `command` with `stdin` bytes, killing it after `timeout`.
pub fn run(command: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let description = describe_command(command);
    let started = Instant::now();
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start `{description}`: {e}"));
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let stdout = read_all_on_thread(child.stdout.take().expect("stdout pipe"));
    let stderr = read_all_on_thread(child.stderr.take().expect("stderr pipe"));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Output {
        command: description,
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
        elapsed: started.elapsed(),
    }
}

fn read_all_on_thread(mut source: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

fn describe_command(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains([' ', '\'', '"', '*', '\t']) {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    words.join(" ")
}

// ----------------------------------------------------------------------------------------
// Real clients

/// The clients the interop suite drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `hadoop fs` (Java FsShell through the `bin/hadoop` wrapper).
    HadoopFs,
    /// A Java program compiled with `javac` against the Hadoop client jars.
    JavaApi,
    /// snakebite-py3's `snakebite` CLI.
    Snakebite,
    /// The `hdfs_native` Python wheel.
    HdfsNativePython,
    /// pyspark's `spark-submit`.
    Spark,
}

/// The clients installed by `scripts/install-clients.sh`, with the environment its
/// `env.sh` sets.
#[derive(Debug, Clone)]
pub struct RealClients {
    pub deps: PathBuf,
    env: BTreeMap<String, String>,
}

impl RealClients {
    /// Reads `$RINGFS_DEPS/env.sh` (default `~/.cache/ringfs-deps/env.sh`).
    pub fn detect() -> Result<RealClients, String> {
        let deps = match std::env::var_os("RINGFS_DEPS") {
            Some(dir) => PathBuf::from(dir),
            None => {
                PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?).join(".cache/ringfs-deps")
            }
        };
        let env_sh = deps.join("env.sh");
        let text = std::fs::read_to_string(&env_sh)
            .map_err(|e| format!("{} is missing ({e}); run scripts/install-clients.sh", env_sh.display()))?;
        let mut env = parse_env_sh(&text);
        let path = std::env::var("PATH").unwrap_or_default();
        env.insert("PATH".to_string(), format!("{}:{path}", deps.join("bin").display()));
        Ok(RealClients { deps, env })
    }

    /// The clients, if `client` is usable. Otherwise: under `CI=true` the test fails (CI
    /// must run every client); elsewhere it is skipped with the reason on stderr.
    pub fn require(client: Client) -> Option<RealClients> {
        let found = RealClients::detect().and_then(|clients| clients.check(client).map(|()| clients));
        match found {
            Ok(clients) => Some(clients),
            Err(reason) if is_ci() => panic!("{client:?} client is required in CI but not usable: {reason}"),
            Err(reason) => {
                eprintln!("SKIPPED: {client:?} client not usable: {reason} (run scripts/install-clients.sh)");
                None
            }
        }
    }

    fn check(&self, client: Client) -> Result<(), String> {
        let need_file = |path: PathBuf| -> Result<(), String> {
            if path.exists() {
                Ok(())
            } else {
                Err(format!("{} does not exist", path.display()))
            }
        };
        let need_env = |key: &str| -> Result<PathBuf, String> {
            let value = self.env.get(key).ok_or_else(|| format!("env.sh does not set {key}"))?;
            need_file(PathBuf::from(value))?;
            Ok(PathBuf::from(value))
        };
        match client {
            Client::HadoopFs => {
                need_env("RINGFS_JAVA")?;
                need_file(self.bin("hadoop"))
            }
            Client::JavaApi => {
                need_env("RINGFS_JAVA")?;
                need_env("RINGFS_JAVAC")?;
                need_env("HADOOP_JARS")?;
                Ok(())
            }
            Client::Snakebite => need_file(self.bin("snakebite")),
            Client::HdfsNativePython => self.python_imports("hdfs_native"),
            Client::Spark => {
                need_env("RINGFS_JAVA")?;
                need_file(self.bin("spark-submit"))?;
                self.python_imports("pyspark")
            }
        }
    }

    fn python_imports(&self, module: &str) -> Result<(), String> {
        let python = self.bin("python");
        if !python.exists() {
            return Err(format!("{} does not exist", python.display()));
        }
        let output = run(
            self.command("python").args(["-c", &format!("import {module}")]),
            None,
            Duration::from_secs(60),
        );
        if output.success() {
            Ok(())
        } else {
            Err(format!("python cannot import {module}: {}", output.stderr_text().trim()))
        }
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.deps.join("bin").join(program)
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// A command for `program` (a wrapper in `bin/`, else any program on PATH) with the
    /// client environment; UTC so that printed times are comparable.
    pub fn command(&self, program: &str) -> Command {
        let wrapper = self.bin(program);
        let mut command = Command::new(if wrapper.exists() { wrapper } else { PathBuf::from(program) });
        command.envs(&self.env).env("TZ", "UTC").env_remove("HADOOP_CONF_DIR").env_remove("HADOOP_USER_NAME");
        command
    }

    /// `hadoop` with `HADOOP_CONF_DIR` pointing at the cluster's generated configuration.
    pub fn hadoop(&self, cluster: &Cluster) -> Command {
        let mut command = self.command("hadoop");
        command
            .env("HADOOP_CONF_DIR", cluster.conf_dir())
            .env("HADOOP_OPTS", "-Duser.timezone=UTC -Xshare:auto");
        command
    }

    pub fn java(&self) -> Command {
        let mut command = Command::new(self.env("RINGFS_JAVA").unwrap_or("java"));
        command.envs(&self.env).env("TZ", "UTC");
        command
    }

    pub fn javac(&self) -> Command {
        let mut command = Command::new(self.env("RINGFS_JAVAC").unwrap_or("javac"));
        command.envs(&self.env);
        command
    }

    /// The Hadoop client jars, as a classpath entry.
    pub fn hadoop_classpath(&self) -> String {
        format!("{}/*", self.env("HADOOP_JARS").unwrap_or_default())
    }

    /// Compiles Java sources (from `tests/interop/java`) into a new directory; returns it.
    pub fn compile_java(&self, sources: &[&str]) -> TestDir {
        let classes = test_dir("java-classes");
        let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/java");
        let mut javac = self.javac();
        javac
            .args(["-nowarn", "-encoding", "UTF-8", "-cp", &self.hadoop_classpath(), "-d"])
            .arg(classes.path());
        javac.args(sources.iter().map(|s| source_dir.join(s)));
        run(&mut javac, None, Duration::from_secs(240)).assert_success("javac");
        classes
    }
}

/// Parses the `export KEY='value'` lines that install-clients.sh writes.
pub fn parse_env_sh(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .filter(|(key, _)| key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .filter(|(_, value)| !value.contains('$'))
        .map(|(key, value)| (key.to_string(), unquote(value)))
        .collect()
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    for quote in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner.to_string();
        }
    }
    value.to_string()
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Where two byte strings first differ, for messages about content mismatches.
pub fn first_difference(expected: &[u8], actual: &[u8]) -> String {
    if expected == actual {
        return "identical".to_string();
    }
    match expected.iter().zip(actual).position(|(a, b)| a != b) {
        Some(offset) => format!(
            "lengths {} (expected) vs {} (actual); first difference at byte {offset}: {:#04x} vs {:#04x}",
            expected.len(),
            actual.len(),
            expected[offset],
            actual[offset]
        ),
        None => format!(
            "lengths {} (expected) vs {} (actual); the shorter is a prefix of the longer",
            expected.len(),
            actual.len()
        ),
    }
}

/// For client programs that print `PASS name ...` / `FAIL name: ...` per check and `DONE`:
/// panics unless every `expected` check printed PASS, listing the failed and missing ones
/// with the program's output and the cluster's logs.
pub fn assert_all_pass(client: &str, output: &Output, expected: &[String], cluster: &Cluster) {
    let stdout = output.stdout_text();
    let mut problems = Vec::new();
    for name in expected {
        let pass =
            stdout.lines().any(|l| l == format!("PASS {name}") || l.starts_with(&format!("PASS {name} ")));
        if pass {
            continue;
        }
        match stdout.lines().find(|l| l.starts_with(&format!("FAIL {name}:"))) {
            Some(line) => problems.push(format!(
                "{client}, check {name}: {}",
                clip(line.replace(" | ", "\n      ").as_str(), 6000)
            )),
            None => problems
                .push(format!("{client}, check {name}: expected a PASS line, the program printed none")),
        }
    }
    for line in stdout.lines().filter(|l| l.starts_with("FAIL ")) {
        let name = line[5..].split([':', ' ']).next().unwrap_or("");
        if !expected.iter().any(|e| e == name) {
            problems.push(format!("{client}, unlisted check: {line}"));
        }
    }
    if !stdout.lines().any(|l| l.starts_with("DONE")) {
        problems.push(format!("{client}: the program did not finish (no DONE line)"));
    }
    if !problems.is_empty() {
        panic!(
            "{client}: {} problem(s):\n\n{}\n\n--- program output ---\n{}\n\n{}",
            problems.len(),
            problems.join("\n\n"),
            output.describe(),
            cluster.diagnostics()
        );
    }
}

/// Appends every file under `dir` (recursively) to `out`; unreadable directories are skipped.
pub fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_files(&path, out);
        } else {
            out.push(path);
        }
    }
}
