//! WRITE_BLOCK on the threads engine: the receiving thread reads each packet, forwards
//! it downstream before writing it locally, and queues its ack; a responder thread
//! pairs queued packets with the mirror's acks and sends the combined acks upstream,
//! in order.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfs_common::dtp::PacketLayout;
use ringfs_common::proto::hdfs::{BlockOpResponseProto, OpWriteBlockProto, PipelineAckProto, Status};
use tracing::{debug, info, warn};

use super::{shutdown_quietly, Connection, Next, XceiverError, READ_BUFFER_SIZE};
use crate::context::Metrics;
use crate::limits::{
    MIRROR_CONNECT_TIMEOUT, READ_TIMEOUT_EXTENSION, SOCKET_READ_TIMEOUT, SOCKET_WRITE_TIMEOUT,
    UNACKED_PACKETS_MAX,
};
use crate::net::{read_delimited, read_packet, write_delimited, WireError};
use crate::ops::write::{
    abandon, complete, compose_ack, connect_ack, mirror_reports_corruption, open_replica, Downstream,
    MirrorTarget, ReceiveState, WriteRequest, WriteTarget,
};
use crate::ops::OpError;
use crate::store::WriteProgress;

/// How long a failed write waits for the upstream to read its error and hang up.
const LINGER_TIMEOUT: Duration = Duration::from_secs(3);

