//! DatanodeProtocol: registration, heartbeats (which carry commands back), full and
//! incremental block reports, bad-block and error reports, and the end of a block
//! recovery (commitBlockSynchronization).

use std::net::IpAddr;
use std::time::Instant;

use ringfs_common::proto::hdfs::datanode::{
    block_command_proto::Action, datanode_command_proto::Type as CommandType,
    received_deleted_block_info_proto::BlockStatus, BlockCommandProto, BlockReceivedAndDeletedRequestProto,
    BlockRecoveryCommandProto, BlockReportRequestProto, BlockReportResponseProto,
    CommitBlockSynchronizationRequestProto, DatanodeCommandProto, DatanodeRegistrationProto,
    ErrorReportRequestProto, HeartbeatRequestProto, HeartbeatResponseProto, NnhaStatusHeartbeatProto,
    RegisterCommandProto,
};
use ringfs_common::proto::hdfs::{
    BlockProto, DatanodeInfosProto, NamespaceInfoProto, StorageInfoProto, StorageTypesProto,
    StorageUuidsProto,
};
use tracing::{info, warn};

use super::{now_ms, Namesystem};
use crate::blocks::{BlockRecord, BlockState, Replica, ReplicaState};
use crate::edits::EditOp;
use crate::error::{ErrorKind, FsError, FsResult};
use crate::ids::BlockId;

/// Replica states in the long-array block report encoding (ReplicaStateProto).
const REPORTED_FINALIZED: u64 = 0;
/// Marks the end of the finalized triples.
const REPORT_DELIMITER: u64 = u64::MAX;
/// ErrorReport code after which the datanode is gone (DatanodeProtocol.FATAL_DISK_ERROR).
const FATAL_DISK_ERROR: u32 = 3;

/// One replica as a datanode reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedReplica {
    pub id: BlockId,
    pub num_bytes: u64,
    pub gen_stamp: u64,
    /// ReplicaStateProto: 0 finalized, 1 RBW, 2 RWR, 3 RUR, 4 temporary.
    pub state: u64,
}

/// Decodes Hadoop's legacy long-array block list:
/// `[finalized count, under-construction count, (id, length, stamp) x finalized,
///  -1, -1, -1, (id, length, stamp, state) x under construction]`.
/// Counts are checked against the array's length before anything is allocated.
pub fn decode_block_list(longs: &[u64]) -> Result<Vec<ReportedReplica>, String> {
    if longs.is_empty() {
        return Ok(Vec::new());
    }
    if longs.len() < 2 {
        return Err("block list shorter than its two counts".into());
    }
    let (finalized, building) = (longs[0], longs[1]);
    let finalized_words = finalized.checked_mul(3).ok_or("finalized count overflows")?;
    let building_words = building.checked_mul(4).ok_or("under-construction count overflows")?;
    let with_delimiter = 2u64.checked_add(finalized_words).and_then(|n| n.checked_add(3 + building_words));
    let without_delimiter = 2 + finalized_words;
    let length = longs.len() as u64;
    let delimited = if Some(length) == with_delimiter {
        true
    } else if building == 0 && length == without_delimiter {
        false
    } else {
        return Err(format!(
            "block list of {length} longs does not hold {finalized} finalized and {building} under-construction replicas"
        ));
    };
    let mut replicas = Vec::with_capacity((finalized + building) as usize);
    let finalized_end = 2 + finalized_words as usize;
    for triple in longs[2..finalized_end].chunks_exact(3) {
        replicas.push(ReportedReplica {
            id: BlockId(triple[0]),
            num_bytes: triple[1],
            gen_stamp: triple[2],
            state: REPORTED_FINALIZED,
        });
    }
    if delimited {
        if longs[finalized_end..finalized_end + 3] != [REPORT_DELIMITER; 3] {
            return Err("missing the -1,-1,-1 delimiter after the finalized replicas".into());
        }
        for quad in longs[finalized_end + 3..].chunks_exact(4) {
            replicas.push(ReportedReplica {
                id: BlockId(quad[0]),
                num_bytes: quad[1],
                gen_stamp: quad[2],
                state: quad[3],
            });
        }
    }
    Ok(replicas)
}

fn unregistered(uuid: &str) -> FsError {
    FsError::new(ErrorKind::UnregisteredNode, format!("Unregistered DatanodeID: {uuid}; re-register first"))
}

