//! Crash test: `ringfs namenode` is killed with SIGKILL at random moments while
//! concurrent clients create, rename and delete; after every restart each operation
//! whose reply reached its client must be present, and nothing the clients did not ask
//! for may appear. An operation cut by the kill may or may not have happened, but only
//! as a whole (a rename is never half done).
//!
//! Each worker owns a directory `/w<k>` and keeps a model of it: the entries its
//! acknowledged operations produced, plus at most one uncertain operation (the one the
//! kill cut), which is resolved by looking after the restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringfs_common::ipc::protocol;
use ringfs_common::proto::hdfs::*;
use ringfs_rpc::{RpcClient, RpcError};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WORKERS: usize = 8;
const ROUNDS: usize = 6;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// An operation cut by the kill: its effect is unknown until we look.
#[derive(Debug, Clone)]
enum Uncertain {
    Created { name: String, kind: Kind },
    Renamed { from: String, to: String, kind: Kind },
    Deleted { name: String, kind: Kind },
}

#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<String, Kind>,
    uncertain: Option<Uncertain>,
    next: u64,
    acked: u64,
}

/// Did the call reach a verdict (Ok or a remote exception), or was it cut?
enum Outcome<T> {
    Done(T),
    Cut,
}

fn outcome<T>(result: Result<T, RpcError>, what: &str) -> anyhow::Result<Outcome<T>> {
    match result {
        Ok(value) => Ok(Outcome::Done(value)),
        Err(RpcError::Remote(e)) => bail!("{what} failed although the model says it must work: {e}"),
        Err(_) => Ok(Outcome::Cut),
    }
}

struct Namenode {
    child: Child,
    addr: String,
}

async fn start_namenode(name_dir: &Path) -> anyhow::Result<Namenode> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringfs"))
        .args(["namenode", "-D", &format!("dfs.namenode.name.dir={}", name_dir.display())])
        .args(["-D", "dfs.namenode.rpc-address=127.0.0.1:0", "-D", "dfs.namenode.safemode.extension=0"])
        .args(["-D", "dfs.namenode.checkpoint.txns=400"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn ringfs namenode")?;
    let stdout = child.stdout.take().context("namenode stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("NAMENODE READY rpc=") {
                return Ok::<_, anyhow::Error>(addr.to_string());
            }
        }
        bail!("namenode exited before it was ready")
    })
    .await
    .context("namenode did not print its READY line in time")??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Namenode { child, addr: ready })
}

async fn file_kind(client: &RpcClient, path: &str) -> anyhow::Result<Option<Kind>> {
    let response: GetFileInfoResponseProto =
        client.call("getFileInfo", &GetFileInfoRequestProto { src: path.into() }).await?;
    Ok(response.fs.map(|s| if s.file_type == 1 { Kind::Dir } else { Kind::File }))
}

async fn list(client: &RpcClient, dir: &str) -> anyhow::Result<BTreeMap<String, Kind>> {
    let mut found = BTreeMap::new();
    let mut start_after = Vec::new();
    loop {
        let request = GetListingRequestProto {
            src: dir.into(),
            start_after: start_after.clone().into(),
            need_location: false,
        };
        let response: GetListingResponseProto = client.call("getListing", &request).await?;
        let listing = response.dir_list.with_context(|| format!("{dir} is missing"))?;
        for status in &listing.partial_listing {
            let kind = if status.file_type == 1 { Kind::Dir } else { Kind::File };
            found.insert(String::from_utf8_lossy(&status.path).to_string(), kind);
        }
        match listing.partial_listing.last() {
            Some(last) if listing.remaining_entries > 0 => start_after = last.path.to_vec(),
            _ => return Ok(found),
        }
    }
}

