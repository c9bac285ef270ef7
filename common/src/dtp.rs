//! DataTransferProtocol v28 (the datanode's data port), without I/O.
//!
//! ```text
//! op request:   u16 BE version (28) | u8 op | varint-delimited Op*Proto
//! responses:    varint-delimited BlockOpResponseProto / PipelineAckProto / ClientReadStatusProto
//! packet:       u32 BE PLEN | u16 BE HLEN | PacketHeaderProto (HLEN bytes) | CHECKSUMS | DATA
//!               PLEN = 4 + checksum bytes + data bytes (it counts itself, not the header)
//! ```

use bytes::{Buf, BufMut};
use prost::Message;

use crate::checksum::{ChecksumError, DataChecksum};
use crate::limits::{
    DATA_TRANSFER_VERSION, DTP_MESSAGE_SIZE_MAX, OP_REQUEST_SIZE_MAX, PACKET_HEADER_SIZE_MAX,
    PACKET_LENGTHS_SIZE, PACKET_SIZE_MAX,
};
use crate::proto::hdfs::{
    OpBlockChecksumProto, OpCopyBlockProto, OpReadBlockProto, OpReplaceBlockProto, OpTransferBlockProto,
    OpWriteBlockProto, PacketHeaderProto, PipelineAckProto, Status,
};

/// Op codes of DataTransferProtocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    WriteBlock = 80,
    ReadBlock = 81,
    ReadMetadata = 82,
    ReplaceBlock = 83,
    CopyBlock = 84,
    BlockChecksum = 85,
    TransferBlock = 86,
    RequestShortCircuitFds = 87,
    ReleaseShortCircuitFds = 88,
    RequestShortCircuitShm = 89,
    BlockGroupChecksum = 90,
    Custom = 127,
}

impl Op {
    pub fn from_code(code: u8) -> Option<Op> {
        Some(match code {
            80 => Op::WriteBlock,
            81 => Op::ReadBlock,
            82 => Op::ReadMetadata,
            83 => Op::ReplaceBlock,
            84 => Op::CopyBlock,
            85 => Op::BlockChecksum,
            86 => Op::TransferBlock,
            87 => Op::RequestShortCircuitFds,
            88 => Op::ReleaseShortCircuitFds,
            89 => Op::RequestShortCircuitShm,
            90 => Op::BlockGroupChecksum,
            127 => Op::Custom,
            _ => return None,
        })
    }
}

