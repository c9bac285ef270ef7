//! Sizes of each run mode. `quick` fits in under two minutes on a 2-core machine, `full`
//! is the figures (1 GiB streams, 1M files, 100k replicas), `tiny` only proves the
//! harness works end to end (the smoke test).

use std::time::Duration;

use clap::ValueEnum;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Tiny,
    Quick,
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tiny => "tiny",
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// Every size and count of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub tcp_duration: Duration,
    pub disk_bytes: u64,
    pub disk_queue_depth: usize,
    pub cached_file_bytes: u64,
    pub crc_duration: Duration,
    /// Best-of repeats of every ceiling.
    pub ceiling_repeats: usize,

    /// Interleaved rounds of every data-path scenario per engine.
    pub rounds: usize,
    /// The one-stream file (hot/cold reads, positional reads).
    pub stream_file_bytes: u64,
    /// The one-stream file written through a pipeline of three.
    pub r3_file_bytes: u64,
    /// Streams of the many-stream scenarios.
    pub many_streams: usize,
    /// Size of each file of the many-stream scenarios.
    pub many_file_bytes: u64,
    /// Bytes per client write_all/read call.
    pub io_size: usize,
    pub block_size: u64,
    pub pread_size: usize,
    pub pread_ops: u64,
    pub pread_streams: usize,

    pub connections: usize,
    pub idle_connections: usize,
    pub connection_reads_each: u64,

    pub metadata_clients: usize,
    pub metadata_ops: MetadataCounts,

    /// Single-block files created for the namenode memory figure (and its restart).
    pub memory_files: u64,
    /// Empty files (create+complete) created after them, for the per-empty-file figure.
    pub memory_empty_files: u64,
    /// Replicas generated on disk for the datanode restart.
    pub restart_replicas: u64,
    pub restart_replica_bytes: usize,

    /// Size of the file the Java client puts and gets.
    pub interop_bytes: u64,
    /// Longest any one phase may run before its unfinished work is aborted and counted
    /// as errors: a stuck server costs a bounded time.
    pub phase_limit: Duration,
    /// The memory phase creates files by the million in `full`: its own limit.
    pub memory_limit: Duration,
}

/// Operations per metadata op kind.
#[derive(Debug, Clone, Copy)]
pub struct MetadataCounts {
    pub mkdirs: u64,
    pub create: u64,
    pub get_file_info: u64,
    pub get_block_locations: u64,
    pub get_listing: u64,
    pub rename: u64,
    pub delete: u64,
}

impl Plan {
    pub fn new(mode: Mode) -> Plan {
        match mode {
            Mode::Tiny => Plan {
                mode,
                tcp_duration: Duration::from_millis(150),
                disk_bytes: 16 * MIB,
                disk_queue_depth: 4,
                cached_file_bytes: 8 * MIB,
                crc_duration: Duration::from_millis(100),
                ceiling_repeats: 1,
                rounds: 1,
                stream_file_bytes: 8 * MIB,
                r3_file_bytes: 4 * MIB,
                many_streams: 4,
                many_file_bytes: 2 * MIB,
                io_size: MIB as usize,
                block_size: 4 * MIB,
                pread_size: 64 * KIB as usize,
                pread_ops: 50,
                pread_streams: 1,
                connections: 20,
                idle_connections: 10,
                connection_reads_each: 2,
                metadata_clients: 4,
                metadata_ops: MetadataCounts {
                    mkdirs: 100,
                    create: 100,
                    get_file_info: 200,
                    get_block_locations: 100,
                    get_listing: 50,
                    rename: 100,
                    delete: 100,
                },
                memory_files: 50,
                memory_empty_files: 50,
                restart_replicas: 200,
                restart_replica_bytes: 1024,
                interop_bytes: 4 * MIB,
                phase_limit: Duration::from_secs(60),
                memory_limit: Duration::from_secs(60),
            },
            Mode::Quick => Plan {
                mode,
                tcp_duration: Duration::from_millis(500),
                disk_bytes: 512 * MIB,
                disk_queue_depth: 16,
                cached_file_bytes: 256 * MIB,
                crc_duration: Duration::from_millis(300),
                ceiling_repeats: 3,
                rounds: 1,
                stream_file_bytes: 512 * MIB,
                r3_file_bytes: 256 * MIB,
                many_streams: 64,
                many_file_bytes: 4 * MIB,
                io_size: MIB as usize,
                block_size: 128 * MIB,
                pread_size: 64 * KIB as usize,
                pread_ops: 2_000,
                pread_streams: 1,
                connections: 1_000,
                idle_connections: 1_000,
                connection_reads_each: 2,
                metadata_clients: 64,
                metadata_ops: MetadataCounts {
                    mkdirs: 5_000,
                    create: 10_000,
                    get_file_info: 50_000,
                    get_block_locations: 20_000,
                    get_listing: 5_000,
                    rename: 10_000,
                    delete: 10_000,
                },
                memory_files: 5_000,
                memory_empty_files: 50_000,
                restart_replicas: 20_000,
                restart_replica_bytes: 4096,
                interop_bytes: 256 * MIB,
                phase_limit: Duration::from_secs(30),
                memory_limit: Duration::from_secs(60),
            },
            Mode::Full => Plan {
                mode,
                tcp_duration: Duration::from_secs(2),
                disk_bytes: 4 * GIB,
                disk_queue_depth: 32,
                cached_file_bytes: GIB,
                crc_duration: Duration::from_secs(1),
                ceiling_repeats: 3,
                rounds: 3,
                stream_file_bytes: GIB,
                r3_file_bytes: GIB,
                many_streams: 64,
                many_file_bytes: 32 * MIB,
                io_size: MIB as usize,
                block_size: 128 * MIB,
                pread_size: 64 * KIB as usize,
                pread_ops: 20_000,
                pread_streams: 1,
                connections: 1_000,
                idle_connections: 1_000,
                connection_reads_each: 10,
                metadata_clients: 64,
                metadata_ops: MetadataCounts {
                    mkdirs: 50_000,
                    create: 100_000,
                    get_file_info: 500_000,
                    get_block_locations: 200_000,
                    get_listing: 50_000,
                    rename: 100_000,
                    delete: 100_000,
                },
                memory_files: 1_000_000,
                memory_empty_files: 1_000_000,
                restart_replicas: 100_000,
                restart_replica_bytes: 4096,
                interop_bytes: GIB,
                phase_limit: Duration::from_secs(900),
                memory_limit: Duration::from_secs(3600),
            },
        }
    }
}
