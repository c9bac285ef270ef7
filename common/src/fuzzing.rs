//! Fuzzing oracles: one function per decoder family, shared by the cargo-fuzz targets in
//! `fuzz/` and by `common/tests/fuzz_regressions.rs`, which replays every stored corpus
//! and regression input on the stable toolchain.
//!
//! Each oracle feeds arbitrary bytes through the decoders the way a server or a client
//! reads them and panics when an invariant breaks:
//! - decoders return a value or a typed error, never panic;
//! - a streaming decoder asked about a prefix of its input either waits (`Ok(None)`),
//!   fails as the whole input fails, or returns what the whole input returns: more bytes
//!   never turn an error into success, and a complete frame never waits;
//! - lengths in decoded values stay within the caps of `limits`;
//! - what decodes re-encodes, and `decode(encode(x)) == x`, with a canonical encoding
//!   (`encode(decode(encode(x))) == encode(x)`).
//!
//! Allocation caps are enforced by the harnesses (a counting global allocator) using
//! [`allocation_limit`]; hangs by libFuzzer's timeout.

use std::fmt::{Debug, Display};

use bytes::{Buf, Bytes};
use prost::Message;

use crate::checksum::{ChecksumError, ChecksumKind, DataChecksum, FileChecksum, MetaHeader};
use crate::dtp::{self, DtpError, OpRequest, Packet, PacketLayout};
use crate::ipc::{self, CallId, ClientFrame, IpcError, Preamble, Response};
use crate::limits::{
    BYTES_PER_CHECKSUM_MAX, DTP_MESSAGE_SIZE_MAX, META_HEADER_SIZE, OP_REQUEST_SIZE_MAX,
    PACKET_HEADER_SIZE_MAX, PACKET_LENGTHS_SIZE, PACKET_SIZE_MAX, RPC_FRAME_SIZE_MAX,
};
use crate::proto::common::{RpcResponseHeaderProto, RpcSaslProto};
use crate::proto::hdfs::{self as hdfs, datanode as dn, PipelineAckProto, Status};

/// One fuzz target: its name (the cargo-fuzz binary and corpus directory), its oracle
/// and the largest single allocation a decoder may make for it.
pub struct Target {
    pub name: &'static str,
    pub oracle: fn(&[u8]),
    /// The decoder's named cap: nothing it reads may make it allocate more at once.
    pub allocation_cap: usize,
}

/// The byte-level targets. Structure-aware targets (fuzz/src/structured.rs) build inputs
/// for these same oracles.
pub const TARGETS: &[Target] = &[
    Target { name: "packet", oracle: packet, allocation_cap: PACKET_SIZE_MAX },
    Target { name: "pipeline_ack", oracle: pipeline_ack, allocation_cap: DTP_MESSAGE_SIZE_MAX },
    Target { name: "dtp_op", oracle: dtp_op, allocation_cap: OP_REQUEST_SIZE_MAX },
    Target { name: "read_status", oracle: read_status, allocation_cap: DTP_MESSAGE_SIZE_MAX },
    Target { name: "rpc_server", oracle: rpc_server, allocation_cap: RPC_FRAME_SIZE_MAX },
    Target { name: "rpc_client", oracle: rpc_client, allocation_cap: RPC_FRAME_SIZE_MAX },
    Target { name: "block_meta", oracle: block_meta, allocation_cap: PACKET_SIZE_MAX },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Below this, any allocation is fine: small fixed buffers, error strings, tables.
pub const ALLOCATION_FLOOR: usize = 1024 * 1024;

/// How many bytes a decoder may allocate at once per byte of input it was given. prost
/// turns a 2-byte empty element of a repeated message field into a whole struct in a
/// `Vec` that doubles as it grows, so decoded values are a bounded multiple of their
/// wire size; what must never happen is an allocation sized by a length the input
/// merely announces.
pub const ALLOCATION_AMPLIFICATION_MAX: usize = 1024;

/// The largest single allocation allowed while an oracle runs on `input_len` bytes: in
/// proportion to the bytes actually there, and never above the target's named cap.
pub fn allocation_limit(cap: usize, input_len: usize) -> usize {
    input_len
        .saturating_mul(ALLOCATION_AMPLIFICATION_MAX)
        .max(ALLOCATION_FLOOR)
        .min(cap.max(ALLOCATION_FLOOR))
}

// ---------------------------------------------------------------------------------------
// Shared checks

/// Positions at which to cut an input when checking a streaming decoder: every short
/// prefix (where lengths and headers are read), around the consumed size, and a few
/// further points.
fn cut_points(len: usize, consumed: Option<usize>) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..=len.min(48)).collect();
    for cut in [len / 3, len / 2, len.saturating_sub(1)] {
        cuts.push(cut);
    }
    if let Some(n) = consumed {
        cuts.extend([n.saturating_sub(1), n, n + 1]);
    }
    cuts.retain(|&c| c <= len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Runs a streaming decoder on `data` and on prefixes of it, asserting they agree.
fn streaming<'a, T: PartialEq + Debug, E: Display>(
    what: &str,
    data: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<Option<(T, usize)>, E>,
) -> Result<Option<(T, usize)>, E> {
    let full = decode(data);
    let consumed = match &full {
        Ok(Some((_, n))) => {
            assert!(*n > 0 && *n <= data.len(), "{what}: consumed {n} of {} bytes", data.len());
            Some(*n)
        }
        Ok(None) => None,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "{what}: error without a message");
            None
        }
    };
    for cut in cut_points(data.len(), consumed) {
        match (&full, decode(&data[..cut])) {
            (_, Ok(None)) => {
                if let Some(n) = consumed {
                    assert!(cut < n, "{what}: waits for more at {cut} bytes though {n} hold a whole frame");
                }
            }
            (Ok(Some((value, n))), Ok(Some((prefix_value, prefix_n)))) => {
                assert!(cut >= *n, "{what}: decoded from {cut} bytes, but the frame needs {n}");
                assert!(
                    (value, *n) == (&prefix_value, prefix_n),
                    "{what}: the first {cut} bytes decode to {} but all {} bytes to {}",
                    describe::<_, E>(&Ok(Some((prefix_value, prefix_n)))),
                    data.len(),
                    describe(&full),
                );
            }
            (Err(_), Err(_)) => {}
            (full, prefix) => panic!(
                "{what}: the first {cut} bytes decode to {} but all {} bytes to {}",
                describe(&prefix),
                data.len(),
                describe(full),
            ),
        }
    }
    full
}

