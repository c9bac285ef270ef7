//! `ringfs cluster`: a whole cluster on loopback in one command.
//!
//! The supervisor formats the namenode on first use, starts one namenode and N datanodes as
//! child processes of this same binary, waits until every datanode is live and safe mode is
//! off, prints how to use the cluster, and stops the children cleanly on Ctrl-C / SIGTERM.
//!
//! Layout under the base directory (default `$HOME/.ringfs/cluster`, so a second start finds
//! the data again):
//!
//! ```text
//! conf/core-site.xml, conf/hdfs-site.xml   generated each start; usable as HADOOP_CONF_DIR
//! name/                                    dfs.namenode.name.dir
//! data/dn<i>/                              dfs.datanode.data.dir of datanode i
//! logs/namenode.log, logs/datanode-<i>.log stdout and stderr of each child
//! run/pids                                 child pids, to clean up after a killed supervisor
//! ```
//!
//! Machine-readable lines on stdout (everything else there is for humans):
//!
//! ```text
//! CLUSTER NAMENODE rpc=127.0.0.1:8020 pid=.. log=..
//! CLUSTER DATANODE index=0 xfer=.. ipc=.. http=.. uuid=.. pid=.. log=..
//! CLUSTER READY uri=hdfs://127.0.0.1:8020 conf=.. base=..
//! CLUSTER EXITED role=datanode index=1 status=..      (a child ended without being asked to)
//! CLUSTER STOPPED
//! ```
//!
//! With `--control-stdin` (test harnesses) the supervisor reads commands from stdin, one per
//! line (`kill-datanode I`, `stop-datanode I`, `start-datanode I`, the same for `namenode`
//! without an index, `status`, `shutdown`), answers each with `OK <command> ...` or
//! `ERR <command>: <reason>`, and shuts the cluster down when stdin reaches EOF, so a test
//! process that dies takes its cluster with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ringfs_common::conf::{Configuration, DEFAULTS};
use ringfs_common::ipc::protocol;
use ringfs_common::proto::hdfs::{
    DatanodeReportTypeProto, GetDatanodeReportRequestProto, GetDatanodeReportResponseProto,
    SafeModeActionProto, SetSafeModeRequestProto, SetSafeModeResponseProto,
};
use ringfs_rpc::RpcClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};

const USAGE: &str = "\
Usage: ringfs cluster [--datanodes N] [--base-dir DIR] [--namenode-port PORT] [--control-stdin]
                      [--conf DIR] [-D key=value ...]

Starts one namenode and N datanodes (default 3) on 127.0.0.1, formatting the namenode on
first use. Data, generated configuration and logs live under DIR (default
$HOME/.ringfs/cluster). PORT defaults to 8020 when free, else any free port; 0 means any.
";

/// Datanodes started when `--datanodes` is not given: enough for HDFS's replication 3.
const DATANODES_DEFAULT: usize = 3;

/// Most datanodes one supervisor runs: every one is a process with its own ports, and a
/// loopback cluster beyond this is a mistake rather than a test.
const DATANODES_MAX: usize = 64;

/// HDFS's well-known namenode RPC port, used when free.
const NAMENODE_PORT_DEFAULT: u16 = 8020;

/// How long a child may take to print its READY line (formatting and block scans included).
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the cluster may take, after every child is ready, until all datanodes are
/// registered and safe mode is off.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Polling period of the readiness checks against the namenode.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How long we wait for the kernel to report a SIGKILLed child as exited.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Log lines quoted in an error about a child that failed to start.
const LOG_TAIL_LINES: usize = 30;

/// Cluster defaults that differ from HDFS's, applied only where the configuration still
/// holds HDFS's default. A loopback cluster has all its datanodes at hand, so HDFS's 30 s
/// safe-mode extension would only delay the first command.
const CLUSTER_DEFAULTS: &[(&str, &str)] = &[("dfs.namenode.safemode.extension", "0")];

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    super::conf::init_logging();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return 0;
    }
    let (conf, rest) = match super::conf::load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("ringfs cluster: {e:#}");
            return 1;
        }
    };
    let options = match ClusterArgs::parse(rest) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ringfs cluster: {e:#}\n\n{USAGE}");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ringfs cluster: start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(supervise(conf, options)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringfs cluster: {e:#}");
            1
        }
    }
}

/// Command-line options of `ringfs cluster` (configuration options are parsed before).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterArgs {
    datanodes: usize,
    base_dir: PathBuf,
    /// `None`: 8020 when free, else any free port.
    namenode_port: Option<u16>,
    control_stdin: bool,
}

impl ClusterArgs {
    fn parse(args: Vec<String>) -> anyhow::Result<ClusterArgs> {
        let mut options = ClusterArgs {
            datanodes: DATANODES_DEFAULT,
            base_dir: default_base_dir()?,
            namenode_port: None,
            control_stdin: false,
        };
        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value =
                || inline.clone().or_else(|| iter.next()).with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--datanodes" | "-n" => {
                    let text = value()?;
                    let count: usize = text.parse().with_context(|| format!("--datanodes {text:?}"))?;
                    if count == 0 || count > DATANODES_MAX {
                        bail!("--datanodes must be between 1 and {DATANODES_MAX}, got {count}");
                    }
                    options.datanodes = count;
                }
                "--base-dir" => options.base_dir = PathBuf::from(value()?),
                "--namenode-port" => {
                    let text = value()?;
                    options.namenode_port =
                        Some(text.parse().with_context(|| format!("--namenode-port {text:?}"))?);
                }
                "--control-stdin" => options.control_stdin = true,
                other => bail!("unknown argument {other:?}"),
            }
        }
        if options.base_dir.is_relative() {
            options.base_dir =
                std::env::current_dir().context("read the current directory")?.join(&options.base_dir);
        }
        Ok(options)
    }
}

