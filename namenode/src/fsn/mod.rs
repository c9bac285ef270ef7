//! The namesystem: namespace, block map, datanodes, leases, safe mode and redundancy
//! work, behind one lock (as Java's FSNamesystem). Every mutation is an [`EditOp`]:
//! decided here, applied by [`Namesystem::apply`], and queued on the journal in the same
//! critical section, so the log order is the apply order and a replay reproduces the
//! state exactly.

mod client;
mod datanode;
mod redundancy;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::warn;

pub use client::{AddBlockArgs, CreateArgs};
pub use datanode::{decode_block_list, ReportedReplica};
pub use status::ClientLocation;

use crate::blocks::{BlockMap, BlockRecord, BlockState, Replica, ReplicaState};
use crate::config::NameNodeConfig;
use crate::datanodes::DatanodeManager;
use crate::edits::{EditOp, EditRecord};
use crate::error::{ErrorKind, FsError, FsResult};
use crate::ids::{BlockId, InodeId};
use crate::journal::Journal;
use crate::name::Name;
use crate::namespace::{Body, Inode, Namespace, UnderConstruction};
use crate::permission::PERMISSION_MASK;

/// Wall-clock milliseconds since the epoch (HDFS times).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The identity of this namespace (current/VERSION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub cluster_id: String,
    pub namespace_id: u32,
    pub block_pool_id: String,
    pub c_time: u64,
    pub layout_version: i32,
}

/// One client's write leases.
#[derive(Debug)]
pub struct Lease {
    pub last_renewed: Instant,
    pub files: BTreeSet<InodeId>,
}

#[derive(Debug, Default)]
pub struct Leases {
    holders: HashMap<String, Lease>,
}

impl Leases {
    pub fn add(&mut self, holder: &str, file: InodeId, now: Instant) {
        let lease = self
            .holders
            .entry(holder.to_string())
            .or_insert_with(|| Lease { last_renewed: now, files: BTreeSet::new() });
        lease.last_renewed = now;
        lease.files.insert(file);
    }

    pub fn remove(&mut self, holder: &str, file: InodeId) {
        if let Some(lease) = self.holders.get_mut(holder) {
            lease.files.remove(&file);
            if lease.files.is_empty() {
                self.holders.remove(holder);
            }
        }
    }

