//! Lease recovery: the namenode names a primary datanode for a block whose writer went
//! away (BlockRecoveryCommand); the primary asks every replica holder what it has
//! (InterDatanodeProtocol.initReplicaRecovery), settles the length the way Java's
//! BlockRecoveryWorker does, has every participant cut its replica to that length and
//! finalize it under the recovery id (updateReplicaUnderRecovery), and reports the
//! outcome (commitBlockSynchronization).
//!
//! InterDatanodeProtocol is spoken only between datanodes, on the IPC port; its
//! messages (InterDatanodeProtocol.proto in Hadoop) are defined here.

use std::sync::Arc;

use ringfs_common::ipc::RemoteError;
use ringfs_common::proto::hdfs::datanode::{
    CommitBlockSynchronizationRequestProto, CommitBlockSynchronizationResponseProto, RecoveringBlockProto,
};
use ringfs_common::proto::hdfs::{BlockProto, DatanodeInfoProto, ExtendedBlockProto, ReplicaStateProto};
use ringfs_rpc::{RpcClient, RpcError};
use tracing::{info, warn};

use crate::context::DataNodeContext;
use crate::store::{RecoveryInfo, ReplicaState, StoreError};

/// Protocol name of InterDatanodeProtocol.
pub const INTER_DATANODE: &str = "org.apache.hadoop.hdfs.server.protocol.InterDatanodeProtocol";

