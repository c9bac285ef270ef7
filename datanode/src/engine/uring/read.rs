//! Sending a planned read ([`ReadPlan`]) on the ring.
//!
//! READ_FIXED + SEND (the default, see [`ReadMode`]; SEND_ZC alike), in batches of 4 packets:
//! each packet's header (encoded by the CPU), CRCs (READ_FIXED from the `.meta`) and
//! data (READ_FIXED from the block file) land contiguous in a registered packet slot;
//! a batch's reads run side by side (unlinked), and while batch k leaves in order (one
//! linked chain of SENDs; with SEND_ZC each slot is held until its notification) batch k+1 is read.
//! Long reads also ask the kernel to read ahead (FADVISE WILLNEED, see
//! [`Readahead`]), so a cold read streams from the disk.
//!
//! Splice mode, per packet (4 linked SQEs, up to 7 packets per chain):
//!
//! ```text
//! header encoded by the CPU into a registered control slot
//! READ_FIXED  .meta  -> control slot (the packet's CRCs, right after the header)
//! SEND        control slot (header + CRCs), MSG_MORE
//! SPLICE      block file -> pooled pipe
//! SPLICE      pooled pipe -> socket          (page references, no copy)
//! ```

use std::iter::Peekable;
use std::os::fd::AsFd;

use ringfs_common::limits::PACKET_HEADER_SIZE_MAX;

use super::conn::XceiverError;
use crate::io::limits::CONTROL_SLOT_SIZE;
use crate::io::{self, BufSlot, FixedFile, Io, PooledPipe, Socket, SpliceEnd};
use crate::limits::SOCKET_WRITE_TIMEOUT;
use crate::ops::read::{ReadPacket, ReadPlan, Readahead};
use crate::store::files::meta_offset;

/// How read data leaves the block file.
///
/// Measured with `tests/uring_engine.rs::read_mode_experiment` (release, 2-core VM,
/// Linux 6.18, 5 interleaved rounds of 1 GiB page-cached reads over loopback, medians;
/// datanode CPU = process CPU minus the client thread's, io-wq workers included):
///
/// ```text
///                          load 5: GB/s  DN CPU s/GiB   load 23: GB/s  DN+client CPU s/GiB
/// threads (sendfile)             0.96       0.27                 0.56        0.74
/// uring splice                   1.12       0.47                 0.65        0.69
/// uring READ_FIXED+SEND_ZC       1.36       0.28                 0.83        0.57
/// uring READ_FIXED+SEND           -          -                   0.81        0.62
/// ```
///
/// IORING_OP_SPLICE always runs in an io-wq worker thread (two hand-offs per packet),
/// which costs more than the copy it saves. Over loopback the kernel copies zero-copy
/// sends anyway (each notification says so); SEND_ZC beat plain SEND by a few percent
/// with a client that reads as fast as it can, but with a slower reader (the Java
/// client's `hadoop fs -get`/`-cat`) zero-copy sends stalled for hundreds of
/// milliseconds at a time: a 1 GiB `-cat` took 9-60 s with SEND_ZC and 2.1-2.7 s with
/// SEND (the bench's 200 ms latency outliers on hot reads were the same stalls). Hence
/// plain SEND by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Header + CRCs from a control slot, data file -> pipe -> socket.
    Splice,
    /// Header, CRCs and data READ_FIXED into one packet slot, sent with SEND_ZC.
    ReadFixedSendZc,
    /// As `ReadFixedSendZc`, sent with a plain SEND (one copy into the socket, no
    /// notification, and the whole chain completes with one CQE).
    ReadFixedSend,
}

impl ReadMode {
    /// See above: the mode that never stalls a real client.
    pub const DEFAULT: ReadMode = ReadMode::ReadFixedSend;
}

/// Packets linked into one chain: 8 x 64 KiB = 512 KiB per submission; the chain is
/// bounded by the ring's CHAIN_OPS_MAX (32 SQEs) and a chain's 8 lent slots.
const PACKETS_PER_CHAIN_MAX: usize = 8;

/// The replica's files in the ring's fixed-file table for the duration of a read.
struct ReplicaFiles {
    data: FixedFile,
    meta: FixedFile,
}

