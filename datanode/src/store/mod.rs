//! The block store: volumes in HDFS's on-disk layout, the replica map, and every
//! replica state transition (create, append, recovery, finalize, invalidate).
//!
//! Engine-neutral and blocking: both data-path engines call it. Transitions of one
//! block are serialised by a striped lock; the replica map is sharded so that lookups
//! on the data path rarely contend. A replica's files are renamed between `tmp/`,
//! `rbw/` and `finalized/` while open handles keep working, so readers only retry an
//! open that raced with a rename.

pub mod error;
pub mod files;
pub mod layout;
pub mod replica;
pub mod scan;
pub mod version_file;
pub mod volume;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ringfs_common::checksum::{DataChecksum, MetaHeader};
use tracing::{info, warn};

pub use error::StoreError;
pub use files::{RbwWriter, ReplicaReader};
pub use replica::{Replica, ReplicaState, WriteProgress};
pub use scan::ScanReport;
pub use volume::{NamespaceIdentity, Volume, VolumeUsage};

use crate::limits::{REPLICA_MAP_SHARDS, WRITER_STOP_TIMEOUT};
use layout::{block_file_name, meta_file_name};

/// Attempts to open a replica whose files a concurrent transition may be renaming.
const OPEN_ATTEMPTS_MAX: usize = 4;

/// A replica as a full block report lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedReplica {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub length: u64,
    pub state: ReplicaState,
}

/// The datanode's replicas across all its volumes.
#[derive(Debug)]
pub struct BlockStore {
    volumes: Vec<Volume>,
    datanode_uuid: String,
    sync_on_close: bool,
    block_pool_id: OnceLock<String>,
    shards: Box<[Mutex<HashMap<u64, Replica>>]>,
    transition_locks: Box<[Mutex<()>]>,
    next_volume: AtomicUsize,
    next_writer_id: AtomicU64,
    /// Lease recoveries in progress: block id -> recovery id (the new genstamp).
    recoveries: Mutex<HashMap<u64, u64>>,
}

/// What a replica holds when a lease recovery starts (ReplicaRecoveryInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryInfo {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub length: u64,
    pub state: ReplicaState,
}

