//! Edit log records and segments, sans I/O.
//!
//! ```text
//! segment:  "RFSEDITS" | u32 LE format version | u64 LE first txid      (20-byte header)
//!           record*
//! record:   u32 LE payload length | u32 LE CRC32C(payload) | payload
//! payload:  varint txid | u8 opcode | fields (codec.rs encoding)
//! ```
//! A crash can leave a torn last record (short, zero-filled or with a bad CRC): the
//! scanner reports where the valid prefix ends so the tail is cut, never replayed. A
//! record whose CRC is good but whose payload does not decode, or a bad record followed
//! by good ones, is corruption and is reported as an error instead.
//!
//! Fuzzing entry points: [`decode_edit_records`], [`decode_edit_record`],
//! [`scan_segment`] and [`EditOp::decode`].

use crate::blocks::BlockRecord;
use crate::codec::{CodecError, Decoder, Encoder};
use crate::ids::{BlockId, InodeId};

pub const SEGMENT_MAGIC: [u8; 8] = *b"RFSEDITS";
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_SIZE: usize = 20;
/// Length and CRC before each payload.
pub const RECORD_HEADER_SIZE: usize = 8;
/// Largest record payload: a concat or block list of a huge file fits, garbage does not.
pub const RECORD_PAYLOAD_SIZE_MAX: usize = 64 * 1024 * 1024;
/// Longest name, owner, group or client string in a record.
pub const STRING_SIZE_MAX: usize = 8 * 1024;
/// Most blocks in one file's block list.
pub const BLOCKS_PER_RECORD_MAX: u64 = 4 * 1024 * 1024;
/// Most source files of one concat.
pub const CONCAT_SOURCES_MAX: u64 = 1024 * 1024;

/// One namespace mutation, with every decision already made (ids, times, owners), so
/// replaying it reproduces exactly the state the live call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOp {
    Mkdir {
        id: InodeId,
        parent: InodeId,
        name: String,
        owner: String,
        group: String,
        perm: u16,
        mtime_ms: i64,
    },
    CreateFile {
        id: InodeId,
        parent: InodeId,
        name: String,
        owner: String,
        group: String,
        perm: u16,
        mtime_ms: i64,
        replication: u16,
        blocksize: u64,
        client_name: String,
        client_machine: String,
    },
    /// Removes the inode and its subtree; the parent's mtime becomes `mtime_ms`.
    Delete {
        id: InodeId,
        mtime_ms: i64,
    },
    Rename {
        id: InodeId,
        new_parent: InodeId,
        new_name: String,
        mtime_ms: i64,
    },
    SetPermission {
        id: InodeId,
        perm: u16,
    },
    SetOwner {
        id: InodeId,
        owner: Option<String>,
        group: Option<String>,
    },
    SetTimes {
        id: InodeId,
        mtime_ms: Option<i64>,
        atime_ms: Option<i64>,
    },
    SetReplication {
        id: InodeId,
        replication: u16,
    },
    /// Appends a new block; `previous_num_bytes` commits the former last block's length.
    AddBlock {
        file: InodeId,
        block: BlockRecord,
        previous_num_bytes: Option<u64>,
    },
    /// Replaces a file's block list (abandon, fsync, pipeline update, truncate, recovery).
    UpdateBlocks {
        file: InodeId,
        blocks: Vec<BlockRecord>,
        mtime_ms: Option<i64>,
    },
    /// The file leaves construction with these final blocks.
    CloseFile {
        file: InodeId,
        mtime_ms: i64,
        blocks: Vec<BlockRecord>,
    },
    /// The file is opened for append by a client.
    Reopen {
        file: InodeId,
        client_name: String,
        client_machine: String,
        last_block_open: bool,
    },
    ReassignLease {
        file: InodeId,
        client_name: String,
    },
    SetGenStamp {
        gen_stamp: u64,
    },
    Concat {
        target: InodeId,
        sources: Vec<InodeId>,
        mtime_ms: i64,
    },
    /// A truncate inside a block: the file keeps `blocks` (the last at its old length)
    /// and is opened for `client_name` while a block recovery cuts the last block to
    /// `last_block_length`.
    Truncate {
        file: InodeId,
        blocks: Vec<BlockRecord>,
        last_block_length: u64,
        client_name: String,
        client_machine: String,
        mtime_ms: i64,
    },
}

