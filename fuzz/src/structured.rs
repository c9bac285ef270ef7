//! Structure-aware fuzz inputs. Each target derives `Arbitrary` on a mirror of a wire
//! structure (a packet stream, an op request, a client connection, a server's responses),
//! builds a VALID encoding of it, checks that it decodes to exactly what was built
//! (`decode(encode(x)) == x`), then corrupts its lengths, counts and fields and hands the
//! bytes to the byte-level oracles of `ringfs_common::fuzzing`.
//!
//! Shared by the fuzz crate and `common/tests/fuzz_regressions.rs`, which includes this
//! file and `capped_alloc.rs` by path as sibling modules of its crate root.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use prost::Message;
use ringfs_common::checksum::{ChecksumKind, DataChecksum};
use ringfs_common::dtp::{OpRequest, Packet, PacketHeader};
use ringfs_common::fuzzing::{self, all_methods, protocol_methods, CLIENT_PROTOCOL_METHODS};
use ringfs_common::ipc::{self, exception, CallId, ClientFrame, Preamble, RemoteError, Response};
use ringfs_common::limits::{
    OP_REQUEST_SIZE_MAX, PACKET_HEADER_SIZE_MAX, PACKET_SIZE_MAX, RPC_FRAME_SIZE_MAX, RPC_HEADER_SIZE_MAX,
};
use ringfs_common::proto::common::{
    rpc_request_header_proto::OperationProto, rpc_response_header_proto::RpcErrorCodeProto,
    IpcConnectionContextProto, RequestHeaderProto, RpcKindProto, RpcRequestHeaderProto, RpcSaslProto,
    TokenProto, UserInformationProto,
};
use ringfs_common::proto::hdfs;

use crate::capped_alloc::with_allocation_limit;

/// A structure-aware target: its name (binary and corpus directory) and its entry point.
pub struct StructuredTarget {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[StructuredTarget] = &[
    StructuredTarget { name: "packet_structured", run: packet_structured },
    StructuredTarget { name: "dtp_op_structured", run: dtp_op_structured },
    StructuredTarget { name: "rpc_server_structured", run: rpc_server_structured },
    StructuredTarget { name: "rpc_client_structured", run: rpc_client_structured },
];

pub fn target(name: &str) -> Option<&'static StructuredTarget> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs a byte-level oracle under its allocation limit.
fn oracle(name: &str, bytes: &[u8]) {
    let target = fuzzing::target(name).expect("oracle exists");
    let limit = fuzzing::allocation_limit(target.allocation_cap, bytes.len());
    with_allocation_limit(limit, || (target.oracle)(bytes));
}

/// Most corruptions applied to one input, so an input stays cheap to run.
const CORRUPTIONS_MAX: usize = 8;

// ---------------------------------------------------------------------------------------
// Encodings with their length fields marked, and the corruptions applied to them

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    U32Be,
    U32Le,
    U16Be,
    I32Le,
    Varint,
}

/// A length or count field inside an encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site {
    pub(crate) at: usize,
    pub(crate) width: Width,
}

#[derive(Debug, Default)]
pub(crate) struct Encoding {
    pub(crate) bytes: Vec<u8>,
    pub(crate) sites: Vec<Site>,
}

impl Encoding {
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub(crate) fn put_varint(&mut self, value: u64) {
        prost::encoding::encode_varint(value, &mut self.bytes);
    }

    pub(crate) fn put_site(&mut self, width: Width, value: u64) {
        self.sites.push(Site { at: self.bytes.len(), width });
        write_width(width, value, &mut self.bytes);
    }

    /// Appends `other`, keeping its sites.
    pub(crate) fn append(&mut self, other: Encoding) {
        let base = self.bytes.len();
        self.sites.extend(other.sites.into_iter().map(|s| Site { at: s.at + base, ..s }));
        self.bytes.extend_from_slice(&other.bytes);
    }

    /// Appends a varint-delimited protobuf message, marking its delimiter and the
    /// length-delimited fields inside it.
    pub(crate) fn put_delimited(&mut self, message: &[u8]) {
        self.put_site(Width::Varint, message.len() as u64);
        let base = self.bytes.len();
        scan_message(message, base, 4, &mut self.sites);
        self.put(message);
    }

    fn site_len(&self, site: Site) -> usize {
        let available = self.bytes.len().saturating_sub(site.at);
        let len = match site.width {
            Width::U32Be | Width::U32Le | Width::I32Le => 4,
            Width::U16Be => 2,
            Width::Varint => {
                self.bytes[site.at.min(self.bytes.len())..]
                    .iter()
                    .take(10)
                    .position(|b| b & 0x80 == 0)
                    .unwrap_or(9)
                    + 1
            }
        };
        len.min(available)
    }

    fn read(&self, site: Site) -> u64 {
        let field = &self.bytes[site.at..site.at + self.site_len(site)];
        match (site.width, field.len()) {
            (Width::U32Be, 4) => u64::from(u32::from_be_bytes(field.try_into().expect("4"))),
            (Width::U32Le, 4) => u64::from(u32::from_le_bytes(field.try_into().expect("4"))),
            (Width::U16Be, 2) => u64::from(u16::from_be_bytes(field.try_into().expect("2"))),
            (Width::I32Le, 4) => i32::from_le_bytes(field.try_into().expect("4")) as u64,
            (Width::Varint, _) => prost::encoding::decode_varint(&mut &field[..]).unwrap_or(0),
            _ => 0,
        }
    }

