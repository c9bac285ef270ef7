//! NNThroughputBenchmark over real RPC: C clients, each on its own IPC connection, run one
//! operation kind at a time against the namenode; ops/s and per-call latency.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::Rng;
use ringfs_common::ipc::protocol;
use ringfs_common::proto::hdfs::{
    CompleteRequestProto, CompleteResponseProto, CreateRequestProto, CreateResponseProto, DeleteRequestProto,
    DeleteResponseProto, FsPermissionProto, GetBlockLocationsRequestProto, GetBlockLocationsResponseProto,
    GetFileInfoRequestProto, GetFileInfoResponseProto, GetListingRequestProto, GetListingResponseProto,
    MkdirsRequestProto, MkdirsResponseProto, RenameRequestProto, RenameResponseProto,
};
use ringfs_rpc::RpcClient;

use crate::plan::MetadataCounts;
use crate::progress::Progress;
use crate::results::MetadataOp;
use crate::stats::{process_cpu_seconds, Latency};

/// Files per directory in the create phase, so getListing answers a page of this size.
const FILES_PER_DIR: u64 = 100;
/// CreateFlag CREATE | OVERWRITE.
const CREATE_FLAGS: u32 = 0x01 | 0x02;
/// Block size announced for the (empty) files: HDFS's default.
const BLOCK_SIZE: u64 = 128 * 1024 * 1024;

/// The user the bench calls as.
pub fn bench_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".to_string())
}

/// Opens `count` IPC connections to the namenode.
pub async fn connect_clients(addr: &str, count: usize) -> Result<Vec<Arc<RpcClient>>> {
    let user = bench_user();
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let client = RpcClient::connect(addr, &user, protocol::CLIENT)
            .await
            .with_context(|| format!("connect to the namenode at {addr}"))?;
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

/// The namespace one metadata run works in.
#[derive(Clone)]
struct Layout {
    root: String,
    clients: usize,
}

impl Layout {
    fn file(&self, client: usize, index: u64) -> String {
        format!("{}/files/c{client}/d{}/f{index}", self.root, index / FILES_PER_DIR)
    }
    fn renamed(&self, client: usize, index: u64) -> String {
        format!("{}.r", self.file(client, index))
    }
    fn file_dir(&self, client: usize, dir: u64) -> String {
        format!("{}/files/c{client}/d{dir}", self.root)
    }
    fn mkdir(&self, client: usize, index: u64) -> String {
        format!("{}/dirs/c{client}/d{index}", self.root)
    }
    fn client_name(&self, client: usize) -> String {
        format!("DFSClient_NONMAPREDUCE_ringfs_bench_{}_{client}", std::process::id())
    }
}

fn permission(perm: u32) -> FsPermissionProto {
    FsPermissionProto { perm }
}

/// Ops of one kind split across the clients: client `c` runs `share(c)` of them.
fn share(total: u64, clients: usize, client: usize) -> u64 {
    let clients = clients as u64;
    total / clients + u64::from((client as u64) < total % clients)
}

/// Runs `total` operations spread over the clients, each client running its share one
/// after the other, and measures them.
async fn run_phase<F, Fut>(
    name: &str,
    clients: &[Arc<RpcClient>],
    total: u64,
    namenode_pid: Option<u32>,
    progress: &Progress,
    limit: Duration,
    op: F,
) -> MetadataOp
where
    F: Fn(Arc<RpcClient>, usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let bar = progress.count(&format!("metadata: {name}"), total);
    let cpu_before = namenode_pid.and_then(|p| process_cpu_seconds(p).ok());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for (index, client) in clients.iter().enumerate() {
        let ops = share(total, clients.len(), index);
        let client = Arc::clone(client);
        let op = op.clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new();
            let mut errors = 0u64;
            let mut first_error = None;
            for i in 0..ops {
                let began = Instant::now();
                match op(Arc::clone(&client), index, i).await {
                    Ok(()) => latency.record(began.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                bar.inc(1);
            }
            (latency, errors, first_error)
        }));
    }
    let deadline = tokio::time::Instant::now() + limit;
    let mut latency = Latency::new();
    let mut errors = 0;
    for mut task in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok((l, e, first))) => {
                latency.merge(&l);
                errors += e;
                if let Some(first) = first {
                    progress.println(&format!("metadata {name}: error: {first}"));
                }
            }
            Ok(Err(_)) => errors += 1,
            Err(_) => {
                task.abort();
                errors += 1;
                progress.println(&format!(
                    "metadata {name}: a client was still running after {limit:?}; aborted"
                ));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let cpu_after = namenode_pid.and_then(|p| process_cpu_seconds(p).ok());
    MetadataOp {
        op: name.to_string(),
        clients: clients.len(),
        ops: latency.count(),
        errors,
        seconds,
        ops_per_sec: latency.count() as f64 / seconds.max(1e-9),
        latency: latency.summary(),
        namenode_cpu_seconds: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        },
    }
}

