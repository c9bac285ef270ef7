//! Running a DN-to-DN copy (blocking): connect to the first target, send the
//! WRITE_BLOCK op and the replica's packets, and wait for the close-ack when the
//! receiver sends one. Used by TRANSFER_BLOCK and by the namenode's DNA_TRANSFER.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};

use ringfs_common::proto::hdfs::{BlockOpResponseProto, Status};
use tracing::info;

use crate::context::{DataNodeContext, Metrics};
use crate::limits::{MIRROR_CONNECT_TIMEOUT, SOCKET_READ_TIMEOUT, SOCKET_WRITE_TIMEOUT};
use crate::net::{read_delimited, send_read_plan, WireError};
use crate::ops::transfer::TransferPlan;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("transfer to {target}: {source}")]
    Wire { target: String, source: WireError },
    #[error("transfer to {target} refused: {status:?} {message}")]
    Refused { target: String, status: Status, message: String },
}

/// Sends the planned copy; returns once the target has it (close-ack) or once every
/// byte is sent (replication, where the target reports to the namenode itself).
pub fn run(ctx: &DataNodeContext, mut plan: TransferPlan) -> Result<(), TransferError> {
    plan.read.readahead_bytes = ctx.config.readahead_bytes;
    let target = plan.target_addr.clone();
    let wire = |source| TransferError::Wire { target: target.clone(), source };
    let io = |what| move |source| WireError::Io { what, source };
    let addr = target
        .to_socket_addrs()
        .map_err(io("resolve target"))
        .map_err(wire)?
        .next()
        .ok_or(WireError::Eof { what: "target address" })
        .map_err(wire)?;
    let stream =
        TcpStream::connect_timeout(&addr, MIRROR_CONNECT_TIMEOUT).map_err(io("connect")).map_err(wire)?;
    stream
        .set_nodelay(true)
        .and_then(|_| stream.set_read_timeout(Some(SOCKET_READ_TIMEOUT)))
        .and_then(|_| stream.set_write_timeout(Some(SOCKET_WRITE_TIMEOUT)))
        .map_err(io("configure socket"))
        .map_err(wire)?;
    let mut op = Vec::new();
    plan.request.encode(&mut op);
    (&stream).write_all(&op).map_err(io("send op")).map_err(wire)?;
    let sent = send_read_plan(&stream, &plan.read).map_err(wire)?;
    Metrics::add(&ctx.metrics.bytes_read, sent);
    if plan.expects_close_ack {
        let mut reader = BufReader::new(&stream);
        let ack: BlockOpResponseProto = read_delimited(&mut reader, "close-ack").map_err(wire)?;
        let status = Status::try_from(ack.status).unwrap_or(Status::Error);
        if status != Status::Success {
            return Err(TransferError::Refused { target, status, message: ack.message.unwrap_or_default() });
        }
    } else {
        // Half-close and wait for the target to finish reading: it closes after the
        // last packet.
        let _ = stream.shutdown(Shutdown::Write);
        let mut sink = [0u8; 512];
        let mut reader = &stream;
        while matches!(std::io::Read::read(&mut reader, &mut sink), Ok(n) if n > 0) {}
    }
    Metrics::add(&ctx.metrics.blocks_replicated, 1);
    info!(block_id = plan.read.reader.block_id, target, bytes = sent, "replica transferred");
    Ok(())
}