/// A short description of a decoder's result: values can be megabytes of data.
fn describe<T: Debug, E: Display>(result: &Result<Option<(T, usize)>, E>) -> String {
    const CHARS_MAX: usize = 400;
    match result {
        Ok(Some((value, n))) => {
            let value: String = format!("{value:?}").chars().take(CHARS_MAX).collect();
            format!("{value} ({n} bytes)")
        }
        Ok(None) => "incomplete".to_string(),
        Err(e) => format!("error \"{e}\""),
    }
}

/// Decodes a protobuf message and, when it decodes, checks the round trip: the
/// re-encoding decodes to the same value and is its own canonical form.
pub fn message_round_trip<M: Message + Default + PartialEq>(bytes: &[u8]) -> Result<M, prost::DecodeError> {
    let message = M::decode(bytes)?;
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len(), "encoded_len disagrees with encode");
    let again = M::decode(encoded.as_slice()).expect("a re-encoded message decodes");
    assert!(again == message, "decode(encode(x)) != x for {}", std::any::type_name::<M>());
    assert_eq!(again.encode_to_vec(), encoded, "encoding of {} is not canonical", std::any::type_name::<M>());
    Ok(message)
}

/// A delimited data-port message: streaming agreement, then the round trip.
fn delimited_round_trip<M: Message + Default + PartialEq + Debug>(
    data: &[u8],
    what: &'static str,
) -> Result<Option<(M, usize)>, DtpError> {
    let result = streaming(what, data, |buf| dtp::decode_delimited::<M>(buf, what));
    if let Ok(Some((message, consumed))) = &result {
        assert!(*consumed <= DTP_MESSAGE_SIZE_MAX + 10, "{what}: {consumed} bytes beyond the cap");
        let mut encoded = Vec::new();
        dtp::encode_delimited(message, &mut encoded);
        let (again, again_len) = dtp::decode_delimited::<M>(&encoded, what)
            .expect("re-encoded message decodes")
            .expect("re-encoded message is complete");
        assert!(&again == message, "{what}: decode(encode(x)) != x");
        assert_eq!(again_len, encoded.len());
        // The re-encoded body must be canonical too.
        message_round_trip::<M>(&encoded[encoded.len() - message.encoded_len()..]).expect("body decodes");
    }
    result
}

// ---------------------------------------------------------------------------------------
// DataTransferProtocol

/// The checksum configurations a packet is decoded under: unknown (the layout alone), the
/// HDFS default, zlib CRC32, NULL, and a tiny chunk size that puts many chunks in a
/// small packet.
fn packet_checksums() -> [Option<DataChecksum>; 5] {
    let crc32 = DataChecksum::new(ChecksumKind::Crc32, 512).expect("valid");
    let null = DataChecksum::new(ChecksumKind::Null, 512).expect("valid");
    let crc32c_small = DataChecksum::new(ChecksumKind::Crc32c, 3).expect("valid");
    [None, Some(DataChecksum::CRC32C_512), Some(crc32), Some(null), Some(crc32c_small)]
}