fn check(ok: bool, what: &str, path: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        anyhow::bail!("{what} {path} returned false")
    }
}

/// Every op kind, in the order NNThroughputBenchmark runs them.
pub async fn run(
    clients: &[Arc<RpcClient>],
    root: &str,
    counts: MetadataCounts,
    namenode_pid: Option<u32>,
    progress: &Progress,
    limit: Duration,
) -> Result<Vec<MetadataOp>> {
    let layout = Layout { root: root.to_string(), clients: clients.len() };
    let mut results = Vec::new();

    let l = layout.clone();
    results.push(
        run_phase("mkdirs", clients, counts.mkdirs, namenode_pid, progress, limit, move |rpc, c, i| {
            let path = l.mkdir(c, i);
            async move {
                let request = MkdirsRequestProto {
                    src: path.clone(),
                    masked: permission(0o755),
                    create_parent: true,
                    unmasked: None,
                };
                let response: MkdirsResponseProto = rpc.call("mkdirs", &request).await?;
                check(response.result, "mkdirs", &path)
            }
        })
        .await,
    );

    // Each client creates its files in directories of FILES_PER_DIR.
    let l = layout.clone();
    results.push(
        run_phase(
            "create+complete",
            clients,
            counts.create,
            namenode_pid,
            progress,
            limit,
            move |rpc, c, i| {
                let path = l.file(c, i);
                let client_name = l.client_name(c);
                async move {
                    let request = CreateRequestProto {
                        src: path.clone(),
                        masked: permission(0o644),
                        client_name: client_name.clone(),
                        create_flag: CREATE_FLAGS,
                        create_parent: true,
                        replication: 1,
                        block_size: BLOCK_SIZE,
                        ..Default::default()
                    };
                    let created: CreateResponseProto = rpc.call("create", &request).await?;
                    let file_id = created.fs.and_then(|s| s.file_id);
                    let complete =
                        CompleteRequestProto { src: path.clone(), client_name, last: None, file_id };
                    let response: CompleteResponseProto = rpc.call("complete", &complete).await?;
                    check(response.result, "complete", &path)
                }
            },
        )
        .await,
    );
    let created = counts.create;
    let client_count = layout.clients;
    let per_client_files = move |c: usize| share(created, client_count, c);

    let l = layout.clone();
    results.push(
        run_phase(
            "getFileInfo",
            clients,
            counts.get_file_info,
            namenode_pid,
            progress,
            limit,
            move |rpc, c, _| {
                let files = per_client_files(c).max(1);
                let path = l.file(c, rand::rng().random_range(0..files));
                async move {
                    let response: GetFileInfoResponseProto =
                        rpc.call("getFileInfo", &GetFileInfoRequestProto { src: path.clone() }).await?;
                    check(response.fs.is_some(), "getFileInfo", &path)
                }
            },
        )
        .await,
    );

    let l = layout.clone();
    results.push(
        run_phase(
            "getBlockLocations",
            clients,
            counts.get_block_locations,
            namenode_pid,
            progress,
            limit,
            move |rpc, c, _| {
                let files = per_client_files(c).max(1);
                let path = l.file(c, rand::rng().random_range(0..files));
                async move {
                    let request = GetBlockLocationsRequestProto { src: path.clone(), offset: 0, length: 1 };
                    let response: GetBlockLocationsResponseProto =
                        rpc.call("getBlockLocations", &request).await?;
                    check(response.locations.is_some(), "getBlockLocations", &path)
                }
            },
        )
        .await,
    );

    let l = layout.clone();
    results.push(
        run_phase(
            "getListing",
            clients,
            counts.get_listing,
            namenode_pid,
            progress,
            limit,
            move |rpc, c, _| {
                let dirs = per_client_files(c).div_ceil(FILES_PER_DIR).max(1);
                let path = l.file_dir(c, rand::rng().random_range(0..dirs));
                async move {
                    let request = GetListingRequestProto {
                        src: path.clone(),
                        start_after: Default::default(),
                        need_location: false,
                    };
                    let response: GetListingResponseProto = rpc.call("getListing", &request).await?;
                    let entries = response.dir_list.map(|d| d.partial_listing.len()).unwrap_or(0);
                    check(entries > 0, "getListing", &path)
                }
            },
        )
        .await,
    );

    let renames = counts.rename.min(created);
    let l = layout.clone();
    results.push(
        run_phase("rename", clients, renames, namenode_pid, progress, limit, move |rpc, c, i| {
            let (src, dst) = (l.file(c, i), l.renamed(c, i));
            async move {
                let response: RenameResponseProto =
                    rpc.call("rename", &RenameRequestProto { src: src.clone(), dst }).await?;
                check(response.result, "rename", &src)
            }
        })
        .await,
    );

    let deletes = counts.delete.min(created);
    let l = layout.clone();
    results.push(
        run_phase("delete", clients, deletes, namenode_pid, progress, limit, move |rpc, c, i| {
            let renamed_here = i < share(renames, l.clients, c);
            let path = if renamed_here { l.renamed(c, i) } else { l.file(c, i) };
            async move {
                let response: DeleteResponseProto =
                    rpc.call("delete", &DeleteRequestProto { src: path.clone(), recursive: false }).await?;
                check(response.result, "delete", &path)
            }
        })
        .await,
    );
    Ok(results)
}

