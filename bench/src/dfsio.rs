//! TestDFSIO-style data-path phases with the native client: N files x size written or read
//! by C concurrent streams, positional 64 KiB reads at random offsets, and many concurrent
//! connections doing positional reads while as many idle ones stay open.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringfs_client::{ClientConfig, DfsClient};
use ringfs_common::proto::hdfs::DatanodeReportTypeProto;
use tokio::sync::Barrier;

use crate::stats::Latency;

/// Error messages kept per phase, so a failing run says why without flooding the report.
const ERROR_SAMPLES_MAX: usize = 5;

/// What one timed phase measured on the client side.
#[derive(Debug, Default)]
pub struct Measured {
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl Measured {
    fn absorb(&mut self, part: StreamOutcome) {
        self.bytes += part.bytes;
        self.latency.merge(&part.latency);
        if let Some(error) = part.error {
            self.errors += 1;
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(error);
            }
        }
        self.errors += part.extra_errors;
    }
}

struct StreamOutcome {
    bytes: u64,
    latency: Latency,
    error: Option<String>,
    extra_errors: u64,
}

/// Connects a client; `verify_checksum` decides whether reads check every chunk's CRC.
pub async fn connect(namenode_addr: &str, verify_checksum: bool) -> Result<DfsClient> {
    let mut config = ClientConfig::new(namenode_addr);
    config.user = crate::metadata::bench_user();
    config.verify_checksum = verify_checksum;
    DfsClient::connect(config).await.with_context(|| format!("connect the client to {namenode_addr}"))
}

/// Bytes written by every stream: not all zeroes, so nothing along the way can shortcut.
fn payload(len: usize) -> Arc<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    Arc::new((0..len).map(|_| rng.random()).collect())
}

/// What each written file is.
#[derive(Debug, Clone, Copy)]
pub struct WriteSpec {
    pub file_bytes: u64,
    pub replication: u16,
    pub block_size: u64,
    /// Bytes per write_all call.
    pub io_size: usize,
}

/// Writes one file per path, all streams at once.
pub async fn write_files(
    client: &DfsClient,
    paths: &[String],
    spec: WriteSpec,
    bar: &ProgressBar,
    limit: Duration,
) -> Measured {
    let WriteSpec { file_bytes, replication, block_size, io_size } = spec;
    let data = payload(io_size);
    let barrier = Arc::new(Barrier::new(paths.len() + 1));
    let mut tasks = Vec::new();
    for path in paths {
        let (client, path, data, barrier, bar) =
            (client.clone(), path.clone(), Arc::clone(&data), Arc::clone(&barrier), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcome =
                StreamOutcome { bytes: 0, latency: Latency::new(), error: None, extra_errors: 0 };
            let writer = client.create(&path, true, Some(replication), Some(block_size)).await;
            barrier.wait().await;
            let result: Result<()> = async {
                let mut writer = writer?;
                let mut written = 0u64;
                while written < file_bytes {
                    let n = (file_bytes - written).min(data.len() as u64) as usize;
                    let began = Instant::now();
                    writer.write_all(&data[..n]).await?;
                    outcome.latency.record(began.elapsed());
                    written += n as u64;
                    bar.inc(n as u64);
                }
                writer.close().await?;
                outcome.bytes = written;
                Ok(())
            }
            .await;
            outcome.error = result.err().map(|e| format!("write {path}: {e:#}"));
            outcome
        }));
    }
    collect(tasks, barrier, limit).await
}

/// Reads each path to its end, all streams at once, checking the length.
pub async fn read_files(
    client: &DfsClient,
    paths: &[String],
    io_size: usize,
    bar: &ProgressBar,
    limit: Duration,
) -> Measured {
    let barrier = Arc::new(Barrier::new(paths.len() + 1));
    let mut tasks = Vec::new();
    for path in paths {
        let (client, path, barrier, bar) = (client.clone(), path.clone(), Arc::clone(&barrier), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcome =
                StreamOutcome { bytes: 0, latency: Latency::new(), error: None, extra_errors: 0 };
            let reader = client.open(&path).await;
            barrier.wait().await;
            let result: Result<()> = async {
                let mut reader = reader?;
                let expected = reader.len();
                let mut buf = vec![0u8; io_size];
                loop {
                    let began = Instant::now();
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    outcome.latency.record(began.elapsed());
                    outcome.bytes += n as u64;
                    bar.inc(n as u64);
                }
                anyhow::ensure!(outcome.bytes == expected, "read {} of {expected} bytes", outcome.bytes);
                Ok(())
            }
            .await;
            outcome.error = result.err().map(|e| format!("read {path}: {e:#}"));
            outcome
        }));
    }
    collect(tasks, barrier, limit).await
}