/// Errors decoding data-port bytes. Each closes the connection it came from.
#[derive(Debug, thiserror::Error)]
pub enum DtpError {
    #[error("data transfer version {version} is not supported, expected {expected}")]
    VersionMismatch { version: u16, expected: u16 },
    #[error("unknown op code {code}")]
    UnknownOp { code: u8 },
    #[error("{what} of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { what: &'static str, size: usize, max: usize },
    #[error("malformed {what}: {source}")]
    Decode { what: &'static str, source: prost::DecodeError },
    #[error("malformed {what}: varint longer than 10 bytes")]
    VarintTooLong { what: &'static str },
    #[error("packet length {payload_len} is smaller than its own 4 bytes")]
    PayloadTooShort { payload_len: u32 },
    #[error("packet header length {header_len} exceeds {max}")]
    HeaderTooLarge { header_len: usize, max: usize },
    #[error("packet data length {data_len} is negative or exceeds the payload {payload_len}")]
    BadDataLength { data_len: i32, payload_len: u32 },
    #[error("packet carries {actual} checksum bytes for {data_len} data bytes; {expected} expected")]
    ChecksumLength { data_len: usize, expected: usize, actual: usize },
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
}

/// A decoded op request.
#[derive(Debug, Clone, PartialEq)]
pub enum OpRequest {
    WriteBlock(OpWriteBlockProto),
    ReadBlock(OpReadBlockProto),
    BlockChecksum(OpBlockChecksumProto),
    TransferBlock(OpTransferBlockProto),
    ReplaceBlock(OpReplaceBlockProto),
    CopyBlock(OpCopyBlockProto),
    /// An op ringfs does not serve (short-circuit, EC, custom): its body was skipped and
    /// the caller answers ERROR_UNSUPPORTED.
    Unsupported(Op),
}

impl OpRequest {
    pub fn op(&self) -> Op {
        match self {
            OpRequest::WriteBlock(_) => Op::WriteBlock,
            OpRequest::ReadBlock(_) => Op::ReadBlock,
            OpRequest::BlockChecksum(_) => Op::BlockChecksum,
            OpRequest::TransferBlock(_) => Op::TransferBlock,
            OpRequest::ReplaceBlock(_) => Op::ReplaceBlock,
            OpRequest::CopyBlock(_) => Op::CopyBlock,
            OpRequest::Unsupported(op) => *op,
        }
    }

    /// Decodes version, op and the op's message: `Ok(None)` until all of it is there.
    pub fn decode(buf: &[u8]) -> Result<Option<(OpRequest, usize)>, DtpError> {
        if buf.len() < 3 {
            return Ok(None);
        }
        let version = u16::from_be_bytes([buf[0], buf[1]]);
        if version != DATA_TRANSFER_VERSION {
            return Err(DtpError::VersionMismatch { version, expected: DATA_TRANSFER_VERSION });
        }
        let op = Op::from_code(buf[2]).ok_or(DtpError::UnknownOp { code: buf[2] })?;
        let Some((body, consumed)) = split_delimited(&buf[3..], "op request", OP_REQUEST_SIZE_MAX)? else {
            return Ok(None);
        };
        let what = "op request";
        let decode_err = |source| DtpError::Decode { what, source };
        let request = match op {
            Op::WriteBlock => OpRequest::WriteBlock(OpWriteBlockProto::decode(body).map_err(decode_err)?),
            Op::ReadBlock => OpRequest::ReadBlock(OpReadBlockProto::decode(body).map_err(decode_err)?),
            Op::BlockChecksum => {
                OpRequest::BlockChecksum(OpBlockChecksumProto::decode(body).map_err(decode_err)?)
            }
            Op::TransferBlock => {
                OpRequest::TransferBlock(OpTransferBlockProto::decode(body).map_err(decode_err)?)
            }
            Op::ReplaceBlock => {
                OpRequest::ReplaceBlock(OpReplaceBlockProto::decode(body).map_err(decode_err)?)
            }
            Op::CopyBlock => OpRequest::CopyBlock(OpCopyBlockProto::decode(body).map_err(decode_err)?),
            other => OpRequest::Unsupported(other),
        };
        Ok(Some((request, 3 + consumed)))
    }

    /// Appends version, op code and the delimited message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&DATA_TRANSFER_VERSION.to_be_bytes());
        out.push(self.op() as u8);
        let put = |m: &dyn DynEncode, out: &mut Vec<u8>| m.encode_delimited_into(out);
        match self {
            OpRequest::WriteBlock(m) => put(m, out),
            OpRequest::ReadBlock(m) => put(m, out),
            OpRequest::BlockChecksum(m) => put(m, out),
            OpRequest::TransferBlock(m) => put(m, out),
            OpRequest::ReplaceBlock(m) => put(m, out),
            OpRequest::CopyBlock(m) => put(m, out),
            OpRequest::Unsupported(_) => out.push(0),
        }
    }
}

trait DynEncode {
    fn encode_delimited_into(&self, out: &mut Vec<u8>);
}

impl<M: Message> DynEncode for M {
    fn encode_delimited_into(&self, out: &mut Vec<u8>) {
        self.encode_length_delimited(out).expect("Vec<u8> grows as needed");
    }
}

/// Splits a varint-delimited message off `buf`: `Ok(Some((body, consumed)))`, or
/// `Ok(None)` while the varint or the body is incomplete.
pub fn split_delimited<'a>(
    buf: &'a [u8],
    what: &'static str,
    size_max: usize,
) -> Result<Option<(&'a [u8], usize)>, DtpError> {
    let mut size: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        size |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > size_max {
                return Err(DtpError::TooLarge { what, size, max: size_max });
            }
            let start = i + 1;
            if buf.len() - start < size {
                return Ok(None);
            }
            return Ok(Some((&buf[start..start + size], start + size)));
        }
        // A varint whose value already exceeds the cap can be refused early.
        if size > size_max as u64 {
            return Err(DtpError::TooLarge { what, size: size_max.saturating_add(1), max: size_max });
        }
    }
    if buf.len() >= 10 {
        return Err(DtpError::VarintTooLong { what });
    }
    Ok(None)
}

