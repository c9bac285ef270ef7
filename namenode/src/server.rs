//! A running namenode: load the image and edits, serve RPC, run the monitor
//! (liveness, safe mode, redundancy, leases) and checkpoints, shut down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::NameNodeConfig;
use crate::datanodes::Topology;
use crate::fsn::Namesystem;
use crate::image::encode_image;
use crate::journal::Journal;
use crate::permission::{process_user, GroupMapping};
use crate::service::{NameNodeService, Shared};
use crate::storage::{Storage, StorageError};

/// How often the monitor wakes (dead nodes, safe mode, lease limits, checkpoints).
const MONITOR_TICK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum NameNodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot load the namespace: {0}")]
    Load(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("checkpoint failed: {0}")]
    Checkpoint(String),
}

/// Writes images; one at a time.
struct Checkpointer {
    shared: Arc<Shared>,
    storage: Arc<Storage>,
    lock: AsyncMutex<()>,
}

impl Checkpointer {
    /// Rolls the edit log, writes an image of the current state and prunes what it
    /// supersedes. Returns the image's txid.
    async fn run(&self) -> Result<u64, NameNodeError> {
        let _one_at_a_time = self.lock.lock().await;
        let started = Instant::now();
        {
            // Roll under the write lock so the segment boundary falls between two ops.
            let _fs = self.shared.write_lock();
            self.shared.journal.roll();
        }
        // Encoding needs only a consistent view: readers carry on meanwhile. Ops applied
        // between the roll and here are in the image and in the new segment; replay
        // skips what the image already holds.
        let (txid, bytes) = {
            let fs = self.shared.read();
            (fs.last_txid(), encode_image(fs.last_txid(), &fs.ns, &fs.blocks))
        };
        let storage = Arc::clone(&self.storage);
        let size = bytes.len();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            storage.write_image(txid, &bytes)?;
            storage.prune()
        })
        .await
        .map_err(|e| NameNodeError::Checkpoint(e.to_string()))??;
        self.shared.write_lock().mark_checkpointed(txid);
        info!(txid, bytes = size, millis = started.elapsed().as_millis() as u64, "checkpoint written");
        Ok(txid)
    }
}

/// A namenode serving on a TCP port.
pub struct NameNode {
    shared: Arc<Shared>,
    checkpointer: Arc<Checkpointer>,
    addr: SocketAddr,
    serve_task: JoinHandle<()>,
    monitor_task: JoinHandle<()>,
    fatal: watch::Receiver<Option<String>>,
}

