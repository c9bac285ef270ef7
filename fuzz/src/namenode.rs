//! Oracles and structure-aware inputs for the namenode's on-disk decoders: edit log
//! records and segments (`ringfs_namenode::edits`) and the image (`ringfs_namenode::image`).
//! They live in the fuzz crate, not in `ringfs_common::fuzzing`, because common cannot
//! depend on the namenode.
//!
//! Oracles: no panic; typed errors; a scan's valid prefix re-encodes and rescans to the
//! same records with no torn tail, and cutting a torn tail leaves a clean segment;
//! `decode(encode(x)) == x` for records; an image re-encodes canonically.

use arbitrary::{Arbitrary, Unstructured};
use ringfs_namenode::blocks::BlockRecord;
use ringfs_namenode::edits::{
    decode_edit_record, decode_edit_records, encode_edit_record, encode_segment_header, scan_segment,
    EditDecodeError, EditOp, EditRecord, RECORD_HEADER_SIZE, RECORD_PAYLOAD_SIZE_MAX, SEGMENT_HEADER_SIZE,
};
use ringfs_namenode::ids::{BlockId, InodeId, FIRST_INODE_ID, ROOT_INODE_ID};
use ringfs_namenode::image::{
    decode_image, decode_image_body, encode_image, ImageContents, IMAGE_FORMAT_VERSION, IMAGE_MAGIC,
};

use crate::capped_alloc::with_allocation_limit;
use crate::structured::{Corruption, Encoding, Site, Width};