/// After a restart: settle the cut operation by looking, then check the directory holds
/// exactly what the model says.
async fn verify(client: &RpcClient, worker: usize, model: &mut Model) -> anyhow::Result<()> {
    let base = format!("/w{worker}");
    let path = |name: &str| format!("{base}/{name}");
    if let Some(uncertain) = model.uncertain.take() {
        match uncertain {
            Uncertain::Created { name, kind } => {
                if let Some(found) = file_kind(client, &path(&name)).await? {
                    ensure!(found == kind, "{} was created as {kind:?} but is a {found:?}", path(&name));
                    model.entries.insert(name, kind);
                }
            }
            Uncertain::Renamed { from, to, kind } => {
                let (source, target) =
                    (file_kind(client, &path(&from)).await?, file_kind(client, &path(&to)).await?);
                match (source, target) {
                    (Some(_), None) => {}
                    (None, Some(found)) => {
                        ensure!(found == kind, "renamed {kind:?} became a {found:?}");
                        model.entries.remove(&from);
                        model.entries.insert(to, kind);
                    }
                    other => bail!("a cut rename {from} -> {to} left {other:?}: it must be all or nothing"),
                }
            }
            Uncertain::Deleted { name, kind } => {
                if file_kind(client, &path(&name)).await?.is_none() {
                    model.entries.remove(&name);
                } else {
                    ensure!(model.entries.get(&name) == Some(&kind), "deleted entry changed kind");
                }
            }
        }
    }
    let found = list(client, &base).await?;
    if found != model.entries {
        let missing: Vec<_> = model.entries.iter().filter(|(k, v)| found.get(*k) != Some(v)).collect();
        let extra: Vec<_> = found.iter().filter(|(k, v)| model.entries.get(*k) != Some(v)).collect();
        bail!("{base} after restart: acknowledged entries missing or changed: {missing:?}; unexpected entries: {extra:?}");
    }
    Ok(())
}