    /// Replaces `remove` bytes at `at` with `insert`, moving the sites behind them and
    /// dropping those the edit cuts through (except one starting exactly at `at`, which
    /// is the site being rewritten).
    fn splice(&mut self, at: usize, remove: usize, insert: &[u8]) {
        let at = at.min(self.bytes.len());
        let remove = remove.min(self.bytes.len() - at);
        let mut bytes = Vec::with_capacity(self.bytes.len() - remove + insert.len());
        bytes.extend_from_slice(&self.bytes[..at]);
        bytes.extend_from_slice(insert);
        bytes.extend_from_slice(&self.bytes[at + remove..]);
        self.bytes = bytes;
        let end = at + remove;
        self.sites.retain_mut(|s| {
            if s.at >= end && !(remove > 0 && s.at == at) {
                s.at = s.at - remove + insert.len();
                true
            } else {
                s.at <= at || (remove > 0 && s.at == at)
            }
        });
        self.sites.retain(|s| s.at < self.bytes.len());
    }

    fn rewrite(&mut self, site: Site, value: u64) {
        let mut field = Vec::new();
        write_width(site.width, value, &mut field);
        let old = self.site_len(site);
        self.splice(site.at, old, &field);
    }

    fn position(&self, at: u16) -> usize {
        let len = self.bytes.len();
        if len < usize::from(u16::MAX) {
            usize::from(at) % (len + 1)
        } else {
            len / usize::from(u16::MAX) * usize::from(at)
        }
    }

    pub(crate) fn corrupt(&mut self, corruptions: &[Corruption]) {
        for corruption in corruptions.iter().take(CORRUPTIONS_MAX) {
            let site = |index: u8| -> Option<Site> {
                (!self.sites.is_empty()).then(|| self.sites[usize::from(index) % self.sites.len()])
            };
            match *corruption {
                Corruption::SetLength { site: index, value } => {
                    if let Some(site) = site(index) {
                        self.rewrite(site, u64::from(value));
                    }
                }
                Corruption::AdjustLength { site: index, delta } => {
                    if let Some(site) = site(index) {
                        let value = self.read(site).wrapping_add(delta as i64 as u64);
                        let value = if site.width == Width::Varint && delta < 0 && value > 1 << 40 {
                            0
                        } else {
                            value
                        };
                        self.rewrite(site, value);
                    }
                }
                Corruption::HugeLength { site: index } => {
                    if let Some(site) = site(index) {
                        self.rewrite(site, u64::MAX);
                    }
                }
                Corruption::OverlongVarint { site: index, extra } => {
                    if let Some(site @ Site { width: Width::Varint, .. }) = site(index) {
                        // The same value with redundant continuation bytes.
                        let value = self.read(site);
                        let mut field = Vec::new();
                        prost::encoding::encode_varint(value, &mut field);
                        let pad = usize::from(extra % 4) + 1;
                        let last = field.len() - 1;
                        field[last] |= 0x80;
                        field.extend(std::iter::repeat_n(0x80, pad - 1));
                        field.push(0);
                        let old = self.site_len(site);
                        self.splice(site.at, old, &field);
                    }
                }
                Corruption::FlipByte { at, xor } => {
                    if !self.bytes.is_empty() {
                        let at = self.position(at).min(self.bytes.len() - 1);
                        self.bytes[at] ^= xor;
                    }
                }
                Corruption::Truncate { at } => {
                    let at = self.position(at);
                    self.bytes.truncate(at);
                    self.sites.retain(|s| s.at < at);
                }
                Corruption::Insert { at, ref bytes } => {
                    let at = self.position(at);
                    self.splice(at, 0, bytes);
                }
                Corruption::Repeat { from, len } => {
                    // Duplicating a range repeats fields, elements and frames.
                    let from = self.position(from);
                    let end = (from + usize::from(len)).min(self.bytes.len());
                    let copy = self.bytes[from..end].to_vec();
                    self.splice(end, 0, &copy);
                }
            }
        }
    }
}

fn write_width(width: Width, value: u64, out: &mut Vec<u8>) {
    match width {
        Width::U32Be => out.extend_from_slice(&(value as u32).to_be_bytes()),
        Width::U32Le => out.extend_from_slice(&(value as u32).to_le_bytes()),
        Width::U16Be => out.extend_from_slice(&(value as u16).to_be_bytes()),
        Width::I32Le => out.extend_from_slice(&(value as i32).to_le_bytes()),
        Width::Varint => prost::encoding::encode_varint(value, out),
    }
}

