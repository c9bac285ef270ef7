//! One data-port connection on a ring: its op loop and the ops other than the two big
//! ones (READ_BLOCK in `read`, WRITE_BLOCK in `write`). Mirrors the threads engine's
//! `Connection`, with every wait a ring operation.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ringfs_common::dtp::{DtpError, OpRequest};
use ringfs_common::proto::hdfs::{
    BlockOpResponseProto, ClientReadStatusProto, OpBlockChecksumProto, OpReadBlockProto,
    OpTransferBlockProto, Status,
};
use tracing::{debug, info, warn};

use super::inbound::Inbound;
use super::read::send_plan;
use super::UringOptions;
use crate::context::{ActiveGuard, DataNodeContext, Metrics};
use crate::io::{FilesError, Io, IoError, SlotTooLarge, Socket, TimedOut};
use crate::limits::{KEEPALIVE_IDLE, MIRROR_CONNECT_TIMEOUT, SOCKET_READ_TIMEOUT, SOCKET_WRITE_TIMEOUT};
use crate::ops::read::ReadPlan;
use crate::ops::transfer::{plan_transfer, TransferKind, TransferPlan};
use crate::ops::{checksum, error_response, success_response, OpError};
use crate::store::StoreError;

/// Why a connection ended abnormally (logged; the peer got its response already).
#[derive(Debug, thiserror::Error)]
pub(super) enum XceiverError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Wire(#[from] DtpError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    SlotTooLarge(#[from] SlotTooLarge),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("{what} timed out")]
    TimedOut { what: &'static str },
    #[error("resolving {addr}: {source}")]
    Resolve { addr: String, source: std::io::Error },
    #[error("{what}: {errno}")]
    Pipe { what: &'static str, errno: crate::io::Errno },
}

impl XceiverError {
    /// The peer went away or went quiet: end the connection without a fuss.
    fn is_quiet(&self) -> bool {
        matches!(self, XceiverError::Io(error) if error.is_disconnect() || matches!(error, IoError::TimedOut { .. }))
    }

    pub(super) fn timed_out(what: &'static str) -> impl FnOnce(TimedOut) -> XceiverError {
        move |_| XceiverError::TimedOut { what }
    }
}

/// What the op loop does after an op.
pub(super) enum Next {
    Continue,
    Close,
}

pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) socket: Socket,
    pub(super) inbound: Inbound,
    pub(super) peer: SocketAddr,
    pub(super) ctx: Arc<DataNodeContext>,
    pub(super) options: Arc<UringOptions>,
}

/// Serves one connection until it closes, idles out or fails.
pub(super) async fn serve(
    io: Io,
    socket: Socket,
    ctx: Arc<DataNodeContext>,
    options: Arc<UringOptions>,
    guard: ActiveGuard,
) {
    let _guard = guard;
    let Ok(peer) = socket.peer_addr() else { return };
    if let Err(error) = socket.set_nodelay(true) {
        debug!(%peer, %error, "connection setup failed");
        return;
    }
    let inbound = Inbound::new(socket.clone());
    let mut conn = Conn { io, socket, inbound, peer, ctx, options };
    let mut first = true;
    loop {
        // The first op may take a while to arrive; later ones only within the keepalive.
        let idle = if first { SOCKET_READ_TIMEOUT } else { KEEPALIVE_IDLE };
        let op = match conn.inbound.read_op(&conn.io, idle).await {
            Ok(Some(op)) => op,
            Ok(None) => return,
            Err(error) if error.is_quiet() => return,
            Err(error) => {
                // Malformed op or wrong version: say why, then close this connection only.
                debug!(%peer, %error, "bad op request");
                Metrics::add(&conn.ctx.metrics.ops_failed, 1);
                let _ = conn.respond(&bad_request_response(&error)).await;
                return;
            }
        };
        first = false;
        let op_code = op.op();
        match conn.dispatch(op).await {
            Ok(Next::Continue) => {}
            Ok(Next::Close) => return,
            Err(error) => {
                Metrics::add(&conn.ctx.metrics.ops_failed, 1);
                info!(%peer, op = ?op_code, %error, "op failed; connection closed");
                return;
            }
        }
    }
}