/// Sends every packet of `plan` (the empty last one included); returns data bytes sent.
pub(super) async fn send_plan(
    io: &Io,
    socket: &Socket,
    plan: &ReadPlan,
    mode: ReadMode,
) -> Result<u64, XceiverError> {
    let files = ReplicaFiles {
        data: io.files().install_wait(plan.reader.data.as_fd()).await?,
        meta: io.files().install_wait(plan.reader.meta.as_fd()).await?,
    };
    let mut packets = plan.packets().peekable();
    let mut readahead = plan.readahead();
    let mut sent = 0;
    match mode {
        ReadMode::Splice => {
            let pipe =
                io.pipes().take().await.map_err(|errno| XceiverError::Pipe { what: "take a pipe", errno })?;
            while let Some(packet) = packets.peek() {
                advise_readahead(io, &files, &mut readahead, packet.offset_in_block);
                sent += send_spliced(io, socket, plan, &files, &pipe, &mut packets).await?;
            }
        }
        ReadMode::ReadFixedSendZc | ReadMode::ReadFixedSend => {
            let zero_copy = mode == ReadMode::ReadFixedSendZc;
            let mut next_batch = |readahead: &mut Readahead| {
                let batch: [Option<ReadPacket>; PACKETS_PER_BATCH] = std::array::from_fn(|_| packets.next());
                if let Some(first) = &batch[0] {
                    advise_readahead(io, &files, readahead, first.offset_in_block);
                }
                batch
            };
            // Batch k+1 is read into its slots while batch k is being sent.
            let mut filled = fill_batch(io, plan, &files, next_batch(&mut readahead)).await?;
            loop {
                let batch = next_batch(&mut readahead);
                if batch[0].is_none() {
                    sent += send_batch(io, socket, filled, zero_copy).await?;
                    break;
                }
                // Boxed: two chains' worth of state side by side is too much for a stack
                // frame in debug builds.
                let (sending, filling) = io::sync::join(
                    Box::pin(send_batch(io, socket, filled, zero_copy)),
                    Box::pin(fill_batch(io, plan, &files, batch)),
                )
                .await;
                sent += sending?;
                filled = filling?;
            }
        }
    }
    Ok(sent)
}

/// Starts the kernel reading ahead of `position` when the window needs a refill. It runs
/// beside the read (an io-wq worker queues the disk reads); failing costs speed only.
fn advise_readahead(io: &Io, files: &ReplicaFiles, readahead: &mut Readahead, position: u64) {
    let Some((offset, len)) = readahead.next(position) else { return };
    let (io, file) = (io.clone(), files.data.clone());
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    io.clone().spawn(async move {
        if let Err(error) = io.readahead(&file, offset, len).await {
            tracing::debug!(%error, offset, len, "readahead advice failed");
        }
    });
}

/// Does this packet hold the chunk whose CRC the plan recomputed (the last partial
/// chunk of a replica still being written)? Its CRCs are then filled by the CPU.
fn needs_fresh_crc(plan: &ReadPlan, packet: &ReadPacket) -> bool {
    let size = plan.wire_checksum.kind.size().max(1);
    let chunks = (packet.checksum_len / size) as u64;
    plan.fresh_last_crc
        .is_some_and(|(chunk, _)| chunk >= packet.first_chunk && chunk < packet.first_chunk + chunks)
}

/// Writes the packet's header (and its CRCs, when the CPU must provide them) at
/// `slot[at..]`; returns the header's length and whether the CRCs are still to be read.
fn prepare_packet(
    plan: &ReadPlan,
    packet: &ReadPacket,
    slot: &mut BufSlot,
    at: usize,
) -> Result<(usize, bool), XceiverError> {
    let mut target = &mut slot.as_mut_slice()[at..];
    let prefix_len = packet.header().encode_prefix(packet.checksum_len, &mut target);
    if packet.checksum_len == 0 {
        return Ok((prefix_len, false));
    }
    if needs_fresh_crc(plan, packet) {
        let start = at + prefix_len;
        plan.fill_checksums(packet, &mut slot.as_mut_slice()[start..start + packet.checksum_len])?;
        return Ok((prefix_len, false));
    }
    Ok((prefix_len, true))
}

fn crc_offset(plan: &ReadPlan, packet: &ReadPacket) -> u64 {
    meta_offset(plan.disk_checksum, packet.first_chunk)
}