/// Issues random operations until the connection dies; returns with the model updated
/// for every acknowledged operation and the cut one recorded as uncertain.
async fn work(
    client: Arc<RpcClient>,
    worker: usize,
    mut model: Model,
    seed: u64,
    round: usize,
) -> anyhow::Result<Model> {
    let mut rng = StdRng::seed_from_u64(seed ^ (worker as u64) << 32 ^ round as u64);
    let base = format!("/w{worker}");
    let client_name = format!("crash-client-{worker}-{round}");
    loop {
        let files: Vec<String> =
            model.entries.iter().filter(|(_, k)| **k == Kind::File).map(|(n, _)| n.clone()).collect();
        let dirs: Vec<String> =
            model.entries.iter().filter(|(_, k)| **k == Kind::Dir).map(|(n, _)| n.clone()).collect();
        let choice = rng.random_range(0..10);
        model.next += 1;
        let n = model.next;
        if choice < 3 {
            let name = format!("d{n}");
            let request = MkdirsRequestProto {
                src: format!("{base}/{name}"),
                masked: FsPermissionProto { perm: 0o755 },
                create_parent: false,
                unmasked: None,
            };
            match outcome(client.call::<_, MkdirsResponseProto>("mkdirs", &request).await, "mkdirs")? {
                Outcome::Done(r) => {
                    ensure!(r.result, "mkdirs returned false");
                    model.entries.insert(name, Kind::Dir);
                }
                Outcome::Cut => {
                    model.uncertain = Some(Uncertain::Created { name, kind: Kind::Dir });
                    return Ok(model);
                }
            }
        } else if choice < 6 {
            let name = format!("f{n}");
            let src = format!("{base}/{name}");
            let create = CreateRequestProto {
                src: src.clone(),
                masked: FsPermissionProto { perm: 0o644 },
                client_name: client_name.clone(),
                create_flag: 1,
                create_parent: false,
                replication: 1,
                block_size: 1 << 20,
                ..Default::default()
            };
            match outcome(client.call::<_, CreateResponseProto>("create", &create).await, "create")? {
                Outcome::Done(created) => {
                    model.entries.insert(name.clone(), Kind::File);
                    let complete = CompleteRequestProto {
                        src,
                        client_name: client_name.clone(),
                        last: None,
                        file_id: created.fs.and_then(|f| f.file_id),
                    };
                    match outcome(
                        client.call::<_, CompleteResponseProto>("complete", &complete).await,
                        "complete",
                    )? {
                        Outcome::Done(r) => ensure!(r.result, "complete of an empty file returned false"),
                        Outcome::Cut => return Ok(model),
                    }
                }
                Outcome::Cut => {
                    model.uncertain = Some(Uncertain::Created { name, kind: Kind::File });
                    return Ok(model);
                }
            }
        } else if choice < 8 && !files.is_empty() {
            let from = files[rng.random_range(0..files.len())].clone();
            let to = format!("r{n}");
            let request = RenameRequestProto { src: format!("{base}/{from}"), dst: format!("{base}/{to}") };
            match outcome(client.call::<_, RenameResponseProto>("rename", &request).await, "rename")? {
                Outcome::Done(r) => {
                    ensure!(r.result, "rename {from} -> {to} returned false");
                    model.entries.remove(&from);
                    model.entries.insert(to, Kind::File);
                }
                Outcome::Cut => {
                    model.uncertain = Some(Uncertain::Renamed { from, to, kind: Kind::File });
                    return Ok(model);
                }
            }
        } else if !dirs.is_empty() || !files.is_empty() {
            let all: Vec<(String, Kind)> = model.entries.iter().map(|(n, k)| (n.clone(), *k)).collect();
            let (name, kind) = all[rng.random_range(0..all.len())].clone();
            let request = DeleteRequestProto { src: format!("{base}/{name}"), recursive: true };
            match outcome(client.call::<_, DeleteResponseProto>("delete", &request).await, "delete")? {
                Outcome::Done(r) => {
                    ensure!(r.result, "delete {name} returned false");
                    model.entries.remove(&name);
                }
                Outcome::Cut => {
                    model.uncertain = Some(Uncertain::Deleted { name, kind });
                    return Ok(model);
                }
            }
        }
        model.acked += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_kill_9() -> anyhow::Result<()> {
    let seed: u64 =
        std::env::var("RINGFS_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (set RINGFS_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile_dir()?;
    let name_dir = dir.join("name");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ringfs"))
        .args(["namenode", "-format", "-D", &format!("dfs.namenode.name.dir={}", name_dir.display())])
        .env("RUST_LOG", "warn")
        .status()?;
    ensure!(status.success(), "format failed");

    let mut models: Vec<Model> = (0..WORKERS).map(|_| Model::default()).collect();
    let mut acked_total = 0u64;
    for round in 0..ROUNDS {
        let mut namenode = start_namenode(&name_dir).await?;
        let checker = RpcClient::connect(&namenode.addr, "root", protocol::CLIENT).await?;
        if round == 0 {
            for worker in 0..WORKERS {
                let request = MkdirsRequestProto {
                    src: format!("/w{worker}"),
                    masked: FsPermissionProto { perm: 0o755 },
                    create_parent: true,
                    unmasked: None,
                };
                let _: MkdirsResponseProto = checker.call("mkdirs", &request).await?;
            }
        }
        for (worker, model) in models.iter_mut().enumerate() {
            verify(&checker, worker, model)
                .await
                .with_context(|| format!("round {round}, worker {worker}, seed {seed}"))?;
        }
        drop(checker);

        let mut tasks = Vec::new();
        for (worker, model) in std::mem::take(&mut models).into_iter().enumerate() {
            let client = Arc::new(RpcClient::connect(&namenode.addr, "root", protocol::CLIENT).await?);
            tasks.push(tokio::spawn(work(client, worker, model, seed, round)));
        }
        let run_for = Duration::from_millis(rng.random_range(30..700));
        tokio::time::sleep(run_for).await;
        namenode.child.start_kill().context("SIGKILL the namenode")?;
        namenode.child.wait().await?;
        for task in tasks {
            let model = task.await?.with_context(|| format!("round {round}, seed {seed}"))?;
            acked_total += model.acked;
            models.push(model);
        }
    }
    // A last start proves the final crash state too.
    let mut namenode = start_namenode(&name_dir).await?;
    let checker = RpcClient::connect(&namenode.addr, "root", protocol::CLIENT).await?;
    for (worker, model) in models.iter_mut().enumerate() {
        verify(&checker, worker, model)
            .await
            .with_context(|| format!("final check, worker {worker}, seed {seed}"))?;
    }
    println!("{acked_total} acknowledged operations verified across {ROUNDS} kills");
    ensure!(acked_total > 0, "no operation was acknowledged; the test proved nothing");
    namenode.child.start_kill()?;
    namenode.child.wait().await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ringfs-nn-crash-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