fn bad_request_response(error: &XceiverError) -> BlockOpResponseProto {
    let status = match error {
        XceiverError::Wire(DtpError::UnknownOp { .. }) => Status::ErrorUnsupported,
        _ => Status::ErrorInvalid,
    };
    error_response(status, error.to_string())
}

/// Sends one varint-delimited message from a registered control slot.
pub(super) async fn send_message(
    io: &Io,
    socket: &Socket,
    message: &impl Message,
    more: bool,
) -> Result<(), XceiverError> {
    let len = message.encoded_len();
    let framed = len + prost::length_delimiter_len(len);
    let mut slot = io.control_arena().acquire(framed).await?;
    let mut target = &mut slot.as_mut_slice()[..framed];
    message.encode_length_delimited(&mut target).expect("slot sized to the message");
    assert!(target.is_empty(), "encoded length matches encoded_len");
    let (sent, _) = io.send_all(socket, slot.share(), (0, framed), more, Some(SOCKET_WRITE_TIMEOUT)).await;
    Ok(sent?)
}

/// Sends raw bytes (an op request to another datanode) from a control slot.
pub(super) async fn send_bytes(io: &Io, socket: &Socket, bytes: &[u8]) -> Result<(), XceiverError> {
    let mut slot = io.control_arena().acquire(bytes.len()).await?;
    slot.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    let (sent, _) =
        io.send_all(socket, slot.share(), (0, bytes.len()), false, Some(SOCKET_WRITE_TIMEOUT)).await;
    Ok(sent?)
}