impl BlockStore {
    /// Opens (creating if needed) and locks every volume, and settles the datanode's
    /// identity: the uuid persisted in the volumes, or a new one.
    pub fn open(dirs: &[PathBuf], sync_on_close: bool) -> Result<BlockStore, StoreError> {
        if dirs.is_empty() {
            return Err(StoreError::NoVolumes);
        }
        let volumes =
            dirs.iter().enumerate().map(|(i, dir)| Volume::open(i, dir)).collect::<Result<Vec<_>, _>>()?;
        let mut uuid: Option<(&str, &Path)> = None;
        for volume in &volumes {
            if let Some(found) = volume.datanode_uuid.as_deref() {
                match uuid {
                    None => uuid = Some((found, &volume.root)),
                    Some((first, first_dir)) if first != found => {
                        return Err(StoreError::InconsistentDatanodeUuid {
                            first: first.to_string(),
                            first_dir: first_dir.to_path_buf(),
                            second: found.to_string(),
                            second_dir: volume.root.clone(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        let datanode_uuid = uuid.map_or_else(|| uuid::Uuid::new_v4().to_string(), |(u, _)| u.to_string());
        Ok(BlockStore {
            volumes,
            datanode_uuid,
            sync_on_close,
            block_pool_id: OnceLock::new(),
            shards: (0..REPLICA_MAP_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            transition_locks: (0..REPLICA_MAP_SHARDS).map(|_| Mutex::new(())).collect(),
            next_volume: AtomicUsize::new(0),
            next_writer_id: AtomicU64::new(1),
            recoveries: Mutex::new(HashMap::new()),
        })
    }

    pub fn datanode_uuid(&self) -> &str {
        &self.datanode_uuid
    }

    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    pub fn block_pool_id(&self) -> Option<&str> {
        self.block_pool_id.get().map(String::as_str)
    }

    /// Formats the volumes for the namenode's namespace and loads the block pool's
    /// replicas. Called once per process (a re-registration keeps the pool).
    pub fn attach_block_pool(&self, ns: &NamespaceIdentity) -> Result<ScanReport, StoreError> {
        if let Some(served) = self.block_pool_id.get() {
            if served != &ns.block_pool_id {
                return Err(StoreError::WrongBlockPool {
                    requested: ns.block_pool_id.clone(),
                    served: served.clone(),
                });
            }
            return Ok(ScanReport::default());
        }
        for volume in &self.volumes {
            volume.attach_block_pool(ns, &self.datanode_uuid)?;
        }
        let started = std::time::Instant::now();
        let report = scan::scan_volumes(&self.volumes)?;
        for scanned in &report.replicas {
            self.load_scanned(scanned);
        }
        let _ = self.block_pool_id.set(ns.block_pool_id.clone());
        info!(
            block_pool = %ns.block_pool_id,
            replicas = self.replica_count(),
            orphans = report.orphans,
            temporaries_removed = report.temporaries_removed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "volumes scanned"
        );
        Ok(report)
    }

    fn load_scanned(&self, scanned: &scan::ScannedReplica) {
        let replica = match scanned.state {
            ReplicaState::Finalized => {
                Replica::finalized(scanned.block_id, scanned.gen_stamp, scanned.volume, scanned.length)
            }
            state => Replica::in_progress(
                scanned.block_id,
                scanned.gen_stamp,
                state,
                scanned.volume,
                Arc::new(WriteProgress::new(scanned.length)),
            ),
        };
        let mut shard = self.shard(scanned.block_id);
        if let Some(existing) = shard.get(&scanned.block_id) {
            // Duplicates across volumes: keep the newest genstamp, then the finalized one.
            let keep_existing = (existing.gen_stamp, existing.state == ReplicaState::Finalized)
                >= (replica.gen_stamp, replica.state == ReplicaState::Finalized);
            warn!(block_id = scanned.block_id, "replica found twice; keeping the newer");
            if keep_existing {
                return;
            }
        }
        if replica.state == ReplicaState::Finalized {
            let meta_len = MetaHeader { checksum: DataChecksum::CRC32C_512 }.meta_file_len(scanned.length);
            self.volumes[scanned.volume].add_used(scanned.length + meta_len);
        }
        shard.insert(scanned.block_id, replica);
    }

    /// Checks that a request names the block pool this datanode serves.
    pub fn check_pool(&self, pool_id: &str) -> Result<(), StoreError> {
        let served = self.block_pool_id.get().ok_or(StoreError::NoBlockPool)?;
        if served != pool_id {
            return Err(StoreError::WrongBlockPool {
                requested: pool_id.to_string(),
                served: served.clone(),
            });
        }
        Ok(())
    }

    fn shard(&self, block_id: u64) -> MutexGuard<'_, HashMap<u64, Replica>> {
        self.shards[shard_index(block_id)].lock().expect("replica map shard")
    }

    fn lock_transitions(&self, block_id: u64) -> MutexGuard<'_, ()> {
        self.transition_locks[shard_index(block_id)].lock().expect("replica transition lock")
    }

    pub fn get(&self, block_id: u64) -> Option<Replica> {
        self.shard(block_id).get(&block_id).cloned()
    }

    fn require(&self, block_id: u64) -> Result<Replica, StoreError> {
        self.get(block_id).ok_or(StoreError::ReplicaNotFound { block_id })
    }

    pub fn replica_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().expect("replica map shard").len()).sum()
    }

    /// Replicas to report, per volume: finalized and RBW (temporaries are not reported).
    pub fn block_report(&self) -> Vec<Vec<ReportedReplica>> {
        let mut per_volume = vec![Vec::new(); self.volumes.len()];
        for shard in self.shards.iter() {
            for replica in shard.lock().expect("replica map shard").values() {
                if replica.state == ReplicaState::Temporary {
                    continue;
                }
                per_volume[replica.volume].push(ReportedReplica {
                    block_id: replica.block_id,
                    gen_stamp: replica.gen_stamp,
                    length: replica.visible_len(),
                    state: replica.state,
                });
            }
        }
        per_volume
    }

    fn dir_for(&self, volume: usize, state: ReplicaState, block_id: u64) -> Result<PathBuf, StoreError> {
        let dirs = self.volumes[volume].dirs()?;
        Ok(match state {
            ReplicaState::Finalized => dirs.finalized_dir(block_id),
            ReplicaState::Rbw => dirs.rbw.clone(),
            ReplicaState::Temporary => dirs.tmp.clone(),
        })
    }

    /// Paths of the block and meta files of `replica`.
    pub fn replica_paths(&self, replica: &Replica) -> Result<(PathBuf, PathBuf), StoreError> {
        let dir = self.dir_for(replica.volume, replica.state, replica.block_id)?;
        Ok((
            dir.join(block_file_name(replica.block_id)),
            dir.join(meta_file_name(replica.block_id, replica.gen_stamp)),
        ))
    }

    /// Round-robin over volumes with room for `size_hint` bytes.
    fn choose_volume(&self, size_hint: u64) -> Result<usize, StoreError> {
        let count = self.volumes.len();
        let start = self.next_volume.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            let index = (start + i) % count;
            if self.volumes[index].usage().remaining >= size_hint {
                return Ok(index);
            }
        }
        Err(StoreError::NoSpace { needed: size_hint })
    }

    fn new_writer_id(&self) -> u64 {
        self.next_writer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates a new replica to be written: RBW for a client's pipeline, temporary for
    /// a copy from another datanode. A temporary may replace an older or unfinished
    /// copy of the same block; anything else that exists is refused.
    pub fn create(
        &self,
        block_id: u64,
        gen_stamp: u64,
        checksum: DataChecksum,
        state: ReplicaState,
        size_hint: u64,
    ) -> Result<RbwWriter, StoreError> {
        assert!(state != ReplicaState::Finalized, "replicas are created unfinalized");
        let _transition = self.lock_transitions(block_id);
        if let Some(existing) = self.get(block_id) {
            let replaceable = state == ReplicaState::Temporary
                && (existing.state == ReplicaState::Temporary || existing.gen_stamp < gen_stamp);
            if !replaceable {
                return Err(StoreError::ReplicaExists {
                    block_id,
                    state: existing.state,
                    gen_stamp: existing.gen_stamp,
                });
            }
            self.remove_replica(&existing)?;
        }
        let volume = self.choose_volume(size_hint)?;
        let dir = self.dir_for(volume, state, block_id)?;
        let data_path = dir.join(block_file_name(block_id));
        let meta_path = dir.join(meta_file_name(block_id, gen_stamp));
        let data = create_file(&data_path)?;
        let mut meta = create_file(&meta_path)?;
        meta.write_all(&MetaHeader { checksum }.encode()).map_err(StoreError::io("write", &meta_path))?;
        let progress = Arc::new(WriteProgress::new(0));
        let writer = RbwWriter::new(
            block_id,
            gen_stamp,
            state,
            volume,
            (data_path, meta_path),
            (data, meta),
            checksum,
            Arc::clone(&progress),
            self.new_writer_id(),
        );
        self.shard(block_id)
            .insert(block_id, Replica::in_progress(block_id, gen_stamp, state, volume, progress));
        Ok(writer)
    }

    /// Reopens a finalized replica for append (PIPELINE_SETUP_APPEND): it moves to
    /// `rbw/` with genstamp `new_gen_stamp` (which may equal the old one: hdfs-native
    /// appends without bumping it).
    pub fn append(
        &self,
        block_id: u64,
        gen_stamp: u64,
        expected_len: u64,
        new_gen_stamp: u64,
    ) -> Result<RbwWriter, StoreError> {
        let _transition = self.lock_transitions(block_id);
        let replica = self.require(block_id)?;
        if replica.state != ReplicaState::Finalized {
            return Err(StoreError::WrongState { block_id, state: replica.state, expected: "FINALIZED" });
        }
        check_gen_stamp(&replica, gen_stamp, gen_stamp)?;
        check_gen_stamp(&replica, 0, new_gen_stamp)?;
        if replica.visible_len() != expected_len {
            return Err(StoreError::LengthMismatch {
                block_id,
                expected: expected_len,
                actual: replica.visible_len(),
            });
        }
        self.reopen_finalized(&replica, new_gen_stamp)
    }

    /// Moves a finalized replica to `rbw/` under a new genstamp and opens it.
    fn reopen_finalized(&self, replica: &Replica, new_gen_stamp: u64) -> Result<RbwWriter, StoreError> {
        let block_id = replica.block_id;
        let (data_from, meta_from) = self.replica_paths(replica)?;
        let rbw = self.dir_for(replica.volume, ReplicaState::Rbw, block_id)?;
        let data_to = rbw.join(block_file_name(block_id));
        let meta_to = rbw.join(meta_file_name(block_id, new_gen_stamp));
        std::fs::rename(&data_from, &data_to).map_err(StoreError::io("move", &data_from))?;
        if let Err(e) = std::fs::rename(&meta_from, &meta_to) {
            let _ = std::fs::rename(&data_to, &data_from);
            return Err(StoreError::Io { action: "move", path: meta_from, source: e });
        }
        let length = replica.visible_len();
        self.volumes[replica.volume].sub_used(length + self.meta_len_estimate(length));
        let progress = Arc::new(WriteProgress::new(length));
        let writer = self.open_writer(
            block_id,
            new_gen_stamp,
            ReplicaState::Rbw,
            replica.volume,
            (data_to, meta_to),
            Arc::clone(&progress),
        )?;
        let rbw = Replica::in_progress(block_id, new_gen_stamp, ReplicaState::Rbw, replica.volume, progress);
        self.shard(block_id).insert(block_id, rbw);
        Ok(writer)
    }

    fn open_writer(
        &self,
        block_id: u64,
        gen_stamp: u64,
        state: ReplicaState,
        volume: usize,
        paths: (PathBuf, PathBuf),
        progress: Arc<WriteProgress>,
    ) -> Result<RbwWriter, StoreError> {
        let open = |path: &Path| {
            OpenOptions::new().read(true).write(true).open(path).map_err(StoreError::io("open", path))
        };
        let data = open(&paths.0)?;
        let meta = open(&paths.1)?;
        let checksum = files::read_meta_header(&meta, &paths.1)?.checksum;
        Ok(RbwWriter::new(
            block_id,
            gen_stamp,
            state,
            volume,
            paths,
            (data, meta),
            checksum,
            progress,
            self.new_writer_id(),
        ))
    }

    fn meta_len_estimate(&self, length: u64) -> u64 {
        MetaHeader { checksum: DataChecksum::CRC32C_512 }.meta_file_len(length)
    }

    /// Renames the meta file of an unfinalized replica to a new genstamp and records it.
    fn bump_gen_stamp(&self, replica: &Replica, new_gen_stamp: u64) -> Result<Replica, StoreError> {
        if replica.gen_stamp == new_gen_stamp {
            return Ok(replica.clone());
        }
        let (_, meta_from) = self.replica_paths(replica)?;
        let meta_to = meta_from.with_file_name(meta_file_name(replica.block_id, new_gen_stamp));
        std::fs::rename(&meta_from, &meta_to).map_err(StoreError::io("rename", &meta_from))?;
        let mut bumped = replica.clone();
        bumped.gen_stamp = new_gen_stamp;
        self.shard(replica.block_id).insert(replica.block_id, bumped.clone());
        Ok(bumped)
    }

    /// Stops the replica's current writer, if any (pipeline recovery takes over).
    fn stop_writer(&self, replica: &Replica) -> Result<(), StoreError> {
        if let Some(progress) = &replica.progress {
            if !progress.stop_writer(WRITER_STOP_TIMEOUT) {
                return Err(StoreError::WriterBusy {
                    block_id: replica.block_id,
                    timeout_ms: WRITER_STOP_TIMEOUT.as_millis() as u64,
                });
            }
        }
        Ok(())
    }

    /// PIPELINE_SETUP_STREAMING_RECOVERY: takes over an RBW replica after a pipeline
    /// failure. The replica must have acked at least `min_bytes_rcvd` (what the client
    /// saw acked) and received at most `max_bytes_rcvd` (what it sent).
    pub fn recover_rbw(
        &self,
        block_id: u64,
        gen_stamp: u64,
        new_gen_stamp: u64,
        min_bytes_rcvd: u64,
        max_bytes_rcvd: u64,
    ) -> Result<RbwWriter, StoreError> {
        let _transition = self.lock_transitions(block_id);
        let replica = self.require(block_id)?;
        if replica.state != ReplicaState::Rbw {
            return Err(StoreError::WrongState { block_id, state: replica.state, expected: "RBW" });
        }
        check_gen_stamp(&replica, gen_stamp, new_gen_stamp.max(gen_stamp))?;
        self.stop_writer(&replica)?;
        let progress = Arc::clone(replica.progress.as_ref().expect("rbw replicas have progress"));
        let (bytes_acked, bytes_on_disk) = (progress.bytes_acked(), progress.bytes_on_disk());
        if bytes_acked < min_bytes_rcvd || bytes_on_disk > max_bytes_rcvd.max(bytes_acked) {
            return Err(StoreError::RecoveryRangeMismatch {
                block_id,
                bytes_acked,
                bytes_on_disk,
                min: min_bytes_rcvd,
                max: max_bytes_rcvd,
            });
        }
        let replica = self.bump_gen_stamp(&replica, new_gen_stamp.max(gen_stamp))?;
        let paths = self.replica_paths(&replica)?;
        let writer = self.open_writer(
            block_id,
            replica.gen_stamp,
            ReplicaState::Rbw,
            replica.volume,
            paths,
            progress,
        )?;
        // Data past the acked length was never verified by the whole pipeline (the node
        // that would have noticed corruption may be the one that failed): drop it, the
        // client resends it.
        if bytes_on_disk > bytes_acked {
            writer.truncate(bytes_acked)?;
        }
        Ok(writer)
    }

    /// Checks a replica for append/close recovery: genstamp in range, and (for an RBW
    /// one, whose writer is stopped) every received byte on disk and acknowledged.
    fn recovery_check(
        &self,
        replica: &Replica,
        gen_stamp: u64,
        new_gen_stamp: u64,
        expected_len: u64,
    ) -> Result<(), StoreError> {
        let block_id = replica.block_id;
        check_gen_stamp(replica, gen_stamp, new_gen_stamp.max(gen_stamp))?;
        match replica.state {
            ReplicaState::Finalized => {}
            ReplicaState::Rbw => {
                self.stop_writer(replica)?;
                let progress = replica.progress.as_ref().expect("rbw replicas have progress");
                if progress.bytes_on_disk() != progress.bytes_acked() {
                    return Err(StoreError::RecoveryRangeMismatch {
                        block_id,
                        bytes_acked: progress.bytes_acked(),
                        bytes_on_disk: progress.bytes_on_disk(),
                        min: expected_len,
                        max: expected_len,
                    });
                }
            }
            ReplicaState::Temporary => {
                return Err(StoreError::WrongState {
                    block_id,
                    state: replica.state,
                    expected: "FINALIZED or RBW",
                })
            }
        }
        if replica.bytes_on_disk() != expected_len {
            return Err(StoreError::LengthMismatch {
                block_id,
                expected: expected_len,
                actual: replica.bytes_on_disk(),
            });
        }
        Ok(())
    }

    /// PIPELINE_SETUP_APPEND_RECOVERY: a failed append's pipeline is rebuilt.
    pub fn recover_append(
        &self,
        block_id: u64,
        gen_stamp: u64,
        new_gen_stamp: u64,
        expected_len: u64,
    ) -> Result<RbwWriter, StoreError> {
        let _transition = self.lock_transitions(block_id);
        let replica = self.require(block_id)?;
        self.recovery_check(&replica, gen_stamp, new_gen_stamp, expected_len)?;
        let new_gen_stamp = new_gen_stamp.max(gen_stamp);
        if replica.state == ReplicaState::Finalized {
            return self.reopen_finalized(&replica, new_gen_stamp);
        }
        let replica = self.bump_gen_stamp(&replica, new_gen_stamp)?;
        let progress = Arc::clone(replica.progress.as_ref().expect("rbw replicas have progress"));
        let paths = self.replica_paths(&replica)?;
        self.open_writer(block_id, new_gen_stamp, ReplicaState::Rbw, replica.volume, paths, progress)
    }

    /// PIPELINE_CLOSE_RECOVERY: the pipeline failed while closing; the replica takes
    /// the new genstamp and is finalized.
    pub fn recover_close(
        &self,
        block_id: u64,
        gen_stamp: u64,
        new_gen_stamp: u64,
        expected_len: u64,
    ) -> Result<Replica, StoreError> {
        let new_gen_stamp = new_gen_stamp.max(gen_stamp);
        let writer = {
            let _transition = self.lock_transitions(block_id);
            let replica = self.require(block_id)?;
            self.recovery_check(&replica, gen_stamp, new_gen_stamp, expected_len)?;
            if replica.state == ReplicaState::Finalized {
                return self.rename_finalized(&replica, new_gen_stamp);
            }
            let replica = self.bump_gen_stamp(&replica, new_gen_stamp)?;
            let progress = Arc::clone(replica.progress.as_ref().expect("rbw replicas have progress"));
            let paths = self.replica_paths(&replica)?;
            self.open_writer(block_id, new_gen_stamp, ReplicaState::Rbw, replica.volume, paths, progress)?
        };
        self.finalize(writer)
    }

    /// Gives a finalized replica a new genstamp (its meta file's name).
    fn rename_finalized(&self, replica: &Replica, new_gen_stamp: u64) -> Result<Replica, StoreError> {
        if replica.gen_stamp == new_gen_stamp {
            return Ok(replica.clone());
        }
        let (_, meta_from) = self.replica_paths(replica)?;
        let meta_to = meta_from.with_file_name(meta_file_name(replica.block_id, new_gen_stamp));
        std::fs::rename(&meta_from, &meta_to).map_err(StoreError::io("rename", &meta_from))?;
        let bumped =
            Replica::finalized(replica.block_id, new_gen_stamp, replica.volume, replica.visible_len());
        self.shard(replica.block_id).insert(replica.block_id, bumped.clone());
        Ok(bumped)
    }

    /// initReplicaRecovery (lease recovery, asked of every datanode holding the block):
    /// stops the writer and says what the replica holds. `Ok(None)`: no such replica.
    /// A recovery with a higher id supersedes one in progress; a lower one is refused.
    pub fn init_replica_recovery(
        &self,
        block_id: u64,
        gen_stamp: u64,
        recovery_id: u64,
    ) -> Result<Option<RecoveryInfo>, StoreError> {
        let _transition = self.lock_transitions(block_id);
        let Some(replica) = self.get(block_id).filter(|r| r.state != ReplicaState::Temporary) else {
            return Ok(None);
        };
        check_gen_stamp(&replica, gen_stamp, recovery_id.saturating_sub(1))?;
        {
            let mut recoveries = self.recoveries.lock().expect("recoveries lock");
            if let Some(&current) = recoveries.get(&block_id) {
                if current >= recovery_id {
                    return Err(StoreError::RecoveryInProgress { block_id, current, requested: recovery_id });
                }
            }
            recoveries.insert(block_id, recovery_id);
        }
        self.stop_writer(&replica)?;
        Ok(Some(RecoveryInfo {
            block_id,
            gen_stamp: replica.gen_stamp,
            length: replica.bytes_on_disk(),
            state: replica.state,
        }))
    }

    /// updateReplicaUnderRecovery: the primary settled the length; the replica is cut to
    /// it (a finalized one too, for a truncate), takes the recovery id as its genstamp and
    /// is finalized.
    pub fn update_replica_under_recovery(
        &self,
        block_id: u64,
        recovery_id: u64,
        new_length: u64,
    ) -> Result<Replica, StoreError> {
        let writer = 'setup: {
            let _transition = self.lock_transitions(block_id);
            let in_progress = self.recoveries.lock().expect("recoveries lock").get(&block_id).copied();
            if in_progress != Some(recovery_id) {
                return Err(StoreError::NoRecovery { block_id, recovery_id });
            }
            let replica = self.require(block_id)?;
            match replica.state {
                ReplicaState::Finalized if replica.visible_len() == new_length => {
                    let renamed = self.rename_finalized(&replica, recovery_id)?;
                    self.recoveries.lock().expect("recoveries lock").remove(&block_id);
                    return Ok(renamed);
                }
                ReplicaState::Finalized if replica.visible_len() > new_length => {
                    // Truncate recovery: reopen, cut, finalize again under the recovery id.
                    let writer = self.reopen_finalized(&replica, recovery_id)?;
                    writer.truncate(new_length)?;
                    break 'setup writer;
                }
                ReplicaState::Finalized => {
                    return Err(StoreError::LengthMismatch {
                        block_id,
                        expected: new_length,
                        actual: replica.visible_len(),
                    });
                }
                ReplicaState::Temporary => {
                    return Err(StoreError::WrongState {
                        block_id,
                        state: replica.state,
                        expected: "FINALIZED or RBW",
                    })
                }
                ReplicaState::Rbw => {}
            }
            self.stop_writer(&replica)?;
            if new_length > replica.bytes_on_disk() {
                return Err(StoreError::LengthMismatch {
                    block_id,
                    expected: new_length,
                    actual: replica.bytes_on_disk(),
                });
            }
            let replica = self.bump_gen_stamp(&replica, recovery_id)?;
            let progress = Arc::clone(replica.progress.as_ref().expect("rbw replicas have progress"));
            let paths = self.replica_paths(&replica)?;
            let writer =
                self.open_writer(block_id, recovery_id, ReplicaState::Rbw, replica.volume, paths, progress)?;
            writer.truncate(new_length)?;
            writer
        };
        let finalized = self.finalize(writer);
        self.recoveries.lock().expect("recoveries lock").remove(&block_id);
        finalized
    }

    /// Moves a fully received replica to `finalized/` (fsyncing first with
    /// `dfs.datanode.synconclose`). Its length is what is on disk.
    pub fn finalize(&self, writer: RbwWriter) -> Result<Replica, StoreError> {
        let block_id = writer.block_id;
        let _transition = self.lock_transitions(block_id);
        let current = self.require(block_id)?;
        if !current.progress.as_ref().is_some_and(|p| Arc::ptr_eq(p, writer.progress())) {
            // A recovery replaced this writer's replica; the new writer owns it now.
            return Err(StoreError::WrongState {
                block_id,
                state: current.state,
                expected: "owned by this writer",
            });
        }
        if self.sync_on_close {
            writer.sync()?;
        }
        let length = writer.bytes_on_disk();
        let dir = self.dir_for(writer.volume, ReplicaState::Finalized, block_id)?;
        std::fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        let data_to = dir.join(block_file_name(block_id));
        let meta_to = dir.join(meta_file_name(block_id, writer.gen_stamp));
        std::fs::rename(&writer.data_path, &data_to).map_err(StoreError::io("move", &writer.data_path))?;
        if let Err(e) = std::fs::rename(&writer.meta_path, &meta_to) {
            let _ = std::fs::rename(&data_to, &writer.data_path);
            return Err(StoreError::Io { action: "move", path: writer.meta_path.clone(), source: e });
        }
        if self.sync_on_close {
            for d in [&dir, writer.data_path.parent().unwrap_or(&dir)] {
                File::open(d).and_then(|f| f.sync_all()).map_err(StoreError::io("fsync", d))?;
            }
        }
        let meta_len = MetaHeader { checksum: writer.checksum() }.meta_file_len(length);
        self.volumes[writer.volume].add_used(length + meta_len);
        let finalized = Replica::finalized(block_id, writer.gen_stamp, writer.volume, length);
        self.shard(block_id).insert(block_id, finalized.clone());
        Ok(finalized)
    }

    /// TRANSFER_RBW: a replica copied for a pipeline recovery joins `rbw/`, ready for
    /// the client's PIPELINE_SETUP_STREAMING_RECOVERY.
    pub fn convert_temporary_to_rbw(&self, writer: RbwWriter) -> Result<Replica, StoreError> {
        let block_id = writer.block_id;
        let _transition = self.lock_transitions(block_id);
        let rbw = self.dir_for(writer.volume, ReplicaState::Rbw, block_id)?;
        let data_to = rbw.join(block_file_name(block_id));
        let meta_to = rbw.join(meta_file_name(block_id, writer.gen_stamp));
        std::fs::rename(&writer.data_path, &data_to).map_err(StoreError::io("move", &writer.data_path))?;
        std::fs::rename(&writer.meta_path, &meta_to).map_err(StoreError::io("move", &writer.meta_path))?;
        let progress = Arc::clone(writer.progress());
        progress.reset(writer.bytes_on_disk());
        let replica =
            Replica::in_progress(block_id, writer.gen_stamp, ReplicaState::Rbw, writer.volume, progress);
        self.shard(block_id).insert(block_id, replica.clone());
        Ok(replica)
    }

    /// Drops an unfinished copy from another datanode (its files and its record).
    /// RBW replicas are kept: the namenode recovers or invalidates them.
    pub fn abandon(&self, writer: RbwWriter) {
        if writer.state != ReplicaState::Temporary {
            return;
        }
        let block_id = writer.block_id;
        let _transition = self.lock_transitions(block_id);
        let mut shard = self.shard(block_id);
        if shard
            .get(&block_id)
            .is_some_and(|r| r.progress.as_ref().is_some_and(|p| Arc::ptr_eq(p, writer.progress())))
        {
            shard.remove(&block_id);
            drop(shard);
            let _ = std::fs::remove_file(&writer.data_path);
            let _ = std::fs::remove_file(&writer.meta_path);
        }
    }

    /// Removes a replica's files and record (the caller holds the transition lock).
    fn remove_replica(&self, replica: &Replica) -> Result<(), StoreError> {
        self.stop_writer(replica)?;
        let (data, meta) = self.replica_paths(replica)?;
        self.shard(replica.block_id).remove(&replica.block_id);
        for path in [&data, &meta] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { action: "remove", path: path.clone(), source: e }),
            }
        }
        if replica.state == ReplicaState::Finalized {
            let length = replica.visible_len();
            self.volumes[replica.volume].sub_used(length + self.meta_len_estimate(length));
        }
        Ok(())
    }