    pub fn renew(&mut self, holder: &str, now: Instant) -> bool {
        match self.holders.get_mut(holder) {
            Some(lease) => {
                lease.last_renewed = now;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, holder: &str) -> Option<&Lease> {
        self.holders.get(holder)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Lease)> {
        self.holders.iter().map(|(h, l)| (h.as_str(), l))
    }

    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeModeState {
    Off,
    /// Startup: waiting for enough reported blocks.
    Startup,
    /// Thresholds met; leaving at the instant given.
    Extension(Instant),
    /// Entered by an administrator; only an administrator leaves it.
    Manual,
}

#[derive(Debug)]
pub struct SafeMode {
    pub state: SafeModeState,
    pub safe_blocks: u64,
    pub total_blocks: u64,
}

/// A block recovery in flight (lease recovery or truncate).
#[derive(Debug, Clone)]
pub struct Recovery {
    pub gen_stamp: u64,
    pub started: Instant,
    pub primary: Option<u32>,
}

/// Re-replications scheduled but not yet reported done.
#[derive(Debug, Clone)]
pub struct PendingReconstruction {
    pub targets: Vec<u32>,
    pub deadline: Instant,
}

#[derive(Debug, Default)]
pub struct Redundancy {
    /// Blocks that may be under-replicated (checked by the monitor).
    pub needed: BTreeSet<BlockId>,
    pub pending: HashMap<BlockId, PendingReconstruction>,
    pub pending_deletions: u64,
}

/// What applying an op released: blocks whose replicas must be deleted.
#[derive(Debug, Default)]
pub struct Applied {
    pub removed_blocks: Vec<(BlockRecord, Vec<Replica>)>,
}

pub struct Namesystem {
    pub config: Arc<NameNodeConfig>,
    pub info: NamespaceInfo,
    pub ns: Namespace,
    pub blocks: BlockMap,
    pub datanodes: DatanodeManager,
    pub leases: Leases,
    pub safemode: SafeMode,
    pub redundancy: Redundancy,
    pub recoveries: HashMap<BlockId, Recovery>,
    journal: Option<Arc<Journal>>,
    last_txid: u64,
    txid_at_checkpoint: u64,
    /// The superuser (the user running the namenode) and the root directory's group.
    pub superuser: String,
}

impl Namesystem {
    /// A namesystem over a loaded image; call [`Namesystem::replay`] for the edits, then
    /// [`Namesystem::attach_journal`].
    pub fn new(
        config: Arc<NameNodeConfig>,
        info: NamespaceInfo,
        mut ns: Namespace,
        blocks: BlockMap,
        last_txid: u64,
        superuser: String,
    ) -> Namesystem {
        ns.max_component_length = config.max_component_length;
        ns.max_directory_items = config.max_directory_items;
        let now = Instant::now();
        let mut leases = Leases::default();
        let open: Vec<(InodeId, String)> =
            ns.under_construction_files().map(|(id, uc)| (id, uc.client_name.clone())).collect();
        for (id, holder) in open {
            leases.add(&holder, id, now);
        }
        Namesystem {
            config,
            info,
            ns,
            blocks,
            datanodes: DatanodeManager::default(),
            leases,
            safemode: SafeMode { state: SafeModeState::Startup, safe_blocks: 0, total_blocks: 0 },
            redundancy: Redundancy::default(),
            recoveries: HashMap::new(),
            journal: None,
            last_txid,
            txid_at_checkpoint: last_txid,
            superuser,
        }
    }

    pub fn last_txid(&self) -> u64 {
        self.last_txid
    }

    pub fn txns_since_checkpoint(&self) -> u64 {
        self.last_txid - self.txid_at_checkpoint
    }

    pub fn mark_checkpointed(&mut self, txid: u64) {
        self.txid_at_checkpoint = self.txid_at_checkpoint.max(txid);
    }

    /// From now on every op is also queued on `journal`.
    pub fn attach_journal(&mut self, journal: Arc<Journal>) {
        self.journal = Some(journal);
    }

    /// Re-applies a logged transaction (startup). Transactions at or below the current
    /// txid are already in the image and skipped.
    pub fn replay(&mut self, record: &EditRecord) -> FsResult<()> {
        if record.txid <= self.last_txid {
            return Ok(());
        }
        if record.txid != self.last_txid + 1 {
            return Err(FsError::io(format!(
                "edit log gap: expected txid {}, found {}",
                self.last_txid + 1,
                record.txid
            )));
        }
        self.apply(&record.op, true).map_err(|e| {
            FsError::io(format!("replaying txid {} ({:?}) failed: {}", record.txid, record.op, e.message))
        })?;
        self.last_txid = record.txid;
        Ok(())
    }

    /// Applies a new op and queues it on the journal. Ops are validated by their callers;
    /// a failure here means nothing was applied and nothing logged.
    pub fn log(&mut self, op: EditOp) -> FsResult<Applied> {
        if let Some(journal) = &self.journal {
            if let Some(failure) = journal.failure() {
                return Err(FsError::io(format!("the namenode cannot write its edit log: {failure}")));
            }
        }
        let applied = self.apply(&op, false)?;
        self.last_txid += 1;
        if let Some(journal) = &self.journal {
            journal.append(self.last_txid, &op);
        }
        Ok(applied)
    }

    fn intern(&mut self, name: &str) -> FsResult<u16> {
        self.ns.strings.intern(name)
    }

    fn file_mut(&mut self, id: InodeId) -> FsResult<&mut Inode> {
        match self.ns.get_mut(id) {
            Some(inode) if inode.is_file() => Ok(inode),
            _ => Err(FsError::io(format!("inode {id} is not a file"))),
        }
    }

    fn touch_parent(&mut self, id: InodeId, mtime_ms: i64) {
        if let Some(inode) = self.ns.get_mut(id) {
            inode.mtime_ms = mtime_ms;
        }
    }

    /// Applies one op to the in-memory state. `replaying` completes committed blocks at
    /// once (no replicas are known yet during startup), as Java's edit loader does.
    pub fn apply(&mut self, op: &EditOp, replaying: bool) -> FsResult<Applied> {
        let mut applied = Applied::default();
        let now = Instant::now();
        match op {
            EditOp::Mkdir { id, parent, name, owner, group, perm, mtime_ms } => {
                let (owner, group) = (self.intern(owner)?, self.intern(group)?);
                let inode = Inode {
                    parent: *parent,
                    mtime_ms: *mtime_ms,
                    atime_ms: 0,
                    name: Name::new(name),
                    owner,
                    group,
                    perm: perm & PERMISSION_MASK,
                    replication: 0,
                    body: Body::Directory(Box::default()),
                };
                self.ns.insert(*id, inode)?;
                self.touch_parent(*parent, *mtime_ms);
            }
            EditOp::CreateFile {
                id,
                parent,
                name,
                owner,
                group,
                perm,
                mtime_ms,
                replication,
                blocksize,
                client_name,
                client_machine,
            } => {
                let (owner, group) = (self.intern(owner)?, self.intern(group)?);
                let inode = Inode {
                    parent: *parent,
                    mtime_ms: *mtime_ms,
                    atime_ms: *mtime_ms,
                    name: Name::new(name),
                    owner,
                    group,
                    perm: perm & PERMISSION_MASK,
                    replication: *replication,
                    body: Body::File { blocks: Box::new([]), blocksize: *blocksize },
                };
                self.ns.insert(*id, inode)?;
                self.ns.set_under_construction(
                    *id,
                    Some(UnderConstruction {
                        client_name: client_name.clone(),
                        client_machine: client_machine.clone(),
                        truncate_to: None,
                    }),
                );
                self.leases.add(client_name, *id, now);
                self.touch_parent(*parent, *mtime_ms);
            }
            EditOp::Delete { id, mtime_ms } => {
                let parent = self
                    .ns
                    .get(*id)
                    .map(|i| i.parent)
                    .ok_or_else(|| FsError::io(format!("no inode {id}")))?;
                let holders: Vec<(InodeId, String)> = self.open_files_under(*id);
                let removed = self.ns.remove_subtree(*id)?;
                for (file, holder) in holders {
                    self.leases.remove(&holder, file);
                }
                for block in removed.blocks {
                    self.redundancy.needed.remove(&block);
                    self.redundancy.pending.remove(&block);
                    self.recoveries.remove(&block);
                    if let Some((entry, replicas)) = self.blocks.remove(block) {
                        let record =
                            BlockRecord { id: block, gen_stamp: entry.gen_stamp, num_bytes: entry.num_bytes };
                        applied.removed_blocks.push((record, replicas));
                    }
                }
                self.touch_parent(parent, *mtime_ms);
            }
            EditOp::Rename { id, new_parent, new_name, mtime_ms } => {
                let old_parent = self
                    .ns
                    .get(*id)
                    .map(|i| i.parent)
                    .ok_or_else(|| FsError::io(format!("no inode {id}")))?;
                self.ns.move_inode(*id, *new_parent, new_name)?;
                self.touch_parent(old_parent, *mtime_ms);
                self.touch_parent(*new_parent, *mtime_ms);
            }
            EditOp::SetPermission { id, perm } => {
                let inode = self.ns.get_mut(*id).ok_or_else(|| FsError::io(format!("no inode {id}")))?;
                inode.perm = perm & PERMISSION_MASK;
            }
            EditOp::SetOwner { id, owner, group } => {
                let owner = owner.as_deref().map(|o| self.intern(o)).transpose()?;
                let group = group.as_deref().map(|g| self.intern(g)).transpose()?;
                let inode = self.ns.get_mut(*id).ok_or_else(|| FsError::io(format!("no inode {id}")))?;
                if let Some(owner) = owner {
                    inode.owner = owner;
                }
                if let Some(group) = group {
                    inode.group = group;
                }
            }
            EditOp::SetTimes { id, mtime_ms, atime_ms } => {
                let inode = self.ns.get_mut(*id).ok_or_else(|| FsError::io(format!("no inode {id}")))?;
                if let Some(mtime) = mtime_ms {
                    inode.mtime_ms = *mtime;
                }
                if let Some(atime) = atime_ms {
                    inode.atime_ms = *atime;
                }
            }
            EditOp::SetReplication { id, replication } => {
                let inode = self.file_mut(*id)?;
                inode.replication = *replication;
                let blocks = inode.blocks().to_vec();
                self.redundancy.needed.extend(blocks);
            }
            EditOp::AddBlock { file, block, previous_num_bytes } => {
                let inode = self.file_mut(*file)?;
                let mut ids = inode.blocks().to_vec();
                if let (Some(length), Some(last)) = (previous_num_bytes, ids.last().copied()) {
                    let entry =
                        self.blocks.get_mut(last).ok_or_else(|| FsError::io(format!("no block {last}")))?;
                    entry.num_bytes = *length;
                    if entry.state != BlockState::Complete {
                        entry.state = if replaying { BlockState::Complete } else { BlockState::Committed };
                    }
                    self.blocks.set_expected_locations(last, Vec::new());
                }
                if !self.blocks.insert(*block, *file, BlockState::UnderConstruction) {
                    return Err(FsError::io(format!("block {} already exists", block.id)));
                }
                ids.push(block.id);
                self.file_mut(*file)?.set_blocks(ids);
                if let (false, Some(last)) = (replaying, previous_num_bytes.and(self.previous_block(*file))) {
                    self.try_complete_block(last);
                }
            }
            EditOp::UpdateBlocks { file, blocks, mtime_ms } => {
                let open = self.ns.under_construction(*file).is_some();
                applied.removed_blocks = self.set_file_blocks(*file, blocks, open)?;
                if let Some(mtime) = mtime_ms {
                    self.file_mut(*file)?.mtime_ms = *mtime;
                }
            }
            EditOp::CloseFile { file, mtime_ms, blocks } => {
                applied.removed_blocks = self.set_file_blocks(*file, blocks, false)?;
                for record in blocks {
                    if let Some(entry) = self.blocks.get_mut(record.id) {
                        entry.state = BlockState::Complete;
                    }
                    self.blocks.set_expected_locations(record.id, Vec::new());
                    self.recoveries.remove(&record.id);
                    self.redundancy.needed.insert(record.id);
                }
                if let Some(uc) = self.ns.under_construction(*file).cloned() {
                    self.leases.remove(&uc.client_name, *file);
                }
                self.ns.set_under_construction(*file, None);
                self.file_mut(*file)?.mtime_ms = *mtime_ms;
            }
            EditOp::Reopen { file, client_name, client_machine, last_block_open } => {
                let last = self.file_mut(*file)?.blocks().last().copied();
                self.ns.set_under_construction(
                    *file,
                    Some(UnderConstruction {
                        client_name: client_name.clone(),
                        client_machine: client_machine.clone(),
                        truncate_to: None,
                    }),
                );
                self.leases.add(client_name, *file, now);
                if let (true, Some(last)) = (*last_block_open, last) {
                    let replicas: Vec<Replica> = self
                        .blocks
                        .replicas(last)
                        .into_iter()
                        .filter(|r| r.state != ReplicaState::Corrupt)
                        .collect();
                    // The replicas are being written again: completing the block waits
                    // for them to be finalized anew.
                    for replica in &replicas {
                        self.blocks
                            .set_replica(last, Replica { state: ReplicaState::BeingWritten, ..*replica });
                    }
                    if let Some(entry) = self.blocks.get_mut(last) {
                        entry.state = BlockState::UnderConstruction;
                    }
                    self.blocks.set_expected_locations(last, replicas);
                }
            }
            EditOp::ReassignLease { file, client_name } => {
                let uc = self.ns.under_construction(*file).cloned().ok_or_else(|| {
                    FsError::io(format!("inode {file} is not under construction; cannot reassign its lease"))
                })?;
                self.leases.remove(&uc.client_name, *file);
                self.leases.add(client_name, *file, now);
                self.ns.set_under_construction(
                    *file,
                    Some(UnderConstruction { client_name: client_name.clone(), ..uc }),
                );
            }
            EditOp::SetGenStamp { gen_stamp } => self.blocks.note_gen_stamp(*gen_stamp),
            EditOp::Truncate { file, blocks, last_block_length, client_name, client_machine, mtime_ms } => {
                let last = blocks
                    .last()
                    .ok_or_else(|| FsError::io(format!("truncate of inode {file} keeps no block")))?;
                applied.removed_blocks = self.set_file_blocks(*file, blocks, true)?;
                if let Some(entry) = self.blocks.get_mut(last.id) {
                    entry.state = BlockState::UnderConstruction;
                }
                self.ns.set_under_construction(
                    *file,
                    Some(UnderConstruction {
                        client_name: client_name.clone(),
                        client_machine: client_machine.clone(),
                        truncate_to: Some(*last_block_length),
                    }),
                );
                self.leases.add(client_name, *file, now);
                self.file_mut(*file)?.mtime_ms = *mtime_ms;
            }
            EditOp::Concat { target, sources, mtime_ms } => {
                let mut ids = self.file_mut(*target)?.blocks().to_vec();
                for source in sources {
                    let source_blocks = self.file_mut(*source)?.blocks().to_vec();
                    for block in &source_blocks {
                        if let Some(entry) = self.blocks.get_mut(*block) {
                            entry.file = *target;
                        }
                    }
                    ids.extend(source_blocks);
                    // The blocks now belong to the target: empty the source before removing it.
                    self.file_mut(*source)?.set_blocks(Vec::new());
                    self.ns.remove_subtree(*source)?;
                }
                let inode = self.file_mut(*target)?;
                inode.set_blocks(ids.clone());
                inode.mtime_ms = *mtime_ms;
                let parent = inode.parent;
                self.touch_parent(parent, *mtime_ms);
                self.redundancy.needed.extend(ids);
            }
        }
        Ok(applied)
    }

    /// Open files (id, lease holder) in the subtree of `id`.
    fn open_files_under(&self, id: InodeId) -> Vec<(InodeId, String)> {
        self.ns
            .under_construction_files()
            .filter(|(file, _)| self.ns.is_ancestor(id, *file))
            .map(|(file, uc)| (file, uc.client_name.clone()))
            .collect()
    }

    fn previous_block(&self, file: InodeId) -> Option<BlockId> {
        let blocks = self.ns.get(file)?.blocks();
        (blocks.len() >= 2).then(|| blocks[blocks.len() - 2])
    }

    /// Replaces a file's block list: dropped blocks leave the block map (returned for
    /// deletion on datanodes), kept ones take the new stamp and length, new ones are added.
    fn set_file_blocks(
        &mut self,
        file: InodeId,
        records: &[BlockRecord],
        open: bool,
    ) -> FsResult<Vec<(BlockRecord, Vec<Replica>)>> {
        let old: Vec<BlockId> = self.file_mut(file)?.blocks().to_vec();
        let new_ids: Vec<BlockId> = records.iter().map(|r| r.id).collect();
        let mut removed = Vec::new();
        for id in old.iter().filter(|id| !new_ids.contains(id)) {
            self.redundancy.needed.remove(id);
            self.redundancy.pending.remove(id);
            self.recoveries.remove(id);
            if let Some((entry, replicas)) = self.blocks.remove(*id) {
                removed.push((
                    BlockRecord { id: *id, gen_stamp: entry.gen_stamp, num_bytes: entry.num_bytes },
                    replicas,
                ));
            }
        }
        let last = records.len().saturating_sub(1);
        for (i, record) in records.iter().enumerate() {
            match self.blocks.get_mut(record.id) {
                Some(entry) => {
                    if entry.file != file {
                        return Err(FsError::io(format!(
                            "block {} belongs to inode {}",
                            record.id, entry.file
                        )));
                    }
                    entry.gen_stamp = record.gen_stamp;
                    entry.num_bytes = record.num_bytes;
                    self.blocks.note_gen_stamp(record.gen_stamp);
                }
                None => {
                    let state =
                        if open && i == last { BlockState::UnderConstruction } else { BlockState::Complete };
                    if !self.blocks.insert(*record, file, state) {
                        return Err(FsError::io(format!("block {} already exists", record.id)));
                    }
                }
            }
        }
        self.file_mut(file)?.set_blocks(new_ids);
        Ok(removed)
    }

    // ------------------------------------------------------------ block helpers

    /// Finalized, non-corrupt replicas on live datanodes.
    pub fn good_replicas(&self, id: BlockId) -> Vec<Replica> {
        self.blocks
            .replicas(id)
            .into_iter()
            .filter(|r| r.state == ReplicaState::Finalized && self.datanodes.is_live(r.node))
            .collect()
    }

    /// Committed -> Complete once enough finalized replicas are known.
    pub fn try_complete_block(&mut self, id: BlockId) -> bool {
        let Some(entry) = self.blocks.get(id) else { return false };
        match entry.state {
            BlockState::Complete => true,
            BlockState::Committed
                if self.good_replicas(id).len() >= usize::from(self.config.replication_min) =>
            {
                if let Some(entry) = self.blocks.get_mut(id) {
                    entry.state = BlockState::Complete;
                }
                self.blocks.set_expected_locations(id, Vec::new());
                self.redundancy.needed.insert(id);
                true
            }
            _ => false,
        }
    }

    /// Records the blocks removed by an op for deletion on their datanodes.
    pub fn invalidate_removed(&mut self, applied: Applied) {
        for (record, replicas) in applied.removed_blocks {
            for replica in replicas {
                self.schedule_invalidate(record, replica.node);
            }
            for replica in self.blocks.expected_locations(record.id).to_vec() {
                self.schedule_invalidate(record, replica.node);
            }
        }
    }

    pub fn schedule_invalidate(&mut self, record: BlockRecord, node: u32) {
        if let Some(dn) = self.datanodes.get_mut(node) {
            if dn.registered {
                dn.commands.invalidates.push(ringfs_common::proto::hdfs::BlockProto {
                    block_id: record.id.0,
                    gen_stamp: record.gen_stamp,
                    num_bytes: Some(record.num_bytes),
                });
                self.redundancy.pending_deletions += 1;
            }
        }
    }

    // --------------------------------------------------------------- safe mode

    pub fn in_safemode(&self) -> bool {
        self.safemode.state != SafeModeState::Off
    }

    /// SafeModeException for a mutation attempted in safe mode.
    pub fn check_safemode(&self, action: &str) -> FsResult<()> {
        if !self.in_safemode() {
            return Ok(());
        }
        Err(FsError::new(
            ErrorKind::SafeMode,
            format!("{action}. Name node is in safe mode.\n{}", self.safemode_tip()),
        ))
    }

    pub fn safemode_tip(&self) -> String {
        let sm = &self.safemode;
        match sm.state {
            SafeModeState::Off => "Safe mode is OFF.".to_string(),
            SafeModeState::Manual => {
                "It was turned on manually. Use \"hdfs dfsadmin -safemode leave\" to turn safe mode off."
                    .to_string()
            }
            SafeModeState::Startup | SafeModeState::Extension(_) => {
                let threshold = self.safemode_threshold_blocks();
                let mut tip = if sm.safe_blocks < threshold {
                    format!(
                        "The reported blocks {} needs additional {} blocks to reach the threshold {:.4} of total blocks {}.",
                        sm.safe_blocks,
                        threshold - sm.safe_blocks,
                        self.config.safemode_threshold_pct,
                        sm.total_blocks
                    )
                } else {
                    format!(
                        "The reported blocks {} has reached the threshold {:.4} of total blocks {}.",
                        sm.safe_blocks, self.config.safemode_threshold_pct, sm.total_blocks
                    )
                };
                let live = self.datanodes.live_count() as u64;
                if self.config.safemode_min_datanodes == 0 {
                    tip.push_str(" The minimum number of live datanodes is not required.");
                } else {
                    tip.push_str(&format!(
                        " The number of live datanodes {live} has {} the minimum number {}.",
                        if live >= self.config.safemode_min_datanodes { "reached" } else { "not reached" },
                        self.config.safemode_min_datanodes
                    ));
                }
                match sm.state {
                    SafeModeState::Extension(until) => tip.push_str(&format!(
                        " In safe mode extension. Safe mode will be turned off automatically in {} seconds.",
                        until.saturating_duration_since(Instant::now()).as_secs()
                    )),
                    _ => tip.push_str(
                        " Safe mode will be turned off automatically once the thresholds have been reached.",
                    ),
                }
                tip
            }
        }
    }

    fn safemode_threshold_blocks(&self) -> u64 {
        let pct = self.config.safemode_threshold_pct;
        if pct <= 0.0 {
            return 0;
        }
        ((self.safemode.total_blocks as f64) * pct).ceil() as u64
    }

    /// Recounts complete blocks with a reported replica, and moves the startup safe mode
    /// along (threshold reached -> extension -> off).
    pub fn update_safemode(&mut self, now: Instant) {
        if !matches!(self.safemode.state, SafeModeState::Startup | SafeModeState::Extension(_)) {
            return;
        }
        let mut total = 0u64;
        let mut safe = 0u64;
        for (id, entry) in self.blocks.iter() {
            if entry.state != BlockState::Complete {
                continue;
            }
            total += 1;
            let reported = self
                .blocks
                .replicas(id)
                .iter()
                .any(|r| r.state == ReplicaState::Finalized && self.datanodes.is_live(r.node));
            if reported {
                safe += 1;
            }
        }
        self.safemode.total_blocks = total;
        self.safemode.safe_blocks = safe;
        let datanodes_ok = self.datanodes.live_count() as u64 >= self.config.safemode_min_datanodes;
        let met = safe >= self.safemode_threshold_blocks() && datanodes_ok;
        match self.safemode.state {
            SafeModeState::Startup if met => {
                if total == 0 || self.config.safemode_extension.is_zero() {
                    self.leave_safemode("the thresholds were reached");
                } else {
                    self.safemode.state = SafeModeState::Extension(now + self.config.safemode_extension);
                }
            }
            SafeModeState::Extension(_) if !met => self.safemode.state = SafeModeState::Startup,
            SafeModeState::Extension(until) if now >= until => self.leave_safemode("the extension elapsed"),
            _ => {}
        }
    }

    pub fn leave_safemode(&mut self, why: &str) {
        if self.safemode.state != SafeModeState::Off {
            tracing::info!(
                reason = why,
                safe_blocks = self.safemode.safe_blocks,
                total_blocks = self.safemode.total_blocks,
                "leaving safe mode"
            );
        }
        self.safemode.state = SafeModeState::Off;
        // Everything may need attention now that the monitor runs.
        let ids = self.blocks.ids();
        self.redundancy.needed.extend(ids);
    }

    pub fn enter_safemode(&mut self) {
        if self.safemode.state != SafeModeState::Manual {
            warn!("safe mode entered by an administrator");
        }
        self.safemode.state = SafeModeState::Manual;
    }
}