mod opcode {
    pub const MKDIR: u8 = 1;
    pub const CREATE_FILE: u8 = 2;
    pub const DELETE: u8 = 3;
    pub const RENAME: u8 = 4;
    pub const SET_PERMISSION: u8 = 5;
    pub const SET_OWNER: u8 = 6;
    pub const SET_TIMES: u8 = 7;
    pub const SET_REPLICATION: u8 = 8;
    pub const ADD_BLOCK: u8 = 9;
    pub const UPDATE_BLOCKS: u8 = 10;
    pub const CLOSE_FILE: u8 = 11;
    pub const REOPEN: u8 = 12;
    pub const REASSIGN_LEASE: u8 = 13;
    pub const SET_GEN_STAMP: u8 = 14;
    pub const CONCAT: u8 = 15;
    pub const TRUNCATE: u8 = 16;
}

fn put_block(enc: &mut Encoder, block: &BlockRecord) {
    enc.varint(block.id.0);
    enc.varint(block.gen_stamp);
    enc.varint(block.num_bytes);
}

fn get_block(dec: &mut Decoder<'_>) -> Result<BlockRecord, CodecError> {
    Ok(BlockRecord {
        id: BlockId(dec.varint_max("block id", crate::ids::BLOCK_ID_MAX)?),
        gen_stamp: dec.varint("generation stamp")?,
        num_bytes: dec.varint("block length")?,
    })
}

fn put_blocks(enc: &mut Encoder, blocks: &[BlockRecord]) {
    enc.varint(blocks.len() as u64);
    for block in blocks {
        put_block(enc, block);
    }
}

fn get_blocks(dec: &mut Decoder<'_>) -> Result<Vec<BlockRecord>, CodecError> {
    // Each block takes at least three one-byte varints.
    let count = dec.count("block count", BLOCKS_PER_RECORD_MAX, 3)?;
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        blocks.push(get_block(dec)?);
    }
    Ok(blocks)
}

fn put_opt_i64(enc: &mut Encoder, value: Option<i64>) {
    match value {
        None => enc.u8(0),
        Some(v) => {
            enc.u8(1);
            enc.signed(v);
        }
    }
}

fn get_opt_i64(dec: &mut Decoder<'_>, what: &'static str) -> Result<Option<i64>, CodecError> {
    Ok(if dec.bool(what)? { Some(dec.signed(what)?) } else { None })
}

fn get_id(dec: &mut Decoder<'_>, what: &'static str) -> Result<InodeId, CodecError> {
    Ok(InodeId(dec.varint(what)?))
}

fn get_u16(dec: &mut Decoder<'_>, what: &'static str) -> Result<u16, CodecError> {
    Ok(dec.varint_max(what, u64::from(u16::MAX))? as u16)
}

fn get_string(dec: &mut Decoder<'_>, what: &'static str) -> Result<String, CodecError> {
    Ok(dec.str(what, STRING_SIZE_MAX)?.to_string())
}