    /// DNA_INVALIDATE: deletes the replica if it has exactly this genstamp. Returns the
    /// deleted replica (for the DELETED report).
    pub fn invalidate(&self, block_id: u64, gen_stamp: u64) -> Result<Replica, StoreError> {
        let _transition = self.lock_transitions(block_id);
        let replica = self.require(block_id)?;
        check_gen_stamp(&replica, gen_stamp, gen_stamp)?;
        self.remove_replica(&replica)?;
        Ok(replica)
    }

    /// Length a reader may see (ClientDatanodeProtocol.getReplicaVisibleLength).
    pub fn visible_length(&self, block_id: u64, gen_stamp: u64) -> Result<u64, StoreError> {
        let replica = self.require(block_id)?;
        check_gen_stamp(&replica, gen_stamp, u64::MAX)?;
        Ok(replica.visible_len())
    }

    /// Opens a replica for reading. Its genstamp must be at least `min_gen_stamp` (a
    /// reader with an older genstamp gets the newer data; one with a newer genstamp
    /// than ours is refused: our copy is stale).
    pub fn open_for_read(&self, block_id: u64, min_gen_stamp: u64) -> Result<ReplicaReader, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let replica = self.require(block_id)?;
            if replica.state == ReplicaState::Temporary {
                return Err(StoreError::WrongState {
                    block_id,
                    state: replica.state,
                    expected: "FINALIZED or RBW",
                });
            }
            check_gen_stamp(&replica, min_gen_stamp, u64::MAX)?;
            match self.open_reader(&replica) {
                Err(e) if e.is_not_found() && attempt < OPEN_ATTEMPTS_MAX => {
                    // Finalized or reopened for append under our feet: look it up again.
                    std::thread::yield_now();
                }
                other => return other,
            }
        }
    }

    fn open_reader(&self, replica: &Replica) -> Result<ReplicaReader, StoreError> {
        let (data_path, meta_path) = self.replica_paths(replica)?;
        let data = File::open(&data_path).map_err(StoreError::io("open", &data_path))?;
        let meta = File::open(&meta_path).map_err(StoreError::io("open", &meta_path))?;
        let checksum = files::read_meta_header(&meta, &meta_path)?.checksum;
        Ok(ReplicaReader {
            block_id: replica.block_id,
            gen_stamp: replica.gen_stamp,
            state: replica.state,
            data,
            meta,
            data_path,
            meta_path,
            checksum,
            visible_len: replica.visible_len(),
        })
    }
}

fn shard_index(block_id: u64) -> usize {
    // Block ids are sequential: the low bits spread them evenly.
    (block_id as usize) & (REPLICA_MAP_SHARDS - 1)
}

fn check_gen_stamp(replica: &Replica, min: u64, max: u64) -> Result<(), StoreError> {
    if replica.gen_stamp < min || replica.gen_stamp > max {
        return Err(StoreError::GenStampMismatch {
            block_id: replica.block_id,
            replica_gen_stamp: replica.gen_stamp,
            min,
            max,
        });
    }
    Ok(())
}

fn create_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(StoreError::io("create", path))
}

#[cfg(test)]
mod tests;
