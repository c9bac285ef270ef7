//! Building the DatanodeProtocol messages from the store's state (no I/O).

use ringfs_common::proto::hdfs::datanode::{
    received_deleted_block_info_proto::BlockStatus, ReceivedDeletedBlockInfoProto, StorageBlockReportProto,
    StorageReceivedDeletedBlocksProto,
};
use ringfs_common::proto::hdfs::{
    datanode_storage_proto::StorageState, BlockProto, DatanodeStorageProto, StorageReportProto,
    StorageTypeProto,
};

use crate::events::{ReplicaEvent, ReplicaEventKind};
use crate::store::{ReplicaState, ReportedReplica, Volume};

/// Separates finalized from under-construction replicas in the long array.
const DELIMITER: u64 = u64::MAX; // -1 as a Java long

pub fn storage_proto(volume: &Volume) -> DatanodeStorageProto {
    DatanodeStorageProto {
        storage_uuid: volume.storage_id.clone(),
        state: Some(StorageState::Normal as i32),
        storage_type: Some(StorageTypeProto::Disk as i32),
    }
}

/// Hadoop's long-array block list: `[numFinalized, numUnderConstruction,
/// (id, len, gs) x finalized, -1, -1, -1, (id, len, gs, state) x under construction]`.
pub fn encode_block_list(replicas: &[ReportedReplica]) -> Vec<u64> {
    let finalized: Vec<_> = replicas.iter().filter(|r| r.state == ReplicaState::Finalized).collect();
    let building: Vec<_> = replicas.iter().filter(|r| r.state != ReplicaState::Finalized).collect();
    let mut longs = Vec::with_capacity(2 + 3 * finalized.len() + 3 + 4 * building.len());
    longs.push(finalized.len() as u64);
    longs.push(building.len() as u64);
    for r in &finalized {
        longs.extend([r.block_id, r.length, r.gen_stamp]);
    }
    longs.extend([DELIMITER; 3]);
    for r in &building {
        longs.extend([r.block_id, r.length, r.gen_stamp, r.state.to_proto() as u64]);
    }
    longs
}

/// One StorageBlockReportProto per volume.
pub fn block_reports(
    volumes: &[Volume],
    per_volume: &[Vec<ReportedReplica>],
) -> Vec<StorageBlockReportProto> {
    volumes
        .iter()
        .zip(per_volume)
        .map(|(volume, replicas)| StorageBlockReportProto {
            storage: storage_proto(volume),
            blocks: encode_block_list(replicas),
            number_of_blocks: Some(replicas.len() as u64),
            blocks_buffers: Vec::new(),
        })
        .collect()
}

/// Heartbeat storage reports, from statvfs and our own accounting.
#[allow(deprecated)] // storageUuid is deprecated in Hadoop's proto but still `required`.
pub fn storage_reports(volumes: &[Volume]) -> Vec<StorageReportProto> {
    volumes
        .iter()
        .map(|volume| {
            let usage = volume.usage();
            StorageReportProto {
                storage_uuid: volume.storage_id.clone(),
                failed: Some(false),
                capacity: Some(usage.capacity),
                dfs_used: Some(usage.dfs_used),
                remaining: Some(usage.remaining),
                block_pool_used: Some(usage.dfs_used),
                storage: Some(storage_proto(volume)),
                non_dfs_used: Some(usage.non_dfs_used),
                mount: None,
            }
        })
        .collect()
}

/// Groups replica events by storage for blockReceivedAndDeleted, in event order.
#[allow(deprecated)] // storageUuid is deprecated in Hadoop's proto but still `required`.
pub fn received_deleted(
    volumes: &[Volume],
    events: &[ReplicaEvent],
) -> Vec<StorageReceivedDeletedBlocksProto> {
    let mut per_volume: Vec<Vec<ReceivedDeletedBlockInfoProto>> = vec![Vec::new(); volumes.len()];
    for event in events {
        let status = match event.kind {
            ReplicaEventKind::Receiving => BlockStatus::Receiving,
            ReplicaEventKind::Received => BlockStatus::Received,
            ReplicaEventKind::Deleted => BlockStatus::Deleted,
        };
        if let Some(list) = per_volume.get_mut(event.volume) {
            list.push(ReceivedDeletedBlockInfoProto {
                block: BlockProto {
                    block_id: event.block_id,
                    gen_stamp: event.gen_stamp,
                    num_bytes: Some(event.length),
                },
                delete_hint: None,
                status: status as i32,
            });
        }
    }
    volumes
        .iter()
        .zip(per_volume)
        .filter(|(_, blocks)| !blocks.is_empty())
        .map(|(volume, blocks)| StorageReceivedDeletedBlocksProto {
            storage_uuid: volume.storage_id.clone(),
            blocks,
            storage: Some(storage_proto(volume)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_array_follows_hadoops_layout() {
        let replicas = [
            ReportedReplica { block_id: 1, gen_stamp: 1001, length: 10, state: ReplicaState::Finalized },
            ReportedReplica { block_id: 2, gen_stamp: 1002, length: 20, state: ReplicaState::Rbw },
            ReportedReplica { block_id: 3, gen_stamp: 1003, length: 30, state: ReplicaState::Finalized },
        ];
        let minus_one = u64::MAX;
        assert_eq!(
            encode_block_list(&replicas),
            vec![2, 1, 1, 10, 1001, 3, 30, 1003, minus_one, minus_one, minus_one, 2, 20, 1002, 1]
        );
        assert_eq!(encode_block_list(&[]), vec![0, 0, minus_one, minus_one, minus_one]);
    }
}