/// `packet`: PLEN/HLEN/header/checksums/data, with checksum verification and re-encoding,
/// decoded as a stream of packets the way a datanode or a reader consumes them.
pub fn packet(data: &[u8]) {
    for checksum in packet_checksums() {
        let mut rest = data;
        // A packet is at least 6 bytes, so the stream ends.
        while let Some(consumed) = packet_with(rest, checksum) {
            rest = &rest[consumed..];
        }
    }
}

/// Checks one packet at the front of `data`; returns its size if it decoded.
pub fn packet_with(data: &[u8], checksum: Option<DataChecksum>) -> Option<usize> {
    let layout = streaming("packet layout", data, |buf| {
        // The layout needs the prefix, and only the prefix.
        PacketLayout::decode(buf, checksum).map(|l| l.map(|l| (l, l.prefix_len)))
    });
    let decoded = streaming("packet", data, |buf| Packet::decode(buf, checksum));
    match (&layout, &decoded) {
        (Err(layout_error), Err(packet_error)) => {
            assert_eq!(layout_error.to_string(), packet_error.to_string());
            assert_typed_dtp_error(packet_error);
            return None;
        }
        (Ok(None), Ok(None)) => {
            assert!(
                data.len() < PACKET_HEADER_SIZE_MAX,
                "packet prefix of {} bytes is never enough",
                data.len()
            );
            return None;
        }
        (Ok(Some((layout, _))), Ok(None)) => {
            check_layout(layout, checksum);
            assert!(
                data.len() < layout.total_len(),
                "whole packet of {} bytes still waits",
                layout.total_len()
            );
            return None;
        }
        (Ok(Some(_)), Ok(Some(_))) => {}
        _ => panic!("PacketLayout::decode and Packet::decode disagree: {layout:?} vs {decoded:?}"),
    }
    let (Ok(Some((layout, _))), Ok(Some((packet, consumed)))) = (layout, decoded) else { unreachable!() };
    check_layout(&layout, checksum);
    assert_eq!(consumed, layout.total_len());
    assert_eq!(packet.header, layout.header);
    assert_eq!(packet.checksums.len(), layout.checksum_len);
    assert_eq!(packet.data.len(), layout.data_len);

    // Verification: the stored checksums match or a typed error names the chunk.
    let verify_with = checksum.unwrap_or(DataChecksum::CRC32C_512);
    match packet.verify(verify_with) {
        Ok(()) => {
            if verify_with.kind != ChecksumKind::Null {
                assert_eq!(verify_with.compute_vec(packet.data), packet.checksums, "verified but differs");
            }
        }
        Err(DtpError::Checksum(ChecksumError::Mismatch { chunk, stored, computed, .. })) => {
            assert_ne!(stored, computed);
            assert!(chunk < verify_with.chunk_count(packet.data.len()));
            assert_ne!(verify_with.compute_vec(packet.data), packet.checksums);
        }
        Err(DtpError::Checksum(ChecksumError::WrongChecksumLength { .. })) if checksum.is_none() => {}
        Err(e) => panic!("unexpected verification error {e}"),
    }

    // Round trip: the packet re-encodes and decodes to itself.
    let mut encoded =
        Vec::with_capacity(packet.header.encoded_prefix_len() + packet.checksums.len() + packet.data.len());
    packet.encode(&mut encoded);
    let (again, again_len) = Packet::decode(&encoded, checksum)
        .unwrap_or_else(|e| panic!("re-encoded packet does not decode: {e}"))
        .expect("re-encoded packet is complete");
    assert!(again == packet, "decode(encode(packet)) != packet: {:?} vs {:?}", again.header, packet.header);
    assert_eq!(again_len, encoded.len());
    let mut twice = Vec::with_capacity(encoded.len());
    again.encode(&mut twice);
    assert!(twice == encoded, "packet encoding is not canonical");
    Some(consumed)
}

fn check_layout(layout: &PacketLayout, checksum: Option<DataChecksum>) {
    // What a datanode accepts it may forward: the packet must meet the encoder's bound.
    let payload_len = 4 + layout.checksum_len + layout.data_len;
    assert!(
        payload_len + PACKET_HEADER_SIZE_MAX <= PACKET_SIZE_MAX,
        "accepted a packet with a {payload_len}-byte payload, which PacketHeader::encode_prefix refuses"
    );
    assert!(layout.prefix_len <= PACKET_HEADER_SIZE_MAX);
    assert!(layout.prefix_len >= PACKET_LENGTHS_SIZE);
    assert!(layout.total_len() <= PACKET_SIZE_MAX, "packet of {} bytes accepted", layout.total_len());
    assert!(layout.header.data_len >= 0);
    assert_eq!(layout.data_len, layout.header.data_len as usize);
    if let Some(checksum) = checksum {
        assert_eq!(layout.checksum_len, checksum.checksum_len(layout.data_len));
    }
}