/// Marks the length of every length-delimited field of a protobuf message (and, down to
/// `depth`, of the fields of the messages nested in them). Returns false, marking
/// nothing, if the bytes are not a well-formed message.
fn scan_message(bytes: &[u8], base: usize, depth: u8, sites: &mut Vec<Site>) -> bool {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some((key, key_len)) = varint_at(bytes, pos) else { return false };
        pos += key_len;
        if key >> 3 == 0 {
            return false;
        }
        match key & 7 {
            0 => match varint_at(bytes, pos) {
                Some((_, len)) => pos += len,
                None => return false,
            },
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let site = Site { at: base + pos, width: Width::Varint };
                let Some((len, len_len)) = varint_at(bytes, pos) else { return false };
                let start = pos + len_len;
                let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
                    return false;
                };
                if end > bytes.len() {
                    return false;
                }
                found.push(site);
                if depth > 0 {
                    scan_message(&bytes[start..end], base + start, depth - 1, &mut found);
                }
                pos = end;
            }
            _ => return false,
        }
        if pos > bytes.len() {
            return false;
        }
    }
    sites.extend(found);
    true
}

fn varint_at(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut slice = bytes.get(pos..)?;
    let before = slice.len();
    let value = prost::encoding::decode_varint(&mut slice).ok()?;
    Some((value, before - slice.len()))
}