fn default_base_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --base-dir DIR")?;
    Ok(PathBuf::from(home).join(".ringfs").join("cluster"))
}

/// Where everything of one cluster lives.
#[derive(Debug, Clone)]
struct Layout {
    base: PathBuf,
}

impl Layout {
    fn conf_dir(&self) -> PathBuf {
        self.base.join("conf")
    }
    fn name_dir(&self) -> PathBuf {
        self.base.join("name")
    }
    fn data_dir(&self, index: usize) -> PathBuf {
        self.base.join("data").join(format!("dn{index}"))
    }
    fn log_dir(&self) -> PathBuf {
        self.base.join("logs")
    }
    fn log_file(&self, role: Role) -> PathBuf {
        self.log_dir().join(format!("{}.log", role.file_stem()))
    }
    fn pids_file(&self) -> PathBuf {
        self.base.join("run").join("pids")
    }

    fn create_dirs(&self, datanodes: usize) -> anyhow::Result<()> {
        let mut dirs = vec![self.conf_dir(), self.log_dir(), self.base.join("run")];
        dirs.extend((0..datanodes).map(|i| self.data_dir(i)));
        for dir in dirs {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
        Ok(())
    }

    /// The namenode is formatted on first use: when its name directory is missing or empty.
    fn needs_format(&self) -> bool {
        match std::fs::read_dir(self.name_dir()) {
            Ok(mut entries) => entries.next().is_none(),
            Err(_) => true,
        }
    }
}

/// One child process of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Namenode,
    Datanode(usize),
}

impl Role {
    fn file_stem(self) -> String {
        match self {
            Role::Namenode => "namenode".to_string(),
            Role::Datanode(i) => format!("datanode-{i}"),
        }
    }

    /// `role=.. [index=..]` for the machine-readable lines.
    fn fields(self) -> String {
        match self {
            Role::Namenode => "role=namenode".to_string(),
            Role::Datanode(i) => format!("role=datanode index={i}"),
        }
    }

    /// The keyword that opens the child's own READY line.
    fn ready_keyword(self) -> &'static str {
        match self {
            Role::Namenode => "NAMENODE",
            Role::Datanode(_) => "DATANODE",
        }
    }
}