fn assert_typed_dtp_error(e: &DtpError) {
    assert!(!e.to_string().is_empty());
    if let DtpError::TooLarge { size, max, .. } = e {
        assert!(size > max, "TooLarge with size {size} <= max {max}");
    }
}

/// `pipeline_ack`: a delimited PipelineAckProto as a writer reads it from its pipeline,
/// plus acks built from the input with `pipeline_ack()` and read back.
pub fn pipeline_ack(data: &[u8]) {
    if let Ok(Some((ack, _))) = delimited_round_trip::<PipelineAckProto>(data, "pipeline ack") {
        let statuses = dtp::ack_statuses(&ack);
        let nodes = if ack.flag.is_empty() { ack.reply.len() } else { ack.flag.len() };
        assert_eq!(statuses.len(), nodes);
        for (index, status) in statuses.iter().enumerate() {
            assert_eq!(dtp::ack_status(&ack, index).unwrap_or(Status::Error), *status);
        }
        assert_eq!(dtp::ack_status(&ack, nodes), None, "a status past the last node");
    }

    // What a datanode sends: one status per node, flag and reply consistent.
    let (seqno_bytes, status_bytes) = data.split_at(data.len().min(8));
    let mut seqno = [0u8; 8];
    seqno[..seqno_bytes.len()].copy_from_slice(seqno_bytes);
    let seqno = i64::from_le_bytes(seqno);
    let statuses: Vec<Status> =
        status_bytes.iter().filter_map(|b| Status::try_from(i32::from(*b & 0x0f)).ok()).collect();
    let ack = dtp::pipeline_ack(seqno, &statuses);
    let mut encoded = Vec::new();
    dtp::encode_delimited(&ack, &mut encoded);
    match dtp::decode_delimited::<PipelineAckProto>(&encoded, "pipeline ack") {
        Ok(Some((decoded, consumed))) => {
            assert_eq!(consumed, encoded.len());
            assert_eq!(decoded, ack);
            assert_eq!(dtp::ack_statuses(&decoded), statuses);
        }
        // A pipeline of thousands of nodes does not fit the message cap; that is refused.
        Err(DtpError::TooLarge { .. }) => assert!(encoded.len() > DTP_MESSAGE_SIZE_MAX),
        other => panic!("built ack does not decode: {other:?}"),
    }
}