/// A change to a valid encoding.
#[derive(Arbitrary, Debug)]
pub enum Corruption {
    /// Sets a length or count field.
    SetLength {
        site: u8,
        value: u32,
    },
    /// Moves a length field by a little: off-by-one and its neighbours.
    AdjustLength {
        site: u8,
        delta: i16,
    },
    /// The largest value the field can carry (a 10-byte varint for varints).
    HugeLength {
        site: u8,
    },
    /// The same varint value in a longer, non-canonical encoding.
    OverlongVarint {
        site: u8,
        extra: u8,
    },
    FlipByte {
        at: u16,
        xor: u8,
    },
    Truncate {
        at: u16,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Repeat {
        from: u16,
        len: u16,
    },
}

// ---------------------------------------------------------------------------------------
// Protobuf fields of any shape (three levels of nesting)

macro_rules! field_type {
    ($name:ident $(, $nested:ident)?) => {
        #[derive(Arbitrary, Debug)]
        pub enum $name {
            Varint { number: u8, value: u64 },
            Fixed32 { number: u8, value: u32 },
            Fixed64 { number: u8, value: u64 },
            Bytes { number: u8, value: Vec<u8> },
            Text { number: u8, value: String },
            $(Message { number: u8, fields: Vec<$nested> },)?
        }

        impl $name {
            fn encode(&self, out: &mut Encoding) {
                let key = |number: u8, wire: u64| ((u64::from(number % 24) + 1) << 3) | wire;
                match self {
                    $name::Varint { number, value } => {
                        out.put_varint(key(*number, 0));
                        out.put_varint(*value);
                    }
                    $name::Fixed32 { number, value } => {
                        out.put_varint(key(*number, 5));
                        out.put(&value.to_le_bytes());
                    }
                    $name::Fixed64 { number, value } => {
                        out.put_varint(key(*number, 1));
                        out.put(&value.to_le_bytes());
                    }
                    $name::Bytes { number, value } => {
                        out.put_varint(key(*number, 2));
                        out.put_site(Width::Varint, value.len() as u64);
                        out.put(value);
                    }
                    $name::Text { number, value } => {
                        out.put_varint(key(*number, 2));
                        out.put_site(Width::Varint, value.len() as u64);
                        out.put(value.as_bytes());
                    }
                    $(
                        $name::Message { number, fields } => {
                            let mut nested = Encoding::default();
                            for field in fields {
                                $nested::encode(field, &mut nested);
                            }
                            out.put_varint(key(*number, 2));
                            out.put_site(Width::Varint, nested.bytes.len() as u64);
                            out.append(nested);
                        }
                    )?
                }
            }
        }
    };
}

field_type!(Field2);
field_type!(Field1, Field2);
field_type!(Field, Field1);

fn encode_fields(fields: &[Field]) -> Encoding {
    let mut out = Encoding::default();
    for field in fields {
        field.encode(&mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------
// packet_structured

#[derive(Arbitrary, Debug)]
pub struct PacketStreamInput {
    checksum: ChecksumInput,
    /// Decode with the checksum known (as a datanode does after WRITE_BLOCK) or not.
    checksum_known: bool,
    packets: Vec<PacketInput>,
    corruptions: Vec<Corruption>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ChecksumInput {
    Crc32c512,
    Crc32512,
    Null512,
    Crc32c { bytes_per_checksum: u8 },
    Crc32 { bytes_per_checksum: u16 },
}

impl ChecksumInput {
    fn checksum(self) -> DataChecksum {
        let (kind, bytes_per_checksum) = match self {
            ChecksumInput::Crc32c512 => (ChecksumKind::Crc32c, 512),
            ChecksumInput::Crc32512 => (ChecksumKind::Crc32, 512),
            ChecksumInput::Null512 => (ChecksumKind::Null, 512),
            ChecksumInput::Crc32c { bytes_per_checksum } => {
                (ChecksumKind::Crc32c, u32::from(bytes_per_checksum))
            }
            ChecksumInput::Crc32 { bytes_per_checksum } => {
                (ChecksumKind::Crc32, u32::from(bytes_per_checksum))
            }
        };
        DataChecksum::new(kind, bytes_per_checksum.max(1)).expect("1..=65535 bytes per checksum")
    }
}

#[derive(Arbitrary, Debug)]
struct PacketInput {
    offset_in_block: i64,
    seqno: i64,
    last_packet_in_block: bool,
    sync_block: bool,
    data: Vec<u8>,
    fill: Fill,
}

/// How much data a packet carries beyond its arbitrary bytes.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fill {
    Exact,
    Zeros(u16),
    /// The largest packet the encoder allows, less `less` bytes (one per stream). Only
    /// with `key` == [`NEAR_MAX_KEY`]: packets of megabytes are slow to check, so they
    /// are kept to a small share of executions.
    NearMax {
        less: u16,
        key: u8,
    },
}

const NEAR_MAX_KEY: u8 = 0xa5;

/// The most data bytes a packet can carry with `checksum` and still be encoded.
fn packet_data_len_max(checksum: DataChecksum) -> usize {
    let fits = |data_len: usize| {
        4 + checksum.checksum_len(data_len) + data_len + PACKET_HEADER_SIZE_MAX <= PACKET_SIZE_MAX
    };
    let (mut low, mut high) = (0, PACKET_SIZE_MAX);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

fn packet_structured(data: &[u8]) {
    let Ok(input) = PacketStreamInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let checksum = input.checksum.checksum();
    let decode_with = input.checksum_known.then_some(checksum);

    // Build the valid stream.
    let mut built: Vec<(PacketHeader, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut near_max_used = false;
    let mut built_len = 0;
    for packet in &input.packets {
        if built_len > 2 * PACKET_SIZE_MAX {
            break; // Enough: each packet is checked on its own.
        }
        let data_len = match packet.fill {
            Fill::Exact => packet.data.len(),
            Fill::Zeros(zeros) => packet.data.len() + usize::from(zeros),
            Fill::NearMax { less, key: NEAR_MAX_KEY } if !near_max_used => {
                near_max_used = true;
                packet_data_len_max(checksum).saturating_sub(usize::from(less))
            }
            Fill::NearMax { .. } => packet.data.len(),
        };
        let mut bytes = Vec::with_capacity(data_len);
        bytes.extend_from_slice(&packet.data[..packet.data.len().min(data_len)]);
        bytes.resize(data_len, 0);
        let header = PacketHeader {
            offset_in_block: packet.offset_in_block,
            seqno: packet.seqno,
            last_packet_in_block: packet.last_packet_in_block,
            data_len: i32::try_from(data_len).expect("below 16 MiB"),
            sync_block: packet.sync_block,
        };
        let checksums = checksum.compute_vec(&bytes);
        built_len += header.encoded_prefix_len() + checksums.len() + bytes.len();
        built.push((header, checksums, bytes));
    }
    let total: usize = built.iter().map(|(h, c, d)| h.encoded_prefix_len() + c.len() + d.len()).sum();
    let mut stream = Encoding { bytes: Vec::with_capacity(total), sites: Vec::new() };
    for (header, checksums, bytes) in &built {
        let start = stream.bytes.len();
        header.encode_prefix(checksums.len(), &mut stream.bytes);
        stream.sites.push(Site { at: start, width: Width::U32Be });
        stream.sites.push(Site { at: start + 4, width: Width::U16Be });
        // dataLen (field 4, sfixed32) follows offsetInBlock, seqno and lastPacketInBlock.
        let data_len_at = start + 6 + 9 + 9 + 2 + 1;
        assert_eq!(stream.bytes[data_len_at - 1], 0x25, "canonical header layout");
        stream.sites.push(Site { at: data_len_at, width: Width::I32Le });
        stream.put(checksums);
        stream.put(bytes);
    }

    // The valid stream decodes to exactly what was built, and verifies.
    let mut rest = &stream.bytes[..];
    for (header, checksums, bytes) in &built {
        let size = header.encoded_prefix_len() + checksums.len() + bytes.len();
        for config in [decode_with, None] {
            let (packet, consumed) = Packet::decode(rest, config)
                .unwrap_or_else(|e| panic!("valid packet refused: {e}"))
                .expect("valid packet complete");
            assert!(
                packet == Packet { header: *header, checksums, data: bytes },
                "decode(encode(packet)) != packet"
            );
            assert_eq!(consumed, size);
            if config.is_some() || decode_with.is_none() {
                packet.verify(checksum).unwrap_or_else(|e| panic!("valid packet fails verification: {e}"));
            }
        }
        rest = &rest[size..];
    }
    assert!(rest.is_empty());

    stream.corrupt(&input.corruptions);
    // Every checksum configuration for ordinary streams; for streams of megabytes only the
    // stream's own and none, which keeps executions fast enough to explore them.
    if stream.bytes.len() <= ALL_CHECKSUMS_STREAM_MAX {
        oracle("packet", &stream.bytes);
    }
    let limit = fuzzing::allocation_limit(PACKET_SIZE_MAX, stream.bytes.len());
    with_allocation_limit(limit, || {
        for config in [decode_with, None] {
            let mut rest = &stream.bytes[..];
            while let Some(consumed) = fuzzing::packet_with(rest, config) {
                rest = &rest[consumed..];
            }
        }
    });
}

/// Largest packet stream checked under every checksum configuration.
const ALL_CHECKSUMS_STREAM_MAX: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// dtp_op_structured

#[derive(Arbitrary, Debug)]
pub struct OpInput {
    /// None: the real version (28).
    version: Option<u16>,
    op: OpChoice,
    corruptions: Vec<Corruption>,
}

#[derive(Arbitrary, Debug)]
enum OpChoice {
    WriteBlock(WriteBlockInput),
    ReadBlock(ReadBlockInput),
    BlockChecksum(BaseHeaderInput, Option<(Option<u8>, Option<u64>)>),
    TransferBlock(ClientHeaderInput, Vec<DatanodeInput>, Vec<u8>, Vec<String>),
    ReplaceBlock(BaseHeaderInput, String, DatanodeInput, Option<u8>, Option<String>),
    CopyBlock(BaseHeaderInput),
    /// An op ringfs does not serve, with an arbitrary body.
    Unsupported(u8, Vec<Field>),
}

#[derive(Arbitrary, Debug)]
struct BlockInput {
    pool_id: String,
    block_id: u64,
    generation_stamp: u64,
    num_bytes: Option<u64>,
}

#[derive(Arbitrary, Debug)]
struct TokenInput {
    identifier: Vec<u8>,
    password: Vec<u8>,
    kind: String,
    service: String,
}

#[derive(Arbitrary, Debug)]
struct BaseHeaderInput {
    block: BlockInput,
    token: Option<TokenInput>,
    trace: Option<TraceInput>,
}

#[derive(Arbitrary, Debug)]
struct TraceInput {
    trace_id: Option<u64>,
    parent_id: Option<u64>,
    span_context: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct ClientHeaderInput {
    base: BaseHeaderInput,
    client_name: String,
}

#[derive(Arbitrary, Debug)]
struct DatanodeInput {
    ip_addr: String,
    host_name: String,
    datanode_uuid: String,
    ports: (u32, u32, u32),
    capacity: Option<u64>,
    location: Option<String>,
    admin_state: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct WriteBlockInput {
    header: ClientHeaderInput,
    targets: Vec<DatanodeInput>,
    source: Option<DatanodeInput>,
    stage: u8,
    pipeline_size: u32,
    bytes_rcvd: (u64, u64),
    latest_generation_stamp: u64,
    checksum: (u8, u32),
    storage_type: Option<u8>,
    target_storage_types: Vec<u8>,
    pinning: Option<bool>,
    target_pinnings: Vec<bool>,
    storage_id: Option<String>,
    target_storage_ids: Vec<String>,
    caching: Option<(Option<bool>, Option<i64>)>,
}

#[derive(Arbitrary, Debug)]
struct ReadBlockInput {
    header: ClientHeaderInput,
    offset: u64,
    len: u64,
    send_checksums: Option<bool>,
    caching: Option<(Option<bool>, Option<i64>)>,
}

impl BaseHeaderInput {
    fn build(&self) -> hdfs::BaseHeaderProto {
        hdfs::BaseHeaderProto {
            block: hdfs::ExtendedBlockProto {
                pool_id: self.block.pool_id.clone(),
                block_id: self.block.block_id,
                generation_stamp: self.block.generation_stamp,
                num_bytes: self.block.num_bytes,
            },
            token: self.token.as_ref().map(|t| TokenProto {
                identifier: Bytes::copy_from_slice(&t.identifier),
                password: Bytes::copy_from_slice(&t.password),
                kind: t.kind.clone(),
                service: t.service.clone(),
            }),
            trace_info: self.trace.as_ref().map(|trace| hdfs::DataTransferTraceInfoProto {
                trace_id: trace.trace_id,
                parent_id: trace.parent_id,
                span_context: trace.span_context.as_deref().map(Bytes::copy_from_slice),
            }),
        }
    }
}

impl ClientHeaderInput {
    fn build(&self) -> hdfs::ClientOperationHeaderProto {
        hdfs::ClientOperationHeaderProto {
            base_header: self.base.build(),
            client_name: self.client_name.clone(),
        }
    }
}

impl DatanodeInput {
    fn build(&self) -> hdfs::DatanodeInfoProto {
        hdfs::DatanodeInfoProto {
            id: hdfs::DatanodeIdProto {
                ip_addr: self.ip_addr.clone(),
                host_name: self.host_name.clone(),
                datanode_uuid: self.datanode_uuid.clone(),
                xfer_port: self.ports.0,
                info_port: self.ports.1,
                ipc_port: self.ports.2,
                info_secure_port: None,
            },
            capacity: self.capacity,
            location: self.location.clone(),
            admin_state: self.admin_state.map(i32::from),
            ..Default::default()
        }
    }
}

fn caching(input: &Option<(Option<bool>, Option<i64>)>) -> Option<hdfs::CachingStrategyProto> {
    input.map(|(drop_behind, readahead)| hdfs::CachingStrategyProto { drop_behind, readahead })
}

fn build_op(choice: &OpChoice) -> (OpRequest, Option<Vec<u8>>) {
    let request = match choice {
        OpChoice::WriteBlock(w) => OpRequest::WriteBlock(hdfs::OpWriteBlockProto {
            header: w.header.build(),
            targets: w.targets.iter().map(DatanodeInput::build).collect(),
            source: w.source.as_ref().map(DatanodeInput::build),
            stage: i32::from(w.stage),
            pipeline_size: w.pipeline_size,
            min_bytes_rcvd: w.bytes_rcvd.0,
            max_bytes_rcvd: w.bytes_rcvd.1,
            latest_generation_stamp: w.latest_generation_stamp,
            requested_checksum: hdfs::ChecksumProto {
                r#type: i32::from(w.checksum.0),
                bytes_per_checksum: w.checksum.1,
            },
            caching_strategy: caching(&w.caching),
            storage_type: w.storage_type.map(i32::from),
            target_storage_types: w.target_storage_types.iter().copied().map(i32::from).collect(),
            allow_lazy_persist: None,
            pinning: w.pinning,
            target_pinnings: w.target_pinnings.clone(),
            storage_id: w.storage_id.clone(),
            target_storage_ids: w.target_storage_ids.clone(),
        }),
        OpChoice::ReadBlock(r) => OpRequest::ReadBlock(hdfs::OpReadBlockProto {
            header: r.header.build(),
            offset: r.offset,
            len: r.len,
            send_checksums: r.send_checksums,
            caching_strategy: caching(&r.caching),
        }),
        OpChoice::BlockChecksum(header, options) => OpRequest::BlockChecksum(hdfs::OpBlockChecksumProto {
            header: header.build(),
            block_checksum_options: options.map(|(kind, stripe_length)| hdfs::BlockChecksumOptionsProto {
                block_checksum_type: kind.map(i32::from),
                stripe_length,
            }),
        }),
        OpChoice::TransferBlock(header, targets, types, ids) => {
            OpRequest::TransferBlock(hdfs::OpTransferBlockProto {
                header: header.build(),
                targets: targets.iter().map(DatanodeInput::build).collect(),
                target_storage_types: types.iter().copied().map(i32::from).collect(),
                target_storage_ids: ids.clone(),
            })
        }
        OpChoice::ReplaceBlock(header, del_hint, source, storage_type, storage_id) => {
            OpRequest::ReplaceBlock(hdfs::OpReplaceBlockProto {
                header: header.build(),
                del_hint: del_hint.clone(),
                source: source.build(),
                storage_type: storage_type.map(i32::from),
                storage_id: storage_id.clone(),
            })
        }
        OpChoice::CopyBlock(header) => {
            OpRequest::CopyBlock(hdfs::OpCopyBlockProto { header: header.build() })
        }
        OpChoice::Unsupported(code, fields) => {
            const UNSERVED: [u8; 6] = [82, 87, 88, 89, 90, 127];
            let code = UNSERVED[usize::from(*code) % UNSERVED.len()];
            let op = ringfs_common::dtp::Op::from_code(code).expect("known op code");
            return (OpRequest::Unsupported(op), Some(encode_fields(fields).bytes));
        }
    };
    (request, None)
}

fn dtp_op_structured(data: &[u8]) {
    let Ok(input) = OpInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let (request, unsupported_body) = build_op(&input.op);
    let mut body = Vec::new();
    match (&request, &unsupported_body) {
        (OpRequest::Unsupported(_), Some(fields)) => body.extend_from_slice(fields),
        (request, _) => {
            let mut encoded = Vec::new();
            request.encode(&mut encoded);
            body.extend_from_slice(&encoded[3..]);
            let size = prost::decode_length_delimiter(&body[..]).expect("own delimiter");
            body.drain(..body.len() - size);
        }
    }
    let mut op = Encoding::default();
    op.put(&input.version.unwrap_or(28).to_be_bytes());
    op.put(&[request.op() as u8]);
    op.put_delimited(&body);

    // The valid request decodes to what was built.
    if input.version.is_none() {
        match OpRequest::decode(&op.bytes) {
            Ok(Some((decoded, consumed))) => {
                assert_eq!(decoded, request, "decode(encode(op)) != op");
                assert_eq!(consumed, op.bytes.len());
            }
            Err(ringfs_common::dtp::DtpError::TooLarge { .. }) => assert!(body.len() > OP_REQUEST_SIZE_MAX),
            other => panic!("valid op request not decoded: {other:?}"),
        }
    }
    op.corrupt(&input.corruptions);
    oracle("dtp_op", &op.bytes);
}

// ---------------------------------------------------------------------------------------
// rpc_server_structured

#[derive(Arbitrary, Debug)]
pub struct ConnectionInput {
    service_class: u8,
    sasl: bool,
    user: String,
    protocol: ProtocolInput,
    frames: Vec<FrameInput>,
    corruptions: Vec<Corruption>,
}

#[derive(Arbitrary, Debug)]
enum ProtocolInput {
    Client,
    Datanode,
    ClientDatanode,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum FrameInput {
    Call(CallInput),
    Ping,
    Sasl { state: u8, token: Option<Vec<u8>> },
    Context,
}

#[derive(Arbitrary, Debug)]
struct CallInput {
    call_id: u16,
    client_id: [u8; 16],
    retry_count: i8,
    method: u8,
    /// Name the protocol in the request header (Java does) or leave it empty.
    declare_protocol: bool,
    request: Vec<Field>,
}

fn request_header(call_id: i32, client_id: &[u8], retry_count: i32) -> RpcRequestHeaderProto {
    RpcRequestHeaderProto {
        rpc_kind: Some(RpcKindProto::RpcProtocolBuffer as i32),
        rpc_op: Some(OperationProto::RpcFinalPacket as i32),
        call_id,
        client_id: Bytes::copy_from_slice(client_id),
        retry_count: Some(retry_count),
        ..Default::default()
    }
}

/// Appends one frame: length prefix, then the delimited messages, then `payload` as a
/// delimited field built from arbitrary fields (its sites kept).
fn put_frame(out: &mut Encoding, messages: &[&[u8]], payload: Option<Encoding>) {
    let mut body = Encoding::default();
    for message in messages {
        body.put_delimited(message);
    }
    if let Some(payload) = payload {
        body.put_site(Width::Varint, payload.bytes.len() as u64);
        body.append(payload);
    }
    out.put_site(Width::U32Be, body.bytes.len() as u64);
    out.append(body);
}

fn rpc_server_structured(data: &[u8]) {
    let Ok(input) = ConnectionInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let protocol = match &input.protocol {
        ProtocolInput::Client => ipc::protocol::CLIENT,
        ProtocolInput::Datanode => ipc::protocol::DATANODE,
        ProtocolInput::ClientDatanode => ipc::protocol::CLIENT_DATANODE,
        ProtocolInput::Other(name) => name.as_str(),
    };
    let methods = protocol_methods(protocol).unwrap_or(CLIENT_PROTOCOL_METHODS);
    let client_id = [7u8; 16];
    let preamble = Preamble {
        service_class: input.service_class,
        auth: if input.sasl { ipc::AuthProtocol::Sasl } else { ipc::AuthProtocol::None },
    };
    let mut connection = Encoding::default();
    connection.put(&preamble.encode());
    let mut expected: Vec<ClientFrame> = Vec::new();

    let context_frame = ClientFrame::ConnectionContext {
        header: request_header(ipc::CONNECTION_CONTEXT_CALL_ID, &client_id, -1),
        context: IpcConnectionContextProto {
            user_info: Some(UserInformationProto {
                effective_user: Some(input.user.clone()),
                real_user: None,
            }),
            protocol: Some(protocol.to_string()),
        },
    };
    let sasl = |state: i32, token: Option<&[u8]>| ClientFrame::Sasl {
        header: request_header(ipc::SASL_CALL_ID, &client_id, -1),
        message: RpcSaslProto {
            version: None,
            state,
            token: token.map(Bytes::copy_from_slice),
            auths: Vec::new(),
        },
    };
    if input.sasl {
        expected.push(sasl(1, None));
    }
    expected.push(context_frame.clone());
    let mut payloads: Vec<Option<Encoding>> = Vec::new();
    payloads.resize_with(expected.len(), || None);
    for frame in &input.frames {
        match frame {
            FrameInput::Call(call) => {
                let method = methods[usize::from(call.method) % methods.len()].name;
                let payload = encode_fields(&call.request);
                expected.push(ClientFrame::Call {
                    header: request_header(
                        i32::from(call.call_id),
                        &call.client_id,
                        i32::from(call.retry_count),
                    ),
                    request: RequestHeaderProto {
                        method_name: method.to_string(),
                        declaring_class_protocol_name: if call.declare_protocol {
                            protocol.to_string()
                        } else {
                            String::new()
                        },
                        client_protocol_version: 1,
                    },
                    payload: Bytes::copy_from_slice(&payload.bytes),
                });
                payloads.push(Some(payload));
                continue;
            }
            FrameInput::Ping => {
                expected.push(ClientFrame::Ping { header: request_header(ipc::PING_CALL_ID, &client_id, -1) })
            }
            FrameInput::Sasl { state, token } => expected.push(sasl(i32::from(*state % 6), token.as_deref())),
            FrameInput::Context => expected.push(context_frame.clone()),
        }
        payloads.push(None);
    }
    for (frame, payload) in expected.iter().zip(payloads) {
        match frame {
            ClientFrame::ConnectionContext { header, context } => {
                put_frame(&mut connection, &[&header.encode_to_vec(), &context.encode_to_vec()], None)
            }
            ClientFrame::Ping { header } => put_frame(&mut connection, &[&header.encode_to_vec()], None),
            ClientFrame::Sasl { header, message } => {
                put_frame(&mut connection, &[&header.encode_to_vec(), &message.encode_to_vec()], None)
            }
            ClientFrame::Call { header, request, .. } => {
                put_frame(&mut connection, &[&header.encode_to_vec(), &request.encode_to_vec()], payload)
            }
        }
    }

    // The valid connection decodes frame by frame to what was built.
    let (decoded_preamble, mut at) =
        Preamble::decode(&connection.bytes).expect("valid preamble").expect("7 bytes");
    assert_eq!(decoded_preamble, preamble);
    for frame in &expected {
        let (size, consumed) = ipc::split_frame(&connection.bytes[at..], RPC_FRAME_SIZE_MAX)
            .expect("valid frame length")
            .expect("valid frame complete");
        let body = Bytes::copy_from_slice(&connection.bytes[at + 4..at + 4 + size]);
        match ClientFrame::decode(body, RPC_FRAME_SIZE_MAX) {
            Ok(decoded) => assert_eq!(&decoded, frame, "decode(encode(frame)) != frame"),
            // Headers and contexts beyond the header cap are refused, rightly.
            Err(ipc::IpcError::MessageTooLarge { size, .. }) => assert!(size > RPC_HEADER_SIZE_MAX),
            Err(e) => panic!("valid frame refused: {e}"),
        }
        at += consumed;
    }
    assert_eq!(at, connection.bytes.len());

    connection.corrupt(&input.corruptions);
    oracle("rpc_server", &connection.bytes);
}

// ---------------------------------------------------------------------------------------
// rpc_client_structured

#[derive(Arbitrary, Debug)]
pub struct ResponsesInput {
    /// The method the client called (selects the response decoder).
    method: u8,
    responses: Vec<ResponseInput>,
    corruptions: Vec<Corruption>,
}

#[derive(Arbitrary, Debug)]
struct ResponseInput {
    call_id: i32,
    client_id: Option<[u8; 16]>,
    retry_count: i8,
    outcome: OutcomeInput,
}

#[derive(Arbitrary, Debug)]
enum OutcomeInput {
    Success(Vec<Field>),
    Sasl { state: u8, token: Option<Vec<u8>> },
    Error { class: u8, message: String, detail: u8, fatal: bool },
    CustomError { class: String, message: String, fatal: bool },
}

const EXCEPTIONS: [&str; 8] = [
    exception::IO,
    exception::FILE_NOT_FOUND,
    exception::FILE_ALREADY_EXISTS,
    exception::NO_SUCH_METHOD,
    exception::STANDBY,
    exception::SAFE_MODE,
    exception::RPC_SERVER,
    exception::VERSION_MISMATCH,
];

fn rpc_client_structured(data: &[u8]) {
    let Ok(input) = ResponsesInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let method_count = all_methods().count();
    let selector = input.method % method_count as u8;
    let mut stream = Encoding::default();
    let mut expected = Vec::new();
    for response in &input.responses {
        let (call_id, outcome, fatal) = match &response.outcome {
            OutcomeInput::Success(fields) => {
                (response.call_id, Ok(Bytes::from(encode_fields(fields).bytes)), false)
            }
            OutcomeInput::Sasl { state, token } => {
                let message = RpcSaslProto {
                    version: None,
                    state: i32::from(*state % 6),
                    token: token.as_deref().map(Bytes::copy_from_slice),
                    auths: Vec::new(),
                };
                (ipc::SASL_CALL_ID, Ok(Bytes::from(message.encode_to_vec())), false)
            }
            OutcomeInput::Error { class, message, detail, fatal } => {
                let error = RemoteError {
                    class_name: EXCEPTIONS[usize::from(*class) % EXCEPTIONS.len()].to_string(),
                    message: message.clone(),
                    detail: RpcErrorCodeProto::try_from(i32::from(*detail))
                        .unwrap_or(RpcErrorCodeProto::ErrorApplication),
                };
                (response.call_id, Err(error), *fatal)
            }
            OutcomeInput::CustomError { class, message, fatal } => {
                (response.call_id, Err(RemoteError::new(class, message.clone())), *fatal)
            }
        };
        let call = CallId {
            call_id,
            client_id: response.client_id.map(|id| Bytes::copy_from_slice(&id)).unwrap_or_default(),
            retry_count: i32::from(response.retry_count),
        };
        let mut frame = Vec::new();
        match &outcome {
            Ok(payload) => ipc::encode_response_bytes(&call, payload, &mut frame),
            Err(error) => ipc::encode_error(&call, error, fatal, &mut frame),
        }
        // Mark the frame length, the header delimiter and, after the header, the
        // response's delimiter and fields.
        let start = stream.bytes.len();
        stream.sites.push(Site { at: start, width: Width::U32Be });
        let (header_len, header_len_len) = varint_at(&frame, 4).expect("own header delimiter");
        stream.sites.push(Site { at: start + 4, width: Width::Varint });
        let header_start = 4 + header_len_len;
        let header_end = header_start + header_len as usize;
        scan_message(&frame[header_start..header_end], start + header_start, 2, &mut stream.sites);
        if header_end < frame.len() {
            stream.sites.push(Site { at: start + header_end, width: Width::Varint });
            let (_, len_len) = varint_at(&frame, header_end).expect("own payload delimiter");
            scan_message(&frame[header_end + len_len..], start + header_end + len_len, 4, &mut stream.sites);
        }
        stream.put(&frame);
        expected.push(Response { call_id, outcome, fatal });
    }

    // The valid responses decode to what was built.
    let mut at = 0;
    for response in &expected {
        let (size, consumed) = ipc::split_frame(&stream.bytes[at..], RPC_FRAME_SIZE_MAX)
            .expect("valid frame length")
            .expect("valid frame complete");
        let body = Bytes::copy_from_slice(&stream.bytes[at + 4..at + 4 + size]);
        match Response::decode(body, RPC_FRAME_SIZE_MAX) {
            Ok(decoded) => assert_eq!(&decoded, response, "decode(encode(response)) != response"),
            Err(ipc::IpcError::MessageTooLarge { size, .. }) => assert!(size > RPC_HEADER_SIZE_MAX),
            Err(e) => panic!("valid response refused: {e}"),
        }
        at += consumed;
    }
    assert_eq!(at, stream.bytes.len());

    stream.corrupt(&input.corruptions);
    let mut bytes = Vec::with_capacity(stream.bytes.len() + 1);
    bytes.push(selector);
    bytes.extend_from_slice(&stream.bytes);
    oracle("rpc_client", &bytes);
}
