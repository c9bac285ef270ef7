//! Background work of the namesystem, run by the monitor task: dead datanodes, safe
//! mode, re-replication (DNA_TRANSFER), excess and corrupt replica deletion
//! (DNA_INVALIDATE), and lease recovery (hard limit, recoverLease, DNA_RECOVERBLOCK).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ringfs_common::proto::hdfs::datanode::RecoveringBlockProto;
use ringfs_common::proto::hdfs::BlockProto;
use tracing::{info, warn};

use super::client::NAMENODE_LEASE_HOLDER;
use super::{Namesystem, PendingReconstruction, Recovery};
use crate::blocks::{BlockRecord, BlockState, ReplicaState};
use crate::datanodes::Transfer;
use crate::edits::EditOp;
use crate::error::{ErrorKind, FsError, FsResult};
use crate::ids::{BlockId, InodeId};
use crate::placement::{choose_targets, PlacementRequest};

/// Blocks examined per redundancy pass, so one pass (under the namesystem lock) stays
/// short even when every block is queued, as after leaving safe mode; the rest wait for
/// the next pass.
const REDUNDANCY_CHECKS_PER_PASS_MAX: usize = 50_000;

/// Block health counts for getFsStats and the block stats RPCs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockHealth {
    pub under_replicated: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub missing_replication_one: u64,
}