/// `dtp_op`: version, op code and the op's request, as a datanode reads them.
pub fn dtp_op(data: &[u8]) {
    let Ok(Some((request, consumed))) = streaming("op request", data, OpRequest::decode) else {
        if let Err(e) = OpRequest::decode(data) {
            assert_typed_dtp_error(&e);
        }
        return;
    };
    assert!(consumed <= 3 + 10 + OP_REQUEST_SIZE_MAX);
    assert_eq!(request.op() as u8, data[2]);
    let mut encoded = Vec::new();
    request.encode(&mut encoded);
    let (again, again_len) = OpRequest::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded op does not decode: {e}"))
        .expect("re-encoded op is complete");
    assert_eq!(again, request);
    assert_eq!(again_len, encoded.len());
    let mut twice = Vec::new();
    again.encode(&mut twice);
    assert_eq!(twice, encoded, "op encoding is not canonical");

    // What a datanode does next with a write: validate the requested checksum.
    if let OpRequest::WriteBlock(write) = &request {
        let requested = &write.requested_checksum;
        if let Some(kind) = ChecksumKind::from_proto(requested.r#type) {
            match DataChecksum::new(kind, requested.bytes_per_checksum) {
                Ok(checksum) => assert!(checksum.bytes_per_checksum <= BYTES_PER_CHECKSUM_MAX),
                Err(ChecksumError::BadBytesPerChecksum { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
}

/// `read_status`: the delimited status messages of the data port (ClientReadStatusProto,
/// BlockOpResponseProto with its checksum parts, DNTransferAckProto).
pub fn read_status(data: &[u8]) {
    let _ = delimited_round_trip::<hdfs::ClientReadStatusProto>(data, "ClientReadStatusProto");
    let _ = delimited_round_trip::<hdfs::DnTransferAckProto>(data, "DNTransferAckProto");
    let _ = delimited_round_trip::<hdfs::OpBlockChecksumResponseProto>(data, "OpBlockChecksumResponseProto");
    if let Ok(Some((response, _))) =
        delimited_round_trip::<hdfs::BlockOpResponseProto>(data, "BlockOpResponseProto")
    {
        // What a reader does with the response to READ_BLOCK: build the block's checksum.
        if let Some(info) = response.read_op_checksum_info {
            if let Some(kind) = ChecksumKind::from_proto(info.checksum.r#type) {
                let _ = DataChecksum::new(kind, info.checksum.bytes_per_checksum);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hadoop IPC

type DecodeCheck = fn(&[u8]) -> Result<(), prost::DecodeError>;

/// A protocol method: its name on the wire and the checks decoding its request and its
/// response message.
pub struct MethodCodec {
    pub name: &'static str,
    pub request: DecodeCheck,
    pub response: Option<DecodeCheck>,
}

fn check<M: Message + Default + PartialEq>(bytes: &[u8]) -> Result<(), prost::DecodeError> {
    message_round_trip::<M>(bytes).map(drop)
}

macro_rules! methods {
    ($($name:literal => $request:ty, $response:ty;)*) => {
        &[$(MethodCodec { name: $name, request: check::<$request>, response: Some(check::<$response>) },)*]
    };
}

/// Every ClientProtocol method ringfs has message types for.
pub const CLIENT_PROTOCOL_METHODS: &[MethodCodec] = methods! {
    "getBlockLocations" => hdfs::GetBlockLocationsRequestProto, hdfs::GetBlockLocationsResponseProto;
    "getServerDefaults" => hdfs::GetServerDefaultsRequestProto, hdfs::GetServerDefaultsResponseProto;
    "create" => hdfs::CreateRequestProto, hdfs::CreateResponseProto;
    "append" => hdfs::AppendRequestProto, hdfs::AppendResponseProto;
    "setReplication" => hdfs::SetReplicationRequestProto, hdfs::SetReplicationResponseProto;
    "setPermission" => hdfs::SetPermissionRequestProto, hdfs::SetPermissionResponseProto;
    "setOwner" => hdfs::SetOwnerRequestProto, hdfs::SetOwnerResponseProto;
    "abandonBlock" => hdfs::AbandonBlockRequestProto, hdfs::AbandonBlockResponseProto;
    "addBlock" => hdfs::AddBlockRequestProto, hdfs::AddBlockResponseProto;
    "getAdditionalDatanode" => hdfs::GetAdditionalDatanodeRequestProto, hdfs::GetAdditionalDatanodeResponseProto;
    "complete" => hdfs::CompleteRequestProto, hdfs::CompleteResponseProto;
    "reportBadBlocks" => hdfs::ReportBadBlocksRequestProto, hdfs::ReportBadBlocksResponseProto;
    "concat" => hdfs::ConcatRequestProto, hdfs::ConcatResponseProto;
    "truncate" => hdfs::TruncateRequestProto, hdfs::TruncateResponseProto;
    "rename" => hdfs::RenameRequestProto, hdfs::RenameResponseProto;
    "rename2" => hdfs::Rename2RequestProto, hdfs::Rename2ResponseProto;
    "delete" => hdfs::DeleteRequestProto, hdfs::DeleteResponseProto;
    "mkdirs" => hdfs::MkdirsRequestProto, hdfs::MkdirsResponseProto;
    "getListing" => hdfs::GetListingRequestProto, hdfs::GetListingResponseProto;
    "renewLease" => hdfs::RenewLeaseRequestProto, hdfs::RenewLeaseResponseProto;
    "recoverLease" => hdfs::RecoverLeaseRequestProto, hdfs::RecoverLeaseResponseProto;
    "getFsStats" => hdfs::GetFsStatusRequestProto, hdfs::GetFsStatsResponseProto;
    "getFsReplicatedBlockStats" =>
        hdfs::GetFsReplicatedBlockStatsRequestProto, hdfs::GetFsReplicatedBlockStatsResponseProto;
    "getFsECBlockGroupStats" => hdfs::GetFsEcBlockGroupStatsRequestProto, hdfs::GetFsEcBlockGroupStatsResponseProto;
    "getDatanodeReport" => hdfs::GetDatanodeReportRequestProto, hdfs::GetDatanodeReportResponseProto;
    "getDatanodeStorageReport" =>
        hdfs::GetDatanodeStorageReportRequestProto, hdfs::GetDatanodeStorageReportResponseProto;
    "getPreferredBlockSize" => hdfs::GetPreferredBlockSizeRequestProto, hdfs::GetPreferredBlockSizeResponseProto;
    "setSafeMode" => hdfs::SetSafeModeRequestProto, hdfs::SetSafeModeResponseProto;
    "getContentSummary" => hdfs::GetContentSummaryRequestProto, hdfs::GetContentSummaryResponseProto;
    "getQuotaUsage" => hdfs::GetQuotaUsageRequestProto, hdfs::GetQuotaUsageResponseProto;
    "setQuota" => hdfs::SetQuotaRequestProto, hdfs::SetQuotaResponseProto;
    "fsync" => hdfs::FsyncRequestProto, hdfs::FsyncResponseProto;
    "setTimes" => hdfs::SetTimesRequestProto, hdfs::SetTimesResponseProto;
    "updateBlockForPipeline" =>
        hdfs::UpdateBlockForPipelineRequestProto, hdfs::UpdateBlockForPipelineResponseProto;
    "updatePipeline" => hdfs::UpdatePipelineRequestProto, hdfs::UpdatePipelineResponseProto;
    "getFileInfo" => hdfs::GetFileInfoRequestProto, hdfs::GetFileInfoResponseProto;
    "getLocatedFileInfo" => hdfs::GetLocatedFileInfoRequestProto, hdfs::GetLocatedFileInfoResponseProto;
    "isFileClosed" => hdfs::IsFileClosedRequestProto, hdfs::IsFileClosedResponseProto;
    "getFileLinkInfo" => hdfs::GetFileLinkInfoRequestProto, hdfs::GetFileLinkInfoResponseProto;
    "checkAccess" => hdfs::CheckAccessRequestProto, hdfs::CheckAccessResponseProto;
    "msync" => hdfs::MsyncRequestProto, hdfs::MsyncResponseProto;
    "getHAServiceState" => hdfs::HaServiceStateRequestProto, hdfs::HaServiceStateResponseProto;
    "getDataEncryptionKey" => hdfs::GetDataEncryptionKeyRequestProto, hdfs::GetDataEncryptionKeyResponseProto;
    "getAclStatus" => hdfs::GetAclStatusRequestProto, hdfs::GetAclStatusResponseProto;
    "getEnclosingRoot" => hdfs::GetEnclosingRootRequestProto, hdfs::GetEnclosingRootResponseProto;
};

/// Every DatanodeProtocol method.
pub const DATANODE_PROTOCOL_METHODS: &[MethodCodec] = methods! {
    "versionRequest" => dn::VersionRequestProto, dn::VersionResponseProto;
    "registerDatanode" => dn::RegisterDatanodeRequestProto, dn::RegisterDatanodeResponseProto;
    "sendHeartbeat" => dn::HeartbeatRequestProto, dn::HeartbeatResponseProto;
    "blockReport" => dn::BlockReportRequestProto, dn::BlockReportResponseProto;
    "blockReceivedAndDeleted" => dn::BlockReceivedAndDeletedRequestProto, dn::BlockReceivedAndDeletedResponseProto;
    "errorReport" => dn::ErrorReportRequestProto, dn::ErrorReportResponseProto;
    "reportBadBlocks" => dn::ReportBadBlocksRequestProto, dn::ReportBadBlocksResponseProto;
    "commitBlockSynchronization" =>
        dn::CommitBlockSynchronizationRequestProto, dn::CommitBlockSynchronizationResponseProto;
};

/// ClientDatanodeProtocol (the datanode's IPC port).
pub const CLIENT_DATANODE_PROTOCOL_METHODS: &[MethodCodec] = methods! {
    "getReplicaVisibleLength" =>
        hdfs::GetReplicaVisibleLengthRequestProto, hdfs::GetReplicaVisibleLengthResponseProto;
};

/// The methods of a protocol, by the name clients put in the connection context.
pub fn protocol_methods(protocol: &str) -> Option<&'static [MethodCodec]> {
    match protocol {
        ipc::protocol::CLIENT => Some(CLIENT_PROTOCOL_METHODS),
        ipc::protocol::DATANODE => Some(DATANODE_PROTOCOL_METHODS),
        ipc::protocol::CLIENT_DATANODE => Some(CLIENT_DATANODE_PROTOCOL_METHODS),
        _ => None,
    }
}

/// Every method of every protocol, in a fixed order (index = the selector byte of
/// [`rpc_server`] and [`rpc_client`]).
pub fn all_methods() -> impl Iterator<Item = &'static MethodCodec> {
    CLIENT_PROTOCOL_METHODS.iter().chain(DATANODE_PROTOCOL_METHODS).chain(CLIENT_DATANODE_PROTOCOL_METHODS)
}

fn method_by_selector(selector: u8) -> &'static MethodCodec {
    let count = all_methods().count();
    all_methods().nth(usize::from(selector) % count).expect("index below count")
}

fn find_method(protocol: &str, method: &str) -> Option<&'static MethodCodec> {
    protocol_methods(protocol)?.iter().find(|m| m.name == method)
}

/// Re-encodes a client frame body the way a client lays it out.
pub fn encode_client_frame(frame: &ClientFrame) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |m: &dyn DelimitedEncode, out: &mut Vec<u8>| m.put_delimited(out);
    match frame {
        ClientFrame::ConnectionContext { header, context } => {
            put(header, &mut out);
            put(context, &mut out);
        }
        ClientFrame::Ping { header } => put(header, &mut out),
        ClientFrame::Sasl { header, message } => {
            put(header, &mut out);
            put(message, &mut out);
        }
        ClientFrame::Call { header, request, payload } => {
            put(header, &mut out);
            put(request, &mut out);
            prost::encode_length_delimiter(payload.len(), &mut out).expect("Vec grows");
            out.extend_from_slice(payload);
        }
    }
    out
}

trait DelimitedEncode {
    fn put_delimited(&self, out: &mut Vec<u8>);
}

impl<M: Message> DelimitedEncode for M {
    fn put_delimited(&self, out: &mut Vec<u8>) {
        self.encode_length_delimited(out).expect("Vec grows");
    }
}

/// `rpc_server`: what a namenode reads from a connection. The bytes are read as a
/// connection (preamble, then frames, each decoded and its request dispatched by method
/// name), and independently as one request message of the method the first byte selects,
/// so every request decoder is reached without a whole frame around it.
pub fn rpc_server(data: &[u8]) {
    server_connection(data);
    if let Some((&selector, request)) = data.split_first() {
        let _ = (method_by_selector(selector).request)(request);
    }
}

fn server_connection(data: &[u8]) {
    let preamble = streaming("preamble", data, Preamble::decode);
    let Ok(Some((preamble, used))) = preamble else { return };
    assert_eq!(used, ipc::PREAMBLE_SIZE);
    assert_eq!(preamble.encode().as_slice(), &data[..used], "preamble re-encodes differently");

    let mut rest = Bytes::copy_from_slice(&data[used..]);
    let mut protocol = String::new();
    while let Some(body) = next_frame(&mut rest) {
        let frame = match ClientFrame::decode(body.clone(), RPC_FRAME_SIZE_MAX) {
            Ok(frame) => frame,
            Err(e) => {
                assert_typed_ipc_error(&e);
                return; // The server closes this connection.
            }
        };
        let encoded = encode_client_frame(&frame);
        let again = ClientFrame::decode(Bytes::from(encoded.clone()), RPC_FRAME_SIZE_MAX)
            .unwrap_or_else(|e| panic!("re-encoded client frame does not decode: {e}"));
        assert_eq!(again, frame, "decode(encode(frame)) != frame");
        assert_eq!(encode_client_frame(&again), encoded, "client frame encoding is not canonical");
        match frame {
            ClientFrame::ConnectionContext { context, .. } => protocol = context.protocol.unwrap_or_default(),
            ClientFrame::Call { request, payload, .. } => {
                assert!(payload.len() <= RPC_FRAME_SIZE_MAX);
                let declared = request.declaring_class_protocol_name.as_str();
                let protocol = if declared.is_empty() { protocol.as_str() } else { declared };
                if let Some(method) = find_method(protocol, &request.method_name) {
                    let _ = (method.request)(&payload);
                }
            }
            ClientFrame::Ping { .. } | ClientFrame::Sasl { .. } => {}
        }
    }
}

/// Splits the next length-prefixed frame off a connection's bytes, checking `split_frame`
/// and `frame_size` against each other; `None` at the end or on an oversized length
/// (which closes the connection).
fn next_frame(rest: &mut Bytes) -> Option<Bytes> {
    let split = streaming("frame", &rest[..], |buf| ipc::split_frame(buf, RPC_FRAME_SIZE_MAX));
    if rest.len() >= ipc::FRAME_LENGTH_SIZE {
        let prefix: [u8; 4] = rest[..4].try_into().expect("4 bytes");
        match (ipc::frame_size(prefix, RPC_FRAME_SIZE_MAX), &split) {
            (Ok(size), Ok(Some((body_len, consumed)))) => {
                assert_eq!(size, *body_len);
                assert_eq!(*consumed, ipc::FRAME_LENGTH_SIZE + size);
            }
            (Ok(size), Ok(None)) => assert!(rest.len() < ipc::FRAME_LENGTH_SIZE + size),
            (Err(IpcError::FrameTooLarge { size, max }), Err(_)) => assert!(size > max),
            (size, split) => panic!("frame_size {size:?} and split_frame {split:?} disagree"),
        }
    }
    match split {
        Ok(Some((size, consumed))) => {
            assert!(size <= RPC_FRAME_SIZE_MAX);
            let body = rest.slice(ipc::FRAME_LENGTH_SIZE..consumed);
            rest.advance(consumed);
            Some(body)
        }
        Ok(None) => None,
        Err(e) => {
            assert_typed_ipc_error(&e);
            None
        }
    }
}

fn assert_typed_ipc_error(e: &IpcError) {
    assert!(!e.to_string().is_empty());
    match e {
        IpcError::FrameTooLarge { size, max } | IpcError::MessageTooLarge { size, max, .. } => {
            assert!(size > max, "too large: {size} <= {max}")
        }
        IpcError::Truncated { needed, available, .. } => assert!(needed > available),
        IpcError::TrailingBytes { remaining, .. } => assert!(*remaining > 0),
        _ => {}
    }
}

/// `rpc_client`: what a client reads back. The first byte selects the method whose
/// response the client expects; the rest is the connection's frames.
pub fn rpc_client(data: &[u8]) {
    let Some((&selector, frames)) = data.split_first() else { return };
    let method = method_by_selector(selector);
    let mut rest = Bytes::copy_from_slice(frames);
    while let Some(body) = next_frame(&mut rest) {
        let response = match Response::decode(body.clone(), RPC_FRAME_SIZE_MAX) {
            Ok(response) => response,
            Err(e) => {
                assert_typed_ipc_error(&e);
                return; // The client fails the connection.
            }
        };
        check_response_round_trip(&response, &body);
        match &response.outcome {
            Ok(payload) if response.call_id == ipc::SASL_CALL_ID => {
                let _ = message_round_trip::<RpcSaslProto>(payload);
            }
            Ok(payload) => {
                if let Some(decode) = method.response {
                    let _ = decode(payload);
                }
            }
            Err(_) => {}
        }
    }
}

fn check_response_round_trip(response: &Response, body: &Bytes) {
    // The header carries what Response drops (client id, retry count); reuse them.
    let header = RpcResponseHeaderProto::decode_length_delimited(body.clone()).expect("header decoded once");
    let call = CallId {
        call_id: response.call_id,
        client_id: header.client_id.unwrap_or_default(),
        retry_count: header.retry_count.unwrap_or(-1),
    };
    let mut encoded = Vec::new();
    match &response.outcome {
        Ok(payload) => ipc::encode_response_bytes(&call, payload, &mut encoded),
        Err(error) => ipc::encode_error(&call, error, response.fatal, &mut encoded),
    }
    let (size, consumed) = ipc::split_frame(&encoded, RPC_FRAME_SIZE_MAX)
        .expect("own frame within the cap")
        .expect("own frame complete");
    assert_eq!(consumed, encoded.len());
    let frame = Bytes::from(encoded).slice(ipc::FRAME_LENGTH_SIZE..ipc::FRAME_LENGTH_SIZE + size);
    let again = Response::decode(frame, RPC_FRAME_SIZE_MAX)
        .unwrap_or_else(|e| panic!("re-encoded response does not decode: {e}"));
    assert_eq!(&again, response, "decode(encode(response)) != response");
    if again.fatal {
        assert!(again.outcome.is_err(), "a FATAL response carries an error");
    }
}

// ---------------------------------------------------------------------------------------
// Block files

/// `block_meta`: a `.meta` file (7-byte header, then one CRC per chunk) and block data
/// checked against it, as a datanode does when it serves or verifies a replica.
///
/// Input: meta header | u16 LE data length | data | the rest is the CRC stream; then 8
/// bytes of a block length (if present) for the meta-length arithmetic.
pub fn block_meta(data: &[u8]) {
    let header = match MetaHeader::decode(data) {
        Ok(header) => header,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if data.len() >= META_HEADER_SIZE {
                assert!(!matches!(e, ChecksumError::ShortMetaHeader { .. }));
            }
            return;
        }
    };
    assert_eq!(header.encode().as_slice(), &data[..META_HEADER_SIZE], "meta header re-encodes differently");
    assert_eq!(MetaHeader::decode(&header.encode()).expect("own header decodes"), header);
    let checksum = header.checksum;
    assert!(checksum.bytes_per_checksum >= 1 && checksum.bytes_per_checksum <= BYTES_PER_CHECKSUM_MAX);

    let rest = &data[META_HEADER_SIZE..];
    let (len_bytes, rest) = rest.split_at(rest.len().min(2));
    let data_len = match len_bytes {
        [a, b] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    let (block, crcs) = rest.split_at(data_len.min(rest.len()));

    match checksum.verify(block, crcs, 0) {
        Ok(()) => {
            if checksum.kind != ChecksumKind::Null {
                assert_eq!(checksum.compute_vec(block), crcs);
            }
        }
        Err(ChecksumError::Mismatch { chunk, offset, .. }) => {
            assert!(chunk < checksum.chunk_count(block.len()));
            assert_eq!(offset, (chunk * checksum.chunk_size()) as u64);
        }
        Err(ChecksumError::WrongChecksumLength { needed, available, .. }) => {
            assert_eq!(needed, checksum.checksum_len(block.len()));
            assert_ne!(needed, available);
        }
        Err(e) => panic!("unexpected verification error {e}"),
    }

    // The length a meta file has for a block of this many bytes.
    let meta_len = header.meta_file_len(block.len() as u64);
    assert_eq!(meta_len, (META_HEADER_SIZE + checksum.checksum_len(block.len())) as u64);
    if let Some(bytes) = crcs.get(crcs.len().saturating_sub(8)..).filter(|b| b.len() == 8) {
        let block_len = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let _ = header.meta_file_len(block_len);
    }

    // What BLOCK_CHECKSUM answers and how a client combines the answers.
    let md5 = crate::checksum::block_checksum_md5(crcs);
    let file = FileChecksum::combine(checksum.bytes_per_checksum, 0, checksum.kind, &[md5, md5]);
    assert_eq!(file.to_hex().len(), 56);
    assert!(file.algorithm_name().starts_with("MD5-of-0MD5-of-"));
}