impl EditOp {
    pub fn encode(&self, enc: &mut Encoder) {
        match self {
            EditOp::Mkdir { id, parent, name, owner, group, perm, mtime_ms } => {
                enc.u8(opcode::MKDIR);
                enc.varint(id.0);
                enc.varint(parent.0);
                enc.str(name);
                enc.str(owner);
                enc.str(group);
                enc.varint(u64::from(*perm));
                enc.signed(*mtime_ms);
            }
            EditOp::CreateFile {
                id,
                parent,
                name,
                owner,
                group,
                perm,
                mtime_ms,
                replication,
                blocksize,
                client_name,
                client_machine,
            } => {
                enc.u8(opcode::CREATE_FILE);
                enc.varint(id.0);
                enc.varint(parent.0);
                enc.str(name);
                enc.str(owner);
                enc.str(group);
                enc.varint(u64::from(*perm));
                enc.signed(*mtime_ms);
                enc.varint(u64::from(*replication));
                enc.varint(*blocksize);
                enc.str(client_name);
                enc.str(client_machine);
            }
            EditOp::Delete { id, mtime_ms } => {
                enc.u8(opcode::DELETE);
                enc.varint(id.0);
                enc.signed(*mtime_ms);
            }
            EditOp::Rename { id, new_parent, new_name, mtime_ms } => {
                enc.u8(opcode::RENAME);
                enc.varint(id.0);
                enc.varint(new_parent.0);
                enc.str(new_name);
                enc.signed(*mtime_ms);
            }
            EditOp::SetPermission { id, perm } => {
                enc.u8(opcode::SET_PERMISSION);
                enc.varint(id.0);
                enc.varint(u64::from(*perm));
            }
            EditOp::SetOwner { id, owner, group } => {
                enc.u8(opcode::SET_OWNER);
                enc.varint(id.0);
                enc.opt_str(owner.as_deref());
                enc.opt_str(group.as_deref());
            }
            EditOp::SetTimes { id, mtime_ms, atime_ms } => {
                enc.u8(opcode::SET_TIMES);
                enc.varint(id.0);
                put_opt_i64(enc, *mtime_ms);
                put_opt_i64(enc, *atime_ms);
            }
            EditOp::SetReplication { id, replication } => {
                enc.u8(opcode::SET_REPLICATION);
                enc.varint(id.0);
                enc.varint(u64::from(*replication));
            }
            EditOp::AddBlock { file, block, previous_num_bytes } => {
                enc.u8(opcode::ADD_BLOCK);
                enc.varint(file.0);
                put_block(enc, block);
                match previous_num_bytes {
                    None => enc.u8(0),
                    Some(n) => {
                        enc.u8(1);
                        enc.varint(*n);
                    }
                }
            }
            EditOp::UpdateBlocks { file, blocks, mtime_ms } => {
                enc.u8(opcode::UPDATE_BLOCKS);
                enc.varint(file.0);
                put_blocks(enc, blocks);
                put_opt_i64(enc, *mtime_ms);
            }
            EditOp::CloseFile { file, mtime_ms, blocks } => {
                enc.u8(opcode::CLOSE_FILE);
                enc.varint(file.0);
                enc.signed(*mtime_ms);
                put_blocks(enc, blocks);
            }
            EditOp::Reopen { file, client_name, client_machine, last_block_open } => {
                enc.u8(opcode::REOPEN);
                enc.varint(file.0);
                enc.str(client_name);
                enc.str(client_machine);
                enc.bool(*last_block_open);
            }
            EditOp::ReassignLease { file, client_name } => {
                enc.u8(opcode::REASSIGN_LEASE);
                enc.varint(file.0);
                enc.str(client_name);
            }
            EditOp::SetGenStamp { gen_stamp } => {
                enc.u8(opcode::SET_GEN_STAMP);
                enc.varint(*gen_stamp);
            }
            EditOp::Concat { target, sources, mtime_ms } => {
                enc.u8(opcode::CONCAT);
                enc.varint(target.0);
                enc.varint(sources.len() as u64);
                for source in sources {
                    enc.varint(source.0);
                }
                enc.signed(*mtime_ms);
            }
            EditOp::Truncate { file, blocks, last_block_length, client_name, client_machine, mtime_ms } => {
                enc.u8(opcode::TRUNCATE);
                enc.varint(file.0);
                put_blocks(enc, blocks);
                enc.varint(*last_block_length);
                enc.str(client_name);
                enc.str(client_machine);
                enc.signed(*mtime_ms);
            }
        }
    }