/// Decodes one varint-delimited data-port message (BlockOpResponseProto,
/// PipelineAckProto, ClientReadStatusProto...), capped at [`DTP_MESSAGE_SIZE_MAX`].
pub fn decode_delimited<M: Message + Default>(
    buf: &[u8],
    what: &'static str,
) -> Result<Option<(M, usize)>, DtpError> {
    let Some((body, consumed)) = split_delimited(buf, what, DTP_MESSAGE_SIZE_MAX)? else {
        return Ok(None);
    };
    let message = M::decode(body).map_err(|source| DtpError::Decode { what, source })?;
    Ok(Some((message, consumed)))
}

/// Appends a varint-delimited message.
pub fn encode_delimited(message: &impl Message, out: &mut Vec<u8>) {
    message.encode_length_delimited(out).expect("Vec<u8> grows as needed");
}

/// A packet's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketHeader {
    pub offset_in_block: i64,
    pub seqno: i64,
    pub last_packet_in_block: bool,
    pub data_len: i32,
    pub sync_block: bool,
}

impl PacketHeader {
    fn to_proto(self) -> PacketHeaderProto {
        PacketHeaderProto {
            offset_in_block: self.offset_in_block,
            seqno: self.seqno,
            last_packet_in_block: self.last_packet_in_block,
            data_len: self.data_len,
            // Java sets syncBlock only when true.
            sync_block: self.sync_block.then_some(true),
        }
    }

    fn from_proto(proto: PacketHeaderProto) -> PacketHeader {
        PacketHeader {
            offset_in_block: proto.offset_in_block,
            seqno: proto.seqno,
            last_packet_in_block: proto.last_packet_in_block,
            data_len: proto.data_len,
            sync_block: proto.sync_block.unwrap_or(false),
        }
    }

    /// Is this a heartbeat packet (no data, seqno -1)?
    pub fn is_heartbeat(&self) -> bool {
        self.seqno == crate::limits::HEARTBEAT_SEQNO && self.data_len == 0 && !self.last_packet_in_block
    }

    /// Bytes of PLEN + HLEN + encoded header.
    pub fn encoded_prefix_len(&self) -> usize {
        PACKET_LENGTHS_SIZE + self.to_proto().encoded_len()
    }

    /// Writes PLEN, HLEN and the header for a packet carrying `checksum_len` checksum
    /// bytes and `self.data_len` data bytes. Returns the bytes written.
    pub fn encode_prefix(&self, checksum_len: usize, out: &mut impl BufMut) -> usize {
        let proto = self.to_proto();
        let header_len = proto.encoded_len();
        assert!(header_len + PACKET_LENGTHS_SIZE <= PACKET_HEADER_SIZE_MAX);
        assert!(self.data_len >= 0);
        let payload_len = 4 + checksum_len + self.data_len as usize;
        assert!(payload_len + PACKET_HEADER_SIZE_MAX <= PACKET_SIZE_MAX, "packet exceeds PACKET_SIZE_MAX");
        out.put_u32(payload_len as u32);
        out.put_u16(header_len as u16);
        proto.encode(out).expect("caller sized the buffer");
        PACKET_LENGTHS_SIZE + header_len
    }
}

/// Where the parts of a packet lie, known once its prefix has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketLayout {
    pub header: PacketHeader,
    /// PLEN + HLEN + header bytes.
    pub prefix_len: usize,
    pub checksum_len: usize,
    pub data_len: usize,
}

impl PacketLayout {
    /// Total bytes of the packet on the wire.
    pub fn total_len(&self) -> usize {
        self.prefix_len + self.checksum_len + self.data_len
    }

