//! WRITE_BLOCK on the ring: the connection task receives each packet into a registered
//! packet slot, forwards that slot to the mirror and writes it to the block and meta
//! files (WRITE_FIXED, linked: data before its CRCs), the forward queued first; a
//! responder task pairs queued packets with the mirror's acks and sends the combined
//! acks upstream in order. The roles, stages, planning and ack composition are the
//! engine-neutral ones in [`crate::ops::write`].

use std::borrow::Cow;
use std::cell::Cell;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringfs_common::dtp::PacketLayout;
use ringfs_common::proto::hdfs::{BlockOpResponseProto, OpWriteBlockProto, PipelineAckProto, Status};
use tracing::{debug, info, warn};

use super::conn::{connect, send_bytes, send_message, Conn, Next, XceiverError};
use super::inbound::Inbound;
use crate::context::Metrics;
use crate::io::sync::{self, Receiver, Sender};
use crate::io::{FixedFile, Io, SharedSlot, Socket};
use crate::limits::{READ_TIMEOUT_EXTENSION, SOCKET_READ_TIMEOUT, SOCKET_WRITE_TIMEOUT, UNACKED_PACKETS_MAX};
use crate::ops::write::{
    abandon, complete, compose_ack, connect_ack, mirror_reports_corruption, open_replica, Downstream,
    MirrorTarget, ReceiveState, WriteRequest, WriteTarget,
};
use crate::ops::OpError;
use crate::store::files::meta_offset;
use crate::store::WriteProgress;

/// How long a failed write waits for the upstream to read its error and hang up.
const LINGER_TIMEOUT: Duration = Duration::from_secs(3);

/// The downstream datanode of a pipeline.
struct Mirror {
    addr: String,
    socket: Socket,
    inbound: Inbound,
    ack_timeout: Duration,
}

/// A packet waiting for its ack.
struct AckEntry {
    seqno: i64,
    status: Status,
    end_offset: u64,
    last: bool,
}

/// State the receiver and the responder share (one ring thread: plain cells).
#[derive(Default)]
struct PipelineFlags {
    /// Either side failed; the other stops.
    failed: Cell<bool>,
    /// The mirror is gone; acks report it as ERROR.
    mirror_failed: Cell<bool>,
}

pub(super) async fn write_block(conn: &mut Conn, proto: OpWriteBlockProto) -> Result<Next, XceiverError> {
    let request = match WriteRequest::parse(proto) {
        Ok(request) => request,
        Err(error) => return conn.fail(error).await,
    };
    let ctx = conn.ctx.clone();
    // Taking over a replica another connection is writing stops that writer and waits for
    // it to let go; the writer may live on this ring, so the wait happens off the ring.
    let block_id = request.block().block_id;
    let opened = if ctx.store.get(block_id).is_some_and(|replica| replica.progress.is_some()) {
        let (store_ctx, setup) = (ctx.clone(), request.clone());
        sync::off_ring("dn-replica-setup", move || open_replica(&store_ctx.store, &store_ctx.events, &setup))
            .await
            .unwrap_or_else(|| Err(OpError::invalid("no thread to set up the replica on".to_string())))
    } else {
        open_replica(&ctx.store, &ctx.events, &request)
    };
    let target = match opened {
        Ok(target) => target,
        Err(error) => {
            info!(peer = %conn.peer, block_id = request.block().block_id, stage = request.stage.as_str_name(),
                %error, "write setup refused");
            return conn.fail(error).await;
        }
    };
    let (mut mirror, status, first_bad_link) = setup_mirror(&conn.io, &request).await;
    if request.sends_acks() {
        conn.respond(&connect_ack(status, &first_bad_link)).await?;
        if status != Status::Success {
            // The client rebuilds its pipeline without the bad link; the RBW replica
            // stays for the namenode to recover or invalidate.
            return Ok(Next::Close);
        }
    } else if status != Status::Success {
        warn!(block_id = request.block().block_id, "continuing the copy without the mirror");
        mirror = None;
    }
    let state = match target {
        WriteTarget::Closed(replica) => {
            debug!(
                block_id = replica.block_id,
                gen_stamp = replica.gen_stamp,
                "pipeline close recovery finalized"
            );
            return Ok(Next::Close);
        }
        WriteTarget::Receive(state) => state,
    };
    // A pipeline recovery taking the replica stops this writer by shutting its socket.
    if let Ok(stopper_socket) = conn.socket.try_clone_std() {
        state.writer().set_stopper(Box::new(move || {
            let _ = stopper_socket.shutdown(std::net::Shutdown::Both);
        }));
    }
    let verify = request.verifies(mirror.is_some(), state.disk_checksum());
    let outcome = receive(conn, &request, state, mirror, verify).await;
    if let Err(error) = &outcome {
        info!(peer = %conn.peer, block_id = request.block().block_id, %error, "write failed");
        // Stop sending, then drain what the upstream still sends until it hangs up, so
        // closing does not reset the connection and destroy the error ack in flight.
        let _ = conn.socket.shutdown_write();
        conn.inbound.discard(&conn.io, LINGER_TIMEOUT).await;
    }
    outcome?;
    if request.sends_close_ack() {
        conn.respond(&crate::ops::success_response()).await?;
    }
    Ok(Next::Close)
}