/// `streams` readers, each doing its share of `ops` reads of `size` bytes at random
/// offsets of `path`: back to back (closed loop: the figure is throughput), or with
/// `pace`, one read every `pace` per stream (open loop, phases spread evenly over the
/// streams), each read's latency counted from when it was due, not from when it
/// started, so a slow server cannot hide its queueing (no coordinated omission).
#[allow(clippy::too_many_arguments)]
pub async fn positional_reads(
    client: &DfsClient,
    path: &str,
    streams: usize,
    ops: u64,
    size: usize,
    pace: Option<Duration>,
    bar: &ProgressBar,
    limit: Duration,
) -> Measured {
    let started = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
    let barrier = Arc::new(Barrier::new(streams + 1));
    let mut tasks = Vec::new();
    for stream in 0..streams {
        let my_ops = ops / streams as u64 + u64::from((stream as u64) < ops % streams as u64);
        let (client, path, barrier, bar, started) =
            (client.clone(), path.to_string(), Arc::clone(&barrier), bar.clone(), Arc::clone(&started));
        tasks.push(tokio::spawn(async move {
            let mut outcome =
                StreamOutcome { bytes: 0, latency: Latency::new(), error: None, extra_errors: 0 };
            let reader = client.open(&path).await;
            barrier.wait().await;
            let start = *started.get_or_init(tokio::time::Instant::now);
            let phase = pace.map(|pace| pace.mul_f64(stream as f64 / streams as f64));
            let mut reader = match reader {
                Ok(reader) => reader,
                Err(e) => {
                    outcome.error = Some(format!("open {path}: {e:#}"));
                    outcome.extra_errors = my_ops.saturating_sub(1);
                    return outcome;
                }
            };
            let span = reader.len().saturating_sub(size as u64).max(1);
            let mut rng = StdRng::seed_from_u64(0xbe57 + stream as u64);
            let mut buf = vec![0u8; size];
            for op in 0..my_ops {
                let offset = rng.random_range(0..span);
                let began = match (pace, phase) {
                    (Some(pace), Some(phase)) => {
                        let due = start + phase + pace * op as u32;
                        tokio::time::sleep_until(due).await;
                        due.into_std()
                    }
                    _ => Instant::now(),
                };
                match reader.read_exact_at(offset, &mut buf).await {
                    Ok(()) => {
                        outcome.latency.record(began.elapsed());
                        outcome.bytes += size as u64;
                    }
                    Err(e) => {
                        if outcome.error.is_none() {
                            outcome.error = Some(format!("pread {path}@{offset}: {e:#}"));
                        } else {
                            outcome.extra_errors += 1;
                        }
                    }
                }
                bar.inc(1);
            }
            outcome
        }));
    }
    collect(tasks, barrier, limit).await
}

/// Waits for every stream to be ready, starts the clock, and sums what they did. Streams
/// still running `limit` after the phase began are aborted and counted as errors, so a
/// stuck server costs a bounded time.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<StreamOutcome>>,
    barrier: Arc<Barrier>,
    limit: Duration,
) -> Measured {
    let deadline = tokio::time::Instant::now() + limit;
    let mut measured = Measured::default();
    if tokio::time::timeout_at(deadline, barrier.wait()).await.is_err() {
        measured.error_samples.push(format!("streams were not all ready within {limit:?}"));
    }
    let start = Instant::now();
    for mut task in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(outcome)) => measured.absorb(outcome),
            Ok(Err(e)) => measured.absorb(StreamOutcome {
                bytes: 0,
                latency: Latency::new(),
                error: Some(format!("stream task failed: {e}")),
                extra_errors: 0,
            }),
            Err(_) => {
                task.abort();
                measured.absorb(StreamOutcome {
                    bytes: 0,
                    latency: Latency::new(),
                    error: Some(format!("stream still running after {limit:?}; aborted")),
                    extra_errors: 0,
                });
            }
        }
    }
    measured.elapsed = start.elapsed();
    measured
}

