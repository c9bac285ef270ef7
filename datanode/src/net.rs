//! Blocking data-port I/O shared by the threads engine and DN-to-DN transfers: reading
//! ops, varint-delimited messages and whole packets (every length capped before
//! allocating), and sending a planned read with sendfile(2).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use nix::sys::socket::{send, MsgFlags};
use prost::Message;
use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{split_delimited, DtpError, OpRequest, PacketLayout};
use ringfs_common::limits::{
    DTP_MESSAGE_SIZE_MAX, OP_REQUEST_SIZE_MAX, PACKET_HEADER_SIZE_MAX, PACKET_LENGTHS_SIZE,
};

use crate::ops::read::ReadPlan;
use crate::store::StoreError;

/// Errors reading from or writing to a data-port peer.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{what}: {source}")]
    Io { what: &'static str, source: io::Error },
    #[error("connection closed while reading {what}")]
    Eof { what: &'static str },
    #[error(transparent)]
    Dtp(#[from] DtpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("replica file ended {missing} bytes early (block file shorter than its length)")]
    ShortFile { missing: usize },
}

impl WireError {
    fn io(what: &'static str) -> impl FnOnce(io::Error) -> WireError {
        move |source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                WireError::Eof { what }
            } else {
                WireError::Io { what, source }
            }
        }
    }

    /// A read timeout (idle connection) rather than a fault.
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Reads one op request; `Ok(None)` on a clean end of stream before its first byte.
pub fn read_op(reader: &mut impl Read) -> Result<Option<OpRequest>, WireError> {
    let mut buf = vec![0u8; 3];
    match reader.read(&mut buf[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(WireError::io("op request")(e)),
    }
    reader.read_exact(&mut buf[1..3]).map_err(WireError::io("op request"))?;
    // Version and op are checked before the body is read (and before the body's size
    // is trusted): decoding the 3 bytes alone reports a version mismatch or bad op.
    if let Err(e) = OpRequest::decode(&buf) {
        return Err(e.into());
    }
    read_varint_delimited_into(reader, &mut buf, "op request", OP_REQUEST_SIZE_MAX)?;
    match OpRequest::decode(&buf)? {
        Some((op, consumed)) if consumed == buf.len() => Ok(Some(op)),
        _ => unreachable!("a whole delimited op was read"),
    }
}

/// Appends a varint length and that many bytes to `buf`, refusing lengths over `max`.
fn read_varint_delimited_into(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    what: &'static str,
    max: usize,
) -> Result<(), WireError> {
    let start = buf.len();
    loop {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).map_err(WireError::io(what))?;
        buf.push(byte[0]);
        if byte[0] & 0x80 == 0 {
            break;
        }
        if buf.len() - start >= 10 {
            return Err(DtpError::VarintTooLong { what }.into());
        }
    }
    let size = match split_delimited(&buf[start..], what, max)? {
        Some((body, _)) => body.len(),
        None => {
            let mut size = 0usize;
            for (i, b) in buf[start..].iter().enumerate() {
                size |= usize::from(b & 0x7f) << (7 * i);
            }
            size
        }
    };
    let body_start = buf.len();
    buf.resize(body_start + size, 0);
    reader.read_exact(&mut buf[body_start..]).map_err(WireError::io(what))?;
    Ok(())
}

/// Reads one varint-delimited message (responses, acks, status), capped at
/// [`DTP_MESSAGE_SIZE_MAX`].
pub fn read_delimited<M: Message + Default>(
    reader: &mut impl Read,
    what: &'static str,
) -> Result<M, WireError> {
    let mut buf = Vec::new();
    read_varint_delimited_into(reader, &mut buf, what, DTP_MESSAGE_SIZE_MAX)?;
    let (body, _) = split_delimited(&buf, what, DTP_MESSAGE_SIZE_MAX)?.expect("whole message read");
    M::decode(body).map_err(|source| DtpError::Decode { what, source }.into())
}

/// Writes one varint-delimited message.
pub fn write_delimited(
    writer: &mut impl Write,
    message: &impl Message,
    what: &'static str,
) -> Result<(), WireError> {
    let mut out = Vec::with_capacity(message.encoded_len() + 5);
    ringfs_common::dtp::encode_delimited(message, &mut out);
    writer.write_all(&out).map_err(WireError::io(what))?;
    writer.flush().map_err(WireError::io(what))
}

/// Reads one whole packet into `buf` (replacing its contents), checking every length
/// against the caps, and against `checksum` when given, before reading the payload.
pub fn read_packet(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    checksum: Option<DataChecksum>,
) -> Result<PacketLayout, WireError> {
    buf.clear();
    buf.resize(PACKET_LENGTHS_SIZE, 0);
    reader.read_exact(buf).map_err(WireError::io("packet"))?;
    let header_len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if header_len + PACKET_LENGTHS_SIZE > PACKET_HEADER_SIZE_MAX {
        return Err(DtpError::HeaderTooLarge {
            header_len,
            max: PACKET_HEADER_SIZE_MAX - PACKET_LENGTHS_SIZE,
        }
        .into());
    }
    buf.resize(PACKET_LENGTHS_SIZE + header_len, 0);
    reader.read_exact(&mut buf[PACKET_LENGTHS_SIZE..]).map_err(WireError::io("packet header"))?;
    let layout = PacketLayout::decode(buf, checksum)?.expect("prefix complete");
    let prefix_len = layout.prefix_len;
    buf.resize(layout.total_len(), 0);
    reader.read_exact(&mut buf[prefix_len..]).map_err(WireError::io("packet payload"))?;
    Ok(layout)
}

/// Sends a planned read: per packet, the prefix and checksums with MSG_MORE, then the
/// data straight from the block file with sendfile(2). Returns data bytes sent.
pub fn send_read_plan(socket: &TcpStream, plan: &ReadPlan) -> Result<u64, WireError> {
    let mut head =
        Vec::with_capacity(PACKET_HEADER_SIZE_MAX + plan.wire_checksum.checksum_len(plan.packet_data_max));
    let mut sent = 0u64;
    let mut readahead = plan.readahead();
    for packet in plan.packets() {
        if let Some((offset, len)) = readahead.next(packet.offset_in_block) {
            // Only a hint: a failure costs speed, not correctness.
            let _ = nix::fcntl::posix_fadvise(
                plan.reader.data.as_raw_fd(),
                offset as i64,
                len as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
        head.clear();
        packet.header().encode_prefix(packet.checksum_len, &mut head);
        let at = head.len();
        head.resize(at + packet.checksum_len, 0);
        plan.fill_checksums(&packet, &mut head[at..])?;
        let more = if packet.data_len > 0 {
            MsgFlags::from_bits_retain(nix::libc::MSG_MORE)
        } else {
            MsgFlags::empty()
        };
        send_all(socket, &head, more)?;
        if packet.data_len > 0 {
            sendfile_all(socket, &plan.reader.data, packet.offset_in_block, packet.data_len)?;
            sent += packet.data_len as u64;
        }
    }
    Ok(sent)
}

fn send_all(socket: &TcpStream, mut buf: &[u8], flags: MsgFlags) -> Result<(), WireError> {
    while !buf.is_empty() {
        match send(socket.as_raw_fd(), buf, flags | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(WireError::Io { what: "packet header", source: errno.into() }),
        }
    }
    Ok(())
}

fn sendfile_all(socket: &TcpStream, file: &std::fs::File, offset: u64, len: usize) -> Result<(), WireError> {
    let mut offset = offset as i64;
    let mut remaining = len;
    while remaining > 0 {
        match nix::sys::sendfile::sendfile64(socket, file, Some(&mut offset), remaining) {
            Ok(0) => return Err(WireError::ShortFile { missing: remaining }),
            Ok(n) => remaining -= n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(WireError::Io { what: "packet data", source: errno.into() }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::dtp::{Packet, PacketHeader};
    use ringfs_common::proto::hdfs::{BlockOpResponseProto, Status};

    #[test]
    fn reads_delimited_messages_and_packets() {
        let mut wire = Vec::new();
        let response = BlockOpResponseProto { status: Status::Success as i32, ..Default::default() };
        write_delimited(&mut wire, &response, "response").unwrap();
        let data = vec![7u8; 1000];
        let checksum = DataChecksum::CRC32C_512;
        let sums = checksum.compute_vec(&data);
        let header = PacketHeader {
            offset_in_block: 0,
            seqno: 0,
            last_packet_in_block: false,
            data_len: 1000,
            sync_block: false,
        };
        Packet { header, checksums: &sums, data: &data }.encode(&mut wire);
        let mut reader = &wire[..];
        let decoded: BlockOpResponseProto = read_delimited(&mut reader, "response").unwrap();
        assert_eq!(decoded, response);
        let mut buf = Vec::new();
        let layout = read_packet(&mut reader, &mut buf, Some(checksum)).unwrap();
        assert_eq!(layout.header, header);
        assert_eq!(&buf[layout.prefix_len + layout.checksum_len..], &data[..]);
        assert!(reader.is_empty());
    }

    #[test]
    fn refuses_oversized_lengths_before_allocating() {
        // A delimited message claiming 1 GiB.
        let wire = [0x80, 0x80, 0x80, 0x80, 0x04];
        assert!(matches!(
            read_delimited::<BlockOpResponseProto>(&mut &wire[..], "r"),
            Err(WireError::Dtp(_))
        ));
        // A packet whose header length exceeds the 27-byte maximum.
        let wire = [0, 0, 0, 4, 0, 200];
        assert!(matches!(read_packet(&mut &wire[..], &mut Vec::new(), None), Err(WireError::Dtp(_))));
        // A packet whose payload length exceeds 16 MiB.
        let mut wire = vec![0x7f, 0xff, 0xff, 0xff, 0, 25];
        wire.extend_from_slice(&[0u8; 25]);
        assert!(matches!(read_packet(&mut &wire[..], &mut Vec::new(), None), Err(WireError::Dtp(_))));
    }

    #[test]
    fn op_version_is_checked_first() {
        let wire = [0, 27, 81, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            read_op(&mut &wire[..]),
            Err(WireError::Dtp(DtpError::VersionMismatch { version: 27, .. }))
        ));
        assert!(matches!(read_op(&mut &[][..]), Ok(None)));
        assert!(matches!(read_op(&mut &[0, 28][..]), Err(WireError::Eof { .. })));
    }
}