impl Namesystem {
    pub fn namespace_info(&self) -> NamespaceInfoProto {
        NamespaceInfoProto {
            build_version: format!("ringfs-{}", env!("CARGO_PKG_VERSION")),
            unused: 0,
            block_pool_id: self.info.block_pool_id.clone(),
            storage_info: self.storage_info(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: Some(0),
            state: Some(0),
        }
    }

    fn storage_info(&self) -> StorageInfoProto {
        StorageInfoProto {
            layout_version: self.info.layout_version as u32,
            namespce_id: self.info.namespace_id,
            cluster_id: self.info.cluster_id.clone(),
            c_time: self.info.c_time,
        }
    }

    /// Registers (or re-registers) a datanode. Its ipAddr becomes the address the RPC
    /// came from, as Java's namenode does; clients will dial that address.
    pub fn register_datanode(
        &mut self,
        mut registration: DatanodeRegistrationProto,
        peer: IpAddr,
        rack: String,
    ) -> FsResult<DatanodeRegistrationProto> {
        let theirs = &registration.storage_info;
        if theirs.namespce_id != 0 && theirs.namespce_id != self.info.namespace_id {
            return Err(FsError::new(
                ErrorKind::IncorrectVersion,
                format!(
                    "Incompatible namespaceIDs: namenode namespaceID = {}; datanode namespaceID = {}",
                    self.info.namespace_id, theirs.namespce_id
                ),
            ));
        }
        if !theirs.cluster_id.is_empty() && theirs.cluster_id != self.info.cluster_id {
            return Err(FsError::new(
                ErrorKind::IncorrectVersion,
                format!(
                    "Incompatible clusterIDs: namenode clusterID = {}; datanode clusterID = {}",
                    self.info.cluster_id, theirs.cluster_id
                ),
            ));
        }
        let id = &mut registration.datanode_id;
        id.ip_addr = peer.to_string();
        if id.host_name.is_empty() {
            id.host_name = id.ip_addr.clone();
        }
        if id.datanode_uuid.is_empty() {
            id.datanode_uuid = uuid::Uuid::new_v4().to_string();
        }
        let registered = self.datanodes.register(registration.clone(), rack, Instant::now(), now_ms() as u64);
        let node = self.datanodes.node(registered.index);
        info!(datanode = %node.xfer_addr(), uuid = %node.uuid(), rack = %node.rack, "datanode registered");
        if registered.was_known {
            self.drop_replicas_of(registered.index);
        }
        if let Some(old) = registered.replaced {
            self.drop_replicas_of(old);
        }
        Ok(registration)
    }

    pub fn heartbeat(&mut self, request: &HeartbeatRequestProto) -> HeartbeatResponseProto {
        let ha_status = NnhaStatusHeartbeatProto { state: 0, txid: self.last_txid() };
        let uuid = &request.registration.datanode_id.datanode_uuid;
        let Some(index) = self.datanodes.registered(uuid) else {
            return HeartbeatResponseProto {
                cmds: vec![DatanodeCommandProto {
                    cmd_type: CommandType::RegisterCommand as i32,
                    register_cmd: Some(RegisterCommandProto {}),
                    ..Default::default()
                }],
                ha_status,
                full_block_report_lease_id: None,
            };
        };
        let in_safemode = self.in_safemode();
        let invalidate_limit = self.config.invalidate_limit;
        let block_pool_id = self.info.block_pool_id.clone();
        let node = self.datanodes.node_mut(index);
        node.last_heartbeat = Instant::now();
        node.last_heartbeat_ms = now_ms() as u64;
        node.xceiver_count = request.xceiver_count.unwrap_or(0);
        node.xmits_in_progress = request.xmits_in_progress.unwrap_or(0);
        node.cache_capacity = request.cache_capacity.unwrap_or(0);
        node.cache_used = request.cache_used.unwrap_or(0);
        node.update_storages(&request.reports);
        let mut cmds = Vec::new();
        if !node.commands.recoveries.is_empty() {
            cmds.push(DatanodeCommandProto {
                cmd_type: CommandType::BlockRecoveryCommand as i32,
                recovery_cmd: Some(BlockRecoveryCommandProto {
                    blocks: std::mem::take(&mut node.commands.recoveries),
                }),
                ..Default::default()
            });
        }
        let mut transfers = Vec::new();
        let mut invalidates = Vec::new();
        if !in_safemode {
            transfers = std::mem::take(&mut node.commands.transfers);
            let count = node.commands.invalidates.len().min(invalidate_limit);
            invalidates = node.commands.invalidates.drain(..count).collect();
        }
        if !invalidates.is_empty() {
            self.redundancy.pending_deletions =
                self.redundancy.pending_deletions.saturating_sub(invalidates.len() as u64);
            cmds.push(DatanodeCommandProto {
                cmd_type: CommandType::BlockCommand as i32,
                blk_cmd: Some(BlockCommandProto {
                    action: Action::Invalidate as i32,
                    block_pool_id: block_pool_id.clone(),
                    blocks: invalidates,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if !transfers.is_empty() {
            let mut command =
                BlockCommandProto { action: Action::Transfer as i32, block_pool_id, ..Default::default() };
            for transfer in transfers {
                let live: Vec<(u32, u8)> =
                    transfer.targets.iter().copied().filter(|(n, _)| self.datanodes.is_live(*n)).collect();
                if live.is_empty() {
                    continue;
                }
                command.blocks.push(transfer.block);
                command.targets.push(DatanodeInfosProto {
                    datanodes: live.iter().map(|(n, _)| self.datanode_info(*n)).collect(),
                });
                command.target_storage_uuids.push(StorageUuidsProto {
                    storage_uuids: live
                        .iter()
                        .map(|(n, s)| self.datanodes.node(*n).storage_uuid(*s).to_string())
                        .collect(),
                });
                command.target_storage_types.push(StorageTypesProto {
                    storage_types: live
                        .iter()
                        .map(|(n, s)| self.datanodes.node(*n).storage_type(*s))
                        .collect(),
                });
            }
            if !command.blocks.is_empty() {
                cmds.push(DatanodeCommandProto {
                    cmd_type: CommandType::BlockCommand as i32,
                    blk_cmd: Some(command),
                    ..Default::default()
                });
            }
        }
        let lease_id =
            request.request_full_block_report_lease.unwrap_or(false).then(|| now_ms().max(1) as u64);
        HeartbeatResponseProto { cmds, ha_status, full_block_report_lease_id: lease_id }
    }

    /// Forgets every replica a node held (dead, re-registered or replaced).
    pub fn drop_replicas_of(&mut self, node: u32) {
        let ids = self.blocks.ids();
        let mut dropped = 0u64;
        for id in ids {
            if self.blocks.remove_replica(id, node).is_some() {
                dropped += 1;
                self.redundancy.needed.insert(id);
            }
        }
        if dropped > 0 {
            info!(node, dropped, "forgot the replicas of a datanode");
        }
    }

    pub fn block_report(&mut self, request: &BlockReportRequestProto) -> FsResult<BlockReportResponseProto> {
        let uuid = &request.registration.datanode_id.datanode_uuid;
        let index = self.datanodes.registered(uuid).ok_or_else(|| unregistered(uuid))?;
        if request.block_pool_id != self.info.block_pool_id {
            return Err(FsError::io(format!(
                "block report for block pool {} but this namenode serves {}",
                request.block_pool_id, self.info.block_pool_id
            )));
        }
        let mut reported_total = 0usize;
        for report in &request.reports {
            if !report.blocks_buffers.is_empty() {
                return Err(FsError::unsupported(
                    "block reports in the blocksBuffers encoding are not supported; send the long-array `blocks` field",
                ));
            }
            let storage_uuid = report.storage.storage_uuid.clone();
            let storage_type = report.storage.storage_type.unwrap_or(1);
            let Some(storage) = self.datanodes.node_mut(index).storage_index(&storage_uuid, storage_type)
            else {
                continue;
            };
            let replicas = decode_block_list(&report.blocks)
                .map_err(|e| FsError::io(format!("bad block report: {e}")))?;
            reported_total += replicas.len();
            self.process_storage_report(index, storage, &replicas);
        }
        let node = self.datanodes.node_mut(index);
        node.last_block_report_ms = now_ms() as u64;
        info!(datanode = %node.xfer_addr(), replicas = reported_total, "processed a full block report");
        self.update_safemode(Instant::now());
        Ok(BlockReportResponseProto { cmd: None })
    }

    fn process_storage_report(&mut self, node: u32, storage: u8, replicas: &[ReportedReplica]) {
        let mut reported = std::collections::HashSet::with_capacity(replicas.len());
        for replica in replicas {
            reported.insert(replica.id);
            let block = BlockProto {
                block_id: replica.id.0,
                gen_stamp: replica.gen_stamp,
                num_bytes: Some(replica.num_bytes),
            };
            if replica.state == REPORTED_FINALIZED {
                self.replica_finalized(node, storage, &block);
            } else {
                self.replica_being_written(node, storage, &block);
            }
        }
        // Replicas we thought this storage had but it no longer reports are gone.
        let stale: Vec<BlockId> = self
            .blocks
            .iter()
            .filter(|(id, _)| !reported.contains(id))
            .map(|(id, _)| id)
            .filter(|id| self.blocks.replica_on(*id, node).is_some_and(|r| r.storage == storage))
            .collect();
        for id in stale {
            self.blocks.remove_replica(id, node);
            self.redundancy.needed.insert(id);
        }
    }

    /// A replica being written (RBW) was reported.
    fn replica_being_written(&mut self, node: u32, storage: u8, block: &BlockProto) {
        let id = BlockId(block.block_id);
        let Some(entry) = self.blocks.get(id) else {
            self.schedule_invalidate(
                BlockRecord { id, gen_stamp: block.gen_stamp, num_bytes: block.num_bytes.unwrap_or(0) },
                node,
            );
            return;
        };
        let state = if entry.state == BlockState::Complete || block.gen_stamp < entry.gen_stamp {
            // A stale or leftover copy: never served.
            ReplicaState::Corrupt
        } else {
            ReplicaState::BeingWritten
        };
        self.blocks.set_replica(id, Replica { node, storage, state });
        if state == ReplicaState::Corrupt {
            self.redundancy.needed.insert(id);
        }
    }

    /// A finalized replica was reported (block report or RECEIVED).
    fn replica_finalized(&mut self, node: u32, storage: u8, block: &BlockProto) {
        let id = BlockId(block.block_id);
        let length = block.num_bytes.unwrap_or(0);
        let Some(entry) = self.blocks.get(id) else {
            self.schedule_invalidate(BlockRecord { id, gen_stamp: block.gen_stamp, num_bytes: length }, node);
            return;
        };
        let good = match entry.state {
            BlockState::Complete | BlockState::Committed => {
                block.gen_stamp == entry.gen_stamp && length == entry.num_bytes
            }
            BlockState::UnderConstruction | BlockState::UnderRecovery => block.gen_stamp >= entry.gen_stamp,
        };
        let state = if good { ReplicaState::Finalized } else { ReplicaState::Corrupt };
        if !good {
            warn!(block = %id, datanode = %self.datanodes.node(node).xfer_addr(), reported_gen_stamp = block.gen_stamp,
                reported_length = length, gen_stamp = entry.gen_stamp, length = entry.num_bytes,
                "reported replica does not match the block; marking it corrupt");
        }
        self.blocks.set_replica(id, Replica { node, storage, state });
        if let Some(pending) = self.redundancy.pending.get_mut(&id) {
            pending.targets.retain(|t| *t != node);
            if pending.targets.is_empty() {
                self.redundancy.pending.remove(&id);
            }
        }
        self.try_complete_block(id);
        self.redundancy.needed.insert(id);
    }

    pub fn block_received_and_deleted(
        &mut self,
        request: &BlockReceivedAndDeletedRequestProto,
    ) -> FsResult<()> {
        let uuid = &request.registration.datanode_id.datanode_uuid;
        let index = self.datanodes.registered(uuid).ok_or_else(|| unregistered(uuid))?;
        for storage_report in &request.blocks {
            let (storage_uuid, storage_type) = match &storage_report.storage {
                Some(s) => (s.storage_uuid.clone(), s.storage_type.unwrap_or(1)),
                #[allow(deprecated)] // the deprecated field is the only one older senders fill
                None => (storage_report.storage_uuid.clone(), 1),
            };
            let Some(storage) = self.datanodes.node_mut(index).storage_index(&storage_uuid, storage_type)
            else {
                continue;
            };
            for info in &storage_report.blocks {
                match BlockStatus::try_from(info.status) {
                    Ok(BlockStatus::Receiving) => self.replica_being_written(index, storage, &info.block),
                    Ok(BlockStatus::Received) => self.replica_finalized(index, storage, &info.block),
                    Ok(BlockStatus::Deleted) => {
                        let id = BlockId(info.block.block_id);
                        if self.blocks.remove_replica(id, index).is_some() {
                            self.redundancy.needed.insert(id);
                        }
                    }
                    Err(_) => {
                        return Err(FsError::io(format!(
                            "unknown block status {} in an incremental report",
                            info.status
                        )))
                    }
                }
            }
        }
        if self.in_safemode() {
            self.update_safemode(Instant::now());
        }
        Ok(())
    }

    pub fn error_report(&mut self, request: &ErrorReportRequestProto) {
        let uuid = &request.registartion.datanode_id.datanode_uuid;
        warn!(datanode = %uuid, code = request.error_code, message = %request.msg, "datanode error report");
        if request.error_code == FATAL_DISK_ERROR {
            if let Some(index) = self.datanodes.registered(uuid) {
                self.datanodes.node_mut(index).registered = false;
                self.drop_replicas_of(index);
            }
        }
    }

    /// The primary datanode of a block recovery reports the outcome.
    pub fn commit_block_synchronization(
        &mut self,
        request: &CommitBlockSynchronizationRequestProto,
    ) -> FsResult<()> {
        self.check_safemode("Cannot commitBlockSynchronization while in safe mode")?;
        let id = BlockId(request.block.block_id);
        let Some(entry) = self.blocks.get(id) else {
            if request.delete_block {
                return Ok(());
            }
            return Err(FsError::io(format!(
                "Block (=blk_{}_{}) not found",
                id.0, request.block.generation_stamp
            )));
        };
        let file = entry.file;
        let last = self.ns.inode(file).blocks().last().copied();
        let open = self.ns.under_construction(file).is_some();
        let last_complete =
            last.and_then(|b| self.blocks.get(b)).is_some_and(|e| e.state == BlockState::Complete);
        if (!open || entry.state == BlockState::Complete) && last_complete {
            return Ok(());
        }
        let recovery_id = self.recoveries.get(&id).map(|r| r.gen_stamp);
        if recovery_id != Some(request.new_gen_stamp) {
            return Err(FsError::io(format!(
                "The recovery id {} does not match current recovery id {} for block blk_{}_{}",
                request.new_gen_stamp,
                recovery_id.map(|r| r.to_string()).unwrap_or_else(|| "(none)".into()),
                id.0,
                request.block.generation_stamp
            )));
        }
        if let Some(expected) = self.ns.under_construction(file).and_then(|uc| uc.truncate_to) {
            if !request.delete_block && request.new_length != expected {
                warn!(block = %id, expected, reported = request.new_length,
                    "the recovery of a truncated block settled on another length; the datanodes' length wins");
            }
        }
        let mut records: Vec<BlockRecord> =
            self.ns.inode(file).blocks().iter().filter_map(|b| self.blocks.record(*b)).collect();
        if request.delete_block {
            records.retain(|r| r.id != id);
        } else if let Some(record) = records.iter_mut().find(|r| r.id == id) {
            record.gen_stamp = request.new_gen_stamp;
            record.num_bytes = request.new_length;
        }
        self.recoveries.remove(&id);
        let mtime_ms = now_ms();
        let applied = if request.close_file {
            self.log(EditOp::CloseFile { file, mtime_ms, blocks: records })?
        } else {
            self.log(EditOp::UpdateBlocks { file, blocks: records, mtime_ms: None })?
        };
        self.invalidate_removed(applied);
        if !request.delete_block {
            for (i, target) in request.new_taragets.iter().enumerate() {
                let Some(node) = self.datanodes.find(target) else { continue };
                let storage = request
                    .new_target_storages
                    .get(i)
                    .and_then(|s| self.datanodes.node(node).storages.iter().position(|x| &x.uuid == s))
                    .map(|s| s as u8)
                    .unwrap_or_else(|| self.datanodes.node(node).preferred_storage());
                let state =
                    if request.close_file { ReplicaState::Finalized } else { ReplicaState::BeingWritten };
                self.blocks.set_replica(id, Replica { node, storage, state });
            }
            self.redundancy.needed.insert(id);
        }
        info!(block = %id, file = %self.ns.path_of(file), length = request.new_length,
            closed = request.close_file, "block recovery committed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_decode_and_reject() {
        let longs = [2, 1, 10, 100, 1001, 11, 200, 1002, u64::MAX, u64::MAX, u64::MAX, 12, 5, 1003, 1];
        let replicas = decode_block_list(&longs).unwrap();
        assert_eq!(replicas.len(), 3);
        assert_eq!(
            replicas[1],
            ReportedReplica { id: BlockId(11), num_bytes: 200, gen_stamp: 1002, state: 0 }
        );
        assert_eq!(replicas[2].state, 1);
        assert_eq!(decode_block_list(&[1, 0, 10, 100, 1001]).unwrap().len(), 1);
        assert_eq!(decode_block_list(&[]).unwrap().len(), 0);
        assert!(decode_block_list(&[5, 0, 1, 2, 3]).is_err());
        assert!(decode_block_list(&[u64::MAX, u64::MAX]).is_err());
        assert!(decode_block_list(&[0, 1, 0, 0, 0, 1, 2, 3, 4]).is_err(), "bad delimiter");
    }
}
