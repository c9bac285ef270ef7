//! Namenode memory per file, and the two restarts users wait for: the namenode back to
//! serving with many files, and a datanode's first full block report with many replicas.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringfs_client::DfsClient;
use ringfs_common::checksum::{DataChecksum, MetaHeader};
use ringfs_common::ipc::protocol;
use ringfs_common::proto::hdfs::{
    DatanodeInfoProto, DatanodeReportTypeProto, GetDatanodeReportRequestProto,
    GetDatanodeReportResponseProto, GetFileInfoRequestProto, GetFileInfoResponseProto,
};
use ringfs_rpc::RpcClient;

use crate::cluster::Cluster;
use crate::progress::Progress;

/// How often the pollers ask the namenode.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// First block id of generated replicas: far above the namenode's sequential ids
/// (which start at 2^30), so they never collide with real blocks.
const GENERATED_BLOCK_ID_BASE: u64 = 1 << 40;
/// Generation stamp of generated replicas (HDFS starts at 1000).
const GENERATED_GENSTAMP: u64 = 1001;

/// Creates `count` single-block files of one byte each with `concurrency` writers.
pub async fn create_single_block_files(
    client: &DfsClient,
    root: &str,
    count: u64,
    concurrency: usize,
    progress: &Progress,
    limit: Duration,
) -> (u64, u64, Duration, Option<String>) {
    let bar = progress.count("memory: single-block files", count);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, root, bar) = (client.clone(), Arc::clone(&next), root.to_string(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0u64, 0u64);
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let path = single_block_path(&root, i);
                let result = async {
                    let mut writer = client.create(&path, true, Some(1), None).await?;
                    writer.write_all(&[(i % 251) as u8]).await?;
                    writer.close().await
                }
                .await;
                match result {
                    Ok(()) => done += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{path}: {e:#}"));
                    }
                }
                bar.inc(1);
            }
            (done, errors, first_error)
        }));
    }
    let deadline = tokio::time::Instant::now() + limit;
    let (mut done, mut errors, mut first_error) = (0, 0, None);
    for mut task in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok((d, e, first))) => {
                done += d;
                errors += e;
                if first_error.is_none() {
                    first_error = first;
                }
            }
            Ok(Err(_)) => errors += 1,
            Err(_) => {
                task.abort();
                errors += 1;
            }
        }
    }
    bar.finish_and_clear();
    (done, errors, start.elapsed(), first_error)
}

pub fn single_block_path(root: &str, index: u64) -> String {
    format!("{root}/d{}/f{index}", index / 1000)
}