    /// Decodes one op; the decoder must then be empty (the caller checks).
    pub fn decode(dec: &mut Decoder<'_>) -> Result<EditOp, CodecError> {
        let code = dec.u8("opcode")?;
        Ok(match code {
            opcode::MKDIR => EditOp::Mkdir {
                id: get_id(dec, "inode id")?,
                parent: get_id(dec, "parent id")?,
                name: get_string(dec, "name")?,
                owner: get_string(dec, "owner")?,
                group: get_string(dec, "group")?,
                perm: get_u16(dec, "permission")?,
                mtime_ms: dec.signed("mtime")?,
            },
            opcode::CREATE_FILE => EditOp::CreateFile {
                id: get_id(dec, "inode id")?,
                parent: get_id(dec, "parent id")?,
                name: get_string(dec, "name")?,
                owner: get_string(dec, "owner")?,
                group: get_string(dec, "group")?,
                perm: get_u16(dec, "permission")?,
                mtime_ms: dec.signed("mtime")?,
                replication: get_u16(dec, "replication")?,
                blocksize: dec.varint("blocksize")?,
                client_name: get_string(dec, "client name")?,
                client_machine: get_string(dec, "client machine")?,
            },
            opcode::DELETE => EditOp::Delete { id: get_id(dec, "inode id")?, mtime_ms: dec.signed("mtime")? },
            opcode::RENAME => EditOp::Rename {
                id: get_id(dec, "inode id")?,
                new_parent: get_id(dec, "new parent id")?,
                new_name: get_string(dec, "new name")?,
                mtime_ms: dec.signed("mtime")?,
            },
            opcode::SET_PERMISSION => {
                EditOp::SetPermission { id: get_id(dec, "inode id")?, perm: get_u16(dec, "permission")? }
            }
            opcode::SET_OWNER => EditOp::SetOwner {
                id: get_id(dec, "inode id")?,
                owner: dec.opt_str("owner", STRING_SIZE_MAX)?.map(String::from),
                group: dec.opt_str("group", STRING_SIZE_MAX)?.map(String::from),
            },
            opcode::SET_TIMES => EditOp::SetTimes {
                id: get_id(dec, "inode id")?,
                mtime_ms: get_opt_i64(dec, "mtime")?,
                atime_ms: get_opt_i64(dec, "atime")?,
            },
            opcode::SET_REPLICATION => EditOp::SetReplication {
                id: get_id(dec, "inode id")?,
                replication: get_u16(dec, "replication")?,
            },
            opcode::ADD_BLOCK => EditOp::AddBlock {
                file: get_id(dec, "file id")?,
                block: get_block(dec)?,
                previous_num_bytes: if dec.bool("previous flag")? {
                    Some(dec.varint("previous length")?)
                } else {
                    None
                },
            },
            opcode::UPDATE_BLOCKS => EditOp::UpdateBlocks {
                file: get_id(dec, "file id")?,
                blocks: get_blocks(dec)?,
                mtime_ms: get_opt_i64(dec, "mtime")?,
            },
            opcode::CLOSE_FILE => EditOp::CloseFile {
                file: get_id(dec, "file id")?,
                mtime_ms: dec.signed("mtime")?,
                blocks: get_blocks(dec)?,
            },
            opcode::REOPEN => EditOp::Reopen {
                file: get_id(dec, "file id")?,
                client_name: get_string(dec, "client name")?,
                client_machine: get_string(dec, "client machine")?,
                last_block_open: dec.bool("last block flag")?,
            },
            opcode::REASSIGN_LEASE => EditOp::ReassignLease {
                file: get_id(dec, "file id")?,
                client_name: get_string(dec, "client name")?,
            },
            opcode::SET_GEN_STAMP => EditOp::SetGenStamp { gen_stamp: dec.varint("generation stamp")? },
            opcode::CONCAT => {
                let target = get_id(dec, "target id")?;
                let count = dec.count("source count", CONCAT_SOURCES_MAX, 1)?;
                let mut sources = Vec::with_capacity(count);
                for _ in 0..count {
                    sources.push(get_id(dec, "source id")?);
                }
                EditOp::Concat { target, sources, mtime_ms: dec.signed("mtime")? }
            }
            opcode::TRUNCATE => EditOp::Truncate {
                file: get_id(dec, "file id")?,
                blocks: get_blocks(dec)?,
                last_block_length: dec.varint("truncated length")?,
                client_name: get_string(dec, "client name")?,
                client_machine: get_string(dec, "client machine")?,
                mtime_ms: dec.signed("mtime")?,
            },
            tag => return Err(CodecError::BadTag { what: "edit opcode", tag: u64::from(tag) }),
        })
    }
}

/// A transaction: its id and its op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditRecord {
    pub txid: u64,
    pub op: EditOp,
}