/// Parses `<KEYWORD> READY k=v k=v ...` into its fields; `None` for any other line.
fn parse_ready_line(line: &str, keyword: &str) -> Option<BTreeMap<String, String>> {
    let mut words = line.split_whitespace();
    if words.next()? != keyword || words.next()? != "READY" {
        return None;
    }
    Some(words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The configuration every process of the cluster shares and Hadoop clients read, as the
/// (core-site.xml, hdfs-site.xml) entries: everything that differs from HDFS's defaults,
/// the cluster's own defaults, and the namenode address.
fn shared_site_entries(
    conf: &Configuration,
    namenode_addr: &str,
    datanodes: usize,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let hdfs_default = |key: &str| DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let mut entries: BTreeMap<String, String> = conf
        .iter()
        .filter(|(key, value)| hdfs_default(key) != Some(*value))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let at_hdfs_default = |entries: &BTreeMap<String, String>, key: &str| !entries.contains_key(key);
    for (key, value) in CLUSTER_DEFAULTS {
        if at_hdfs_default(&entries, key) {
            entries.insert(key.to_string(), value.to_string());
        }
    }
    // Fewer datanodes than HDFS's replication 3 would leave every block under-replicated.
    if at_hdfs_default(&entries, "dfs.replication") && datanodes < 3 {
        entries.insert("dfs.replication".to_string(), datanodes.to_string());
    }
    entries.insert("fs.defaultFS".to_string(), format!("hdfs://{namenode_addr}"));
    entries.insert("dfs.namenode.rpc-address".to_string(), namenode_addr.to_string());
    entries.into_iter().partition(|(key, _)| !key.starts_with("dfs."))
}

/// A Hadoop `*-site.xml` document.
fn site_xml(entries: &BTreeMap<String, String>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\"?>\n<!-- Generated by `ringfs cluster` at every start; edits are overwritten. -->\n<configuration>\n",
    );
    for (key, value) in entries {
        let _ = writeln!(
            xml,
            "  <property><name>{}</name><value>{}</value></property>",
            xml_escape(key),
            xml_escape(value)
        );
    }
    xml.push_str("</configuration>\n");
    xml
}

fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn write_site_files(
    layout: &Layout,
    conf: &Configuration,
    namenode_addr: &str,
    datanodes: usize,
) -> anyhow::Result<()> {
    let (core, hdfs) = shared_site_entries(conf, namenode_addr, datanodes);
    for (name, entries) in [("core-site.xml", core), ("hdfs-site.xml", hdfs)] {
        let path = layout.conf_dir().join(name);
        std::fs::write(&path, site_xml(&entries)).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// A control command read from stdin under `--control-stdin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Kill(Role),
    Stop(Role),
    Start(Role),
    Status,
    Shutdown,
}

impl Control {
    fn parse(line: &str, datanodes: usize) -> Result<Control, String> {
        const HELP: &str =
            "commands: kill-|stop-|start-namenode, kill-|stop-|start-datanode INDEX, status, shutdown";
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        match (verb, rest.as_slice()) {
            ("status", []) => return Ok(Control::Status),
            ("shutdown", []) => return Ok(Control::Shutdown),
            _ => {}
        }
        let Some((action, target)) = verb.split_once('-') else { return Err(HELP.to_string()) };
        let role = match (target, rest.as_slice()) {
            ("namenode", []) => Role::Namenode,
            ("datanode", [index]) => match index.parse::<usize>() {
                Ok(i) if i < datanodes => Role::Datanode(i),
                _ => return Err(format!("no datanode {index:?} (the cluster has {datanodes})")),
            },
            _ => return Err(HELP.to_string()),
        };
        match action {
            "kill" => Ok(Control::Kill(role)),
            "stop" => Ok(Control::Stop(role)),
            "start" => Ok(Control::Start(role)),
            _ => Err(HELP.to_string()),
        }
    }
}

/// Why a child is being asked to exit: SIGTERM and a grace period, or SIGKILL at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopMode {
    Graceful,
    Kill,
}

/// A running child.
struct Process {
    pid: u32,
    /// Kept open so a child that watches its stdin sees EOF when the supervisor dies.
    _stdin: Option<ChildStdin>,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Set once we asked it to exit, so its exit is not reported as unexpected.
    stopping: bool,
}

impl Process {
    fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        let status = match tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await {
            Ok(Ok(status)) => *status,
            _ => None,
        };
        status
    }

    fn signal(&self, signal: Signal) {
        if self.exit_status().is_some() {
            return;
        }
        let Ok(pid) = i32::try_from(self.pid) else { return };
        if let Err(errno) = kill(Pid::from_raw(pid), signal) {
            tracing::debug!(pid, %signal, %errno, "signal not delivered (already gone?)");
        }
    }

    async fn stop(&mut self, mode: StopMode) -> Option<ExitStatus> {
        self.stopping = true;
        if mode == StopMode::Graceful {
            self.signal(Signal::SIGTERM);
            if let Some(status) = self.wait_exit(STOP_GRACE).await {
                return Some(status);
            }
            tracing::warn!(pid = self.pid, "child ignored SIGTERM for {STOP_GRACE:?}; killing it");
        }
        self.signal(Signal::SIGKILL);
        self.wait_exit(KILL_WAIT).await
    }
}

impl Drop for Process {
    /// The last line of defence (an error path, a panic): no child outlives its handle.
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// One slot of the cluster: the role, its ports from the last READY line, and the process.
struct Node {
    role: Role,
    /// Fields of the last READY line (ports are reused when the node restarts).
    ready: BTreeMap<String, String>,
    process: Option<Process>,
    /// The READY line of a process spawned but not yet awaited.
    pending_ready: Option<oneshot::Receiver<BTreeMap<String, String>>>,
    generation: u64,
}

/// Sent by a child's waiter task when it exits.
struct ExitEvent {
    role: Role,
    generation: u64,
}

struct Supervisor {
    exe: PathBuf,
    layout: Layout,
    conf: Configuration,
    namenode_addr: String,
    nodes: Vec<Node>,
    exits: mpsc::UnboundedSender<ExitEvent>,
    user: String,
}

async fn supervise(conf: Configuration, options: ClusterArgs) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("find the ringfs executable")?;
    let layout = Layout { base: options.base_dir.clone() };
    layout.create_dirs(options.datanodes)?;
    check_not_running(&layout)?;
    stop_leftovers(&layout).await;
    std::fs::write(layout.base.join("run").join("supervisor.pid"), format!("{}\n", std::process::id()))
        .context("write the supervisor pid file")?;

    let port = match options.namenode_port {
        Some(port) => port,
        None if port_is_free(NAMENODE_PORT_DEFAULT) => NAMENODE_PORT_DEFAULT,
        None => 0,
    };
    let (exits_tx, mut exits_rx) = mpsc::unbounded_channel();
    let mut nodes = vec![Node {
        role: Role::Namenode,
        ready: BTreeMap::new(),
        process: None,
        pending_ready: None,
        generation: 0,
    }];
    nodes.extend((0..options.datanodes).map(|i| Node {
        role: Role::Datanode(i),
        ready: BTreeMap::new(),
        process: None,
        pending_ready: None,
        generation: 0,
    }));
    let mut supervisor = Supervisor {
        exe,
        layout: layout.clone(),
        conf,
        namenode_addr: format!("127.0.0.1:{port}"),
        nodes,
        exits: exits_tx,
        user: current_user(),
    };
    let mut signals = Signals::new()?;