/// Connects to the mirror, forwards the op, and reads its connect-ack when the upstream
/// expects one. Returns the mirror (if reachable), the status and the first bad link.
async fn setup_mirror(io: &Io, request: &WriteRequest) -> (Option<Mirror>, Status, String) {
    let Some(target) = request.mirror() else { return (None, Status::Success, String::new()) };
    let mut mirror = match connect_mirror(io, &target, request.proto.targets.len()).await {
        Ok(mirror) => mirror,
        Err(error) => {
            info!(mirror = %target.addr, %error, "cannot reach the mirror");
            return (None, Status::Error, target.addr);
        }
    };
    if !request.sends_acks() {
        return (Some(mirror), Status::Success, String::new());
    }
    let ack =
        mirror.inbound.read_message::<BlockOpResponseProto>(io, "mirror connect-ack", mirror.ack_timeout);
    match ack.await {
        Ok(ack) => {
            let status = Status::try_from(ack.status).unwrap_or(Status::Error);
            (Some(mirror), status, ack.first_bad_link.unwrap_or_default())
        }
        Err(error) => {
            info!(mirror = %target.addr, %error, "mirror connect-ack failed");
            (Some(mirror), Status::Error, target.addr)
        }
    }
}

async fn connect_mirror(
    io: &Io,
    target: &MirrorTarget,
    downstream_count: usize,
) -> Result<Mirror, XceiverError> {
    let socket = connect(io, &target.addr).await?;
    let mut op = Vec::new();
    target.request.encode(&mut op);
    send_bytes(io, &socket, &op).await?;
    let inbound = Inbound::new(socket.clone());
    let ack_timeout = SOCKET_READ_TIMEOUT + READ_TIMEOUT_EXTENSION * downstream_count as u32;
    Ok(Mirror { addr: target.addr.clone(), socket, inbound, ack_timeout })
}

/// The replica's files in the ring's fixed-file table while it is written.
struct ReplicaFiles {
    data: FixedFile,
    meta: FixedFile,
}