/// Waits until the namenode answers getFileInfo for `path` with a status; returns when.
async fn poll_file_info(addr: String, path: String, start: Instant, limit: Duration) -> Result<Duration> {
    let user = crate::metadata::bench_user();
    loop {
        if start.elapsed() > limit {
            bail!("the namenode did not serve {path} within {limit:?}");
        }
        if let Ok(rpc) = RpcClient::connect(&addr, &user, protocol::CLIENT).await {
            loop {
                match rpc
                    .call::<_, GetFileInfoResponseProto>(
                        "getFileInfo",
                        &GetFileInfoRequestProto { src: path.clone() },
                    )
                    .await
                {
                    Ok(response) if response.fs.is_some() => return Ok(start.elapsed()),
                    Ok(_) => bail!("{path} is missing after the namenode restart"),
                    Err(_) if rpc.is_open() && start.elapsed() < limit => {
                        tokio::time::sleep(POLL_INTERVAL).await
                    }
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Stops the namenode cleanly, starts it again, and measures until it serves `probe_path`.
pub fn namenode_restart(
    cluster: &mut Cluster,
    runtime: &tokio::runtime::Runtime,
    probe_path: &str,
    limit: Duration,
) -> Result<(f64, f64)> {
    cluster.control("stop-namenode")?;
    let start = Instant::now();
    let poller =
        runtime.spawn(poll_file_info(cluster.namenode_addr.clone(), probe_path.to_string(), start, limit));
    cluster.control("start-namenode")?;
    let ready_line = start.elapsed();
    let serving = runtime.block_on(poller).context("namenode poller")??;
    Ok((ready_line.as_secs_f64(), serving.as_secs_f64()))
}

async fn datanode_report(rpc: &RpcClient, kind: DatanodeReportTypeProto) -> Result<Vec<DatanodeInfoProto>> {
    let response: GetDatanodeReportResponseProto =
        rpc.call("getDatanodeReport", &GetDatanodeReportRequestProto { r#type: kind as i32 }).await?;
    Ok(response.di)
}

/// Waits until every datanode is live again (after a namenode restart).
pub async fn wait_datanodes_live(addr: &str, expected: usize, timeout: Duration) -> Result<()> {
    let user = crate::metadata::bench_user();
    let start = Instant::now();
    loop {
        if let Ok(rpc) = RpcClient::connect(addr, &user, protocol::CLIENT).await {
            if let Ok(live) = datanode_report(&rpc, DatanodeReportTypeProto::Live).await {
                if live.len() >= expected {
                    return Ok(());
                }
            }
        }
        if start.elapsed() > timeout {
            bail!("{expected} datanodes were not live again within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The namenode's record of the datanode whose data port is `xfer_port`.
async fn find_datanode(rpc: &RpcClient, uuid: &str) -> Result<Option<DatanodeInfoProto>> {
    let all = datanode_report(rpc, DatanodeReportTypeProto::All).await?;
    Ok(all.into_iter().find(|d| d.id.datanode_uuid == uuid))
}

/// Writes `count` finalized replicas of `bytes` bytes each straight into a stopped
/// datanode's block pool, in HDFS's layout (subdir by bits 16-20 and 8-12 of the id),
/// with valid `.meta` files.
pub fn generate_replicas(data_dir: &Path, count: u64, bytes: usize) -> Result<PathBuf> {
    let finalized = find_finalized_dir(data_dir)?;
    let data: Vec<u8> = (0..bytes).map(|i| (i * 13 + 5) as u8).collect();
    let checksum = DataChecksum::CRC32C_512;
    let mut meta = MetaHeader { checksum }.encode().to_vec();
    meta.extend_from_slice(&checksum.compute_vec(&data));
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let data = Arc::new(data);
    let meta = Arc::new(meta);
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (finalized, data, meta) = (finalized.clone(), Arc::clone(&data), Arc::clone(&meta));
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut i = t;
                while i < count {
                    let id = GENERATED_BLOCK_ID_BASE + i;
                    let dir = finalized
                        .join(format!("subdir{}", (id >> 16) & 0x1f))
                        .join(format!("subdir{}", (id >> 8) & 0x1f));
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join(format!("blk_{id}")), &*data)?;
                    std::fs::write(dir.join(format!("blk_{id}_{GENERATED_GENSTAMP}.meta")), &*meta)?;
                    i += threads as u64;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("replica generator panicked"))??;
    }
    Ok(finalized)
}

/// `<data dir>/current/BP-*/current/finalized` of a datanode that has registered once.
fn find_finalized_dir(data_dir: &Path) -> Result<PathBuf> {
    let current = data_dir.join("current");
    let entries = std::fs::read_dir(&current).with_context(|| format!("read {}", current.display()))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("BP-") {
            return Ok(entry.path().join("current").join("finalized"));
        }
    }
    bail!("no block pool directory under {}", current.display())
}

/// Stops datanode `index`, fills it with `replicas` generated replicas, starts it, and
/// measures until the namenode has its first full block report.
pub fn datanode_restart(
    cluster: &mut Cluster,
    runtime: &tokio::runtime::Runtime,
    index: usize,
    replicas: u64,
    replica_bytes: usize,
    limit: Duration,
) -> Result<(f64, f64, f64)> {
    let data_dir = cluster.data_dir(index).context("datanode restarts need a spawned cluster")?;
    let addr = cluster.namenode_addr.clone();
    let user = crate::metadata::bench_user();
    let rpc = runtime.block_on(RpcClient::connect(&addr, &user, protocol::CLIENT))?;
    let rpc = Arc::new(rpc);
    // The datanode's identity: its uuid is in the VERSION file of its data directory.
    let uuid = datanode_uuid(&data_dir)?;
    cluster.control(&format!("stop-datanode {index}"))?;
    let generate_start = Instant::now();
    generate_replicas(&data_dir, replicas, replica_bytes)?;
    let generated = generate_start.elapsed().as_secs_f64();
    let before =
        runtime.block_on(find_datanode(&rpc, &uuid))?.and_then(|d| d.last_block_report_time).unwrap_or(0);
    // The report must also be newer than this start (same host, same wall clock).
    let start_wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let before = before.max(start_wall_ms.saturating_sub(1));
    let start = Instant::now();
    let poll_rpc = Arc::clone(&rpc);
    let poller = runtime.spawn(async move {
        loop {
            if start.elapsed() > limit {
                bail!("no block report from datanode {uuid} within {limit:?}");
            }
            if let Ok(Some(node)) = find_datanode(&poll_rpc, &uuid).await {
                if node.last_block_report_time.unwrap_or(0) > before {
                    return Ok(start.elapsed());
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
    cluster.control(&format!("start-datanode {index}"))?;
    let ready_line = start.elapsed().as_secs_f64();
    let reported: Duration = runtime.block_on(poller).context("block report poller")??;
    Ok((ready_line, reported.as_secs_f64(), generated))
}

/// `datanodeUuid=` from `<data dir>/current/VERSION`.
fn datanode_uuid(data_dir: &Path) -> Result<String> {
    let version = data_dir.join("current").join("VERSION");
    let text = std::fs::read_to_string(&version).with_context(|| format!("read {}", version.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("datanodeUuid=").map(|v| v.trim().to_string()))
        .with_context(|| format!("no datanodeUuid in {}", version.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_replicas_follow_the_hdfs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let pool = dir.path().join("current").join("BP-1-127.0.0.1-1").join("current");
        std::fs::create_dir_all(&pool).unwrap();
        let finalized = generate_replicas(dir.path(), 3, 1000).unwrap();
        let id = GENERATED_BLOCK_ID_BASE + 2;
        let sub = finalized
            .join(format!("subdir{}", (id >> 16) & 0x1f))
            .join(format!("subdir{}", (id >> 8) & 0x1f));
        assert_eq!(std::fs::read(sub.join(format!("blk_{id}"))).unwrap().len(), 1000);
        let meta = std::fs::read(sub.join(format!("blk_{id}_{GENERATED_GENSTAMP}.meta"))).unwrap();
        // 7-byte header plus one CRC per 512-byte chunk.
        assert_eq!(meta.len(), 7 + 2 * 4);
        assert_eq!(MetaHeader::decode(&meta).unwrap().checksum, DataChecksum::CRC32C_512);
    }
}
