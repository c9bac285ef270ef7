//! Wire limits and constants, each with the reason it has the value it has. Every length
//! read from the network or the disk is checked against one of these before allocating.

/// Hadoop IPC version spoken by Hadoop 2.x and 3.x clients (RpcConstants.CURRENT_VERSION).
pub const IPC_VERSION: u8 = 9;

/// Largest IPC frame accepted, Hadoop's `ipc.maximum.data.length` default (128 MiB): a
/// block report of millions of replicas fits, a garbage length does not allocate.
pub const RPC_FRAME_SIZE_MAX: usize = 128 * 1024 * 1024;

/// Largest varint-delimited header inside an IPC frame. Headers are tens of bytes; the
/// cap keeps a corrupt length from being trusted.
pub const RPC_HEADER_SIZE_MAX: usize = 64 * 1024;

/// DataTransferProtocol version of Hadoop 2.x/3.x (DataTransferProtocol.DATA_TRANSFER_VERSION).
pub const DATA_TRANSFER_VERSION: u16 = 28;

/// Largest packet (PLEN + HLEN + header + checksums + data), Hadoop PacketReceiver's
/// MAX_PACKET_SIZE: "prevents OOMEs when invalid data is sent".
pub const PACKET_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Largest encoded PacketHeaderProto plus the 4-byte PLEN and 2-byte HLEN: all header
/// fields are fixed-width, so 27 + 6 bytes.
pub const PACKET_HEADER_SIZE_MAX: usize = 33;

/// Size of the PLEN (u32) and HLEN (u16) fields that open a packet.
pub const PACKET_LENGTHS_SIZE: usize = 6;

/// Largest varint-delimited op request (WRITE_BLOCK with a full pipeline, tokens and
/// trace info is a few KiB); anything larger is garbage.
pub const OP_REQUEST_SIZE_MAX: usize = 1024 * 1024;

/// Largest varint-delimited response, ack or status message on the data port. A
/// checksum response or an ack of a long pipeline is well under this.
pub const DTP_MESSAGE_SIZE_MAX: usize = 64 * 1024;

/// Bytes of data covered by one checksum: HDFS's `dfs.bytes-per-checksum` default.
pub const BYTES_PER_CHECKSUM: u32 = 512;

/// Largest bytes-per-checksum accepted from a peer or a meta file. Java allows any int;
/// we bound it so chunk arithmetic and buffers stay bounded.
pub const BYTES_PER_CHECKSUM_MAX: u32 = 16 * 1024 * 1024;

/// Size of one CRC32 or CRC32C, big-endian in packets and meta files.
pub const CHECKSUM_SIZE: usize = 4;

/// Size of the `.meta` file header: u16 version, u8 checksum type, u32 bytes per checksum.
pub const META_HEADER_SIZE: usize = 7;

/// The only `.meta` format version HDFS has ever written.
pub const META_VERSION: u16 = 1;

/// Data bytes in a full write packet as the Java client sends them: 126 chunks of 512
/// bytes fit in `dfs.client-write-packet-size` (64 KiB) with their CRCs and the header.
pub const WRITE_PACKET_DATA_SIZE: usize = 126 * 512;

/// Data bytes per read packet: the Java DataNode's 64 KiB (128 chunks of 512).
pub const READ_PACKET_DATA_SIZE: usize = 64 * 1024;

/// Most nodes in one write pipeline we accept from a client (HDFS's max replication is 512).
pub const PIPELINE_TARGETS_MAX: usize = 512;

/// Sequence number of a heartbeat packet and of its ack.
pub const HEARTBEAT_SEQNO: i64 = -1;

/// Sequence number reserved for out-of-band (restart) acks.
pub const UNKNOWN_SEQNO: i64 = -2;

const _: () = assert!(PACKET_HEADER_SIZE_MAX < PACKET_SIZE_MAX);
const _: () = assert!(READ_PACKET_DATA_SIZE.is_multiple_of(BYTES_PER_CHECKSUM as usize));
const _: () = assert!(WRITE_PACKET_DATA_SIZE.is_multiple_of(BYTES_PER_CHECKSUM as usize));
