//! The sending side of a DN-to-DN copy: DNA_TRANSFER (re-replication ordered by the
//! namenode) and TRANSFER_BLOCK (a client's pipeline recovery adding a datanode).
//!
//! The copy is a WRITE_BLOCK to the first target (the rest chained behind it) followed
//! by the replica's packets, exactly as a read sends them. Java's DataTransfer does
//! the same: stage PIPELINE_SETUP_CREATE with an empty client name for replication
//! (the receiver finalizes and reports), TRANSFER_RBW/TRANSFER_FINALIZED with the
//! client's name for a recovery (the receiver answers with a close-ack).

use ringfs_common::dtp::OpRequest;
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage as Stage;
use ringfs_common::proto::hdfs::{
    BaseHeaderProto, ChecksumProto, ClientOperationHeaderProto, DatanodeInfoProto, ExtendedBlockProto,
    OpWriteBlockProto, StorageTypeProto,
};

use super::read::ReadPlan;
use super::write::xfer_addr;
use super::OpError;
use crate::store::{BlockStore, ReplicaState};

/// Why a copy is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferKind {
    /// DNA_TRANSFER from the namenode: copy the whole finalized replica.
    Replication,
    /// TRANSFER_BLOCK from a client: copy the acknowledged bytes of its block.
    PipelineRecovery { client_name: String },
}

/// A planned copy.
#[derive(Debug)]
pub struct TransferPlan {
    /// `ip:xferPort` of the first target.
    pub target_addr: String,
    /// The WRITE_BLOCK op to send it.
    pub request: OpRequest,
    /// The packets to send.
    pub read: ReadPlan,
    /// Does the target answer with a close-ack after the last packet?
    pub expects_close_ack: bool,
}

/// Plans copying `block` (its `numBytes` is the length to copy) to `targets`.
pub fn plan_transfer(
    store: &BlockStore,
    block: &ExtendedBlockProto,
    targets: &[DatanodeInfoProto],
    target_storage_types: &[i32],
    target_storage_ids: &[String],
    kind: TransferKind,
) -> Result<TransferPlan, OpError> {
    let first = targets.first().ok_or_else(|| OpError::invalid("transfer without targets"))?;
    store.check_pool(&block.pool_id)?;
    let reader = store.open_for_read(block.block_id, block.generation_stamp)?;
    let length = match &kind {
        TransferKind::Replication => {
            if reader.state != ReplicaState::Finalized {
                return Err(OpError::invalid(format!("block {} is not finalized here", block.block_id)));
            }
            reader.visible_len
        }
        TransferKind::PipelineRecovery { .. } => block.num_bytes.unwrap_or(reader.visible_len),
    };
    let (stage, client_name) = match &kind {
        TransferKind::Replication => (Stage::PipelineSetupCreate, String::new()),
        TransferKind::PipelineRecovery { client_name } => {
            let stage = if reader.state == ReplicaState::Finalized {
                Stage::TransferFinalized
            } else {
                Stage::TransferRbw
            };
            (stage, client_name.clone())
        }
    };
    let checksum = reader.checksum;
    let gen_stamp = reader.gen_stamp;
    let read = ReadPlan::for_range(reader, 0, length, true)?;
    let request = OpWriteBlockProto {
        header: ClientOperationHeaderProto {
            base_header: BaseHeaderProto {
                block: ExtendedBlockProto {
                    pool_id: block.pool_id.clone(),
                    block_id: block.block_id,
                    generation_stamp: gen_stamp,
                    num_bytes: Some(length),
                },
                token: None,
                trace_info: None,
            },
            client_name,
        },
        targets: targets[1..].to_vec(),
        source: None,
        stage: stage as i32,
        pipeline_size: targets.len() as u32,
        min_bytes_rcvd: 0,
        max_bytes_rcvd: 0,
        latest_generation_stamp: 0,
        requested_checksum: ChecksumProto {
            r#type: checksum.kind.to_proto() as i32,
            bytes_per_checksum: checksum.bytes_per_checksum,
        },
        caching_strategy: None,
        storage_type: Some(target_storage_types.first().copied().unwrap_or(StorageTypeProto::Disk as i32)),
        target_storage_types: target_storage_types.iter().skip(1).copied().collect(),
        allow_lazy_persist: None,
        pinning: None,
        target_pinnings: Vec::new(),
        storage_id: target_storage_ids.first().cloned(),
        target_storage_ids: target_storage_ids.iter().skip(1).cloned().collect(),
    };
    Ok(TransferPlan {
        target_addr: xfer_addr(first),
        request: OpRequest::WriteBlock(request),
        read,
        expects_close_ack: stage != Stage::PipelineSetupCreate,
    })
}
