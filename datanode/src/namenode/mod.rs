//! The namenode actor: one tokio task that owns the DatanodeProtocol connection.
//!
//! Startup: connect (retrying until the namenode is up), versionRequest (the block pool
//! id), registerDatanode, a heartbeat asking for a block report lease, the full block
//! report. Then: heartbeats every `dfs.heartbeat.interval` carrying capacity and
//! xceiver counts, commands from their responses, incremental reports as soon as
//! replica events arrive (batched by draining the channel), a full report every
//! `dfs.blockreport.intervalMsec`. A lost connection or an "unregistered" answer
//! starts the handshake again; events are kept until a report carries them.

mod commands;
pub mod reports;

use std::sync::Arc;

use ringfs_common::ipc::{exception, protocol};
use ringfs_common::proto::hdfs::datanode::{
    BlockReceivedAndDeletedRequestProto, BlockReceivedAndDeletedResponseProto, BlockReportContextProto,
    BlockReportRequestProto, BlockReportResponseProto, DatanodeRegistrationProto, HeartbeatRequestProto,
    HeartbeatResponseProto, RegisterDatanodeRequestProto, RegisterDatanodeResponseProto, VersionRequestProto,
    VersionResponseProto,
};
use ringfs_common::proto::hdfs::{
    BlockKeyProto, DatanodeIdProto, ExportedBlockKeysProto, NamespaceInfoProto, StorageInfoProto,
};
use ringfs_rpc::{RpcClient, RpcError};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::context::DataNodeContext;
use crate::events::ReplicaEvent;
use crate::limits::{IBR_BATCH_MAX, NAMENODE_RETRY_INTERVAL};
use crate::store::version_file::DATANODE_LAYOUT_VERSION;
use crate::store::{NamespaceIdentity, StoreError};

/// How this datanode presents itself to the namenode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatanodeIdentity {
    pub ip: String,
    pub hostname: String,
    pub uuid: String,
    pub xfer_port: u16,
    pub ipc_port: u16,
    pub http_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum NamenodeError {
    #[error("namenode call {method} failed: {source}")]
    Rpc { method: &'static str, source: RpcError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(
        "block pool changed from {served} to {offered}: restart the datanode to serve the new namespace"
    )]
    BlockPoolChanged { served: String, offered: String },
}

impl NamenodeError {
    fn is_connection_lost(&self) -> bool {
        matches!(self, NamenodeError::Rpc { source, .. } if source.remote().is_none())
    }

    fn is_unregistered(&self) -> bool {
        matches!(self, NamenodeError::Rpc { source, .. }
            if source.remote().is_some_and(|r| r.is(exception::UNREGISTERED_NODE)))
    }
}