    let started = tokio::select! {
        result = supervisor.start_all() => result,
        signal = signals.recv() => Err(anyhow::anyhow!("interrupted by {signal} while starting")),
    };
    if let Err(e) = started {
        supervisor.stop_all().await;
        return Err(e);
    }
    supervisor.print_banner();

    let mut control = options.control_stdin.then(|| BufReader::new(tokio::io::stdin()).lines());
    let mut code = 0;
    loop {
        tokio::select! {
            signal = signals.recv() => {
                println!("ringfs cluster: {signal} received, stopping");
                break;
            }
            Some(event) = exits_rx.recv() => {
                if supervisor.report_unexpected_exit(&event) && event.role == Role::Namenode && !options.control_stdin {
                    eprintln!("ringfs cluster: the namenode exited; stopping the cluster (see {})",
                        layout.log_file(Role::Namenode).display());
                    code = 1;
                    break;
                }
            }
            line = next_control_line(&mut control) => {
                match line {
                    None => {
                        println!("ringfs cluster: stdin closed, stopping");
                        break;
                    }
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        if supervisor.control(line.trim(), options.datanodes).await {
                            break;
                        }
                    }
                }
            }
        }
    }
    supervisor.stop_all().await;
    let _ = std::fs::remove_file(layout.pids_file());
    let _ = std::fs::remove_file(layout.base.join("run").join("supervisor.pid"));
    println!("CLUSTER STOPPED");
    Ok(code)
}

