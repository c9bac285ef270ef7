//! What a run produces, serialised as `results.json`. Every section is always present;
//! a section that could not run says why in `skipped`.

use serde::{Deserialize, Serialize};

use crate::ceilings::Ceilings;
use crate::stats::LatencySummary;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub ceilings: Option<Ceilings>,
    pub data_path: Vec<DataScenario>,
    pub engine_comparison: Vec<EngineComparison>,
    pub connections: Vec<ConnectionsResult>,
    pub metadata: Vec<MetadataOp>,
    pub memory: Option<MemoryResult>,
    /// With `--perf`: the namenode's profile over the metadata section.
    pub metadata_profile: Option<Profile>,
    pub restarts: Restarts,
    pub interop: Vec<InteropResult>,
    pub targets: Vec<TargetCheck>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub mode: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_at: String,
    pub duration_seconds: f64,
    pub hostname: String,
    pub kernel: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub git_revision: String,
    pub cluster: String,
    pub engines: Vec<String>,
    pub command_line: Vec<String>,
}

/// One data-path measurement: a phase of N files x size with C streams on one engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataScenario {
    /// Scenario name shared by both engines' runs, e.g. `read_hot_1x_r1_noverify`.
    pub name: String,
    pub description: String,
    /// write, read or pread.
    pub op: String,
    pub engine: String,
    /// Which interleaved round this was (0-based).
    pub round: usize,
    pub replication: u32,
    pub streams: usize,
    pub files: usize,
    pub file_bytes: u64,
    /// hot, cold, or "" for writes.
    pub cache: String,
    pub verify_checksum: bool,
    pub bytes: u64,
    pub seconds: f64,
    pub bytes_per_sec: f64,
    /// What one latency sample is.
    pub latency_op: String,
    pub latency: LatencySummary,
    pub datanode_cpu_seconds: f64,
    pub client_cpu_seconds: f64,
    /// Bytes moved per datanode CPU-second (summed over every datanode).
    pub bytes_per_datanode_cpu_second: f64,
    pub errors: u64,
    /// The ceiling this figure is compared with, by name in `ceilings`.
    pub ceiling: String,
    pub ceiling_bytes_per_sec: f64,
    pub ratio_to_ceiling: f64,
    /// With `--perf`: the datanodes' profile summary (file in the output folder) and its
    /// top lines.
    pub profile: Option<Profile>,
}

/// Where the servers' CPU went during a phase (perf cpu-clock samples, self time).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub file: String,
    pub top: Vec<String>,
}

/// uring against threads for one scenario (medians over rounds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineComparison {
    pub scenario: String,
    pub uring_bytes_per_sec: f64,
    pub threads_bytes_per_sec: f64,
    /// uring / threads.
    pub throughput_ratio: f64,
    pub uring_bytes_per_cpu_second: f64,
    pub threads_bytes_per_cpu_second: f64,
    /// uring / threads: what io_uring buys in datanode CPU.
    pub efficiency_ratio: f64,
    pub rounds: usize,
}

/// Many connections at once doing 64 KiB positional reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionsResult {
    pub engine: String,
    pub connections: usize,
    /// Connections that stayed open and idle while the busy ones read.
    pub idle_connections: usize,
    pub reads: u64,
    pub read_bytes: usize,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub seconds: f64,
    pub reads_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Closed loop: every connection reads back to back.
    pub latency: LatencySummary,
    /// Open loop: the same connections paced to this many reads/s in total (half the
    /// closed-loop rate), latency counted from when each read was due.
    #[serde(default)]
    pub paced_offered_reads_per_sec: f64,
    #[serde(default)]
    pub paced_reads: u64,
    #[serde(default)]
    pub paced_errors: u64,
    #[serde(default)]
    pub paced_latency: Option<LatencySummary>,
    pub datanode_cpu_seconds: f64,
    /// Connection attempts the kernel turned away because a listener's accept queue was
    /// full, during the phase (host-wide TcpExt ListenOverflows / ListenDrops).
    pub listen_overflows: u64,
    pub listen_drops: u64,
}

/// One NNThroughputBenchmark-style operation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataOp {
    pub op: String,
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
    pub namenode_cpu_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Files of the kind measured (`single-block` or `empty`).
    pub file_kind: String,
    pub files: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_file: f64,
    pub seconds_to_create: f64,
    /// Also measured: empty files (create+complete), for comparison.
    pub empty_files: u64,
    pub empty_bytes_per_file: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restarts {
    pub namenode: Option<NamenodeRestart>,
    pub datanode: Option<DatanodeRestart>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamenodeRestart {
    pub files: u64,
    /// From spawn to the READY line.
    pub seconds_to_ready_line: f64,
    /// From spawn to the first successful getFileInfo of a file created before the stop.
    pub seconds_to_serving: f64,
    pub stop: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatanodeRestart {
    pub replicas: u64,
    pub seconds_to_ready_line: f64,
    /// From spawn to the namenode having the datanode's first full block report.
    pub seconds_to_first_block_report: f64,
    /// How the report was observed.
    pub method: String,
    pub seconds_to_generate: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InteropResult {
    pub client: String,
    pub op: String,
    pub bytes: u64,
    pub seconds: f64,
    pub bytes_per_sec: f64,
    /// The same client's local-file (`file://`) figure, when there is one.
    pub local_bytes_per_sec: Option<f64>,
    pub ratio_to_local: Option<f64>,
}

/// One target of issue 6, checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetCheck {
    pub id: String,
    pub description: String,
    pub achieved: f64,
    pub target: f64,
    pub unit: String,
    /// `>=` or `<=`.
    pub comparison: String,
    pub met: bool,
    /// How far from the target, in words ("missed by 12% (needs 1.3x, got 1.14x)").
    pub verdict: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Skipped {
    pub section: String,
    pub reason: String,
}

impl Results {
    pub fn skip(&mut self, section: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped { section: section.to_string(), reason: reason.into() });
    }
}