/// Why edit bytes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditDecodeError {
    #[error("not an edit log segment (bad magic)")]
    BadMagic,
    #[error("edit log format version {version} is not supported (expected {SEGMENT_FORMAT_VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("edit record at offset {offset} declares {size} bytes, more than {RECORD_PAYLOAD_SIZE_MAX}")]
    RecordTooLarge { offset: usize, size: usize },
    #[error("edit record at offset {offset} is truncated")]
    Truncated { offset: usize },
    #[error("edit record at offset {offset} has a bad checksum")]
    BadChecksum { offset: usize },
    #[error("edit record at offset {offset} does not decode: {source}")]
    Malformed { offset: usize, source: CodecError },
    #[error("edit record at offset {offset}: txid {found} follows {previous}")]
    OutOfOrder { offset: usize, previous: u64, found: u64 },
    #[error("edit record at offset {offset} is corrupt and followed by valid records: {reason}")]
    CorruptMiddle { offset: usize, reason: String },
}

/// Frames one record into `out`.
pub fn encode_edit_record(txid: u64, op: &EditOp, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_SIZE]);
    let mut enc = Encoder::with_buf(std::mem::take(out));
    enc.varint(txid);
    op.encode(&mut enc);
    *out = enc.buf;
    let payload_len = out.len() - start - RECORD_HEADER_SIZE;
    assert!(payload_len <= RECORD_PAYLOAD_SIZE_MAX, "edit record of {payload_len} bytes exceeds the cap");
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_SIZE..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes one framed record at the front of `bytes`: `Ok(None)` if the bytes end before
/// the record does.
pub fn decode_edit_record(bytes: &[u8]) -> Result<Option<(EditRecord, usize)>, EditDecodeError> {
    decode_record_at(bytes, 0)
}

fn decode_record_at(bytes: &[u8], offset: usize) -> Result<Option<(EditRecord, usize)>, EditDecodeError> {
    let rest = &bytes[offset.min(bytes.len())..];
    if rest.len() < RECORD_HEADER_SIZE {
        return Ok(None);
    }
    let size = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if size > RECORD_PAYLOAD_SIZE_MAX {
        return Err(EditDecodeError::RecordTooLarge { offset, size });
    }
    if size == 0 {
        // Zero-filled space after a crash looks like this; a real record is never empty.
        return Err(EditDecodeError::Truncated { offset });
    }
    if rest.len() < RECORD_HEADER_SIZE + size {
        return Ok(None);
    }
    let payload = &rest[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + size];
    if crc32c::crc32c(payload) != crc {
        return Err(EditDecodeError::BadChecksum { offset });
    }
    let mut dec = Decoder::new(payload);
    let decoded = (|| {
        let txid = dec.varint("txid")?;
        let op = EditOp::decode(&mut dec)?;
        if !dec.is_empty() {
            return Err(CodecError::Invalid {
                what: "edit record",
                reason: format!("{} trailing bytes", dec.remaining()),
            });
        }
        Ok(EditRecord { txid, op })
    })();
    match decoded {
        Ok(record) => Ok(Some((record, RECORD_HEADER_SIZE + size))),
        Err(source) => Err(EditDecodeError::Malformed { offset, source }),
    }
}

/// Decodes a run of framed records (no segment header) that must all be valid and
/// complete, with consecutive txids.
pub fn decode_edit_records(bytes: &[u8]) -> Result<Vec<EditRecord>, EditDecodeError> {
    let mut records: Vec<EditRecord> = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_record_at(bytes, offset)? {
            None => return Err(EditDecodeError::Truncated { offset }),
            Some((record, used)) => {
                if let Some(previous) = records.last() {
                    if record.txid != previous.txid + 1 {
                        return Err(EditDecodeError::OutOfOrder {
                            offset,
                            previous: previous.txid,
                            found: record.txid,
                        });
                    }
                }
                records.push(record);
                offset += used;
            }
        }
    }
    Ok(records)
}

/// A segment as read back after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub first_txid: u64,
    pub records: Vec<EditRecord>,
    /// Bytes of header plus valid records; anything after is a torn tail to cut.
    pub valid_len: usize,
    /// Why the scan stopped before the end, if it did.
    pub torn_tail: Option<EditDecodeError>,
}

pub fn encode_segment_header(first_txid: u64) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_txid.to_le_bytes());
    header
}