/// Opens `count` idle TCP connections spread over the live datanodes' data ports; they
/// stay open (sending nothing) until dropped.
pub async fn open_idle_connections(client: &DfsClient, count: usize) -> Result<Vec<tokio::net::TcpStream>> {
    let nodes = client.namenode().get_datanode_report(DatanodeReportTypeProto::Live).await?;
    let addrs: Vec<String> = nodes.iter().map(ringfs_client::datanode::xfer_addr).collect();
    anyhow::ensure!(!addrs.is_empty(), "no live datanode to connect to");
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let addr = &addrs[i % addrs.len()];
        streams.push(
            tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("idle connection to {addr}"))?,
        );
    }
    Ok(streams)
}

/// Block ids of the files at `paths`, from the namenode.
pub async fn block_ids(client: &DfsClient, paths: &[String]) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for path in paths {
        let reader = client.open(path).await.with_context(|| format!("locate the blocks of {path}"))?;
        ids.extend(reader.blocks().iter().map(|b| b.b.block_id));
    }
    Ok(ids)
}

/// Is `name` the data or meta file of one of `ids` (`blk_<id>` or `blk_<id>_<gs>.meta`)?
fn is_block_of(name: &str, ids: &std::collections::HashSet<u64>) -> bool {
    let Some(rest) = name.strip_prefix("blk_") else { return false };
    let id = rest.split(['_', '.']).next().unwrap_or("");
    id.parse::<u64>().is_ok_and(|id| ids.contains(&id))
}

/// Flushes and drops from the page cache the block files (data and meta) of `ids`
/// under `dirs`, so the next read of them comes from the disk. Returns the files evicted.
pub fn evict_block_files(dirs: &[std::path::PathBuf], ids: &[u64]) -> Result<u64> {
    let ids: std::collections::HashSet<u64> = ids.iter().copied().collect();
    let mut evicted = 0;
    for dir in dirs {
        for path in block_files(dir) {
            if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| is_block_of(n, &ids)) {
                continue;
            }
            let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            file.sync_all().with_context(|| format!("fsync {}", path.display()))?;
            use std::os::fd::AsRawFd;
            nix::fcntl::posix_fadvise(
                file.as_raw_fd(),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )
            .with_context(|| format!("posix_fadvise DONTNEED {}", path.display()))?;
            evicted += 1;
        }
    }
    Ok(evicted)
}

/// Reads the block files of `ids` under `dirs` once, so reads that follow hit the page
/// cache. Returns the bytes read.
pub fn warm_block_files(dirs: &[std::path::PathBuf], ids: &[u64]) -> Result<u64> {
    let ids: std::collections::HashSet<u64> = ids.iter().copied().collect();
    let mut bytes = 0;
    let mut buf = vec![0u8; 1024 * 1024];
    for dir in dirs {
        for path in block_files(dir) {
            if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| is_block_of(n, &ids)) {
                continue;
            }
            use std::io::Read;
            let mut file = std::fs::File::open(&path)?;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
            }
        }
    }
    Ok(bytes)
}

/// `blk_*` files (data and meta) below `dir`.
fn block_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() && entry.file_name().to_string_lossy().starts_with("blk_") => {
                    found.push(path)
                }
                _ => {}
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_file_names_match_their_ids_only() {
        let ids: std::collections::HashSet<u64> = [1073741825u64].into_iter().collect();
        assert!(is_block_of("blk_1073741825", &ids));
        assert!(is_block_of("blk_1073741825_1001.meta", &ids));
        assert!(!is_block_of("blk_10737418250", &ids));
        assert!(!is_block_of("blk_1073741826_1001.meta", &ids));
        assert!(!is_block_of("VERSION", &ids));
    }
}