#[derive(Clone, PartialEq, prost::Message)]
pub struct InitReplicaRecoveryRequestProto {
    #[prost(message, required, tag = "1")]
    pub block: RecoveringBlockProto,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InitReplicaRecoveryResponseProto {
    #[prost(bool, required, tag = "1")]
    pub replica_found: bool,
    #[prost(enumeration = "ReplicaStateProto", optional, tag = "2")]
    pub state: Option<i32>,
    #[prost(message, optional, tag = "3")]
    pub block: Option<BlockProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateReplicaUnderRecoveryRequestProto {
    #[prost(message, required, tag = "1")]
    pub block: ExtendedBlockProto,
    #[prost(uint64, required, tag = "2")]
    pub recovery_id: u64,
    #[prost(uint64, required, tag = "3")]
    pub new_length: u64,
    #[prost(uint64, optional, tag = "4")]
    pub new_block_id: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateReplicaUnderRecoveryResponseProto {
    #[prost(string, optional, tag = "1")]
    pub storage_uuid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{method} on {node}: {source}")]
    Rpc { method: &'static str, node: String, source: RpcError },
    #[error("{what} is not supported")]
    Unsupported { what: String },
    #[error("block {block_id}: every replica holder failed")]
    AllFailed { block_id: u64 },
}

/// initReplicaRecovery on this datanode.
pub fn init_local(
    ctx: &DataNodeContext,
    request: &InitReplicaRecoveryRequestProto,
) -> Result<InitReplicaRecoveryResponseProto, StoreError> {
    let block = &request.block.block.b;
    ctx.store.check_pool(&block.pool_id)?;
    let info = ctx.store.init_replica_recovery(
        block.block_id,
        block.generation_stamp,
        request.block.new_gen_stamp,
    )?;
    Ok(match info {
        None => InitReplicaRecoveryResponseProto { replica_found: false, state: None, block: None },
        Some(info) => InitReplicaRecoveryResponseProto {
            replica_found: true,
            state: Some(info.state.to_proto() as i32),
            block: Some(BlockProto {
                block_id: info.block_id,
                gen_stamp: info.gen_stamp,
                num_bytes: Some(info.length),
            }),
        },
    })
}

/// updateReplicaUnderRecovery on this datanode; returns the storage id.
pub fn update_local(
    ctx: &DataNodeContext,
    request: &UpdateReplicaUnderRecoveryRequestProto,
) -> Result<UpdateReplicaUnderRecoveryResponseProto, StoreError> {
    ctx.store.check_pool(&request.block.pool_id)?;
    let replica = ctx.store.update_replica_under_recovery(
        request.block.block_id,
        request.recovery_id,
        request.new_length,
    )?;
    let storage = ctx.store.volumes()[replica.volume].storage_id.clone();
    Ok(UpdateReplicaUnderRecoveryResponseProto { storage_uuid: Some(storage) })
}

/// Maps a store error to the exception a Java datanode would throw.
pub fn remote_error(e: StoreError) -> RemoteError {
    let class = match e {
        StoreError::RecoveryInProgress { .. } => ringfs_common::ipc::exception::RECOVERY_IN_PROGRESS,
        _ => ringfs_common::ipc::exception::IO,
    };
    RemoteError::new(class, e.to_string())
}

/// One replica holder's answer.
struct Participant {
    node: DatanodeInfoProto,
    info: RecoveryInfo,
}

/// Runs one block recovery as the primary and commits it to the namenode.
pub async fn recover_block(
    ctx: Arc<DataNodeContext>,
    namenode: Arc<RpcClient>,
    recovering: RecoveringBlockProto,
) -> Result<(), RecoveryError> {
    let block = recovering.block.b.clone();
    let recovery_id = recovering.new_gen_stamp;
    let mut participants = Vec::new();
    let mut failures = 0;
    for node in &recovering.block.locs {
        let request = InitReplicaRecoveryRequestProto { block: recovering.clone() };
        match init_on(&ctx, node, request).await {
            Ok(response) if response.replica_found => {
                let (Some(found), Some(state)) = (response.block, response.state) else { continue };
                let state = match ReplicaStateProto::try_from(state) {
                    Ok(ReplicaStateProto::Finalized) => ReplicaState::Finalized,
                    Ok(ReplicaStateProto::Rbw) | Ok(ReplicaStateProto::Rwr) => ReplicaState::Rbw,
                    _ => continue,
                };
                if found.gen_stamp < block.generation_stamp {
                    continue;
                }
                let info = RecoveryInfo {
                    block_id: found.block_id,
                    gen_stamp: found.gen_stamp,
                    length: found.num_bytes.unwrap_or(0),
                    state,
                };
                participants.push(Participant { node: node.clone(), info });
            }
            Ok(_) => {}
            Err(e) => {
                warn!(block_id = block.block_id, error = %e, "initReplicaRecovery failed");
                failures += 1;
            }
        }
    }
    if failures == recovering.block.locs.len() && failures > 0 {
        return Err(RecoveryError::AllFailed { block_id: block.block_id });
    }
    if participants.is_empty() {
        // No replica anywhere: the block goes.
        info!(block_id = block.block_id, "no replica found; asking the namenode to delete the block");
        return commit(&namenode, &block, recovery_id, 0, true, Vec::new()).await;
    }
    let (new_length, synced) = match &recovering.truncate_block {
        None => settle_length(participants),
        Some(truncate) if truncate.block_id == block.block_id => {
            // Truncate recovery: every replica long enough is cut to the new length.
            let length = truncate.num_bytes.unwrap_or(0);
            (length, participants.into_iter().filter(|p| p.info.length >= length).collect())
        }
        Some(truncate) => {
            return Err(RecoveryError::Unsupported {
                what: format!("copy-on-truncate recovery to a new block {}", truncate.block_id),
            })
        }
    };
    let mut targets = Vec::new();
    for participant in synced {
        let request = UpdateReplicaUnderRecoveryRequestProto {
            block: block.clone(),
            recovery_id,
            new_length,
            new_block_id: None,
        };
        match update_on(&ctx, &participant.node, request).await {
            Ok(response) => targets.push((participant.node, response.storage_uuid.unwrap_or_default())),
            Err(e) => warn!(block_id = block.block_id, error = %e, "updateReplicaUnderRecovery failed"),
        }
    }
    if targets.is_empty() {
        return Err(RecoveryError::AllFailed { block_id: block.block_id });
    }
    info!(block_id = block.block_id, recovery_id, new_length, replicas = targets.len(), "block recovered");
    commit(&namenode, &block, recovery_id, new_length, false, targets).await
}

/// The recovered length and the replicas kept, as Java decides them: a finalized
/// replica's length wins (with the RBW replicas that have exactly it); otherwise the
/// shortest of the replicas being written.
fn settle_length(participants: Vec<Participant>) -> (u64, Vec<Participant>) {
    let finalized =
        participants.iter().find(|p| p.info.state == ReplicaState::Finalized).map(|p| p.info.length);
    match finalized {
        Some(length) => {
            let kept = participants.into_iter().filter(|p| p.info.length == length).collect();
            (length, kept)
        }
        None => {
            let length = participants.iter().map(|p| p.info.length).min().unwrap_or(0);
            (length, participants)
        }
    }
}

fn is_local(ctx: &DataNodeContext, node: &DatanodeInfoProto) -> bool {
    node.id.datanode_uuid == ctx.store.datanode_uuid()
}

async fn connect(
    ctx: &DataNodeContext,
    node: &DatanodeInfoProto,
    method: &'static str,
) -> Result<RpcClient, RecoveryError> {
    let addr = format!("{}:{}", node.id.ip_addr, node.id.ipc_port);
    RpcClient::connect(&addr, &ctx.config.user, INTER_DATANODE).await.map_err(|source| RecoveryError::Rpc {
        method,
        node: addr,
        source,
    })
}

async fn init_on(
    ctx: &Arc<DataNodeContext>,
    node: &DatanodeInfoProto,
    request: InitReplicaRecoveryRequestProto,
) -> Result<InitReplicaRecoveryResponseProto, RecoveryError> {
    if is_local(ctx, node) {
        let ctx = Arc::clone(ctx);
        return Ok(tokio::task::spawn_blocking(move || init_local(&ctx, &request))
            .await
            .expect("recovery task")?);
    }
    let method = "initReplicaRecovery";
    let client = connect(ctx, node, method).await?;
    client.call(method, &request).await.map_err(|source| RecoveryError::Rpc {
        method,
        node: node.id.ip_addr.clone(),
        source,
    })
}

async fn update_on(
    ctx: &Arc<DataNodeContext>,
    node: &DatanodeInfoProto,
    request: UpdateReplicaUnderRecoveryRequestProto,
) -> Result<UpdateReplicaUnderRecoveryResponseProto, RecoveryError> {
    if is_local(ctx, node) {
        let ctx = Arc::clone(ctx);
        return Ok(tokio::task::spawn_blocking(move || update_local(&ctx, &request))
            .await
            .expect("recovery task")?);
    }
    let method = "updateReplicaUnderRecovery";
    let client = connect(ctx, node, method).await?;
    client.call(method, &request).await.map_err(|source| RecoveryError::Rpc {
        method,
        node: node.id.ip_addr.clone(),
        source,
    })
}

async fn commit(
    namenode: &RpcClient,
    block: &ExtendedBlockProto,
    recovery_id: u64,
    new_length: u64,
    delete_block: bool,
    targets: Vec<(DatanodeInfoProto, String)>,
) -> Result<(), RecoveryError> {
    let request = CommitBlockSynchronizationRequestProto {
        block: block.clone(),
        new_gen_stamp: recovery_id,
        new_length,
        close_file: true,
        delete_block,
        new_taragets: targets.iter().map(|(node, _)| node.id.clone()).collect(),
        new_target_storages: targets.into_iter().map(|(_, storage)| storage).collect(),
    };
    let method = "commitBlockSynchronization";
    let _: CommitBlockSynchronizationResponseProto = namenode
        .call(method, &request)
        .await
        .map_err(|source| RecoveryError::Rpc { method, node: namenode.addr().to_string(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(state: ReplicaState, length: u64) -> Participant {
        Participant {
            node: DatanodeInfoProto::default(),
            info: RecoveryInfo { block_id: 1, gen_stamp: 1001, length, state },
        }
    }

    #[test]
    fn a_finalized_length_wins_over_shorter_writers() {
        let (length, kept) = settle_length(vec![
            participant(ReplicaState::Rbw, 100),
            participant(ReplicaState::Finalized, 300),
            participant(ReplicaState::Rbw, 300),
        ]);
        assert_eq!((length, kept.len()), (300, 2));
    }

    #[test]
    fn writers_settle_on_the_shortest() {
        let (length, kept) =
            settle_length(vec![participant(ReplicaState::Rbw, 700), participant(ReplicaState::Rbw, 512)]);
        assert_eq!((length, kept.len()), (512, 2));
    }
}