/// The downstream datanode of a pipeline.
struct Mirror {
    addr: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

/// A packet waiting for its ack.
struct AckEntry {
    seqno: i64,
    status: Status,
    end_offset: u64,
    last: bool,
}

pub(super) fn write_block(conn: &mut Connection<'_>, proto: OpWriteBlockProto) -> Result<Next, XceiverError> {
    let request = match WriteRequest::parse(proto) {
        Ok(request) => request,
        Err(e) => return conn.fail(e),
    };
    let ctx = conn.ctx;
    let target = match open_replica(&ctx.store, &ctx.events, &request) {
        Ok(target) => target,
        Err(e) => {
            info!(peer = %conn.peer, block_id = request.block().block_id, stage = request.stage.as_str_name(), error = %e, "write setup refused");
            return conn.fail(e);
        }
    };
    let mirror_target = request.mirror();
    let mut mirror = None;
    let (mut status, mut first_bad_link) = (Status::Success, String::new());
    if let Some(target) = &mirror_target {
        match connect_mirror(target, request.proto.targets.len()) {
            Ok(mut connected) => {
                if request.sends_acks() {
                    match read_delimited::<BlockOpResponseProto>(&mut connected.reader, "mirror connect-ack")
                    {
                        Ok(ack) => {
                            status = Status::try_from(ack.status).unwrap_or(Status::Error);
                            first_bad_link = ack.first_bad_link.unwrap_or_default();
                        }
                        Err(e) => {
                            info!(mirror = %target.addr, error = %e, "mirror connect-ack failed");
                            (status, first_bad_link) = (Status::Error, target.addr.clone());
                        }
                    }
                }
                mirror = Some(connected);
            }
            Err(e) => {
                info!(mirror = %target.addr, error = %e, "cannot reach the mirror");
                (status, first_bad_link) = (Status::Error, target.addr.clone());
            }
        }
    }
    if request.sends_acks() {
        conn.respond(&connect_ack(status, &first_bad_link))?;
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
    let stopper_socket = conn.writer.try_clone().ok();
    state.writer().set_stopper(Box::new(move || {
        if let Some(socket) = &stopper_socket {
            shutdown_quietly(socket);
        }
    }));
    let verify = request.verifies(mirror.is_some(), state.disk_checksum());
    let outcome = receive(conn, &request, state, mirror, verify);
    if let Err(e) = &outcome {
        info!(peer = %conn.peer, block_id = request.block().block_id, error = %e, "write failed");
        linger(conn);
    }
    outcome?;
    if request.sends_close_ack() {
        conn.respond(&crate::ops::success_response())?;
    }
    Ok(Next::Close)
}

/// After a failed write: stop sending, then read and drop what the upstream still
/// sends until it hangs up, so that closing does not reset the connection and destroy
/// the error ack in flight (Java sleeps 3 s for the same reason).
fn linger(conn: &mut Connection<'_>) {
    let _ = conn.writer.shutdown(Shutdown::Write);
    let _ = conn.writer.set_read_timeout(Some(LINGER_TIMEOUT));
    let started = Instant::now();
    let mut sink = vec![0u8; 64 * 1024];
    while started.elapsed() < LINGER_TIMEOUT {
        match conn.reader.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn connect_mirror(target: &MirrorTarget, downstream_count: usize) -> Result<Mirror, WireError> {
    let io = |what| move |source| WireError::Io { what, source };
    let addr = target
        .addr
        .to_socket_addrs()
        .map_err(io("resolve mirror"))?
        .next()
        .ok_or(WireError::Eof { what: "mirror address" })?;
    let stream =
        TcpStream::connect_timeout(&addr, MIRROR_CONNECT_TIMEOUT).map_err(io("connect to mirror"))?;
    let read_timeout = SOCKET_READ_TIMEOUT + READ_TIMEOUT_EXTENSION * downstream_count as u32;
    stream.set_nodelay(true).map_err(io("configure mirror socket"))?;
    stream.set_read_timeout(Some(read_timeout)).map_err(io("configure mirror socket"))?;
    stream.set_write_timeout(Some(SOCKET_WRITE_TIMEOUT)).map_err(io("configure mirror socket"))?;
    let mut op = Vec::new();
    target.request.encode(&mut op);
    let mut writer = stream;
    writer.write_all(&op).map_err(io("send op to mirror"))?;
    let reader = BufReader::with_capacity(4096, writer.try_clone().map_err(io("clone mirror socket"))?);
    Ok(Mirror { addr: target.addr.clone(), writer, reader })
}

/// Receives packets until the last one (or an error), with a responder thread when
/// the upstream expects acks.
fn receive(
    conn: &mut Connection<'_>,
    request: &WriteRequest,
    state: ReceiveState,
    mirror: Option<Mirror>,
    verify: bool,
) -> Result<(), XceiverError> {
    let failed = AtomicBool::new(false);
    let mirror_failed = AtomicBool::new(false);
    let (mirror_writer, mirror_reader, mirror_addr) = match mirror {
        Some(m) => (Some(m.writer), Some(m.reader), m.addr),
        None => (None, None, String::new()),
    };
    let upstream =
        conn.writer.try_clone().map_err(|source| WireError::Io { what: "clone socket", source })?;
    let progress = Arc::clone(state.writer().progress());
    std::thread::scope(|scope| {
        let (acks, responder) = if request.sends_acks() {
            let (tx, rx) = sync_channel::<AckEntry>(UNACKED_PACKETS_MAX);
            let responder = Responder {
                upstream: &upstream,
                mirror: mirror_reader,
                mirror_failed: &mirror_failed,
                failed: &failed,
                progress: &progress,
                has_mirror: mirror_writer.is_some(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("responder {}", request.block().block_id))
                .spawn_scoped(scope, move || responder.run(rx))
                .map_err(|source| WireError::Io { what: "spawn responder", source })?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        let receiver = PacketLoop {
            conn: &mut *conn,
            request,
            mirror: mirror_writer.as_ref(),
            mirror_addr: &mirror_addr,
            mirror_failed: &mirror_failed,
            failed: &failed,
            acks,
            verify,
        };
        let outcome = receiver.run(state);
        if outcome.is_err() {
            failed.store(true, Ordering::Release);
            // Wake the responder if it is blocked on the mirror.
            if let Some(m) = &mirror_writer {
                shutdown_quietly(m);
            }
        }
        let responder_outcome = responder
            .map(|h| h.join().unwrap_or(Err(XceiverError::Op(OpError::invalid("responder panicked")))));
        outcome?;
        if let Some(result) = responder_outcome {
            result?;
        }
        Ok(())
    })
}

struct PacketLoop<'c, 'a> {
    conn: &'c mut Connection<'a>,
    request: &'c WriteRequest,
    mirror: Option<&'c TcpStream>,
    mirror_addr: &'c str,
    mirror_failed: &'c AtomicBool,
    failed: &'c AtomicBool,
    acks: Option<SyncSender<AckEntry>>,
    verify: bool,
}

impl PacketLoop<'_, '_> {
    fn run(mut self, state: ReceiveState) -> Result<(), XceiverError> {
        let mut buf = Vec::with_capacity(READ_BUFFER_SIZE);
        let ctx = self.conn.ctx;
        let mut state = Some(state);
        loop {
            let current = state.as_ref().expect("state held until completion");
            let layout = match read_packet(&mut self.conn.reader, &mut buf, Some(current.client_checksum())) {
                Ok(layout) => layout,
                Err(e) => {
                    if let Some(state) = state.take() {
                        abandon(&ctx.store, state);
                    }
                    return Err(e.into());
                }
            };
            let step = self.packet(current, &layout, &buf);
            let (status, end_offset) = match step {
                Ok(end_offset) => (Status::Success, end_offset),
                Err(e) => {
                    let status = e.status();
                    if status == Status::ErrorChecksum {
                        Metrics::add(&ctx.metrics.checksum_errors, 1);
                    }
                    // Tell the upstream which node failed, then stop: nothing bad was written.
                    self.failed.store(true, Ordering::Release);
                    self.enqueue(layout.header.seqno, status, 0, true);
                    if let Some(state) = state.take() {
                        abandon(&ctx.store, state);
                    }
                    return Err(e.into());
                }
            };
            let last = layout.header.last_packet_in_block;
            if last {
                let state = state.take().expect("state held until completion");
                match complete(&ctx.store, &ctx.events, self.request, state) {
                    Ok(replica) => {
                        Metrics::add(&ctx.metrics.blocks_written, 1);
                        debug!(
                            block_id = replica.block_id,
                            length = replica.visible_len(),
                            "replica complete"
                        );
                    }
                    Err(e) => {
                        self.failed.store(true, Ordering::Release);
                        self.enqueue(layout.header.seqno, Status::Error, end_offset, true);
                        return Err(e.into());
                    }
                }
            } else if self.acks.is_none() {
                // No acks (DN-to-DN copy): what is on disk is visible.
                current.acknowledge(end_offset);
            }
            self.enqueue(layout.header.seqno, status, end_offset, last);
            if last {
                return Ok(());
            }
            if self.failed.load(Ordering::Acquire) {
                return Err(OpError::invalid("the ack responder failed").into());
            }
        }
    }

    /// Forwards, verifies, writes and records one packet; returns its end offset.
    fn packet(&mut self, state: &ReceiveState, layout: &PacketLayout, buf: &[u8]) -> Result<u64, OpError> {
        // Downstream first, so the mirror works while we write.
        if let Some(mirror) = self.mirror {
            if !self.mirror_failed.load(Ordering::Acquire) {
                if let Err(e) = (&*mirror).write_all(&buf[..layout.total_len()]) {
                    info!(mirror = %self.mirror_addr, error = %e, "forwarding to the mirror failed");
                    self.mirror_failed.store(true, Ordering::Release);
                    if !self.request.is_client() {
                        return Err(OpError::invalid(format!("mirror {} failed: {e}", self.mirror_addr)));
                    }
                }
            }
        }
        let plan = state.plan(layout.header)?;
        if plan.heartbeat {
            return Ok(0);
        }
        let checksums_start = layout.prefix_len;
        let data_start = checksums_start + layout.checksum_len;
        let checksums = &buf[checksums_start..data_start];
        let data = &buf[data_start..layout.total_len()];
        if self.verify {
            state.verify(&plan, checksums, data)?;
        }
        state.write(&plan, checksums, data)?;
        state.commit(&plan);
        Metrics::add(&self.conn.ctx.metrics.bytes_written, plan.write_len() as u64);
        Ok(plan.end_offset)
    }

    fn enqueue(&self, seqno: i64, status: Status, end_offset: u64, last: bool) {
        if let Some(acks) = &self.acks {
            let _ = acks.send(AckEntry { seqno, status, end_offset, last });
        }
    }
}

struct Responder<'s> {
    upstream: &'s TcpStream,
    mirror: Option<BufReader<TcpStream>>,
    mirror_failed: &'s AtomicBool,
    failed: &'s AtomicBool,
    progress: &'s WriteProgress,
    has_mirror: bool,
}

impl Responder<'_> {
    fn run(mut self, queue: Receiver<AckEntry>) -> Result<(), XceiverError> {
        let outcome = self.respond_all(queue);
        // Wake the receiving thread, blocked reading the next packet, unless it is the
        // one that failed (it stopped reading and lingers for the error ack to land).
        if outcome.is_err() && !self.failed.swap(true, Ordering::AcqRel) {
            shutdown_quietly(self.upstream);
        }
        outcome
    }

    fn respond_all(&mut self, queue: Receiver<AckEntry>) -> Result<(), XceiverError> {
        while let Ok(entry) = queue.recv() {
            let mirror_ack = self.mirror_ack(&entry)?;
            let downstream = match (&mirror_ack, self.has_mirror) {
                (Some(ack), _) => Downstream::Ack(ack),
                (None, true) => Downstream::Failed,
                (None, false) => Downstream::None,
            };
            let ack = compose_ack(entry.seqno, entry.status, downstream);
            let all_success = ack.reply.iter().all(|s| *s == Status::Success as i32);
            if all_success && entry.seqno >= 0 {
                self.progress.advance_bytes_acked(entry.end_offset.min(self.progress.bytes_on_disk()));
            }
            write_delimited(&mut &*self.upstream, &ack, "pipeline ack")?;
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
    fn mirror_ack(&mut self, entry: &AckEntry) -> Result<Option<PipelineAckProto>, XceiverError> {
        let Some(reader) = self.mirror.as_mut() else { return Ok(None) };
        if self.mirror_failed.load(Ordering::Acquire) || entry.status != Status::Success {
            return Ok(None);
        }
        match read_delimited::<PipelineAckProto>(reader, "mirror ack") {
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
            Err(e) => {
                info!(error = %e, "reading the mirror's ack failed; reporting it as failed");
                self.mirror_failed.store(true, Ordering::Release);
                Ok(None)
            }
        }
    }
}