/// Creates `count` empty files (create+complete) with the given clients, for the memory
/// and restart measurements; returns the paths' common root.
pub async fn create_empty_files(
    clients: &[Arc<RpcClient>],
    root: &str,
    count: u64,
    progress: &Progress,
    limit: Duration,
) -> Result<MetadataOp> {
    let layout = Layout { root: root.to_string(), clients: clients.len() };
    let op = run_phase("create empty files", clients, count, None, progress, limit, move |rpc, c, i| {
        let path = layout.file(c, i);
        let client_name = layout.client_name(c);
        async move {
            let request = CreateRequestProto {
                src: path.clone(),
                masked: permission(0o644),
                client_name: client_name.clone(),
                create_flag: CREATE_FLAGS,
                create_parent: true,
                replication: 1,
                block_size: BLOCK_SIZE,
                ..Default::default()
            };
            let created: CreateResponseProto = rpc.call("create", &request).await?;
            let file_id = created.fs.and_then(|s| s.file_id);
            let complete = CompleteRequestProto { src: path.clone(), client_name, last: None, file_id };
            let response: CompleteResponseProto = rpc.call("complete", &complete).await?;
            check(response.result, "complete", &path)
        }
    })
    .await;
    Ok(op)
}

/// Path of one file made by [`create_empty_files`].
pub fn empty_file_path(root: &str, client: usize, index: u64) -> String {
    Layout { root: root.to_string(), clients: 1 }.file(client, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 63, 64, 65, 10_000] {
            let sum: u64 = (0..64).map(|c| share(total, 64, c)).sum();
            assert_eq!(sum, total);
        }
    }
}