/// Receives packets until the last one (or an error), with a responder task when the
/// upstream expects acks.
async fn receive(
    conn: &mut Conn,
    request: &WriteRequest,
    state: ReceiveState,
    mirror: Option<Mirror>,
    verify: bool,
) -> Result<(), XceiverError> {
    let io = conn.io.clone();
    let files = ReplicaFiles {
        data: io.files().install_wait(state.writer().data_file().as_fd()).await?,
        meta: io.files().install_wait(state.writer().meta_file().as_fd()).await?,
    };
    let flags = Rc::new(PipelineFlags::default());
    let (mirror_socket, mirror_addr) = match &mirror {
        Some(m) => (Some(m.socket.clone()), m.addr.clone()),
        None => (None, String::new()),
    };
    let (acks, responder) = if request.sends_acks() {
        let (sender, receiver) = sync::channel::<AckEntry>(UNACKED_PACKETS_MAX);
        let responder = Responder {
            io: io.clone(),
            upstream: conn.socket.clone(),
            mirror: mirror.map(|m| (m.inbound, m.ack_timeout)),
            flags: flags.clone(),
            progress: Arc::clone(state.writer().progress()),
        };
        (Some(sender), Some(io.spawn(responder.run(receiver))))
    } else {
        (None, None)
    };
    let receiver = PacketLoop {
        conn: &mut *conn,
        request,
        files: &files,
        mirror: mirror_socket.as_ref(),
        mirror_addr: &mirror_addr,
        flags: &flags,
        acks,
        verify,
    };
    let outcome = receiver.run(state).await;
    if outcome.is_err() {
        flags.failed.set(true);
        // Wake the responder if it is waiting on the mirror.
        if let Some(socket) = &mirror_socket {
            let _ = socket.shutdown();
        }
    }
    let responder_outcome = match responder {
        Some(task) => {
            task.await.unwrap_or_else(|| Err(OpError::invalid("the ack responder panicked").into()))
        }
        None => Ok(()),
    };
    outcome?;
    responder_outcome
}

struct PacketLoop<'c> {
    conn: &'c mut Conn,
    request: &'c WriteRequest,
    files: &'c ReplicaFiles,
    mirror: Option<&'c Socket>,
    mirror_addr: &'c str,
    flags: &'c PipelineFlags,
    acks: Option<Sender<AckEntry>>,
    verify: bool,
}

