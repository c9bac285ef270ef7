//! The IPC service: ClientProtocol and DatanodeProtocol on one port, dispatched on the
//! connection's protocol and the method name. Mutations hold the namesystem lock only
//! while deciding and applying; the reply waits, outside the lock, until the journal has
//! made their edits durable.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use prost::Message;
use ringfs_common::ipc::{protocol, RemoteError};
use ringfs_common::proto::hdfs::datanode::{
    self as dnp, BlockReceivedAndDeletedRequestProto, BlockReceivedAndDeletedResponseProto,
    BlockReportRequestProto, CommitBlockSynchronizationRequestProto, CommitBlockSynchronizationResponseProto,
    ErrorReportRequestProto, ErrorReportResponseProto, HeartbeatRequestProto, RegisterDatanodeRequestProto,
    RegisterDatanodeResponseProto, VersionRequestProto, VersionResponseProto,
};
use ringfs_common::proto::hdfs::*;
use ringfs_rpc::{decode_request, encode_message, CallContext, Service};
use tracing::{info, warn};

use crate::config::NameNodeConfig;
use crate::datanodes::Topology;
use crate::error::{ErrorKind, FsError, FsResult};
use crate::fsn::{AddBlockArgs, CreateArgs, Namesystem};
use crate::journal::Journal;
use crate::namespace::Namespace;
use crate::permission::{Caller, FsAction, GroupMapping};

/// State shared by the RPC handlers and the background tasks.
pub struct Shared {
    pub fs: RwLock<Namesystem>,
    pub journal: Arc<Journal>,
    pub groups: GroupMapping,
    pub topology: Topology,
    pub config: Arc<NameNodeConfig>,
}

impl Shared {
    pub fn read(&self) -> RwLockReadGuard<'_, Namesystem> {
        self.fs.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write_lock(&self) -> RwLockWriteGuard<'_, Namesystem> {
        self.fs.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a mutation and waits until whatever it logged is durable.
    pub async fn write<T>(&self, op: impl FnOnce(&mut Namesystem) -> FsResult<T>) -> FsResult<T> {
        let (result, logged) = {
            let mut fs = self.write_lock();
            let before = fs.last_txid();
            let result = op(&mut fs);
            let after = fs.last_txid();
            (result, (after > before).then_some(after))
        };
        if let Some(txid) = logged {
            self.journal.wait_synced(txid).await.map_err(|e| FsError::io(e.to_string()))?;
        }
        result
    }
}

/// The namenode's [`Service`].
#[derive(Clone)]
pub struct NameNodeService {
    pub shared: Arc<Shared>,
}

fn perm(permission: &FsPermissionProto) -> u16 {
    (permission.perm & 0o7777) as u16
}