/// Namenode targets: name, entry point, and the cap on single allocations.
pub struct NamenodeTarget {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[NamenodeTarget] = &[
    NamenodeTarget { name: "edit_log", run: edit_log_limited },
    NamenodeTarget { name: "image", run: image_limited },
    NamenodeTarget { name: "edit_log_structured", run: edit_log_structured },
    NamenodeTarget { name: "image_structured", run: image_structured },
];

pub fn target(name: &str) -> Option<&'static NamenodeTarget> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Largest single allocation for an edit segment: one record's payload cap.
const EDIT_ALLOCATION_CAP: usize = RECORD_PAYLOAD_SIZE_MAX;
/// Images have no size cap (they grow with the namespace): allocations are bounded by
/// the input's size alone (`allocation_limit`'s proportional rule) up to this.
const IMAGE_ALLOCATION_CAP: usize = 1024 * 1024 * 1024;

fn edit_log_limited(data: &[u8]) {
    let limit = ringfs_common::fuzzing::allocation_limit(EDIT_ALLOCATION_CAP, data.len());
    with_allocation_limit(limit, || edit_log(data));
}

fn image_limited(data: &[u8]) {
    let limit = ringfs_common::fuzzing::allocation_limit(IMAGE_ALLOCATION_CAP, data.len());
    with_allocation_limit(limit, || image(data));
}

// ---------------------------------------------------------------------------------------
// Edit log

/// `edit_log`: the bytes as a segment file read back after a restart, as a run of
/// records, one record at a time (streaming), and as one record payload behind a valid
/// length and CRC (so mutations reach the op decoder past the checksum).
pub fn edit_log(data: &[u8]) {
    check_segment(data);
    let _ = decode_edit_records(data).map(|records| check_consecutive(&records));
    check_record_stream(data);
    if !data.is_empty() && data.len() <= RECORD_PAYLOAD_SIZE_MAX {
        let framed = frame_record(data);
        match decode_edit_record(&framed) {
            Ok(Some((record, used))) => {
                assert_eq!(used, framed.len());
                check_record_round_trip(&record);
            }
            Ok(None) => panic!("a complete record of {} bytes waits for more", framed.len()),
            Err(EditDecodeError::Malformed { .. }) => {}
            Err(e) => panic!("payload behind a valid CRC refused as {e}"),
        }
    }
}

fn frame_record(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(RECORD_HEADER_SIZE + payload.len());
    framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    framed.extend_from_slice(payload);
    framed
}

fn check_consecutive(records: &[EditRecord]) {
    for pair in records.windows(2) {
        assert_eq!(pair[1].txid, pair[0].txid + 1, "records out of order were accepted");
    }
}

fn check_record_round_trip(record: &EditRecord) {
    let mut encoded = Vec::new();
    encode_edit_record(record.txid, &record.op, &mut encoded);
    let (again, used) = decode_edit_record(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded record does not decode: {e}"))
        .expect("re-encoded record complete");
    assert_eq!(&again, record, "decode(encode(record)) != record");
    assert_eq!(used, encoded.len());
}

fn check_segment(data: &[u8]) {
    let scan = match scan_segment(data) {
        Ok(scan) => scan,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(scan.valid_len <= data.len(), "valid prefix past the end");
    check_consecutive(&scan.records);
    if let Some(first) = scan.records.first() {
        assert_eq!(first.txid, scan.first_txid, "first record does not carry the segment's first txid");
    }
    if data.len() < SEGMENT_HEADER_SIZE {
        assert!(scan.records.is_empty() && scan.valid_len == 0);
        return;
    }
    assert!(scan.valid_len >= SEGMENT_HEADER_SIZE);
    assert_eq!(scan.torn_tail.is_none(), scan.valid_len == data.len(), "torn tail and valid length disagree");

    // The valid prefix re-encodes to a segment that scans to the same records, cleanly.
    let mut encoded = encode_segment_header(scan.first_txid).to_vec();
    for record in &scan.records {
        check_record_round_trip(record);
        encode_edit_record(record.txid, &record.op, &mut encoded);
    }
    let again = scan_segment(&encoded).unwrap_or_else(|e| panic!("re-encoded segment refused: {e}"));
    assert_eq!(again.records, scan.records);
    assert_eq!(again.valid_len, encoded.len());
    assert!(again.torn_tail.is_none());

    // Cutting the torn tail, as the namenode does at startup, leaves a clean segment.
    if scan.torn_tail.is_some() {
        let cut =
            scan_segment(&data[..scan.valid_len]).unwrap_or_else(|e| panic!("cut segment refused: {e}"));
        assert_eq!(cut.records, scan.records);
        assert!(cut.torn_tail.is_none(), "the cut segment still has a torn tail");
    }
}

/// Records one after another, as a reader decodes them: prefixes of the input wait or
/// fail, never decode differently.
fn check_record_stream(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((record, used))) = decode_edit_record(rest) {
        assert!(used > RECORD_HEADER_SIZE && used <= rest.len());
        for cut in [0, RECORD_HEADER_SIZE - 1, RECORD_HEADER_SIZE, used - 1] {
            match decode_edit_record(&rest[..cut]) {
                Ok(None) => {}
                other => panic!("a {cut}-byte prefix of a {used}-byte record decodes to {other:?}"),
            }
        }
        check_record_round_trip(&record);
        rest = &rest[used..];
    }
}

/// An edit op built from arbitrary values (ids, names, blocks).
#[derive(Arbitrary, Debug)]
enum EditOpInput {
    Mkdir {
        id: u64,
        parent: u64,
        name: String,
        owner: String,
        group: String,
        perm: u16,
        mtime_ms: i64,
    },
    CreateFile {
        id: u64,
        parent: u64,
        name: String,
        owner: String,
        perm: u16,
        replication: u16,
        blocksize: u64,
    },
    Delete {
        id: u64,
        mtime_ms: i64,
    },
    Rename {
        id: u64,
        new_parent: u64,
        new_name: String,
        mtime_ms: i64,
    },
    SetPermission {
        id: u64,
        perm: u16,
    },
    SetOwner {
        id: u64,
        owner: Option<String>,
        group: Option<String>,
    },
    SetTimes {
        id: u64,
        mtime_ms: Option<i64>,
        atime_ms: Option<i64>,
    },
    SetReplication {
        id: u64,
        replication: u16,
    },
    AddBlock {
        file: u64,
        block: (u64, u64, u64),
        previous_num_bytes: Option<u64>,
    },
    UpdateBlocks {
        file: u64,
        blocks: Vec<(u64, u64, u64)>,
        mtime_ms: Option<i64>,
    },
    CloseFile {
        file: u64,
        mtime_ms: i64,
        blocks: Vec<(u64, u64, u64)>,
    },
    Reopen {
        file: u64,
        client_name: String,
        client_machine: String,
        last_block_open: bool,
    },
    ReassignLease {
        file: u64,
        client_name: String,
    },
    SetGenStamp {
        gen_stamp: u64,
    },
    Concat {
        target: u64,
        sources: Vec<u64>,
        mtime_ms: i64,
    },
    Truncate {
        file: u64,
        blocks: Vec<(u64, u64, u64)>,
        last_block_length: u64,
        client_name: String,
        mtime_ms: i64,
    },
}

/// A valid block record: ids stay within what the decoders accept (ids::BLOCK_ID_MAX).
fn block((id, gen_stamp, num_bytes): (u64, u64, u64)) -> BlockRecord {
    BlockRecord { id: BlockId(id % (ringfs_namenode::ids::BLOCK_ID_MAX + 1)), gen_stamp, num_bytes }
}

impl EditOpInput {
    fn build(&self) -> EditOp {
        match self {
            EditOpInput::Mkdir { id, parent, name, owner, group, perm, mtime_ms } => EditOp::Mkdir {
                id: InodeId(*id),
                parent: InodeId(*parent),
                name: name.clone(),
                owner: owner.clone(),
                group: group.clone(),
                perm: *perm,
                mtime_ms: *mtime_ms,
            },
            EditOpInput::CreateFile { id, parent, name, owner, perm, replication, blocksize } => {
                EditOp::CreateFile {
                    id: InodeId(*id),
                    parent: InodeId(*parent),
                    name: name.clone(),
                    owner: owner.clone(),
                    group: "supergroup".to_string(),
                    perm: *perm,
                    mtime_ms: 1_700_000_000_000,
                    replication: *replication,
                    blocksize: *blocksize,
                    client_name: "DFSClient_NONMAPREDUCE_1_1".to_string(),
                    client_machine: "127.0.0.1".to_string(),
                }
            }
            EditOpInput::Delete { id, mtime_ms } => EditOp::Delete { id: InodeId(*id), mtime_ms: *mtime_ms },
            EditOpInput::Rename { id, new_parent, new_name, mtime_ms } => EditOp::Rename {
                id: InodeId(*id),
                new_parent: InodeId(*new_parent),
                new_name: new_name.clone(),
                mtime_ms: *mtime_ms,
            },
            EditOpInput::SetPermission { id, perm } => {
                EditOp::SetPermission { id: InodeId(*id), perm: *perm }
            }
            EditOpInput::SetOwner { id, owner, group } => {
                EditOp::SetOwner { id: InodeId(*id), owner: owner.clone(), group: group.clone() }
            }
            EditOpInput::SetTimes { id, mtime_ms, atime_ms } => {
                EditOp::SetTimes { id: InodeId(*id), mtime_ms: *mtime_ms, atime_ms: *atime_ms }
            }
            EditOpInput::SetReplication { id, replication } => {
                EditOp::SetReplication { id: InodeId(*id), replication: *replication }
            }
            EditOpInput::AddBlock { file, block: b, previous_num_bytes } => EditOp::AddBlock {
                file: InodeId(*file),
                block: block(*b),
                previous_num_bytes: *previous_num_bytes,
            },
            EditOpInput::UpdateBlocks { file, blocks, mtime_ms } => EditOp::UpdateBlocks {
                file: InodeId(*file),
                blocks: blocks.iter().copied().map(block).collect(),
                mtime_ms: *mtime_ms,
            },
            EditOpInput::CloseFile { file, mtime_ms, blocks } => EditOp::CloseFile {
                file: InodeId(*file),
                mtime_ms: *mtime_ms,
                blocks: blocks.iter().copied().map(block).collect(),
            },
            EditOpInput::Reopen { file, client_name, client_machine, last_block_open } => EditOp::Reopen {
                file: InodeId(*file),
                client_name: client_name.clone(),
                client_machine: client_machine.clone(),
                last_block_open: *last_block_open,
            },
            EditOpInput::ReassignLease { file, client_name } => {
                EditOp::ReassignLease { file: InodeId(*file), client_name: client_name.clone() }
            }
            EditOpInput::SetGenStamp { gen_stamp } => EditOp::SetGenStamp { gen_stamp: *gen_stamp },
            EditOpInput::Concat { target, sources, mtime_ms } => EditOp::Concat {
                target: InodeId(*target),
                sources: sources.iter().copied().map(InodeId).collect(),
                mtime_ms: *mtime_ms,
            },
            EditOpInput::Truncate { file, blocks, last_block_length, client_name, mtime_ms } => {
                EditOp::Truncate {
                    file: InodeId(*file),
                    blocks: blocks.iter().copied().map(block).collect(),
                    last_block_length: *last_block_length,
                    client_name: client_name.clone(),
                    client_machine: "127.0.0.1".to_string(),
                    mtime_ms: *mtime_ms,
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct SegmentInput {
    first_txid: u64,
    ops: Vec<EditOpInput>,
    corruptions: Vec<Corruption>,
    /// Recompute every record's CRC after corrupting, so the damage reaches the decoder
    /// behind the checksum instead of stopping at it.
    fix_checksums: bool,
}

fn edit_log_structured(data: &[u8]) {
    let Ok(input) = SegmentInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let first_txid = input.first_txid.min(u64::MAX - input.ops.len() as u64);
    let mut segment = Encoding::default();
    segment.put(&encode_segment_header(first_txid));
    let mut expected = Vec::new();
    for (i, op) in input.ops.iter().enumerate() {
        let record = EditRecord { txid: first_txid + i as u64, op: op.build() };
        let start = segment.bytes.len();
        encode_edit_record(record.txid, &record.op, &mut segment.bytes);
        segment.sites.push(Site { at: start, width: Width::U32Le });
        // The txid varint opens the payload.
        segment.sites.push(Site { at: start + RECORD_HEADER_SIZE, width: Width::Varint });
        expected.push(record);
    }

    // The valid segment scans to exactly what was written.
    let scan = scan_segment(&segment.bytes).unwrap_or_else(|e| panic!("valid segment refused: {e}"));
    assert_eq!(scan.first_txid, first_txid);
    assert_eq!(scan.records, expected, "decode(encode(segment)) != segment");
    assert_eq!(scan.valid_len, segment.bytes.len());
    assert!(scan.torn_tail.is_none());

    segment.corrupt(&input.corruptions);
    if input.fix_checksums {
        fix_record_checksums(&mut segment.bytes);
    }
    edit_log_limited(&segment.bytes);
}

/// Rewrites the CRC of every record whose length still fits, walking the records by
/// their (possibly corrupted) lengths.
fn fix_record_checksums(bytes: &mut [u8]) {
    let mut at = SEGMENT_HEADER_SIZE;
    while at + RECORD_HEADER_SIZE <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end = match (at + RECORD_HEADER_SIZE).checked_add(size) {
            Some(end) if size > 0 && end <= bytes.len() => end,
            _ => return,
        };
        let crc = crc32c::crc32c(&bytes[at + RECORD_HEADER_SIZE..end]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

// ---------------------------------------------------------------------------------------
// Image

/// `image`: the bytes as an image file (magic, version, CRC), and as an image body framed
/// with a valid header and CRC, so mutations reach the body decoder past the checksum.
pub fn image(data: &[u8]) {
    if let Ok(contents) = decode_image(data) {
        check_image(&contents);
    }
    let body = decode_image_body(data);
    let framed = decode_image(&frame_image(data));
    match (&body, &framed) {
        (Ok(contents), Ok(_)) => check_image(contents),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "body and framed image fail differently")
        }
        _ => panic!("body and framed image disagree: {:?} vs {:?}", body.is_ok(), framed.is_ok()),
    }
}

fn frame_image(body: &[u8]) -> Vec<u8> {
    let mut image = Vec::with_capacity(16 + body.len());
    image.extend_from_slice(&IMAGE_MAGIC);
    image.extend_from_slice(&IMAGE_FORMAT_VERSION.to_le_bytes());
    image.extend_from_slice(body);
    let crc = crc32c::crc32c(&image);
    image.extend_from_slice(&crc.to_le_bytes());
    image
}

fn check_image(contents: &ImageContents) {
    let encoded = encode_image(contents.last_txid, &contents.namespace, &contents.blocks);
    let again = decode_image(&encoded).unwrap_or_else(|e| panic!("re-encoded image refused: {e}"));
    assert_eq!(again.last_txid, contents.last_txid);
    assert_eq!(again.namespace.inode_count(), contents.namespace.inode_count());
    let twice = encode_image(again.last_txid, &again.namespace, &again.blocks);
    assert!(twice == encoded, "image encoding is not canonical ({} vs {} bytes)", twice.len(), encoded.len());
}

#[derive(Arbitrary, Debug)]
pub struct ImageInput {
    last_txid: u64,
    next_inode_id: u64,
    next_block_id: u64,
    gen_stamp: u64,
    strings: Vec<String>,
    root: (u16, u8, u8, i64),
    inodes: Vec<InodeInput>,
    corruptions: Vec<Corruption>,
    fix_checksum: bool,
}

#[derive(Arbitrary, Debug)]
struct InodeInput {
    /// Index of the parent among the directories written so far (0 = root).
    parent: u8,
    name: String,
    perm: u16,
    owner: u8,
    group: u8,
    times: (i64, i64),
    file: Option<FileInput>,
}

#[derive(Arbitrary, Debug)]
struct FileInput {
    replication: u16,
    blocksize: u64,
    blocks: Vec<(u64, u64)>,
    /// Client name and machine; with a length, a truncate is in progress.
    open: Option<(String, String, Option<u64>)>,
}

fn image_structured(data: &[u8]) {
    let Ok(input) = ImageInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut strings = input.strings.clone();
    if strings.is_empty() {
        strings.push("hdfs".to_string());
    }
    let string = |index: u8| u64::from(index) % strings.len() as u64;
    let mut body = Encoding::default();
    for value in [input.last_txid, input.next_inode_id, input.next_block_id, input.gen_stamp] {
        body.put_varint(value);
    }
    // Format 2: the number of blocks in the image.
    let block_count: usize =
        input.inodes.iter().filter_map(|i| i.file.as_ref()).map(|f| f.blocks.len()).sum();
    body.put_site(Width::Varint, block_count as u64);
    body.put_site(Width::Varint, strings.len() as u64);
    for s in &strings {
        body.put_site(Width::Varint, s.len() as u64);
        body.put(s.as_bytes());
    }
    body.put_site(Width::Varint, 1 + input.inodes.len() as u64);
    let (perm, owner, group, mtime) = input.root;
    put_inode_head(
        &mut body,
        ROOT_INODE_ID.0,
        0,
        "",
        false,
        perm,
        string(owner),
        string(group),
        (mtime, mtime),
    );
    let mut dirs = vec![ROOT_INODE_ID.0];
    let mut next_block = 1u64 << 30;
    for (i, inode) in input.inodes.iter().enumerate() {
        let id = FIRST_INODE_ID + i as u64;
        let parent = dirs[usize::from(inode.parent) % dirs.len()];
        let is_file = inode.file.is_some();
        let (owner, group) = (string(inode.owner), string(inode.group));
        put_inode_head(&mut body, id, parent, &inode.name, is_file, inode.perm, owner, group, inode.times);
        match &inode.file {
            None => dirs.push(id),
            Some(file) => {
                body.put_varint(u64::from(file.replication));
                body.put_varint(file.blocksize);
                body.put_site(Width::Varint, file.blocks.len() as u64);
                for (gen_stamp, num_bytes) in &file.blocks {
                    next_block += 1;
                    body.put_varint(next_block);
                    body.put_varint(*gen_stamp);
                    body.put_varint(*num_bytes);
                }
                match &file.open {
                    None => body.put(&[0]),
                    Some((client_name, client_machine, truncated_len)) => {
                        body.put(&[if truncated_len.is_some() { 2 } else { 1 }]);
                        for s in [client_name, client_machine] {
                            body.put_site(Width::Varint, s.len() as u64);
                            body.put(s.as_bytes());
                        }
                        if let Some(len) = truncated_len {
                            body.put_varint(*len);
                        }
                    }
                }
            }
        }
    }
    // Whatever the namenode makes of the valid body (names may be invalid, ids may clash
    // with `next_inode_id`), the oracle's checks hold; then the corrupted one.
    image_limited(&body.bytes);
    body.corrupt(&input.corruptions);
    let mut image = frame_image(&body.bytes);
    if !input.fix_checksum {
        let last = image.len() - 1;
        image[last] ^= 1;
    }
    image_limited(&image);
    image_limited(&body.bytes);
}

#[allow(clippy::too_many_arguments)]
fn put_inode_head(
    body: &mut Encoding,
    id: u64,
    parent: u64,
    name: &str,
    is_file: bool,
    perm: u16,
    owner: u64,
    group: u64,
    (mtime, atime): (i64, i64),
) {
    body.put_varint(id);
    body.put_varint(parent);
    body.put_site(Width::Varint, name.len() as u64);
    body.put(name.as_bytes());
    body.put(&[u8::from(is_file)]);
    body.put_varint(u64::from(perm & 0o7777));
    body.put_varint(owner);
    body.put_varint(group);
    for time in [mtime, atime] {
        body.put_varint(((time << 1) ^ (time >> 63)) as u64);
    }
}