    /// Reads PLEN, HLEN and the header from the front of `buf`: `Ok(None)` until they are
    /// all there. Lengths are checked against the caps and against each other, and the
    /// checksum length against `checksum` when it is known.
    pub fn decode(buf: &[u8], checksum: Option<DataChecksum>) -> Result<Option<PacketLayout>, DtpError> {
        if buf.len() < PACKET_LENGTHS_SIZE {
            return Ok(None);
        }
        let mut lengths = &buf[..PACKET_LENGTHS_SIZE];
        let payload_len = lengths.get_u32();
        let header_len = lengths.get_u16() as usize;
        if payload_len < 4 {
            return Err(DtpError::PayloadTooShort { payload_len });
        }
        if header_len + PACKET_LENGTHS_SIZE > PACKET_HEADER_SIZE_MAX {
            return Err(DtpError::HeaderTooLarge {
                header_len,
                max: PACKET_HEADER_SIZE_MAX - PACKET_LENGTHS_SIZE,
            });
        }
        // Bounded as `PacketHeader::encode_prefix` bounds it, with room for the largest
        // header, so every packet accepted here can be re-encoded and forwarded.
        let payload_max = PACKET_SIZE_MAX - PACKET_HEADER_SIZE_MAX;
        if payload_len as usize > payload_max {
            return Err(DtpError::TooLarge {
                what: "packet payload",
                size: payload_len as usize,
                max: payload_max,
            });
        }
        let prefix_len = PACKET_LENGTHS_SIZE + header_len;
        if buf.len() < prefix_len {
            return Ok(None);
        }
        let proto = PacketHeaderProto::decode(&buf[PACKET_LENGTHS_SIZE..prefix_len])
            .map_err(|source| DtpError::Decode { what: "packet header", source })?;
        let header = PacketHeader::from_proto(proto);
        if header.data_len < 0 || header.data_len as u64 > u64::from(payload_len - 4) {
            return Err(DtpError::BadDataLength { data_len: header.data_len, payload_len });
        }
        let data_len = header.data_len as usize;
        let checksum_len = payload_len as usize - 4 - data_len;
        if let Some(checksum) = checksum {
            let expected = checksum.checksum_len(data_len);
            if expected != checksum_len {
                return Err(DtpError::ChecksumLength { data_len, expected, actual: checksum_len });
            }
        }
        Ok(Some(PacketLayout { header, prefix_len, checksum_len, data_len }))
    }
}

/// A whole packet borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: PacketHeader,
    pub checksums: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes one packet off the front of `buf`: `Ok(None)` until it is all there.
    pub fn decode(
        buf: &'a [u8],
        checksum: Option<DataChecksum>,
    ) -> Result<Option<(Packet<'a>, usize)>, DtpError> {
        let Some(layout) = PacketLayout::decode(buf, checksum)? else {
            return Ok(None);
        };
        let total = layout.total_len();
        if buf.len() < total {
            return Ok(None);
        }
        let checksums_end = layout.prefix_len + layout.checksum_len;
        let packet = Packet {
            header: layout.header,
            checksums: &buf[layout.prefix_len..checksums_end],
            data: &buf[checksums_end..total],
        };
        Ok(Some((packet, total)))
    }

    /// Verifies the data against the packet's checksums.
    pub fn verify(&self, checksum: DataChecksum) -> Result<(), DtpError> {
        checksum.verify(self.data, self.checksums, self.header.offset_in_block.max(0) as u64)?;
        Ok(())
    }

    /// Appends the whole packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert_eq!(self.header.data_len as usize, self.data.len());
        self.header.encode_prefix(self.checksums.len(), out);
        out.extend_from_slice(self.checksums);
        out.extend_from_slice(self.data);
    }
}

/// Status flag word of a pipeline ack: bits 0-3 status, 5-6 ECN, 7-8 SLOW.
pub fn ack_flag(status: Status) -> u32 {
    status as u32 & 0x0f
}

/// Builds a pipeline ack with `reply` and `flag` both filled, one entry per node.
pub fn pipeline_ack(seqno: i64, statuses: &[Status]) -> PipelineAckProto {
    PipelineAckProto {
        seqno,
        reply: statuses.iter().map(|s| *s as i32).collect(),
        downstream_ack_time_nanos: Some(0),
        flag: statuses.iter().map(|s| ack_flag(*s)).collect(),
    }
}

/// The status of pipeline node `index` as Java reads it: from `flag` when any flags are
/// present, else from `reply`.
pub fn ack_status(ack: &PipelineAckProto, index: usize) -> Option<Status> {
    if !ack.flag.is_empty() {
        return ack.flag.get(index).and_then(|f| Status::try_from((f & 0x0f) as i32).ok());
    }
    ack.reply.get(index).and_then(|r| Status::try_from(*r).ok())
}

/// Statuses of every node in an ack, as Java reads them.
pub fn ack_statuses(ack: &PipelineAckProto) -> Vec<Status> {
    let count = if ack.flag.is_empty() { ack.reply.len() } else { ack.flag.len() };
    (0..count).map(|i| ack_status(ack, i).unwrap_or(Status::Error)).collect()
}