fn opt_file_id(id: Option<u64>) -> Option<u64> {
    id.filter(|i| *i != 0)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

impl Service for NameNodeService {
    async fn call(&self, ctx: &CallContext, method: &str, request: Bytes) -> Result<Bytes, RemoteError> {
        if ctx.protocol == protocol::DATANODE {
            self.datanode_call(ctx, method, request).await
        } else if ctx.protocol == protocol::CLIENT || ctx.protocol.is_empty() {
            let caller = self.shared.groups.caller(&ctx.user, ctx.peer.ip()).await;
            self.client_call(ctx, &caller, method, request).await
        } else {
            Err(RemoteError::no_such_protocol(&ctx.protocol))
        }
    }
}

impl NameNodeService {
    /// Encodes a result, logging a failure with who asked and for which path.
    fn reply<M: Message>(
        ctx: &CallContext,
        method: &str,
        path: &str,
        result: FsResult<M>,
    ) -> Result<Bytes, RemoteError> {
        match result {
            Ok(message) => Ok(encode_message(&message)),
            Err(e) => {
                if e.kind == ErrorKind::Io {
                    warn!(user = %ctx.user, peer = %ctx.peer, method, path, class = e.kind.class_name(), error = %e.message, "RPC failed");
                } else {
                    info!(user = %ctx.user, peer = %ctx.peer, method, path, class = e.kind.class_name(), error = %e.message, "RPC failed");
                }
                Err(e.to_remote())
            }
        }
    }

    async fn client_call(
        &self,
        ctx: &CallContext,
        caller: &Caller,
        method: &str,
        request: Bytes,
    ) -> Result<Bytes, RemoteError> {
        let shared = &self.shared;
        match method {
            "getFileInfo" => {
                let req: GetFileInfoRequestProto = decode_request(request)?;
                let result =
                    shared.read().get_file_info(caller, &req.src).map(|fs| GetFileInfoResponseProto { fs });
                Self::reply(ctx, method, &req.src, result)
            }
            "getFileLinkInfo" => {
                let req: GetFileLinkInfoRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_file_info(caller, &req.src)
                    .map(|fs| GetFileLinkInfoResponseProto { fs });
                Self::reply(ctx, method, &req.src, result)
            }
            "getLocatedFileInfo" => {
                let req: GetLocatedFileInfoRequestProto = decode_request(request)?;
                let src = req.src.unwrap_or_default();
                let result = shared
                    .read()
                    .get_located_file_info(caller, &src)
                    .map(|fs| GetLocatedFileInfoResponseProto { fs });
                Self::reply(ctx, method, &src, result)
            }
            "getListing" => {
                let req: GetListingRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_listing(caller, &req.src, &req.start_after, req.need_location)
                    .map(|dir_list| GetListingResponseProto { dir_list });
                Self::reply(ctx, method, &req.src, result)
            }
            "getBlockLocations" => {
                let req: GetBlockLocationsRequestProto = decode_request(request)?;
                let result = shared.read().get_block_locations(caller, &req.src, req.offset, req.length);
                let result = match result {
                    Ok((located, atime_due)) => {
                        if let Some(id) = atime_due {
                            if let Err(e) = shared.write(|fs| fs.update_access_time(id)).await {
                                info!(path = %req.src, error = %e, "access time not updated");
                            }
                        }
                        Ok(GetBlockLocationsResponseProto { locations: Some(located) })
                    }
                    Err(e) => Err(e),
                };
                Self::reply(ctx, method, &req.src, result)
            }
            "getServerDefaults" => {
                let _: GetServerDefaultsRequestProto = decode_request(request)?;
                Self::reply(
                    ctx,
                    method,
                    "",
                    Ok(GetServerDefaultsResponseProto { server_defaults: self.server_defaults() }),
                )
            }
            "mkdirs" => {
                let req: MkdirsRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.mkdirs(caller, &req.src, perm(&req.masked), req.create_parent))
                    .await
                    .map(|result| MkdirsResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "create" => {
                let req: CreateRequestProto = decode_request(request)?;
                let args = CreateArgs {
                    src: req.src.clone(),
                    masked: perm(&req.masked),
                    client_name: req.client_name,
                    flags: req.create_flag,
                    create_parent: req.create_parent,
                    replication: req.replication,
                    block_size: req.block_size,
                };
                let result = shared
                    .write(|fs| fs.create(caller, &args))
                    .await
                    .map(|fs| CreateResponseProto { fs: Some(fs) });
                Self::reply(ctx, method, &req.src, result)
            }
            "append" => {
                let req: AppendRequestProto = decode_request(request)?;
                let flags = req.flag.unwrap_or(0);
                let result = shared
                    .write(|fs| fs.append(caller, &req.src, &req.client_name, flags))
                    .await
                    .map(|(block, stat)| AppendResponseProto { block, stat: Some(stat) });
                Self::reply(ctx, method, &req.src, result)
            }
            "addBlock" => {
                let req: AddBlockRequestProto = decode_request(request)?;
                let args = AddBlockArgs {
                    src: req.src.clone(),
                    client_name: req.client_name,
                    previous: req.previous,
                    exclude: req.exclude_nodes,
                    file_id: opt_file_id(req.file_id),
                    favored: req.favored_nodes,
                    flags: req.flags,
                };
                let result = shared
                    .write(|fs| fs.add_block(caller, &args))
                    .await
                    .map(|block| AddBlockResponseProto { block });
                Self::reply(ctx, method, &req.src, result)
            }
            "complete" => {
                let req: CompleteRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| {
                        fs.complete(
                            caller,
                            &req.src,
                            &req.client_name,
                            req.last.as_ref(),
                            opt_file_id(req.file_id),
                        )
                    })
                    .await
                    .map(|result| CompleteResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "abandonBlock" => {
                let req: AbandonBlockRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| {
                        fs.abandon_block(caller, &req.b, &req.src, &req.holder, opt_file_id(req.file_id))
                    })
                    .await
                    .map(|()| AbandonBlockResponseProto {});
                Self::reply(ctx, method, &req.src, result)
            }
            "fsync" => {
                let req: FsyncRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| {
                        fs.fsync(
                            caller,
                            &req.src,
                            &req.client,
                            req.last_block_length,
                            opt_file_id(req.file_id),
                        )
                    })
                    .await
                    .map(|()| FsyncResponseProto {});
                Self::reply(ctx, method, &req.src, result)
            }
            "delete" => {
                let req: DeleteRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.delete(caller, &req.src, req.recursive))
                    .await
                    .map(|result| DeleteResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "rename" => {
                let req: RenameRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.rename(caller, &req.src, &req.dst))
                    .await
                    .map(|result| RenameResponseProto { result });
                Self::reply(ctx, method, &format!("{} -> {}", req.src, req.dst), result)
            }
            "rename2" => {
                let req: Rename2RequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.rename2(caller, &req.src, &req.dst, req.overwrite_dest))
                    .await
                    .map(|()| Rename2ResponseProto {});
                Self::reply(ctx, method, &format!("{} -> {}", req.src, req.dst), result)
            }
            "setReplication" => {
                let req: SetReplicationRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.set_replication(caller, &req.src, req.replication))
                    .await
                    .map(|result| SetReplicationResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "setPermission" => {
                let req: SetPermissionRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.set_permission(caller, &req.src, perm(&req.permission)))
                    .await
                    .map(|()| SetPermissionResponseProto {});
                Self::reply(ctx, method, &req.src, result)
            }
            "setOwner" => {
                let req: SetOwnerRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| {
                        fs.set_owner(caller, &req.src, non_empty(&req.username), non_empty(&req.groupname))
                    })
                    .await
                    .map(|()| SetOwnerResponseProto {});
                Self::reply(ctx, method, &req.src, result)
            }
            "setTimes" => {
                let req: SetTimesRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.set_times(caller, &req.src, req.mtime, req.atime))
                    .await
                    .map(|()| SetTimesResponseProto {});
                Self::reply(ctx, method, &req.src, result)
            }
            "getContentSummary" => {
                let req: GetContentSummaryRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_content_summary(caller, &req.path)
                    .map(|summary| GetContentSummaryResponseProto { summary });
                Self::reply(ctx, method, &req.path, result)
            }
            "getQuotaUsage" => {
                let req: GetQuotaUsageRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_quota_usage(caller, &req.path)
                    .map(|usage| GetQuotaUsageResponseProto { usage });
                Self::reply(ctx, method, &req.path, result)
            }
            "getFsStats" => {
                let _: GetFsStatusRequestProto = decode_request(request)?;
                Self::reply(ctx, method, "", Ok(self.fs_stats()))
            }
            "getFsReplicatedBlockStats" => {
                let _: GetFsReplicatedBlockStatsRequestProto = decode_request(request)?;
                let fs = shared.read();
                let health = fs.block_health();
                let response = GetFsReplicatedBlockStatsResponseProto {
                    low_redundancy: health.under_replicated,
                    corrupt_blocks: health.corrupt,
                    missing_blocks: health.missing,
                    missing_repl_one_blocks: health.missing_replication_one,
                    blocks_in_future: 0,
                    pending_deletion_blocks: fs.redundancy.pending_deletions,
                    highest_prio_low_redundancy_blocks: Some(0),
                };
                Self::reply(ctx, method, "", Ok(response))
            }
            "getFsECBlockGroupStats" => {
                let _: GetFsEcBlockGroupStatsRequestProto = decode_request(request)?;
                let response = GetFsEcBlockGroupStatsResponseProto {
                    low_redundancy: 0,
                    corrupt_blocks: 0,
                    missing_blocks: 0,
                    blocks_in_future: 0,
                    pending_deletion_blocks: 0,
                    highest_prio_low_redundancy_blocks: Some(0),
                };
                Self::reply(ctx, method, "", Ok(response))
            }
            "getDatanodeReport" => {
                let req: GetDatanodeReportRequestProto = decode_request(request)?;
                let result = self.datanode_report(caller, req.r#type).map(|nodes| {
                    GetDatanodeReportResponseProto { di: nodes.into_iter().map(|(info, _)| info).collect() }
                });
                Self::reply(ctx, method, "", result)
            }
            "getDatanodeStorageReport" => {
                let req: GetDatanodeStorageReportRequestProto = decode_request(request)?;
                let result = self.datanode_report(caller, req.r#type).map(|nodes| {
                    GetDatanodeStorageReportResponseProto {
                        datanode_storage_reports: nodes
                            .into_iter()
                            .map(|(datanode_info, storage_reports)| DatanodeStorageReportProto {
                                datanode_info,
                                storage_reports,
                            })
                            .collect(),
                    }
                });
                Self::reply(ctx, method, "", result)
            }
            "setSafeMode" => {
                let req: SetSafeModeRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.set_safemode(caller, req.action))
                    .await
                    .map(|result| SetSafeModeResponseProto { result });
                Self::reply(ctx, method, "", result)
            }
            "renewLease" => {
                let req: RenewLeaseRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.renew_lease(&req.client_name))
                    .await
                    .map(|()| RenewLeaseResponseProto {});
                Self::reply(ctx, method, &req.client_name, result)
            }
            "recoverLease" => {
                let req: RecoverLeaseRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.recover_lease(caller, &req.src, &req.client_name))
                    .await
                    .map(|result| RecoverLeaseResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "isFileClosed" => {
                let req: IsFileClosedRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .is_file_closed(caller, &req.src)
                    .map(|result| IsFileClosedResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "truncate" => {
                let req: TruncateRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.truncate(caller, &req.src, req.new_length, &req.client_name))
                    .await
                    .map(|result| TruncateResponseProto { result });
                Self::reply(ctx, method, &req.src, result)
            }
            "concat" => {
                let req: ConcatRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.concat(caller, &req.trg, &req.srcs))
                    .await
                    .map(|()| ConcatResponseProto {});
                Self::reply(ctx, method, &req.trg, result)
            }
            "updateBlockForPipeline" => {
                let req: UpdateBlockForPipelineRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.update_block_for_pipeline(&req.block, &req.client_name))
                    .await
                    .map(|block| UpdateBlockForPipelineResponseProto { block });
                Self::reply(ctx, method, &format!("blk_{}", req.block.block_id), result)
            }
            "updatePipeline" => {
                let req: UpdatePipelineRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| {
                        fs.update_pipeline(
                            &req.client_name,
                            &req.old_block,
                            &req.new_block,
                            &req.new_nodes,
                            &req.storage_i_ds,
                        )
                    })
                    .await
                    .map(|()| UpdatePipelineResponseProto {});
                Self::reply(ctx, method, &format!("blk_{}", req.old_block.block_id), result)
            }
            "getAdditionalDatanode" => {
                let req: GetAdditionalDatanodeRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_additional_datanode(
                        caller,
                        &req.src,
                        &req.blk,
                        &req.existings,
                        &req.excludes,
                        req.num_additional_nodes,
                        &req.client_name,
                        opt_file_id(req.file_id),
                    )
                    .map(|block| GetAdditionalDatanodeResponseProto { block });
                Self::reply(ctx, method, &req.src, result)
            }
            "getPreferredBlockSize" => {
                let req: GetPreferredBlockSizeRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_preferred_block_size(caller, &req.filename)
                    .map(|bsize| GetPreferredBlockSizeResponseProto { bsize });
                Self::reply(ctx, method, &req.filename, result)
            }
            "reportBadBlocks" => {
                let req: ReportBadBlocksRequestProto = decode_request(request)?;
                shared.write_lock().report_bad_blocks(&req.blocks);
                Self::reply(ctx, method, "", Ok(ReportBadBlocksResponseProto {}))
            }
            "checkAccess" => {
                let req: CheckAccessRequestProto = decode_request(request)?;
                let mode = FsAction::from_bits(req.mode as u16);
                let result = shared
                    .read()
                    .check_access_rpc(caller, &req.path, mode)
                    .map(|()| CheckAccessResponseProto {});
                Self::reply(ctx, method, &req.path, result)
            }
            "getAclStatus" => {
                let req: GetAclStatusRequestProto = decode_request(request)?;
                let result = shared.read().get_acl_status(caller, &req.src).map(|(owner, group, perm)| {
                    GetAclStatusResponseProto {
                        result: AclStatusProto {
                            owner,
                            group,
                            sticky: perm & crate::permission::STICKY_BIT != 0,
                            entries: Vec::new(),
                            permission: Some(FsPermissionProto { perm: u32::from(perm) }),
                        },
                    }
                });
                Self::reply(ctx, method, &req.src, result)
            }
            "getXAttrs" => {
                let req: crate::extra_proto::GetXAttrsRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_xattrs(caller, &req.src, !req.x_attrs.is_empty())
                    .map(|()| crate::extra_proto::GetXAttrsResponseProto { x_attrs: Vec::new() });
                Self::reply(ctx, method, &req.src, result)
            }
            "listXAttrs" => {
                let req: crate::extra_proto::ListXAttrsRequestProto = decode_request(request)?;
                let result = shared
                    .read()
                    .get_xattrs(caller, &req.src, false)
                    .map(|()| crate::extra_proto::ListXAttrsResponseProto { x_attrs: Vec::new() });
                Self::reply(ctx, method, &req.src, result)
            }
            "listEncryptionZones" => {
                let _: crate::extra_proto::ListEncryptionZonesRequestProto = decode_request(request)?;
                Self::reply(
                    ctx,
                    method,
                    "",
                    Ok(crate::extra_proto::ListEncryptionZonesResponseProto { has_more: false }),
                )
            }
            "msync" => {
                let _: MsyncRequestProto = decode_request(request)?;
                Self::reply(ctx, method, "", Ok(MsyncResponseProto {}))
            }
            "getHAServiceState" => {
                let _: HaServiceStateRequestProto = decode_request(request)?;
                let state = HaServiceStateProto::Active as i32;
                Self::reply(ctx, method, "", Ok(HaServiceStateResponseProto { state }))
            }
            "getDataEncryptionKey" => {
                let _: GetDataEncryptionKeyRequestProto = decode_request(request)?;
                Self::reply(
                    ctx,
                    method,
                    "",
                    Ok(GetDataEncryptionKeyResponseProto { data_encryption_key: None }),
                )
            }
            _ => {
                info!(user = %ctx.user, peer = %ctx.peer, method, "RPC failed: no such method");
                Err(RemoteError::no_such_method(method, &ctx.protocol))
            }
        }
    }

    fn server_defaults(&self) -> FsServerDefaultsProto {
        let c = &self.shared.config;
        FsServerDefaultsProto {
            block_size: c.blocksize,
            bytes_per_checksum: c.bytes_per_checksum,
            write_packet_size: c.write_packet_size,
            replication: u32::from(c.replication),
            file_buffer_size: c.file_buffer_size,
            encrypt_data_transfer: Some(false),
            trash_interval: Some(c.trash_interval_min),
            checksum_type: Some(ChecksumTypeProto::ChecksumCrc32c as i32),
            key_provider_uri: None,
            policy_id: Some(0),
            snapshot_trash_root_enabled: Some(false),
        }
    }

    fn fs_stats(&self) -> GetFsStatsResponseProto {
        let fs = self.shared.read();
        let live: Vec<_> = fs.datanodes.live().collect();
        let health = fs.block_health();
        GetFsStatsResponseProto {
            capacity: live.iter().map(|n| n.capacity()).sum(),
            used: live.iter().map(|n| n.dfs_used()).sum(),
            remaining: live.iter().map(|n| n.remaining()).sum(),
            under_replicated: health.under_replicated,
            corrupt_blocks: health.corrupt,
            missing_blocks: health.missing,
            missing_repl_one_blocks: Some(health.missing_replication_one),
            blocks_in_future: Some(0),
            pending_deletion_blocks: Some(fs.redundancy.pending_deletions),
        }
    }

    /// Datanodes of a report type (ALL 1, LIVE 2, DEAD 3; none are decommissioning).
    fn datanode_report(
        &self,
        caller: &Caller,
        report_type: i32,
    ) -> FsResult<Vec<(DatanodeInfoProto, Vec<StorageReportProto>)>> {
        let fs = self.shared.read();
        Namespace::check_superuser(caller, self.shared.config.permissions_enabled)?;
        let wanted = |live: bool| match report_type {
            1 => true,
            2 => live,
            3 => !live,
            _ => false,
        };
        Ok(fs
            .datanodes
            .all()
            .filter(|n| wanted(n.registered))
            .map(|n| {
                (fs.datanode_info(n.index), (0..n.storages.len()).map(|i| n.storage_report(i)).collect())
            })
            .collect())
    }

    async fn datanode_call(
        &self,
        ctx: &CallContext,
        method: &str,
        request: Bytes,
    ) -> Result<Bytes, RemoteError> {
        let shared = &self.shared;
        let peer = ctx.peer.ip().to_string();
        match method {
            "versionRequest" => {
                let _: VersionRequestProto = decode_request(request)?;
                let info = shared.read().namespace_info();
                Self::reply(ctx, method, "", Ok(VersionResponseProto { info }))
            }
            "registerDatanode" => {
                let req: RegisterDatanodeRequestProto = decode_request(request)?;
                let host = req.registration.datanode_id.host_name.clone();
                let rack = shared.topology.resolve(&peer, &host).await;
                let result = shared
                    .write(|fs| fs.register_datanode(req.registration, ctx.peer.ip(), rack))
                    .await
                    .map(|registration| RegisterDatanodeResponseProto { registration });
                Self::reply(ctx, method, &peer, result)
            }
            "sendHeartbeat" => {
                let req: HeartbeatRequestProto = decode_request(request)?;
                let response = shared.write_lock().heartbeat(&req);
                Self::reply(ctx, method, &peer, Ok(response))
            }
            "blockReport" => {
                let req: BlockReportRequestProto = decode_request(request)?;
                let result = shared.write(|fs| fs.block_report(&req)).await;
                Self::reply(ctx, method, &peer, result)
            }
            "blockReceivedAndDeleted" => {
                let req: BlockReceivedAndDeletedRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.block_received_and_deleted(&req))
                    .await
                    .map(|()| BlockReceivedAndDeletedResponseProto {});
                Self::reply(ctx, method, &peer, result)
            }
            "errorReport" => {
                let req: ErrorReportRequestProto = decode_request(request)?;
                shared.write_lock().error_report(&req);
                Self::reply(ctx, method, &peer, Ok(ErrorReportResponseProto {}))
            }
            "reportBadBlocks" => {
                let req: dnp::ReportBadBlocksRequestProto = decode_request(request)?;
                shared.write_lock().report_bad_blocks(&req.blocks);
                Self::reply(ctx, method, &peer, Ok(dnp::ReportBadBlocksResponseProto {}))
            }
            "commitBlockSynchronization" => {
                let req: CommitBlockSynchronizationRequestProto = decode_request(request)?;
                let result = shared
                    .write(|fs| fs.commit_block_synchronization(&req))
                    .await
                    .map(|()| CommitBlockSynchronizationResponseProto {});
                Self::reply(ctx, method, &format!("blk_{}", req.block.block_id), result)
            }
            _ => {
                info!(peer = %ctx.peer, method, "DatanodeProtocol RPC failed: no such method");
                Err(RemoteError::no_such_method(method, &ctx.protocol))
            }
        }
    }
}