/// One chain of spliced packets.
async fn send_spliced<I: Iterator<Item = ReadPacket>>(
    io: &Io,
    socket: &Socket,
    plan: &ReadPlan,
    files: &ReplicaFiles,
    pipe: &PooledPipe,
    packets: &mut Peekable<I>,
) -> Result<u64, XceiverError> {
    let prefix_max = PACKET_HEADER_SIZE_MAX + plan.wire_checksum.checksum_len(plan.packet_data_max);
    let per_chain = (CONTROL_SLOT_SIZE / prefix_max).clamp(1, PACKETS_PER_CHAIN_MAX);
    let mut slot = io.control_arena().acquire(prefix_max * per_chain).await?;
    let mut batch: [Option<(ReadPacket, usize, usize, bool)>; PACKETS_PER_CHAIN_MAX] =
        [None; PACKETS_PER_CHAIN_MAX];
    let (mut count, mut at) = (0, 0);
    while count < per_chain {
        let Some(packet) = packets.next() else { break };
        let (prefix_len, read_crcs) = prepare_packet(plan, &packet, &mut slot, at)?;
        batch[count] = Some((packet, at, prefix_len, read_crcs));
        at += prefix_len + packet.checksum_len;
        count += 1;
    }
    let mut chain = io.chain();
    let key = chain.lend(slot);
    let mut data_bytes = 0;
    for (index, (packet, at, prefix_len, read_crcs)) in
        batch.iter().take(count).flatten().copied().enumerate()
    {
        let last_in_chain = index + 1 == count;
        if read_crcs {
            chain.read_fixed(
                &files.meta,
                key,
                at + prefix_len,
                packet.checksum_len,
                crc_offset(plan, &packet),
            );
        }
        // MSG_MORE while data follows, so header and data leave in full segments.
        chain.send(socket, key, at, prefix_len + packet.checksum_len, packet.data_len > 0);
        if packet.data_len > 0 {
            let source = SpliceEnd::File { file: &files.data, offset: packet.offset_in_block };
            chain.splice(source, SpliceEnd::PipeWrite(pipe), packet.data_len, false);
            chain.splice(
                SpliceEnd::PipeRead(pipe),
                SpliceEnd::Socket(socket),
                packet.data_len,
                !last_in_chain,
            );
            data_bytes += packet.data_len as u64;
        }
    }
    let results = io
        .with_timeout(SOCKET_WRITE_TIMEOUT, chain.submit())
        .await
        .map_err(XceiverError::timed_out("read"))?;
    if let Some(error) = results.first_error() {
        return Err(error.into());
    }
    Ok(data_bytes)
}

/// Packets one batch reads into its slots while the batch before it is being sent:
/// 4 x 64 KiB, so a reader holds at most 8 packet slots (two batches).
const PACKETS_PER_BATCH: usize = 4;

/// A batch of packets, each whole in its slot (header, CRCs, data): `(packet, slot, bytes)`.
type FilledBatch = [Option<(ReadPacket, BufSlot, usize)>; PACKETS_PER_BATCH];

/// Reads the CRCs and data of up to [`PACKETS_PER_BATCH`] packets into packet slots, all
/// at once (an unlinked batch: the reads run side by side).
async fn fill_batch(
    io: &Io,
    plan: &ReadPlan,
    files: &ReplicaFiles,
    batch: [Option<ReadPacket>; PACKETS_PER_BATCH],
) -> Result<FilledBatch, XceiverError> {
    let mut filled: FilledBatch = [const { None }; PACKETS_PER_BATCH];
    let mut reads = io.batch();
    let mut lent = [None; PACKETS_PER_BATCH];
    for (index, packet) in batch.into_iter().flatten().enumerate() {
        let total = PACKET_HEADER_SIZE_MAX + packet.checksum_len + packet.data_len;
        let mut slot = io.packet_arena().acquire(total).await?;
        let (prefix_len, read_crcs) = prepare_packet(plan, &packet, &mut slot, 0)?;
        let data_at = prefix_len + packet.checksum_len;
        let bytes = data_at + packet.data_len;
        if !read_crcs && packet.data_len == 0 {
            filled[index] = Some((packet, slot, bytes)); // Nothing to read (the end packet).
            continue;
        }
        let key = reads.lend(slot);
        if read_crcs {
            reads.read_fixed(&files.meta, key, prefix_len, packet.checksum_len, crc_offset(plan, &packet));
        }
        if packet.data_len > 0 {
            reads.read_fixed(&files.data, key, data_at, packet.data_len, packet.offset_in_block);
        }
        lent[index] = Some((packet, key, bytes));
    }
    if !reads.is_empty() {
        let mut results = io
            .with_timeout(SOCKET_WRITE_TIMEOUT, reads.submit())
            .await
            .map_err(XceiverError::timed_out("read"))?;
        if let Some(error) = results.first_error() {
            return Err(error.into());
        }
        for (index, entry) in lent.into_iter().enumerate() {
            if let Some((packet, key, bytes)) = entry {
                filled[index] = Some((packet, results.take_slot(key), bytes));
            }
        }
    }
    Ok(filled)
}

/// Sends a filled batch in order (one linked chain); returns the data bytes sent.
async fn send_batch(
    io: &Io,
    socket: &Socket,
    filled: FilledBatch,
    zero_copy: bool,
) -> Result<u64, XceiverError> {
    let mut chain = io.chain();
    let mut data_bytes = 0;
    for (packet, slot, bytes) in filled.into_iter().flatten() {
        let key = chain.lend_shared(slot.share());
        if packet.data_len > 0 && zero_copy {
            chain.send_zc(socket, key, 0, bytes, false);
        } else {
            // The 31-byte end-of-read packet is not worth a zero-copy notification.
            chain.send(socket, key, 0, bytes, false);
        }
        data_bytes += packet.data_len as u64;
    }
    if chain.is_empty() {
        return Ok(0);
    }
    let results = io
        .with_timeout(SOCKET_WRITE_TIMEOUT, chain.submit())
        .await
        .map_err(XceiverError::timed_out("read"))?;
    if let Some(error) = results.first_error() {
        return Err(error.into());
    }
    Ok(data_bytes)
}