/// Resolves `ip:port` (or `host:port`) and connects on the ring.
pub(super) async fn connect(io: &Io, addr: &str) -> Result<Socket, XceiverError> {
    let resolved = addr
        .to_socket_addrs()
        .map_err(|source| XceiverError::Resolve { addr: addr.to_string(), source })?
        .next()
        .ok_or_else(|| XceiverError::Resolve {
            addr: addr.to_string(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
    let socket = io.connect(resolved, MIRROR_CONNECT_TIMEOUT).await?;
    socket.set_nodelay(true).map_err(|source| XceiverError::Resolve { addr: addr.to_string(), source })?;
    Ok(socket)
}

impl Conn {
    async fn dispatch(&mut self, op: OpRequest) -> Result<Next, XceiverError> {
        match op {
            OpRequest::ReadBlock(request) => self.read_block(&request).await,
            OpRequest::WriteBlock(request) => super::write::write_block(self, request).await,
            OpRequest::BlockChecksum(request) => self.block_checksum(&request).await,
            OpRequest::TransferBlock(request) => self.transfer_block(&request).await,
            OpRequest::ReplaceBlock(_) | OpRequest::CopyBlock(_) => {
                self.reply_unsupported("REPLACE_BLOCK/COPY_BLOCK (the balancer)").await
            }
            OpRequest::Unsupported(op) => {
                self.reply_unsupported(&format!("{op:?} (short-circuit reads, EC)")).await
            }
        }
    }

    pub(super) async fn respond(&self, response: &BlockOpResponseProto) -> Result<(), XceiverError> {
        send_message(&self.io, &self.socket, response, false).await
    }

    async fn reply_unsupported(&self, what: &str) -> Result<Next, XceiverError> {
        self.respond(&OpError::unsupported(what).response()).await?;
        Ok(Next::Continue)
    }

    /// Replies with the error and closes, as the Java DataNode does after a failed op.
    pub(super) async fn fail(&self, error: OpError) -> Result<Next, XceiverError> {
        self.respond(&error.response()).await?;
        Err(error.into())
    }

    async fn read_block(&mut self, request: &OpReadBlockProto) -> Result<Next, XceiverError> {
        let plan = match ReadPlan::prepare(&self.ctx.store, request) {
            Ok(plan) => plan.with_readahead(self.ctx.config.readahead_bytes),
            Err(error) => return self.fail(error).await,
        };
        // The response goes out with MSG_MORE: the first packet follows at once.
        send_message(&self.io, &self.socket, &plan.response(), true).await?;
        let sent = send_plan(&self.io, &self.socket, &plan, self.options.read_mode).await?;
        Metrics::add(&self.ctx.metrics.bytes_read, sent);
        Metrics::add(&self.ctx.metrics.blocks_read, 1);
        // The client's verdict. snakebite hangs up instead of sending it: that only
        // ends this connection.
        let status = self.inbound.read_message::<ClientReadStatusProto>(
            &self.io,
            "client read status",
            SOCKET_READ_TIMEOUT,
        );
        match status.await {
            Ok(status)
                if status.status == Status::ChecksumOk as i32 || status.status == Status::Success as i32 =>
            {
                Ok(Next::Continue)
            }
            Ok(status) => {
                warn!(peer = %self.peer, block_id = plan.reader.block_id, status = status.status,
                    "client reported an error reading the block");
                if status.status == Status::ErrorChecksum as i32 {
                    Metrics::add(&self.ctx.metrics.checksum_errors, 1);
                }
                Ok(Next::Close)
            }
            Err(_) => Ok(Next::Close),
        }
    }

    async fn block_checksum(&mut self, request: &OpBlockChecksumProto) -> Result<Next, XceiverError> {
        // Reads the CRCs from the (page-cached) meta file on this thread: a few hundred
        // KiB per block, the same work the Java DataNode does.
        match checksum::block_checksum(&self.ctx.store, request) {
            Ok(checksum_response) => {
                let response = BlockOpResponseProto {
                    status: Status::Success as i32,
                    checksum_response: Some(checksum_response),
                    ..Default::default()
                };
                self.respond(&response).await?;
                Ok(Next::Continue)
            }
            Err(error) => self.fail(error).await,
        }
    }

    /// TRANSFER_BLOCK: copy our replica to the new node of a client's pipeline.
    async fn transfer_block(&mut self, request: &OpTransferBlockProto) -> Result<Next, XceiverError> {
        let kind = TransferKind::PipelineRecovery { client_name: request.header.client_name.clone() };
        let plan = plan_transfer(
            &self.ctx.store,
            &request.header.base_header.block,
            &request.targets,
            &request.target_storage_types,
            &request.target_storage_ids,
            kind,
        );
        let outcome = match plan {
            Ok(plan) => run_transfer(&self.io, &self.ctx, &self.options, plan).await,
            Err(error) => return self.fail(error).await,
        };
        match outcome {
            Ok(()) => {
                self.respond(&success_response()).await?;
                Ok(Next::Close)
            }
            Err(error) => self.fail(OpError::invalid(error.to_string())).await,
        }
    }
}

/// How long a DN-to-DN copy waits for the target to finish after the last packet.
const TRANSFER_CLOSE_TIMEOUT: Duration = SOCKET_READ_TIMEOUT;

/// Sends a planned DN-to-DN copy from this ring: the WRITE_BLOCK op, the packets, then
/// the close-ack (recovery) or the target hanging up (replication).
pub(super) async fn run_transfer(
    io: &Io,
    ctx: &DataNodeContext,
    options: &UringOptions,
    mut plan: TransferPlan,
) -> Result<(), XceiverError> {
    plan.read.readahead_bytes = ctx.config.readahead_bytes;
    let socket = connect(io, &plan.target_addr).await?;
    let mut op = Vec::new();
    plan.request.encode(&mut op);
    send_bytes(io, &socket, &op).await?;
    let sent = send_plan(io, &socket, &plan.read, options.read_mode).await?;
    Metrics::add(&ctx.metrics.bytes_read, sent);
    let mut inbound = Inbound::new(socket.clone());
    if plan.expects_close_ack {
        let ack: BlockOpResponseProto = inbound.read_message(io, "close-ack", TRANSFER_CLOSE_TIMEOUT).await?;
        let status = Status::try_from(ack.status).unwrap_or(Status::Error);
        if status != Status::Success {
            let message = ack.message.unwrap_or_default();
            return Err(OpError::invalid(format!(
                "{} refused the copy: {status:?} {message}",
                plan.target_addr
            ))
            .into());
        }
    } else {
        // Half-close and wait for the target to finish reading: it closes after the
        // last packet.
        let _ = socket.shutdown_write();
        inbound.discard(io, TRANSFER_CLOSE_TIMEOUT).await;
    }
    Metrics::add(&ctx.metrics.blocks_replicated, 1);
    info!(
        block_id = plan.read.reader.block_id,
        target = plan.target_addr,
        bytes = sent,
        "replica transferred"
    );
    Ok(())
}