impl NameNode {
    /// Opens the formatted name directory, loads image + edits, binds
    /// `config.rpc_address` (port 0 allowed) and starts serving.
    pub async fn start(config: NameNodeConfig) -> Result<NameNode, NameNodeError> {
        let config = Arc::new(config);
        let superuser = process_user();
        let load_config = Arc::clone(&config);
        let (storage, fs, replayed) = tokio::task::spawn_blocking(move || load(load_config, superuser))
            .await
            .map_err(|e| NameNodeError::Load(e.to_string()))??;
        let storage = Arc::new(storage);
        let mut fs = fs;
        let segment = storage.start_segment(fs.last_txid())?;
        let journal = Arc::new(Journal::start(storage.current_dir().to_path_buf(), segment, fs.last_txid()));
        fs.attach_journal(Arc::clone(&journal));
        fs.update_safemode(Instant::now());
        let shared = Arc::new(Shared {
            groups: GroupMapping::new(&fs.superuser, &config.supergroup),
            fs: std::sync::RwLock::new(fs),
            journal,
            topology: Topology::new(config.topology_script.clone(), config.topology_table.clone()),
            config: Arc::clone(&config),
        });
        let checkpointer = Arc::new(Checkpointer {
            shared: Arc::clone(&shared),
            storage: Arc::clone(&storage),
            lock: AsyncMutex::new(()),
        });
        if replayed > 0 {
            // Fold the replayed edits into a fresh image so the next start is quick.
            checkpointer.run().await?;
        }
        let listener = TcpListener::bind(&config.rpc_address)
            .await
            .map_err(|source| NameNodeError::Bind { addr: config.rpc_address.clone(), source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| NameNodeError::Bind { addr: config.rpc_address.clone(), source })?;
        let service = Arc::new(NameNodeService { shared: Arc::clone(&shared) });
        let serve_task = tokio::spawn(async move {
            if let Err(e) = ringfs_rpc::server::serve(listener, service).await {
                error!(error = %e, "RPC server stopped");
            }
        });
        let (fatal_tx, fatal) = watch::channel(None);
        let monitor_task = tokio::spawn(monitor(Arc::clone(&shared), Arc::clone(&checkpointer), fatal_tx));
        {
            let fs = shared.read();
            info!(rpc = %addr, cluster_id = %fs.info.cluster_id, block_pool_id = %fs.info.block_pool_id,
                inodes = fs.ns.inode_count(), blocks = fs.blocks.len(), txid = fs.last_txid(),
                safemode = fs.in_safemode(), "namenode started");
        }
        Ok(NameNode { shared, checkpointer, addr, serve_task, monitor_task, fatal })
    }

    pub fn rpc_address(&self) -> SocketAddr {
        self.addr
    }

    /// The namesystem, for tests and tools in the same process.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Writes a checkpoint now.
    pub async fn checkpoint(&self) -> Result<u64, NameNodeError> {
        self.checkpointer.run().await
    }

    /// Resolves with the reason if the namenode can no longer run (its edit log failed).
    pub async fn fatal_error(&mut self) -> String {
        loop {
            if let Some(reason) = self.fatal.borrow().clone() {
                return reason;
            }
            if self.fatal.changed().await.is_err() {
                return "the namenode monitor stopped".to_string();
            }
        }
    }

    /// Stops serving, checkpoints and closes the edit log.
    pub async fn shutdown(self) -> Result<(), NameNodeError> {
        self.serve_task.abort();
        self.monitor_task.abort();
        let checkpointed = self.checkpointer.run().await;
        let journal = Arc::clone(&self.shared.journal);
        let closed = tokio::task::spawn_blocking(move || journal.shutdown())
            .await
            .map_err(|e| NameNodeError::Checkpoint(e.to_string()))?;
        checkpointed?;
        closed.map_err(|e| NameNodeError::Checkpoint(e.to_string()))?;
        info!("namenode stopped");
        Ok(())
    }
}

impl Drop for NameNode {
    fn drop(&mut self) {
        self.serve_task.abort();
        self.monitor_task.abort();
    }
}

/// Reads VERSION, the newest image and the edits after it.
fn load(
    config: Arc<NameNodeConfig>,
    superuser: String,
) -> Result<(Storage, Namesystem, usize), NameNodeError> {
    let (storage, info) = Storage::open(&config.name_dir)?;
    let started = Instant::now();
    let loaded = storage.load()?;
    let image = loaded.image;
    let mut fs = Namesystem::new(config, info, image.namespace, image.blocks, image.last_txid, superuser);
    for record in &loaded.edits {
        fs.replay(record).map_err(|e| NameNodeError::Load(e.message))?;
    }
    if let Err(problem) = fs.ns.verify() {
        return Err(NameNodeError::Load(format!("the loaded namespace is inconsistent: {problem}")));
    }
    info!(
        edits = loaded.edits.len(),
        txid = fs.last_txid(),
        millis = started.elapsed().as_millis() as u64,
        "namespace loaded"
    );
    Ok((storage, fs, loaded.edits.len()))
}

async fn monitor(shared: Arc<Shared>, checkpointer: Arc<Checkpointer>, fatal: watch::Sender<Option<String>>) {
    let config = Arc::clone(&shared.config);
    let mut next_redundancy = Instant::now() + config.redundancy_interval;
    let mut last_checkpoint = Instant::now();
    loop {
        tokio::time::sleep(MONITOR_TICK).await;
        let now = Instant::now();
        let redundancy_due = now >= next_redundancy;
        if redundancy_due {
            next_redundancy = now + config.redundancy_interval;
        }
        let pending_txns = {
            let mut fs = shared.write_lock();
            fs.tick(now, redundancy_due);
            fs.txns_since_checkpoint()
        };
        if let Some(reason) = shared.journal.failure() {
            error!(reason = %reason, "the edit log failed; the namenode must stop");
            let _ = fatal.send(Some(reason));
            return;
        }
        let period_due = last_checkpoint.elapsed() >= config.checkpoint_period && pending_txns > 0;
        if pending_txns >= config.checkpoint_txns || period_due {
            match checkpointer.run().await {
                Ok(_) => last_checkpoint = Instant::now(),
                Err(e) => warn!(error = %e, "checkpoint failed; will retry"),
            }
        }
    }
}