/// Connects to the namenode, retrying until it answers or shutdown is requested.
pub async fn connect_until_up(
    addr: &str,
    user: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<RpcClient, NamenodeError> {
    let mut attempts = 0u64;
    loop {
        if *shutdown.borrow() {
            return Err(NamenodeError::ShuttingDown);
        }
        match RpcClient::connect(addr, user, protocol::DATANODE).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                attempts += 1;
                // Every attempt at first, then about once a minute.
                if attempts <= 3 || attempts.is_multiple_of(60) {
                    info!(namenode = addr, attempts, error = %e, "namenode not reachable yet; retrying");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(NAMENODE_RETRY_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// versionRequest: the namespace this datanode will join.
pub async fn version_request(client: &RpcClient) -> Result<NamespaceInfoProto, NamenodeError> {
    let response: VersionResponseProto = client
        .call("versionRequest", &VersionRequestProto {})
        .await
        .map_err(|source| NamenodeError::Rpc { method: "versionRequest", source })?;
    Ok(response.info)
}

pub fn namespace_identity(info: &NamespaceInfoProto) -> NamespaceIdentity {
    NamespaceIdentity {
        block_pool_id: info.block_pool_id.clone(),
        cluster_id: info.storage_info.cluster_id.clone(),
        namespace_id: info.storage_info.namespce_id,
        ctime: info.storage_info.c_time,
    }
}

/// A registered connection to the namenode.
pub struct Namenode {
    ctx: Arc<DataNodeContext>,
    identity: DatanodeIdentity,
    /// Shared with block recovery tasks, which commit through it.
    client: Arc<RpcClient>,
    namespace: NamespaceInfoProto,
    registration: DatanodeRegistrationProto,
    report_id: i64,
}

impl Namenode {
    pub fn new(
        ctx: Arc<DataNodeContext>,
        identity: DatanodeIdentity,
        client: RpcClient,
        namespace: NamespaceInfoProto,
    ) -> Namenode {
        let registration = registration_proto(&identity, &namespace);
        Namenode {
            ctx,
            identity,
            client: Arc::new(client),
            namespace,
            registration,
            report_id: rand_report_id(),
        }
    }

    fn block_pool_id(&self) -> String {
        self.namespace.block_pool_id.clone()
    }

    async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp, NamenodeError> {
        self.client.call(method, request).await.map_err(|source| NamenodeError::Rpc { method, source })
    }

    /// registerDatanode; keeps what the namenode answers (it may rewrite the address).
    pub async fn register(&mut self) -> Result<(), NamenodeError> {
        let request = RegisterDatanodeRequestProto {
            registration: registration_proto(&self.identity, &self.namespace),
        };
        let response: RegisterDatanodeResponseProto = self.call("registerDatanode", &request).await?;
        self.registration = response.registration;
        info!(
            uuid = %self.identity.uuid,
            ip = %self.registration.datanode_id.ip_addr,
            xfer_port = self.identity.xfer_port,
            "registered with the namenode"
        );
        Ok(())
    }

    /// sendHeartbeat with our storage reports and load.
    pub async fn heartbeat(&self, request_lease: bool) -> Result<HeartbeatResponseProto, NamenodeError> {
        let volumes = self.ctx.store.volumes();
        let request = HeartbeatRequestProto {
            registration: self.registration.clone(),
            reports: reports::storage_reports(volumes),
            xmits_in_progress: Some(self.ctx.metrics.transfers() as u32),
            xceiver_count: Some(self.ctx.metrics.xceivers() as u32),
            failed_volumes: Some(0),
            cache_capacity: Some(0),
            cache_used: Some(0),
            volume_failure_summary: None,
            request_full_block_report_lease: Some(request_lease),
        };
        self.call("sendHeartbeat", &request).await
    }

    /// A full block report, one storage report per volume in one RPC.
    pub async fn full_block_report(
        &mut self,
        lease_id: u64,
    ) -> Result<BlockReportResponseProto, NamenodeError> {
        let ctx = Arc::clone(&self.ctx);
        let per_volume = tokio::task::spawn_blocking(move || ctx.store.block_report())
            .await
            .expect("block report task does not panic");
        let count: usize = per_volume.iter().map(Vec::len).sum();
        self.report_id = self.report_id.wrapping_add(1);
        let request = BlockReportRequestProto {
            registration: self.registration.clone(),
            block_pool_id: self.block_pool_id(),
            reports: reports::block_reports(self.ctx.store.volumes(), &per_volume),
            context: Some(BlockReportContextProto {
                total_rpcs: 1,
                cur_rpc: 0,
                id: self.report_id,
                lease_id: Some(lease_id),
            }),
        };
        let response = self.call("blockReport", &request).await?;
        info!(replicas = count, "full block report sent");
        Ok(response)
    }

    /// blockReceivedAndDeleted for a batch of events.
    pub async fn report_events(&self, events: &[ReplicaEvent]) -> Result<(), NamenodeError> {
        for batch in events.chunks(IBR_BATCH_MAX) {
            let request = BlockReceivedAndDeletedRequestProto {
                registration: self.registration.clone(),
                block_pool_id: self.block_pool_id(),
                blocks: reports::received_deleted(self.ctx.store.volumes(), batch),
            };
            let _: BlockReceivedAndDeletedResponseProto =
                self.call("blockReceivedAndDeleted", &request).await?;
        }
        debug!(events = events.len(), "incremental block report sent");
        Ok(())
    }

    /// Heartbeat asking for a lease, then the full report (with the lease the namenode
    /// granted, 0 if it grants none), executing whatever commands come back.
    pub async fn report_all(&mut self) -> Result<(), NamenodeError> {
        let response = self.heartbeat(true).await?;
        let lease_id = response.full_block_report_lease_id.unwrap_or(0);
        self.execute_all(response.cmds).await?;
        let report = self.full_block_report(lease_id).await?;
        if let Some(cmd) = report.cmd {
            self.execute_all(vec![cmd]).await?;
        }
        Ok(())
    }

    /// Runs the actor until shutdown.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<ReplicaEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let interval = self.ctx.config.heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_full_report = tokio::time::Instant::now() + self.ctx.config.block_report_interval;
        let mut pending: Vec<ReplicaEvent> = Vec::new();
        loop {
            let outcome = tokio::select! {
                _ = shutdown.changed() => return,
                _ = heartbeat.tick() => {
                    let full_report_due = tokio::time::Instant::now() >= next_full_report;
                    let outcome = self.heartbeat_round(full_report_due).await;
                    if full_report_due && outcome.is_ok() {
                        next_full_report = tokio::time::Instant::now() + self.ctx.config.block_report_interval;
                    }
                    outcome.and(self.flush(&mut pending).await)
                }
                event = events.recv() => {
                    let Some(event) = event else { return };
                    pending.push(event);
                    while let Ok(more) = events.try_recv() {
                        pending.push(more);
                    }
                    self.flush(&mut pending).await
                }
            };
            if let Err(e) = outcome {
                if let Err(e) = self.recover(e, &mut shutdown).await {
                    warn!(error = %e, "namenode actor stopped");
                    return;
                }
            }
        }
    }

    async fn heartbeat_round(&mut self, full_report_due: bool) -> Result<(), NamenodeError> {
        if full_report_due {
            return self.report_all().await;
        }
        let response = self.heartbeat(false).await?;
        self.execute_all(response.cmds).await
    }

    /// Sends pending events; keeps them if the namenode cannot take them now.
    async fn flush(&self, pending: &mut Vec<ReplicaEvent>) -> Result<(), NamenodeError> {
        if pending.is_empty() {
            return Ok(());
        }
        self.report_events(pending).await?;
        pending.clear();
        Ok(())
    }

    /// After a failed call: re-register (unregistered), reconnect (connection lost), or
    /// just log (an error answer about one call).
    async fn recover(
        &mut self,
        error: NamenodeError,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), NamenodeError> {
        if error.is_unregistered() {
            warn!(error = %error, "namenode does not know us; registering again");
        } else if error.is_connection_lost() {
            warn!(error = %error, "lost the namenode; reconnecting");
        } else {
            warn!(error = %error, "namenode call failed");
            return Ok(());
        }
        loop {
            match self.rejoin(shutdown).await {
                Ok(()) => return Ok(()),
                Err(NamenodeError::ShuttingDown) => return Err(NamenodeError::ShuttingDown),
                Err(e @ NamenodeError::BlockPoolChanged { .. }) => return Err(e),
                Err(e) => {
                    warn!(error = %e, "rejoining the namenode failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(NAMENODE_RETRY_INTERVAL) => {}
                        _ = shutdown.changed() => return Err(NamenodeError::ShuttingDown),
                    }
                }
            }
        }
    }

    async fn rejoin(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), NamenodeError> {
        if !self.client.is_open() {
            let client =
                connect_until_up(&self.ctx.config.namenode_addr, &self.ctx.config.user, shutdown).await?;
            self.client = Arc::new(client);
        }
        let namespace = version_request(&self.client).await?;
        if namespace.block_pool_id != self.namespace.block_pool_id {
            return Err(NamenodeError::BlockPoolChanged {
                served: self.namespace.block_pool_id.clone(),
                offered: namespace.block_pool_id,
            });
        }
        self.namespace = namespace;
        self.register().await?;
        self.report_all().await
    }
}

/// Our registration: identity, the namespace's storage info, no block keys.
fn registration_proto(
    identity: &DatanodeIdentity,
    namespace: &NamespaceInfoProto,
) -> DatanodeRegistrationProto {
    DatanodeRegistrationProto {
        datanode_id: DatanodeIdProto {
            ip_addr: identity.ip.clone(),
            host_name: identity.hostname.clone(),
            datanode_uuid: identity.uuid.clone(),
            xfer_port: u32::from(identity.xfer_port),
            info_port: u32::from(identity.http_port),
            ipc_port: u32::from(identity.ipc_port),
            info_secure_port: Some(0),
        },
        storage_info: StorageInfoProto {
            // Negative in Java; sent as its two's complement.
            layout_version: DATANODE_LAYOUT_VERSION as u32,
            namespce_id: namespace.storage_info.namespce_id,
            cluster_id: namespace.storage_info.cluster_id.clone(),
            c_time: namespace.storage_info.c_time,
        },
        keys: ExportedBlockKeysProto {
            is_block_token_enabled: false,
            key_update_interval: 0,
            token_life_time: 0,
            current_key: BlockKeyProto { key_id: 0, expiry_date: 0, key_bytes: None },
            all_keys: Vec::new(),
        },
        software_version: namespace.software_version.clone(),
    }
}

fn rand_report_id() -> i64 {
    // Any id distinguishes reports; the clock is random enough across restarts.
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as i64)
}