/// Reads a whole segment file's bytes: the valid records, and where a torn tail begins.
/// A segment shorter than its header (a crash while creating it) scans as empty with
/// `first_txid` 0 and `valid_len` 0.
pub fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, EditDecodeError> {
    if bytes.len() < SEGMENT_HEADER_SIZE {
        let torn = (!bytes.is_empty()).then_some(EditDecodeError::Truncated { offset: 0 });
        return Ok(SegmentScan { first_txid: 0, records: Vec::new(), valid_len: 0, torn_tail: torn });
    }
    if bytes[..8] != SEGMENT_MAGIC {
        return Err(EditDecodeError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_FORMAT_VERSION {
        return Err(EditDecodeError::UnsupportedVersion { version });
    }
    let first_txid = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let mut records: Vec<EditRecord> = Vec::new();
    let mut offset = SEGMENT_HEADER_SIZE;
    let mut torn_tail = None;
    while offset < bytes.len() {
        match decode_record_at(bytes, offset) {
            Ok(Some((record, used))) => {
                let expected = records.last().map(|r| r.txid + 1).unwrap_or(first_txid);
                if record.txid != expected {
                    return Err(EditDecodeError::OutOfOrder {
                        offset,
                        previous: expected.wrapping_sub(1),
                        found: record.txid,
                    });
                }
                records.push(record);
                offset += used;
            }
            Ok(None) => {
                torn_tail = Some(EditDecodeError::Truncated { offset });
                break;
            }
            Err(e @ EditDecodeError::Malformed { .. }) => return Err(e),
            Err(e) => {
                if let Some(reason) = valid_record_follows(bytes, offset) {
                    return Err(EditDecodeError::CorruptMiddle { offset, reason });
                }
                torn_tail = Some(e);
                break;
            }
        }
    }
    Ok(SegmentScan { first_txid, records, valid_len: offset, torn_tail })
}

/// After a bad record at `offset`: does a good record start where its length says the
/// next one would? Then the damage is not a torn tail.
fn valid_record_follows(bytes: &[u8], offset: usize) -> Option<String> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_SIZE {
        return None;
    }
    let size = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    if size == 0 || size > RECORD_PAYLOAD_SIZE_MAX {
        return None;
    }
    let next = offset + RECORD_HEADER_SIZE + size;
    match decode_record_at(bytes, next) {
        Ok(Some((record, _))) => Some(format!("bad checksum, yet txid {} follows intact", record.txid)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ops() -> Vec<EditOp> {
        vec![
            EditOp::Mkdir {
                id: InodeId(16386),
                parent: InodeId(16385),
                name: "dir".into(),
                owner: "alice".into(),
                group: "staff".into(),
                perm: 0o755,
                mtime_ms: 1_700_000_000_000,
            },
            EditOp::CreateFile {
                id: InodeId(16387),
                parent: InodeId(16386),
                name: "f".into(),
                owner: "alice".into(),
                group: "staff".into(),
                perm: 0o644,
                mtime_ms: -5,
                replication: 3,
                blocksize: 134_217_728,
                client_name: "DFSClient_1".into(),
                client_machine: "127.0.0.1".into(),
            },
            EditOp::AddBlock {
                file: InodeId(16387),
                block: BlockRecord { id: BlockId(1_073_741_825), gen_stamp: 1001, num_bytes: 0 },
                previous_num_bytes: Some(7),
            },
            EditOp::UpdateBlocks {
                file: InodeId(16387),
                blocks: vec![BlockRecord { id: BlockId(1), gen_stamp: 2, num_bytes: 3 }],
                mtime_ms: Some(9),
            },
            EditOp::CloseFile { file: InodeId(16387), mtime_ms: 10, blocks: vec![] },
            EditOp::Reopen {
                file: InodeId(16387),
                client_name: "c".into(),
                client_machine: "m".into(),
                last_block_open: true,
            },
            EditOp::ReassignLease { file: InodeId(16387), client_name: "NN".into() },
            EditOp::SetGenStamp { gen_stamp: 1002 },
            EditOp::Rename {
                id: InodeId(16387),
                new_parent: InodeId(16385),
                new_name: "g".into(),
                mtime_ms: 11,
            },
            EditOp::SetPermission { id: InodeId(16387), perm: 0o1777 },
            EditOp::SetOwner { id: InodeId(16387), owner: Some("bob".into()), group: None },
            EditOp::SetTimes { id: InodeId(16387), mtime_ms: None, atime_ms: Some(12) },
            EditOp::SetReplication { id: InodeId(16387), replication: 2 },
            EditOp::Concat {
                target: InodeId(16387),
                sources: vec![InodeId(16390), InodeId(16391)],
                mtime_ms: 13,
            },
            EditOp::Delete { id: InodeId(16386), mtime_ms: 14 },
            EditOp::Truncate {
                file: InodeId(16390),
                blocks: vec![BlockRecord { id: BlockId(5), gen_stamp: 6, num_bytes: 7 }],
                last_block_length: 3,
                client_name: "t".into(),
                client_machine: "m".into(),
                mtime_ms: 15,
            },
        ]
    }

    fn segment(first_txid: u64, ops: &[EditOp]) -> Vec<u8> {
        let mut bytes = encode_segment_header(first_txid).to_vec();
        for (i, op) in ops.iter().enumerate() {
            encode_edit_record(first_txid + i as u64, op, &mut bytes);
        }
        bytes
    }

    #[test]
    fn every_op_round_trips() {
        let ops = sample_ops();
        let bytes = segment(5, &ops);
        let scan = scan_segment(&bytes).unwrap();
        assert_eq!(scan.first_txid, 5);
        assert_eq!(scan.valid_len, bytes.len());
        assert!(scan.torn_tail.is_none());
        let decoded: Vec<EditOp> = scan.records.iter().map(|r| r.op.clone()).collect();
        assert_eq!(decoded, ops);
        assert_eq!(decode_edit_records(&bytes[SEGMENT_HEADER_SIZE..]).unwrap().len(), ops.len());
    }

    #[test]
    fn torn_tails_are_cut_at_every_length() {
        let ops = sample_ops();
        let bytes = segment(1, &ops);
        let mut boundaries = vec![SEGMENT_HEADER_SIZE];
        let mut offset = SEGMENT_HEADER_SIZE;
        while offset < bytes.len() {
            let (_, used) = decode_edit_record(&bytes[offset..]).unwrap().unwrap();
            offset += used;
            boundaries.push(offset);
        }
        for cut in SEGMENT_HEADER_SIZE..bytes.len() {
            let scan = scan_segment(&bytes[..cut]).unwrap();
            let complete = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            assert_eq!(scan.records.len(), complete, "cut at {cut}");
            assert_eq!(scan.valid_len, boundaries[complete]);
            assert_eq!(scan.torn_tail.is_some(), cut != boundaries[complete]);
        }
        // A zero-filled tail is torn, not data.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 64]);
        let scan = scan_segment(&zeros).unwrap();
        assert_eq!(scan.records.len(), ops.len());
        assert_eq!(scan.valid_len, bytes.len());
    }

    #[test]
    fn corruption_is_not_mistaken_for_a_torn_tail() {
        let ops = sample_ops();
        let mut bytes = segment(1, &ops);
        // Flip a payload byte of the first record: later records are intact.
        bytes[SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + 2] ^= 0x40;
        assert!(matches!(scan_segment(&bytes), Err(EditDecodeError::CorruptMiddle { .. })));
        // A flipped byte in the last record is indistinguishable from a torn write.
        let mut bytes = segment(1, &ops);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let scan = scan_segment(&bytes).unwrap();
        assert_eq!(scan.records.len(), ops.len() - 1);
        assert!(matches!(scan.torn_tail, Some(EditDecodeError::BadChecksum { .. })));
        assert!(matches!(
            scan_segment(b"NOTEDITS\x01\0\0\0\0\0\0\0\0\0\0\0"),
            Err(EditDecodeError::BadMagic)
        ));
        assert!(decode_edit_records(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        let mut enc = Encoder::new();
        enc.varint(1);
        enc.u8(opcode::UPDATE_BLOCKS);
        enc.varint(16386);
        enc.varint(BLOCKS_PER_RECORD_MAX);
        let mut dec = Decoder::new(&enc.buf);
        dec.varint("txid").unwrap();
        assert!(EditOp::decode(&mut dec).is_err());
    }
}