/// The next line of the control channel; pending forever when there is none.
async fn next_control_line(
    control: &mut Option<tokio::io::Lines<BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match control {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// SIGINT, SIGTERM and SIGHUP, all meaning "stop the cluster".
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            hangup: signal(SignalKind::hangup()).context("install the SIGHUP handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

impl Supervisor {
    async fn start_all(&mut self) -> anyhow::Result<()> {
        if self.layout.needs_format() {
            self.format_namenode().await?;
        }
        // Written before the namenode starts (its own address may still be port 0) and
        // again once the real port is known, for the datanodes and for clients.
        write_site_files(&self.layout, &self.conf, &self.namenode_addr, self.datanodes())?;
        self.start(Role::Namenode).await?;
        write_site_files(&self.layout, &self.conf, &self.namenode_addr, self.datanodes())?;
        let roles: Vec<Role> = (0..self.datanodes()).map(Role::Datanode).collect();
        for role in &roles {
            self.spawn(*role)?;
        }
        for role in roles {
            self.await_ready(role).await?;
        }
        self.await_cluster_ready().await
    }

    fn datanodes(&self) -> usize {
        self.nodes.len() - 1
    }

    fn node(&mut self, role: Role) -> &mut Node {
        let index = match role {
            Role::Namenode => 0,
            Role::Datanode(i) => i + 1,
        };
        &mut self.nodes[index]
    }

    async fn format_namenode(&self) -> anyhow::Result<()> {
        let name_dir = self.layout.name_dir();
        println!("ringfs cluster: formatting a new namenode in {}", name_dir.display());
        let log_path = self.layout.log_dir().join("namenode-format.log");
        let log =
            std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let status = Command::new(&self.exe)
            .arg("namenode")
            .arg("-format")
            .arg("--conf")
            .arg(self.layout.conf_dir())
            .args(["-D", &format!("dfs.namenode.name.dir={}", name_dir.display())])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate the log file handle")?)
            .stderr(log)
            .status()
            .await
            .context("run `ringfs namenode -format`")?;
        if !status.success() {
            bail!(
                "`ringfs namenode -format` failed ({status}); {}:\n{}",
                log_path.display(),
                log_tail(&log_path, LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// The child's command line: the shared configuration plus its own directories and ports.
    fn child_args(&self, role: Role, previous: &BTreeMap<String, String>) -> Vec<String> {
        let defines: Vec<(&str, String)> = match role {
            Role::Namenode => vec![
                ("dfs.namenode.name.dir", self.layout.name_dir().display().to_string()),
                ("dfs.namenode.rpc-address", self.namenode_addr.clone()),
                ("fs.defaultFS", format!("hdfs://{}", self.namenode_addr)),
                ("dfs.namenode.http-address", "127.0.0.1:0".to_string()),
            ],
            Role::Datanode(i) => {
                // A restarted datanode gets its previous ports back, as on a real host.
                let address =
                    |field: &str| previous.get(field).cloned().unwrap_or_else(|| "127.0.0.1:0".to_string());
                vec![
                    ("dfs.datanode.data.dir", self.layout.data_dir(i).display().to_string()),
                    ("dfs.datanode.address", address("xfer")),
                    ("dfs.datanode.ipc.address", address("ipc")),
                    ("dfs.datanode.http.address", address("http")),
                ]
            }
        };
        let command = match role {
            Role::Namenode => "namenode",
            Role::Datanode(_) => "datanode",
        };
        let mut args =
            vec![command.to_string(), "--conf".to_string(), self.layout.conf_dir().display().to_string()];
        for (key, value) in defines {
            args.push("-D".to_string());
            args.push(format!("{key}={value}"));
        }
        args
    }

    /// Starts the child and waits for its READY line. A restarted datanode first tries its
    /// previous ports; if it cannot start there (another socket may have taken one of them
    /// as its ephemeral port meanwhile), it starts again on free ports.
    async fn start(&mut self, role: Role) -> anyhow::Result<()> {
        let had_ports = matches!(role, Role::Datanode(_)) && !self.node(role).ready.is_empty();
        self.spawn(role)?;
        match self.await_ready(role).await {
            Err(e) if had_ports => {
                println!(
                    "ringfs cluster: {} did not start on its previous ports ({}); retrying on free ports",
                    role.file_stem(),
                    format!("{e:#}").lines().next().unwrap_or_default()
                );
                // spawn() forgot the previous READY fields, so this attempt binds port 0.
                self.spawn(role)?;
                self.await_ready(role).await
            }
            result => result,
        }
    }

    fn spawn(&mut self, role: Role) -> anyhow::Result<()> {
        let previous = self.node(role).ready.clone();
        let args = self.child_args(role, &previous);
        let log_path = self.layout.log_file(role);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut banner = log.try_clone().context("duplicate the log file handle")?;
        let _ =
            writeln!(banner, "==== ringfs cluster: starting {} ({}) ====", role.file_stem(), args.join(" "));
        let mut child = Command::new(&self.exe)
            .args(&args)
            // The logs are files: no terminal colour codes in them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().context("duplicate the log file handle")?)
            // Its own process group: Ctrl-C reaches the supervisor only, which then stops
            // the children in order instead of all of them dying at once.
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {} ({})", role.file_stem(), self.exe.display()))?;
        let pid = child.id().context("child pid")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stdin = child.stdin.take();

        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(copy_stdout(stdout, log, role.ready_keyword(), ready_tx));
        let (exit_tx, exit_rx) = watch::channel(None);
        let node = self.node(role);
        node.generation += 1;
        let generation = node.generation;
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let _ =
                exit_tx.send(status.or_else(|| Some(std::os::unix::process::ExitStatusExt::from_raw(-1))));
            let _ = exits.send(ExitEvent { role, generation });
        });
        let node = self.node(role);
        node.process = Some(Process { pid, _stdin: stdin, exit: exit_rx, stopping: false });
        node.ready.clear();
        node.pending_ready = Some(ready_rx);
        self.write_pids();
        Ok(())
    }

    async fn await_ready(&mut self, role: Role) -> anyhow::Result<()> {
        let ready_rx = self
            .node(role)
            .pending_ready
            .take()
            .with_context(|| format!("{} was not started", role.file_stem()))?;
        let log_path = self.layout.log_file(role);
        let process = self.node(role).process.as_mut().context("process")?;
        let mut exit = process.exit.clone();
        let pid = process.pid;
        let fields = tokio::select! {
            fields = ready_rx => fields.ok(),
            _ = exit.wait_for(Option::is_some) => None,
            _ = tokio::time::sleep(CHILD_READY_TIMEOUT) => {
                bail!("{} (pid {pid}) did not print its READY line within {CHILD_READY_TIMEOUT:?}; {}:\n{}",
                    role.file_stem(), log_path.display(), log_tail(&log_path, LOG_TAIL_LINES));
            }
        };
        let Some(fields) = fields else {
            // Give the waiter a moment to record the status when stdout closed first.
            let status = process.wait_exit(Duration::from_secs(2)).await;
            bail!(
                "{} exited before it was ready ({}); {}:\n{}",
                role.file_stem(),
                status.map_or("still running, stdout closed".to_string(), |s| s.to_string()),
                log_path.display(),
                log_tail(&log_path, LOG_TAIL_LINES)
            );
        };
        let log = log_path.display().to_string();
        match role {
            Role::Namenode => {
                let rpc = fields.get("rpc").context("the namenode's READY line has no rpc=")?.clone();
                self.namenode_addr = loopback_address(&rpc);
                println!("CLUSTER NAMENODE rpc={} pid={pid} log={log}", self.namenode_addr);
            }
            Role::Datanode(i) => {
                let field = |k: &str| fields.get(k).map_or("?", String::as_str);
                println!(
                    "CLUSTER DATANODE index={i} xfer={} ipc={} http={} uuid={} pid={pid} log={log}",
                    field("xfer"),
                    field("ipc"),
                    field("http"),
                    field("uuid")
                );
            }
        }
        self.node(role).ready = fields;
        Ok(())
    }

    /// Waits until the namenode reports every datanode live and safe mode off.
    async fn await_cluster_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let expected = self.datanodes();
        let mut last_state = String::from("no answer from the namenode yet");
        let mut next_progress = Instant::now() + Duration::from_secs(10);
        let mut client: Option<RpcClient> = None;
        loop {
            if let Some(role) = self.first_exited() {
                let log_path = self.layout.log_file(role);
                bail!(
                    "{} exited while the cluster was starting; {}:\n{}",
                    role.file_stem(),
                    log_path.display(),
                    log_tail(&log_path, LOG_TAIL_LINES)
                );
            }
            if client.as_ref().is_none_or(|c| !c.is_open()) {
                client = RpcClient::connect(&self.namenode_addr, &self.user, protocol::CLIENT).await.ok();
            }
            if let Some(rpc) = &client {
                match cluster_state(rpc).await {
                    Ok((live, false)) if live >= expected => return Ok(()),
                    Ok((live, safemode)) => {
                        last_state = format!(
                            "{live}/{expected} datanodes live, safe mode {}",
                            if safemode { "on" } else { "off" }
                        );
                    }
                    Err(e) => last_state = format!("namenode query failed: {e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the cluster was not ready within {CLUSTER_READY_TIMEOUT:?}: {last_state}; logs in {}",
                    self.layout.log_dir().display()
                );
            }
            if Instant::now() >= next_progress {
                println!("ringfs cluster: waiting: {last_state}");
                next_progress = Instant::now() + Duration::from_secs(10);
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }

    fn first_exited(&self) -> Option<Role> {
        self.nodes
            .iter()
            .find(|node| node.process.as_ref().is_some_and(|p| p.exit_status().is_some()))
            .map(|node| node.role)
    }

    /// Reports an exit nobody asked for; returns whether it was one.
    fn report_unexpected_exit(&mut self, event: &ExitEvent) -> bool {
        let log_path = self.layout.log_file(event.role);
        let node = self.node(event.role);
        if node.generation != event.generation {
            return false;
        }
        let Some(process) = node.process.as_ref() else { return false };
        if process.stopping {
            return false;
        }
        let status = process.exit_status().map_or("unknown".to_string(), |s| s.to_string());
        println!("CLUSTER EXITED {} status={}", event.role.fields(), status.replace(' ', "_"));
        eprintln!(
            "ringfs cluster: {} exited unexpectedly ({status}); see {}",
            event.role.file_stem(),
            log_path.display()
        );
        node.process = None;
        true
    }

    /// Runs one control command; returns whether the cluster should shut down.
    async fn control(&mut self, line: &str, datanodes: usize) -> bool {
        let command = match Control::parse(line, datanodes) {
            Ok(command) => command,
            Err(reason) => {
                println!("ERR {line}: {reason}");
                return false;
            }
        };
        let result = match command {
            Control::Shutdown => return true,
            Control::Status => {
                for node in &self.nodes {
                    let state = match node.process.as_ref() {
                        Some(p) if p.exit_status().is_none() => format!("running pid={}", p.pid),
                        _ => "stopped".to_string(),
                    };
                    println!("STATUS {} {state}", node.role.fields());
                }
                Ok(String::new())
            }
            Control::Kill(role) => self.stop_node(role, StopMode::Kill).await,
            Control::Stop(role) => self.stop_node(role, StopMode::Graceful).await,
            Control::Start(role) => self.start_node(role).await,
        };
        match result {
            Ok(detail) if detail.is_empty() => println!("OK {line}"),
            Ok(detail) => println!("OK {line} {detail}"),
            Err(e) => println!("ERR {line}: {}", format!("{e:#}").replace('\n', " | ")),
        }
        false
    }

    async fn stop_node(&mut self, role: Role, mode: StopMode) -> anyhow::Result<String> {
        let Some(mut process) = self.node(role).process.take() else {
            bail!("{} is not running", role.file_stem());
        };
        let status = process.stop(mode).await;
        self.write_pids();
        match status {
            Some(status) => Ok(format!("status={}", status.to_string().replace(' ', "_"))),
            None => bail!("{} (pid {}) did not exit", role.file_stem(), process.pid),
        }
    }

    async fn start_node(&mut self, role: Role) -> anyhow::Result<String> {
        if self.node(role).process.as_ref().is_some_and(|p| p.exit_status().is_none()) {
            bail!("{} is already running", role.file_stem());
        }
        self.start(role).await?;
        let node = self.node(role);
        let pid = node.process.as_ref().map_or(0, |p| p.pid);
        let fields: Vec<String> = node.ready.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(format!("pid={pid} {}", fields.join(" ")))
    }

    /// Datanodes first, all at once (so they do not log a vanished namenode), then the
    /// namenode, which checkpoints on SIGTERM.
    async fn stop_all(&mut self) {
        let datanodes: Vec<Process> = self.nodes[1..].iter_mut().filter_map(|n| n.process.take()).collect();
        let namenode: Vec<Process> = self.nodes[0].process.take().into_iter().collect();
        for mut group in [datanodes, namenode] {
            for process in group.iter_mut() {
                process.stopping = true;
                process.signal(Signal::SIGTERM);
            }
            for process in group.iter_mut() {
                if process.wait_exit(STOP_GRACE).await.is_none() {
                    tracing::warn!(pid = process.pid, "child ignored SIGTERM for {STOP_GRACE:?}; killing it");
                    process.stop(StopMode::Kill).await;
                }
            }
        }
    }

    /// Records child pids, so a later start can stop children a killed supervisor left.
    fn write_pids(&self) {
        let mut text = String::new();
        for node in &self.nodes {
            if let Some(process) = node.process.as_ref() {
                let _ = writeln!(text, "{} {}", node.role.file_stem(), process.pid);
            }
        }
        if let Err(e) = std::fs::write(self.layout.pids_file(), text) {
            tracing::warn!(error = %e, "could not record child pids");
        }
    }

    fn print_banner(&self) {
        let uri = format!("hdfs://{}", self.namenode_addr);
        let conf_dir = self.layout.conf_dir();
        let logs = self.layout.log_dir();
        let base = self.layout.base.display();
        let datanodes = self.datanodes();
        println!(
            "\nringfs cluster is up: 1 namenode, {datanodes} datanode{} (data in {base})\n\n  \
             URI      {uri}\n  \
             Config   export HADOOP_CONF_DIR={conf}\n  \
             Logs     {logs}/namenode.log, {logs}/datanode-<i>.log\n\n\
             Try:\n  \
             ringfs dfs -fs {uri} -mkdir -p /user/$USER\n  \
             ringfs dfs -fs {uri} -ls /\n  \
             ringfs dfsadmin -fs {uri} -report\n  \
             hadoop fs -fs {uri} -ls /\n  \
             pyspark: spark.read.text(\"{uri}/path/to/file\").count()\n  \
             (Hadoop, Spark and Python clients: scripts/install-clients.sh, then source ~/.cache/ringfs-deps/env.sh)\n\n\
             Ctrl-C stops the cluster; the next `{restart}` finds the data again.",
            if datanodes == 1 { "" } else { "s" },
            restart = if default_base_dir().is_ok_and(|d| d == self.layout.base) {
                "ringfs cluster".to_string()
            } else {
                format!("ringfs cluster --base-dir {base}")
            },
            conf = conf_dir.display(),
            logs = logs.display(),
        );
        println!("CLUSTER READY uri={uri} conf={} base={base}", conf_dir.display());
    }
}

/// Copies a child's stdout into its log, handing the fields of its READY line to `ready`.
async fn copy_stdout(
    stdout: tokio::process::ChildStdout,
    mut log: std::fs::File,
    keyword: &'static str,
    ready: oneshot::Sender<BTreeMap<String, String>>,
) {
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = writeln!(log, "{line}");
        if let Some(fields) = parse_ready_line(&line, keyword) {
            if let Some(ready) = ready.take() {
                let _ = ready.send(fields);
            }
        }
    }
}

/// `getDatanodeReport(LIVE)` count and `setSafeMode(GET)`.
async fn cluster_state(rpc: &RpcClient) -> anyhow::Result<(usize, bool)> {
    let report: GetDatanodeReportResponseProto = rpc
        .call(
            "getDatanodeReport",
            &GetDatanodeReportRequestProto { r#type: DatanodeReportTypeProto::Live as i32 },
        )
        .await
        .context("getDatanodeReport")?;
    let safemode: SetSafeModeResponseProto = rpc
        .call(
            "setSafeMode",
            &SetSafeModeRequestProto { action: SafeModeActionProto::SafemodeGet as i32, checked: None },
        )
        .await
        .context("setSafeMode(GET)")?;
    Ok((report.di.len(), safemode.result))
}

/// A namenode bound to 0.0.0.0 is reached through loopback.
fn loopback_address(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "::", port)) => format!("127.0.0.1:{port}"),
        _ => addr.to_string(),
    }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The user the namenode sees us as (superuser: the one who started it).
fn current_user() -> String {
    ["HADOOP_USER_NAME", "USER", "LOGNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "root".to_string())
}

/// The last `lines` lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Refuses to start a second supervisor on the same base directory.
fn check_not_running(layout: &Layout) -> anyhow::Result<()> {
    let pid_file = layout.base.join("run").join("supervisor.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else { return Ok(()) };
    let Ok(pid) = text.trim().parse::<u32>() else { return Ok(()) };
    if pid != std::process::id() && process_mentions(pid, "cluster") {
        bail!("a cluster is already running from {} (supervisor pid {pid})", layout.base.display());
    }
    Ok(())
}

/// Stops children that a killed supervisor left running (recognised by their `--conf` path).
async fn stop_leftovers(layout: &Layout) {
    let Ok(text) = std::fs::read_to_string(layout.pids_file()) else { return };
    let conf_dir = layout.conf_dir().display().to_string();
    let leftovers: Vec<i32> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u32>().ok())
        .filter(|&pid| process_mentions(pid, &conf_dir))
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect();
    if leftovers.is_empty() {
        return;
    }
    println!("ringfs cluster: stopping processes a previous run left behind: {leftovers:?}");
    for &pid in &leftovers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && leftovers.iter().any(|&pid| process_alive(pid)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &pid in &leftovers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn process_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Whether process `pid` exists and its command line contains `needle`.
fn process_mentions(pid: u32, needle: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_defaults_and_flags() {
        let options = ClusterArgs::parse(vec![]).unwrap();
        assert_eq!(options.datanodes, 3);
        assert!(options.base_dir.ends_with(".ringfs/cluster"));
        assert_eq!(options.namenode_port, None);
        assert!(!options.control_stdin);

        let options = ClusterArgs::parse(strings(&[
            "--datanodes",
            "5",
            "--base-dir=/tmp/x",
            "--namenode-port",
            "0",
            "--control-stdin",
        ]))
        .unwrap();
        assert_eq!(options.datanodes, 5);
        assert_eq!(options.base_dir, PathBuf::from("/tmp/x"));
        assert_eq!(options.namenode_port, Some(0));
        assert!(options.control_stdin);

        assert!(ClusterArgs::parse(strings(&["--datanodes", "0"])).is_err());
        assert!(ClusterArgs::parse(strings(&["--datanodes", "65"])).is_err());
        assert!(ClusterArgs::parse(strings(&["--datanodes"])).is_err());
        assert!(ClusterArgs::parse(strings(&["--bogus"])).is_err());
        let relative = ClusterArgs::parse(strings(&["--base-dir", "rel"])).unwrap();
        assert!(relative.base_dir.is_absolute() && relative.base_dir.ends_with("rel"));
    }

    #[test]
    fn ready_lines() {
        let fields = parse_ready_line(
            "DATANODE READY xfer=127.0.0.1:1 ipc=127.0.0.1:2 http=127.0.0.1:3 uuid=abc",
            "DATANODE",
        )
        .unwrap();
        assert_eq!(fields["xfer"], "127.0.0.1:1");
        assert_eq!(fields["uuid"], "abc");
        assert_eq!(
            parse_ready_line("NAMENODE READY rpc=0.0.0.0:8020", "NAMENODE").unwrap()["rpc"],
            "0.0.0.0:8020"
        );
        assert!(parse_ready_line("NAMENODE READY rpc=x", "DATANODE").is_none());
        assert!(parse_ready_line("2026 INFO NAMENODE READY", "NAMENODE").is_none());
        assert!(parse_ready_line("", "NAMENODE").is_none());
        assert_eq!(loopback_address("0.0.0.0:8020"), "127.0.0.1:8020");
        assert_eq!(loopback_address("127.0.0.1:9000"), "127.0.0.1:9000");
    }

    #[test]
    fn site_files_carry_overrides_and_cluster_defaults() {
        let mut conf = Configuration::new();
        conf.set_override("dfs.blocksize=1048576").unwrap();
        conf.set_override("fs.trash.interval=1").unwrap();
        conf.set_override("my.key=a<b&c").unwrap();
        let (core, hdfs) = shared_site_entries(&conf, "127.0.0.1:9000", 3);
        assert_eq!(core["fs.defaultFS"], "hdfs://127.0.0.1:9000");
        assert_eq!(core["fs.trash.interval"], "1");
        assert_eq!(core["my.key"], "a<b&c");
        assert_eq!(hdfs["dfs.blocksize"], "1048576");
        assert_eq!(hdfs["dfs.namenode.rpc-address"], "127.0.0.1:9000");
        assert_eq!(hdfs["dfs.namenode.safemode.extension"], "0");
        assert!(!hdfs.contains_key("dfs.replication"), "replication 3 is HDFS's default");
        assert!(!hdfs.contains_key("dfs.ls.limit"), "defaults are not repeated");

        let (_, hdfs) = shared_site_entries(&conf, "127.0.0.1:9000", 1);
        assert_eq!(hdfs["dfs.replication"], "1");
        conf.set_override("dfs.replication=2").unwrap();
        conf.set_override("dfs.namenode.safemode.extension=5000").unwrap();
        let (_, hdfs) = shared_site_entries(&conf, "127.0.0.1:9000", 1);
        assert_eq!(hdfs["dfs.replication"], "2", "an explicit replication wins");
        assert_eq!(hdfs["dfs.namenode.safemode.extension"], "5000");

        let xml = site_xml(&core);
        let mut parsed = Configuration::new();
        parsed.merge_xml("core-site.xml", &xml).unwrap();
        assert_eq!(parsed.get("my.key"), Some("a<b&c"));
        assert_eq!(parsed.get("fs.defaultFS"), Some("hdfs://127.0.0.1:9000"));
    }

    #[test]
    fn control_commands() {
        assert_eq!(Control::parse("kill-datanode 1", 3), Ok(Control::Kill(Role::Datanode(1))));
        assert_eq!(Control::parse("stop-datanode 0", 3), Ok(Control::Stop(Role::Datanode(0))));
        assert_eq!(Control::parse("start-datanode 2", 3), Ok(Control::Start(Role::Datanode(2))));
        assert_eq!(Control::parse("kill-namenode", 3), Ok(Control::Kill(Role::Namenode)));
        assert_eq!(Control::parse("start-namenode", 3), Ok(Control::Start(Role::Namenode)));
        assert_eq!(Control::parse("status", 3), Ok(Control::Status));
        assert_eq!(Control::parse("shutdown", 3), Ok(Control::Shutdown));
        assert!(Control::parse("kill-datanode 3", 3).is_err());
        assert!(Control::parse("kill-datanode", 3).is_err());
        assert!(Control::parse("kill-namenode 1", 3).is_err());
        assert!(Control::parse("reboot", 3).is_err());
    }

    #[test]
    fn layout_and_first_use() {
        let base = std::env::temp_dir().join(format!("ringfs-cluster-layout-{}", std::process::id()));
        let layout = Layout { base: base.clone() };
        layout.create_dirs(2).unwrap();
        assert!(layout.data_dir(1).is_dir());
        assert_eq!(layout.log_file(Role::Datanode(1)), base.join("logs/datanode-1.log"));
        assert!(layout.needs_format(), "no name dir yet");
        std::fs::create_dir_all(layout.name_dir()).unwrap();
        assert!(layout.needs_format(), "empty name dir");
        std::fs::write(layout.name_dir().join("VERSION"), "x").unwrap();
        assert!(!layout.needs_format());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