impl Namesystem {
    /// One pass of the monitor. `redundancy_due` is set every
    /// dfs.namenode.redundancy.interval.seconds.
    pub fn tick(&mut self, now: Instant, redundancy_due: bool) {
        for dead in self.datanodes.expire(now, self.config.heartbeat_expiry()) {
            self.drop_replicas_of(dead);
        }
        self.update_safemode(now);
        let expired: Vec<BlockId> =
            self.redundancy.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            warn!(block = %id, "re-replication timed out; will retry");
            self.redundancy.pending.remove(&id);
            self.redundancy.needed.insert(id);
        }
        if redundancy_due && !self.in_safemode() {
            self.compute_redundancy_work(now);
        }
        if !self.in_safemode() {
            self.check_lease_hard_limits(now);
        }
    }

    fn expected_replication(&self, id: BlockId) -> usize {
        let file = self.blocks.get(id).map(|e| e.file);
        file.and_then(|f| self.ns.get(f)).map(|i| usize::from(i.replication)).unwrap_or(0)
    }

    /// Schedules re-replication of under-replicated blocks, deletion of excess and
    /// corrupt replicas, for the blocks flagged since the last pass.
    pub fn compute_redundancy_work(&mut self, now: Instant) {
        let mut candidates = Vec::new();
        while candidates.len() < REDUNDANCY_CHECKS_PER_PASS_MAX {
            match self.redundancy.needed.pop_first() {
                Some(id) => candidates.push(id),
                None => break,
            }
        }
        let mut streams: HashMap<u32, usize> = HashMap::new();
        let max_streams = self.config.replication_max_streams;
        for id in candidates {
            let Some(entry) = self.blocks.get(id) else { continue };
            if entry.state != BlockState::Complete {
                continue;
            }
            let record = BlockRecord { id, gen_stamp: entry.gen_stamp, num_bytes: entry.num_bytes };
            let expected = self.expected_replication(id);
            let replicas = self.blocks.replicas(id);
            let live: Vec<_> = replicas.iter().filter(|r| self.datanodes.is_live(r.node)).copied().collect();
            let good: Vec<u32> =
                live.iter().filter(|r| r.state == ReplicaState::Finalized).map(|r| r.node).collect();
            let corrupt: Vec<u32> =
                live.iter().filter(|r| r.state == ReplicaState::Corrupt).map(|r| r.node).collect();
            let pending = self.redundancy.pending.get(&id).map(|p| p.targets.len()).unwrap_or(0);
            if good.len() > expected {
                self.delete_excess(record, &good, expected);
            }
            if !corrupt.is_empty() && good.len() >= expected {
                for node in corrupt.iter().copied() {
                    info!(block = %id, node, "deleting a corrupt replica");
                    self.blocks.remove_replica(id, node);
                    self.schedule_invalidate(record, node);
                }
            }
            if good.len() + pending >= expected {
                continue;
            }
            if good.is_empty() {
                // Missing: nothing to copy from. It stays on the list for reporting.
                self.redundancy.needed.insert(id);
                continue;
            }
            if pending > 0 {
                continue;
            }
            let Some(source) = good
                .iter()
                .copied()
                .filter(|n| streams.get(n).copied().unwrap_or(0) < max_streams)
                .min_by_key(|n| streams.get(n).copied().unwrap_or(0))
            else {
                self.redundancy.needed.insert(id);
                continue;
            };
            let request = PlacementRequest {
                wanted: expected - good.len(),
                writer: None,
                chosen: good.clone(),
                excluded: corrupt.iter().copied().collect::<HashSet<u32>>(),
                favored: Vec::new(),
                blocksize: record.num_bytes,
            };
            let targets = choose_targets(&self.datanodes, &request, &mut rand::rng());
            if targets.is_empty() {
                self.redundancy.needed.insert(id);
                continue;
            }
            *streams.entry(source).or_default() += 1;
            info!(block = %id, source = %self.datanodes.node(source).xfer_addr(), targets = targets.len(),
                have = good.len(), want = expected, "scheduling re-replication");
            let with_storage: Vec<(u32, u8)> =
                targets.iter().map(|t| (*t, self.datanodes.node(*t).preferred_storage())).collect();
            self.datanodes.node_mut(source).commands.transfers.push(Transfer {
                block: BlockProto {
                    block_id: id.0,
                    gen_stamp: record.gen_stamp,
                    num_bytes: Some(record.num_bytes),
                },
                targets: with_storage,
            });
            self.redundancy.pending.insert(
                id,
                PendingReconstruction { targets, deadline: now + self.config.reconstruction_pending_timeout },
            );
        }
    }

    /// Drops replicas beyond the wanted count: from the rack holding the most copies,
    /// the node with the least free space (as chooseExcessRedundancies).
    fn delete_excess(&mut self, record: BlockRecord, good: &[u32], expected: usize) {
        let mut holders: Vec<u32> = good.to_vec();
        while holders.len() > expected {
            let mut per_rack: HashMap<&str, usize> = HashMap::new();
            for h in &holders {
                *per_rack.entry(self.datanodes.node(*h).rack.as_str()).or_default() += 1;
            }
            let crowded: Vec<u32> = holders
                .iter()
                .copied()
                .filter(|h| per_rack[self.datanodes.node(*h).rack.as_str()] > 1)
                .collect();
            let pool = if crowded.is_empty() { holders.clone() } else { crowded };
            let Some(victim) = pool.iter().copied().min_by_key(|h| self.datanodes.node(*h).remaining())
            else {
                break;
            };
            info!(block = %record.id, node = %self.datanodes.node(victim).xfer_addr(), "deleting an excess replica");
            holders.retain(|h| *h != victim);
            self.blocks.remove_replica(record.id, victim);
            self.schedule_invalidate(record, victim);
        }
    }

    /// Block health for reports (a full scan; only admin and `-df` calls need it).
    pub fn block_health(&self) -> BlockHealth {
        let mut health = BlockHealth::default();
        for (id, entry) in self.blocks.iter() {
            if entry.state != BlockState::Complete {
                continue;
            }
            let expected = self.expected_replication(id);
            let mut good = 0usize;
            let mut corrupt = 0usize;
            for replica in self.blocks.replicas(id) {
                if !self.datanodes.is_live(replica.node) {
                    continue;
                }
                match replica.state {
                    ReplicaState::Finalized => good += 1,
                    ReplicaState::Corrupt => corrupt += 1,
                    ReplicaState::BeingWritten => {}
                }
            }
            if good == 0 {
                if corrupt > 0 {
                    health.corrupt += 1;
                }
                health.missing += 1;
                if expected == 1 {
                    health.missing_replication_one += 1;
                }
            } else if good < expected {
                health.under_replicated += 1;
            }
        }
        health
    }

    fn check_lease_hard_limits(&mut self, now: Instant) {
        let hard_limit = self.config.lease_hard_limit;
        let expired: Vec<(String, Vec<InodeId>)> = self
            .leases
            .iter()
            .filter(|(_, lease)| now.saturating_duration_since(lease.last_renewed) > hard_limit)
            .map(|(holder, lease)| (holder.to_string(), lease.files.iter().copied().collect()))
            .collect();
        for (holder, files) in expired {
            for file in files {
                info!(holder = %holder, file = %self.ns.path_of(file), "lease hard limit expired; recovering");
                if let Err(e) = self.internal_release_lease(file, None) {
                    warn!(file = %self.ns.path_of(file), error = %e, "lease recovery could not start");
                }
            }
            // A holder whose files could not be released is renewed so it is retried
            // after another hard limit rather than on every pass.
            self.leases.renew(&holder, now);
        }
    }

    /// FSNamesystem.internalReleaseLease: closes the file if its blocks allow it, else
    /// starts recovery of its last block. Returns whether the file is now closed.
    /// `new_holder` takes the lease (recoverLease's caller); else the namenode does.
    pub fn internal_release_lease(&mut self, file: InodeId, new_holder: Option<&str>) -> FsResult<bool> {
        let src = self.ns.path_of(file);
        let blocks = self.ns.inode(file).blocks().to_vec();
        let complete =
            |s: &Self, b: &BlockId| s.blocks.get(*b).is_some_and(|e| e.state == BlockState::Complete);
        if blocks.iter().all(|b| complete(self, b)) {
            self.close_open_file(file)?;
            info!(file = %src, "lease released: all blocks complete, file closed");
            return Ok(true);
        }
        let last = *blocks.last().expect("an incomplete block exists");
        let mut earlier_ready = true;
        for b in &blocks[..blocks.len() - 1] {
            if !complete(self, b) && !self.try_complete_block(*b) {
                earlier_ready = false;
            }
        }
        if !earlier_ready {
            return Err(FsError::io(format!(
                "Failed to release lease for file {src}. Committed blocks are waiting to be minimally replicated. Try again later."
            )));
        }
        let state = self.blocks.get(last).map(|e| e.state).expect("last block in the map");
        match state {
            BlockState::Complete => unreachable!("handled above"),
            BlockState::Committed => {
                if self.try_complete_block(last) {
                    self.close_open_file(file)?;
                    return Ok(true);
                }
                Err(FsError::new(
                    ErrorKind::AlreadyBeingCreated,
                    format!(
                        "DIR* NameSystem.internalReleaseLease: Failed to release lease for file {src}. Committed blocks are waiting to be minimally replicated."
                    ),
                ))
            }
            BlockState::UnderConstruction | BlockState::UnderRecovery => {
                if self.blocks.expected_locations(last).is_empty() {
                    let known: Vec<_> = self
                        .blocks
                        .replicas(last)
                        .into_iter()
                        .filter(|r| r.state != ReplicaState::Corrupt)
                        .collect();
                    self.blocks.set_expected_locations(last, known);
                }
                let locations: Vec<(u32, u8)> = self
                    .blocks
                    .expected_locations(last)
                    .iter()
                    .filter(|r| self.datanodes.is_live(r.node))
                    .map(|r| (r.node, r.storage))
                    .collect();
                if locations.is_empty() && self.block_length(last) == 0 {
                    // The writer died before any datanode had the block: drop it and close.
                    let records: Vec<BlockRecord> =
                        blocks[..blocks.len() - 1].iter().filter_map(|b| self.blocks.record(*b)).collect();
                    let applied =
                        self.log(EditOp::CloseFile { file, mtime_ms: super::now_ms(), blocks: records })?;
                    self.invalidate_removed(applied);
                    info!(file = %src, "lease released: removed the empty last block and closed the file");
                    return Ok(true);
                }
                let retry_after = self.config.lease_soft_limit;
                let in_flight = self.recoveries.get(&last).is_some_and(|r| r.started.elapsed() < retry_after);
                if !in_flight {
                    self.start_block_recovery(last, &locations, &src)?;
                }
                let holder = new_holder.unwrap_or(NAMENODE_LEASE_HOLDER).to_string();
                let current = self.ns.under_construction(file).map(|uc| uc.client_name.clone());
                if current.as_deref() != Some(holder.as_str()) {
                    self.log(EditOp::ReassignLease { file, client_name: holder.clone() })?;
                }
                if new_holder.is_none() {
                    self.leases.renew(&holder, Instant::now());
                }
                Ok(false)
            }
        }
    }

    fn close_open_file(&mut self, file: InodeId) -> FsResult<()> {
        let blocks: Vec<BlockRecord> =
            self.ns.inode(file).blocks().iter().filter_map(|b| self.blocks.record(*b)).collect();
        self.log(EditOp::CloseFile { file, mtime_ms: super::now_ms(), blocks })?;
        Ok(())
    }

    /// Picks a primary among the replicas, bumps the stamp (the recovery id) and queues
    /// a BlockRecoveryCommand for the primary's next heartbeat.
    pub(super) fn start_block_recovery(
        &mut self,
        block: BlockId,
        locations: &[(u32, u8)],
        src: &str,
    ) -> FsResult<()> {
        let Some(primary) =
            locations.iter().map(|(n, _)| *n).max_by_key(|n| self.datanodes.node(*n).last_heartbeat)
        else {
            warn!(file = %src, block = %block, "block recovery: no live replica is known; waiting for reports");
            return Ok(());
        };
        let gen_stamp = self.blocks.allocate_gen_stamp();
        self.log(EditOp::SetGenStamp { gen_stamp })?;
        if let Some(entry) = self.blocks.get_mut(block) {
            entry.state = BlockState::UnderRecovery;
        }
        let located = self.located_block(self.extended_block(block), 0, locations, false);
        // A truncate in progress asks the datanodes to cut the block (in place: same id).
        let file = self.blocks.get(block).map(|e| e.file);
        let truncate_to = file.and_then(|f| self.ns.under_construction(f)).and_then(|uc| uc.truncate_to);
        let truncate_block =
            truncate_to.map(|length| BlockProto { block_id: block.0, gen_stamp, num_bytes: Some(length) });
        self.datanodes.node_mut(primary).commands.recoveries.push(RecoveringBlockProto {
            new_gen_stamp: gen_stamp,
            block: located,
            truncate_block,
        });
        self.recoveries
            .insert(block, Recovery { gen_stamp, started: Instant::now(), primary: Some(primary) });
        warn!(file = %src, block = %block, recovery_id = gen_stamp,
            primary = %self.datanodes.node(primary).xfer_addr(), "lease recovery in progress");
        Ok(())
    }
}