impl PacketLoop<'_> {
    async fn run(self, state: ReceiveState) -> Result<(), XceiverError> {
        let ctx = self.conn.ctx.clone();
        let io = self.conn.io.clone();
        let mut state = Some(state);
        loop {
            let current = state.as_ref().expect("state held until completion");
            let received =
                self.conn.inbound.read_packet(&io, current.client_checksum(), SOCKET_READ_TIMEOUT).await;
            let (slot, layout) = match received {
                Ok(packet) => packet,
                Err(error) => {
                    if let Some(state) = state.take() {
                        abandon(&ctx.store, state);
                    }
                    return Err(error);
                }
            };
            let step = self.packet(current, &layout, slot.share()).await;
            let (status, end_offset) = match step {
                Ok(end_offset) => (Status::Success, end_offset),
                Err(error) => {
                    let status = match &error {
                        XceiverError::Op(op_error) => op_error.status(),
                        _ => Status::Error,
                    };
                    if status == Status::ErrorChecksum {
                        Metrics::add(&ctx.metrics.checksum_errors, 1);
                    }
                    // Tell the upstream which node failed, then stop: nothing bad was written.
                    self.flags.failed.set(true);
                    self.enqueue(layout.header.seqno, status, 0, true).await;
                    if let Some(state) = state.take() {
                        abandon(&ctx.store, state);
                    }
                    return Err(error);
                }
            };
            let last = layout.header.last_packet_in_block;
            if last {
                let state = state.take().expect("state held until completion");
                if ctx.config.sync_on_close {
                    // Flush through the ring first, so finalize's fsync finds nothing
                    // dirty and does not stall every connection of this ring.
                    io.fsync(&self.files.data, true).await?;
                    io.fsync(&self.files.meta, true).await?;
                }
                match complete(&ctx.store, &ctx.events, self.request, state) {
                    Ok(replica) => {
                        Metrics::add(&ctx.metrics.blocks_written, 1);
                        debug!(
                            block_id = replica.block_id,
                            length = replica.visible_len(),
                            "replica complete"
                        );
                    }
                    Err(error) => {
                        self.flags.failed.set(true);
                        self.enqueue(layout.header.seqno, Status::Error, end_offset, true).await;
                        return Err(error.into());
                    }
                }
            } else if self.acks.is_none() {
                // No acks (DN-to-DN copy): what is on disk is visible.
                current.acknowledge(end_offset);
            }
            self.enqueue(layout.header.seqno, status, end_offset, last).await;
            if last {
                return Ok(());
            }
            if self.flags.failed.get() {
                return Err(OpError::invalid("the ack responder failed").into());
            }
        }
    }

    /// Forwards, verifies, writes and records one packet; returns its end offset. The
    /// forward is queued before the disk writes and both run at once from the same slot.
    async fn packet(
        &self,
        state: &ReceiveState,
        layout: &PacketLayout,
        slot: SharedSlot,
    ) -> Result<u64, XceiverError> {
        let forward = self.forward(&slot, layout.total_len());
        let local = self.write_locally(state, layout, &slot);
        let (forwarded, written) = sync::join(forward, local).await;
        forwarded?;
        let plan = written?;
        Ok(plan)
    }

    async fn forward(&self, slot: &SharedSlot, total: usize) -> Result<(), XceiverError> {
        let Some(mirror) = self.mirror else { return Ok(()) };
        if self.flags.mirror_failed.get() {
            return Ok(());
        }
        let io = &self.conn.io;
        let (sent, _) = if self.conn.options.mirror_send_zc {
            io.send_zc_all(mirror, slot.clone(), (0, total), false, Some(SOCKET_WRITE_TIMEOUT)).await
        } else {
            io.send_all(mirror, slot.clone(), (0, total), false, Some(SOCKET_WRITE_TIMEOUT)).await
        };
        if let Err(error) = sent {
            info!(mirror = %self.mirror_addr, %error, "forwarding to the mirror failed");
            self.flags.mirror_failed.set(true);
            if !self.request.is_client() {
                return Err(OpError::invalid(format!("mirror {} failed: {error}", self.mirror_addr)).into());
            }
        }
        Ok(())
    }

    async fn write_locally(
        &self,
        state: &ReceiveState,
        layout: &PacketLayout,
        slot: &SharedSlot,
    ) -> Result<u64, XceiverError> {
        let plan = state.plan(layout.header)?;
        if plan.heartbeat {
            return Ok(0);
        }
        let bytes = slot.as_slice();
        let checksums_start = layout.prefix_len;
        let data_start = checksums_start + layout.checksum_len;
        let checksums = &bytes[checksums_start..data_start];
        let data = &bytes[data_start..layout.total_len()];
        if self.verify {
            // CRC32C over the registered buffer the packet arrived in.
            state.verify(&plan, checksums, data)?;
        }
        let io = &self.conn.io;
        if plan.write_len() > 0 || plan.header.sync_block {
            let mut chain = io.chain();
            let key = chain.lend_shared(slot.clone());
            if plan.write_len() > 0 {
                chain.write_fixed(
                    &self.files.data,
                    key,
                    data_start + plan.data_skip,
                    plan.write_len(),
                    plan.data_file_offset,
                );
                let crc_offset = meta_offset(state.disk_checksum(), plan.first_disk_chunk);
                match state.disk_checksums(&plan, checksums, data)? {
                    Cow::Borrowed([]) => {}
                    Cow::Borrowed(stored) => {
                        // The packet's own CRCs, written from the slot they arrived in.
                        let at = stored.as_ptr() as usize - bytes.as_ptr() as usize;
                        chain.write_fixed(&self.files.meta, key, at, stored.len(), crc_offset);
                    }
                    Cow::Owned(stored) => {
                        // Recomputed CRCs (checksum translation or a partial first chunk).
                        let mut extra = io.control_arena().acquire(stored.len()).await?;
                        extra.as_mut_slice()[..stored.len()].copy_from_slice(&stored);
                        let extra_key = chain.lend(extra);
                        chain.write_fixed(&self.files.meta, extra_key, 0, stored.len(), crc_offset);
                    }
                }
            }
            if plan.header.sync_block {
                chain.fsync(&self.files.data, true);
                chain.fsync(&self.files.meta, true);
            }
            let results = chain.submit().await;
            if let Some(error) = results.first_error() {
                return Err(error.into());
            }
        }
        state.commit(&plan);
        Metrics::add(&self.conn.ctx.metrics.bytes_written, plan.write_len() as u64);
        Ok(plan.end_offset)
    }

    async fn enqueue(&self, seqno: i64, status: Status, end_offset: u64, last: bool) {
        if let Some(acks) = &self.acks {
            let _ = acks.send(AckEntry { seqno, status, end_offset, last }).await;
        }
    }
}

