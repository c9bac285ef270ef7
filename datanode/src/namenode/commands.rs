//! Executing namenode commands from heartbeat and block report responses.

use std::sync::Arc;

use ringfs_common::proto::hdfs::datanode::block_command_proto::Action;
use ringfs_common::proto::hdfs::datanode::datanode_command_proto::Type as CommandType;
use ringfs_common::proto::hdfs::datanode::{BlockCommandProto, DatanodeCommandProto};
use ringfs_common::proto::hdfs::ExtendedBlockProto;
use tracing::{debug, info, warn};

use super::{Namenode, NamenodeError};
use crate::context::DataNodeContext;
use crate::events::{ReplicaEvent, ReplicaEventKind};
use crate::limits::TRANSFERS_MAX;
use crate::ops::transfer::{plan_transfer, TransferKind};
use crate::store::StoreError;

impl Namenode {
    /// Executes commands in order; a RegisterCommand re-registers and reports.
    pub(super) async fn execute_all(
        &mut self,
        commands: Vec<DatanodeCommandProto>,
    ) -> Result<(), NamenodeError> {
        let mut reregister = false;
        for command in commands {
            match CommandType::try_from(command.cmd_type) {
                Ok(CommandType::BlockCommand) => match command.blk_cmd {
                    Some(block_command) => self.block_command(block_command),
                    None => warn!("BlockCommand without its payload; ignored"),
                },
                Ok(CommandType::RegisterCommand) => reregister = true,
                Ok(CommandType::BlockRecoveryCommand) => {
                    for recovering in command.recovery_cmd.map(|c| c.blocks).unwrap_or_default() {
                        let (ctx, client) = (Arc::clone(&self.ctx), Arc::clone(&self.client));
                        tokio::spawn(async move {
                            let block_id = recovering.block.b.block_id;
                            if let Err(e) = crate::recovery::recover_block(ctx, client, recovering).await {
                                warn!(block_id, error = %e, "block recovery failed; the namenode will retry");
                            }
                        });
                    }
                }
                Ok(CommandType::FinalizeCommand) | Ok(CommandType::NullDatanodeCommand) => {}
                Ok(other) => debug!(command = other.as_str_name(), "namenode command ignored"),
                Err(_) => warn!(cmd_type = command.cmd_type, "unknown namenode command ignored"),
            }
        }
        if reregister {
            info!("namenode asked us to register again");
            self.register().await?;
            Box::pin(self.report_all()).await?;
        }
        Ok(())
    }

    fn block_command(&self, command: BlockCommandProto) {
        if command.block_pool_id != self.namespace.block_pool_id {
            warn!(pool = %command.block_pool_id, "block command for another block pool ignored");
            return;
        }
        match Action::try_from(command.action) {
            Ok(Action::Invalidate) => {
                let ctx = Arc::clone(&self.ctx);
                tokio::task::spawn_blocking(move || invalidate(&ctx, &command));
            }
            Ok(Action::Transfer) => transfer(&self.ctx, command),
            Ok(Action::Shutdown) => warn!("DNA_SHUTDOWN (rolling upgrade) is not supported; ignored"),
            Err(_) => warn!(action = command.action, "unknown block command ignored"),
        }
    }
}

/// DNA_INVALIDATE: delete each replica whose genstamp matches, report it DELETED.
fn invalidate(ctx: &DataNodeContext, command: &BlockCommandProto) {
    for block in &command.blocks {
        match ctx.store.invalidate(block.block_id, block.gen_stamp) {
            Ok(replica) => {
                debug!(block_id = block.block_id, "replica deleted");
                ctx.events.send(ReplicaEvent {
                    kind: ReplicaEventKind::Deleted,
                    block_id: replica.block_id,
                    gen_stamp: replica.gen_stamp,
                    length: replica.visible_len(),
                    volume: replica.volume,
                });
            }
            Err(StoreError::ReplicaNotFound { .. }) => {
                debug!(block_id = block.block_id, "invalidated replica already gone")
            }
            Err(e) => warn!(block_id = block.block_id, error = %e, "cannot delete replica"),
        }
    }
}

/// DNA_TRANSFER: copy each block to its targets, each copy on its own thread.
fn transfer(ctx: &Arc<DataNodeContext>, command: BlockCommandProto) {
    for (i, block) in command.blocks.iter().enumerate() {
        let Some(targets) = command.targets.get(i).map(|t| t.datanodes.clone()).filter(|t| !t.is_empty())
        else {
            warn!(block_id = block.block_id, "transfer without targets ignored");
            continue;
        };
        let storage_types =
            command.target_storage_types.get(i).map(|t| t.storage_types.clone()).unwrap_or_default();
        let storage_ids =
            command.target_storage_uuids.get(i).map(|t| t.storage_uuids.clone()).unwrap_or_default();
        let Some(guard) = ctx.metrics.enter_transfer(TRANSFERS_MAX) else {
            warn!(block_id = block.block_id, "too many transfers in progress; the namenode will ask again");
            continue;
        };
        let extended = ExtendedBlockProto {
            pool_id: command.block_pool_id.clone(),
            block_id: block.block_id,
            generation_stamp: block.gen_stamp,
            num_bytes: block.num_bytes,
        };
        let ctx = Arc::clone(ctx);
        let spawned =
            std::thread::Builder::new().name(format!("transfer {}", block.block_id)).spawn(move || {
                let _guard = guard;
                let outcome = plan_transfer(
                    &ctx.store,
                    &extended,
                    &targets,
                    &storage_types,
                    &storage_ids,
                    TransferKind::Replication,
                )
                .map_err(|e| e.to_string())
                .and_then(|plan| crate::transfer::run(&ctx, plan).map_err(|e| e.to_string()));
                if let Err(e) = outcome {
                    warn!(block_id = extended.block_id, error = %e, "replication transfer failed");
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a transfer thread");
        }
    }
}