struct Responder {
    io: Io,
    upstream: Socket,
    mirror: Option<(Inbound, Duration)>,
    flags: Rc<PipelineFlags>,
    progress: Arc<WriteProgress>,
}

impl Responder {
    async fn run(mut self, queue: Receiver<AckEntry>) -> Result<(), XceiverError> {
        let outcome = self.respond_all(queue).await;
        // Wake the receiver, waiting for the next packet, unless it is the one that
        // failed (it stopped reading and lingers for the error ack to land).
        if outcome.is_err() && !self.flags.failed.replace(true) {
            let _ = self.upstream.shutdown();
        }
        outcome
    }

    async fn respond_all(&mut self, mut queue: Receiver<AckEntry>) -> Result<(), XceiverError> {
        let has_mirror = self.mirror.is_some();
        while let Some(entry) = queue.recv().await {
            let mirror_ack = self.mirror_ack(&entry).await?;
            let downstream = match (&mirror_ack, has_mirror) {
                (Some(ack), _) => Downstream::Ack(ack),
                (None, true) => Downstream::Failed,
                (None, false) => Downstream::None,
            };
            let ack = compose_ack(entry.seqno, entry.status, downstream);
            let all_success = ack.reply.iter().all(|s| *s == Status::Success as i32);
            if all_success && entry.seqno >= 0 {
                self.progress.advance_bytes_acked(entry.end_offset.min(self.progress.bytes_on_disk()));
            }
            send_message(&self.io, &self.upstream, &ack, false).await?;
            if entry.status != Status::Success {
                return Err(OpError::invalid(format!(
                    "packet {} failed with {:?}",
                    entry.seqno, entry.status
                ))
                .into());
            }
            if entry.last {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The mirror's ack for `entry`, or `None` once the mirror has failed.
    async fn mirror_ack(&mut self, entry: &AckEntry) -> Result<Option<PipelineAckProto>, XceiverError> {
        let Some((inbound, timeout)) = self.mirror.as_mut() else { return Ok(None) };
        if self.flags.mirror_failed.get() || entry.status != Status::Success {
            return Ok(None);
        }
        match inbound.read_message::<PipelineAckProto>(&self.io, "mirror ack", *timeout).await {
            Ok(ack) if ack.seqno != entry.seqno => Err(OpError::invalid(format!(
                "mirror acked seqno {} while {} was expected",
                ack.seqno, entry.seqno
            ))
            .into()),
            Ok(ack) if mirror_reports_corruption(&ack) => {
                // The mirror verified what we forwarded and found it corrupt: we are the
                // bad node. Stop without acking so the upstream drops us.
                Err(OpError::invalid("the mirror reported corrupt data from this node").into())
            }
            Ok(ack) => Ok(Some(ack)),
            Err(error) => {
                info!(%error, "reading the mirror's ack failed; reporting it as failed");
                self.flags.mirror_failed.set(true);
                Ok(None)
            }
        }
    }
}
