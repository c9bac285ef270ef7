//! The namespace image (checkpoint), sans I/O.
//!
//! ```text
//! "RFSIMAGE" | u32 LE format version | body | u32 LE CRC32C(everything before it)
//! body: varint last_txid, next_inode_id, next_block_id, last_gen_stamp, block count (v2)
//!       varint string count, strings                  (owner and group names)
//!       varint inode count, inodes parent-first (root first, children in name order):
//!         varint id, varint parent, str name, u8 kind (0 dir, 1 file), varint perm,
//!         varint owner, varint group, signed mtime, signed atime
//!         file: varint replication, varint blocksize, varint block count,
//!               (varint id, varint genstamp, varint length)*,
//!               u8 open (0 closed, 1 open, 2 open with a truncate in progress),
//!               open: str client name, str client machine, (2:) varint truncated length
//! ```
//! Loading rebuilds the tree through the same insert path live operations use, so a
//! structurally bad image (unknown parent, duplicate name, duplicate block) is refused.
//! Fuzzing entry points: [`decode_image`] and [`decode_image_body`].

use crate::blocks::{BlockMap, BlockRecord, BlockState};
use crate::codec::{CodecError, Decoder, Encoder};
use crate::edits::STRING_SIZE_MAX;
use crate::ids::{BlockId, InodeId, ROOT_INODE_ID};
use crate::name::Name;
use crate::namespace::{Body, Directory, Inode, Namespace, UnderConstruction, STRING_TABLE_SIZE_MAX};

pub const IMAGE_MAGIC: [u8; 8] = *b"RFSIMAGE";
/// Version 2 added the block count (so loading can size the block map exactly);
/// version 1 images still load.
pub const IMAGE_FORMAT_VERSION: u32 = 2;
const IMAGE_FORMAT_VERSION_NO_BLOCK_COUNT: u32 = 1;
const IMAGE_HEADER_SIZE: usize = 12;
const IMAGE_TRAILER_SIZE: usize = 4;
/// Most blocks one file may list in an image.
pub const IMAGE_BLOCKS_PER_FILE_MAX: u64 = 4 * 1024 * 1024;
/// Smallest encoded inode: id, parent, name length, kind, perm, owner, group, two times.
const INODE_SIZE_MIN: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("not a ringfs image (bad magic)")]
    BadMagic,
    #[error("image format version {version} is not supported (expected {IMAGE_FORMAT_VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("image is truncated ({size} bytes)")]
    Truncated { size: usize },
    #[error("image checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("image does not decode: {0}")]
    Malformed(#[from] CodecError),
    #[error("image is inconsistent: {0}")]
    Inconsistent(String),
}

/// What an image holds.
#[derive(Debug)]
pub struct ImageContents {
    pub last_txid: u64,
    pub namespace: Namespace,
    pub blocks: BlockMap,
}

/// Serialises the namespace and the persisted half of the block map.
pub fn encode_image(last_txid: u64, ns: &Namespace, blocks: &BlockMap) -> Vec<u8> {
    let mut enc = Encoder::with_buf(Vec::with_capacity(64 + ns.inode_count() * 48));
    enc.buf.extend_from_slice(&IMAGE_MAGIC);
    enc.u32_le(IMAGE_FORMAT_VERSION);
    enc.varint(last_txid);
    enc.varint(ns.next_inode_id());
    enc.varint(blocks.next_block_id());
    enc.varint(blocks.last_gen_stamp());
    enc.varint(blocks.len() as u64);
    enc.varint(ns.strings.len() as u64);
    for s in ns.strings.iter() {
        enc.str(s);
    }
    enc.varint(ns.inode_count() as u64);
    ns.walk_preorder(|id, inode| {
        enc.varint(id.0);
        enc.varint(inode.parent.0);
        enc.str(inode.name.as_str());
        enc.u8(u8::from(inode.is_file()));
        enc.varint(u64::from(inode.perm));
        enc.varint(u64::from(inode.owner));
        enc.varint(u64::from(inode.group));
        enc.signed(inode.mtime_ms);
        enc.signed(inode.atime_ms);
        if let Body::File { blocks: ids, blocksize } = &inode.body {
            enc.varint(u64::from(inode.replication));
            enc.varint(*blocksize);
            enc.varint(ids.len() as u64);
            for block in ids.iter() {
                let record =
                    blocks.record(*block).unwrap_or(BlockRecord { id: *block, gen_stamp: 0, num_bytes: 0 });
                enc.varint(block.0);
                enc.varint(record.gen_stamp);
                enc.varint(record.num_bytes);
            }
            match ns.under_construction(id) {
                None => enc.u8(0),
                Some(uc) => {
                    enc.u8(if uc.truncate_to.is_some() { 2 } else { 1 });
                    enc.str(&uc.client_name);
                    enc.str(&uc.client_machine);
                    if let Some(length) = uc.truncate_to {
                        enc.varint(length);
                    }
                }
            }
        }
    });
    let crc = crc32c::crc32c(&enc.buf);
    enc.u32_le(crc);
    enc.buf
}

/// Checks the frame (magic, version, CRC) and decodes the body.
pub fn decode_image(bytes: &[u8]) -> Result<ImageContents, ImageError> {
    if bytes.len() < IMAGE_HEADER_SIZE + IMAGE_TRAILER_SIZE {
        return Err(ImageError::Truncated { size: bytes.len() });
    }
    if bytes[..8] != IMAGE_MAGIC {
        return Err(ImageError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != IMAGE_FORMAT_VERSION && version != IMAGE_FORMAT_VERSION_NO_BLOCK_COUNT {
        return Err(ImageError::UnsupportedVersion { version });
    }
    let (framed, trailer) = bytes.split_at(bytes.len() - IMAGE_TRAILER_SIZE);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(framed);
    if stored != computed {
        return Err(ImageError::BadChecksum { stored, computed });
    }
    decode_image_body_version(&framed[IMAGE_HEADER_SIZE..], version)
}

fn inconsistent(reason: impl Into<String>) -> ImageError {
    ImageError::Inconsistent(reason.into())
}

/// Decodes the body of a current-version image (between the header and the CRC trailer).
pub fn decode_image_body(body: &[u8]) -> Result<ImageContents, ImageError> {
    decode_image_body_version(body, IMAGE_FORMAT_VERSION)
}

fn decode_image_body_version(body: &[u8], version: u32) -> Result<ImageContents, ImageError> {
    let mut dec = Decoder::new(body);
    let last_txid = dec.varint("last txid")?;
    let next_inode_id = dec.varint("next inode id")?;
    let next_block_id = dec.varint("next block id")?;
    let gen_stamp = dec.varint("generation stamp")?;
    // Each block takes at least three bytes, so the count is capped by the body size.
    let block_count = if version == IMAGE_FORMAT_VERSION_NO_BLOCK_COUNT {
        0
    } else {
        dec.count("block count", u64::MAX, 3)?
    };

    let string_count = dec.count("string count", STRING_TABLE_SIZE_MAX as u64, 1)?;
    let mut strings = Vec::with_capacity(string_count);
    for _ in 0..string_count {
        strings.push(dec.str("string", STRING_SIZE_MAX)?);
    }
    let string = |index: u64| -> Result<&str, ImageError> {
        strings
            .get(index as usize)
            .copied()
            .ok_or_else(|| inconsistent(format!("string index {index} out of range")))
    };

    let inode_count = dec.count("inode count", u64::MAX, INODE_SIZE_MIN)?;
    if inode_count == 0 {
        return Err(inconsistent("no root inode"));
    }
    let mut ns: Option<Namespace> = None;
    let mut blocks = BlockMap::new();
    blocks.reserve(block_count);
    for index in 0..inode_count {
        let id = InodeId(dec.varint("inode id")?);
        let parent = InodeId(dec.varint("parent id")?);
        let name = dec.str("name", STRING_SIZE_MAX)?;
        let is_file = dec.bool("inode kind")?;
        let perm = dec.varint_max("permission", 0o7777)? as u16;
        let owner = string(dec.varint("owner index")?)?;
        let group = string(dec.varint("group index")?)?;
        let mtime_ms = dec.signed("mtime")?;
        let atime_ms = dec.signed("atime")?;
        if index == 0 {
            if id != ROOT_INODE_ID || is_file || !name.is_empty() {
                return Err(inconsistent("the first inode is not the root directory"));
            }
            let mut root_ns = Namespace::new(owner, group, perm, mtime_ms);
            root_ns.reserve(inode_count - 1);
            for s in &strings {
                root_ns.strings.intern(s).map_err(|e| inconsistent(e.message))?;
            }
            ns = Some(root_ns);
            continue;
        }
        let ns = ns.as_mut().expect("root decoded first");
        validate_name(name)?;
        let owner = ns.strings.intern(owner).map_err(|e| inconsistent(e.message))?;
        let group = ns.strings.intern(group).map_err(|e| inconsistent(e.message))?;
        let mut inode = Inode {
            parent,
            mtime_ms,
            atime_ms,
            name: Name::new(name),
            owner,
            group,
            perm,
            replication: 0,
            body: Body::Directory(Box::<Directory>::default()),
        };
        let mut under_construction = None;
        let mut records = Vec::new();
        if is_file {
            inode.replication = dec.varint_max("replication", u64::from(u16::MAX))? as u16;
            let blocksize = dec.varint("blocksize")?;
            let block_count = dec.count("block count", IMAGE_BLOCKS_PER_FILE_MAX, 3)?;
            records.reserve(block_count);
            for _ in 0..block_count {
                records.push(BlockRecord {
                    id: BlockId(dec.varint_max("block id", crate::ids::BLOCK_ID_MAX)?),
                    gen_stamp: dec.varint("generation stamp")?,
                    num_bytes: dec.varint("block length")?,
                });
            }
            let open = dec.u8("open flag")?;
            if open > 2 {
                return Err(ImageError::Malformed(CodecError::BadTag {
                    what: "open flag",
                    tag: u64::from(open),
                }));
            }
            if open > 0 {
                under_construction = Some(UnderConstruction {
                    client_name: dec.str("client name", STRING_SIZE_MAX)?.to_string(),
                    client_machine: dec.str("client machine", STRING_SIZE_MAX)?.to_string(),
                    truncate_to: if open == 2 { Some(dec.varint("truncated length")?) } else { None },
                });
            }
            let ids: Vec<BlockId> = records.iter().map(|r| r.id).collect();
            inode.body = Body::File { blocks: ids.into_boxed_slice(), blocksize };
        }
        if id.0 <= ROOT_INODE_ID.0 {
            return Err(inconsistent(format!("inode id {id} is reserved")));
        }
        ns.insert(id, inode).map_err(|e| inconsistent(format!("inode {id}: {}", e.message)))?;
        let last = records.len().saturating_sub(1);
        for (i, record) in records.iter().enumerate() {
            let state = if under_construction.is_some() && i == last {
                BlockState::UnderConstruction
            } else {
                BlockState::Complete
            };
            if !blocks.insert(*record, id, state) {
                return Err(inconsistent(format!("block {} belongs to two files", record.id)));
            }
        }
        if under_construction.is_some() {
            ns.set_under_construction(id, under_construction);
        }
    }
    if !dec.is_empty() {
        return Err(inconsistent(format!("{} bytes after the last inode", dec.remaining())));
    }
    if version != IMAGE_FORMAT_VERSION_NO_BLOCK_COUNT && blocks.len() != block_count {
        return Err(inconsistent(format!(
            "the image declares {block_count} blocks but holds {}",
            blocks.len()
        )));
    }
    let mut ns = ns.expect("inode_count > 0");
    ns.note_inode_id(InodeId(next_inode_id.saturating_sub(1)));
    blocks.restore_sequences(next_block_id, gen_stamp);
    Ok(ImageContents { last_txid, namespace: ns, blocks })
}

fn validate_name(name: &str) -> Result<(), ImageError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(inconsistent(format!("invalid inode name {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Namespace, BlockMap) {
        let mut ns = Namespace::new("hdfs", "supergroup", 0o755, 5);
        let mut blocks = BlockMap::new();
        let alice = ns.strings.intern("alice").unwrap();
        let dir = ns.allocate_inode_id();
        ns.insert(
            dir,
            Inode {
                parent: ROOT_INODE_ID,
                mtime_ms: 6,
                atime_ms: 0,
                name: Name::new("d"),
                owner: alice,
                group: 1,
                perm: 0o750,
                replication: 0,
                body: Body::Directory(Box::default()),
            },
        )
        .unwrap();
        for (name, open) in [("closed", false), ("open", true)] {
            let id = ns.allocate_inode_id();
            let b1 = blocks.allocate_block_id();
            let b2 = blocks.allocate_block_id();
            let gen = blocks.allocate_gen_stamp();
            ns.insert(
                id,
                Inode {
                    parent: dir,
                    mtime_ms: 7,
                    atime_ms: 8,
                    name: Name::new(name),
                    owner: alice,
                    group: 1,
                    perm: 0o644,
                    replication: 2,
                    body: Body::File { blocks: vec![b1, b2].into_boxed_slice(), blocksize: 1024 },
                },
            )
            .unwrap();
            let last_state = if open { BlockState::UnderConstruction } else { BlockState::Complete };
            blocks.insert(BlockRecord { id: b1, gen_stamp: gen, num_bytes: 1024 }, id, BlockState::Complete);
            blocks.insert(BlockRecord { id: b2, gen_stamp: gen, num_bytes: 10 }, id, last_state);
            if open {
                ns.set_under_construction(
                    id,
                    Some(UnderConstruction {
                        client_name: "c1".into(),
                        client_machine: "10.0.0.1".into(),
                        truncate_to: Some(5),
                    }),
                );
            }
        }
        (ns, blocks)
    }

    #[test]
    fn image_round_trips() {
        let (ns, blocks) = sample();
        let bytes = encode_image(42, &ns, &blocks);
        let image = decode_image(&bytes).unwrap();
        assert_eq!(image.last_txid, 42);
        image.namespace.verify().unwrap();
        assert_eq!(image.namespace.inode_count(), ns.inode_count());
        assert_eq!(image.namespace.next_inode_id(), ns.next_inode_id());
        assert_eq!(image.blocks.next_block_id(), blocks.next_block_id());
        assert_eq!(image.blocks.last_gen_stamp(), blocks.last_gen_stamp());
        assert_eq!(encode_image(42, &image.namespace, &image.blocks), bytes, "re-encoding is stable");
        let open = image.namespace.iter().find(|(_, i)| i.name.as_str() == "open").unwrap().0;
        assert_eq!(image.namespace.under_construction(open).unwrap().client_name, "c1");
        let last = *image.namespace.inode(open).blocks().last().unwrap();
        assert_eq!(image.blocks.get(last).unwrap().state, BlockState::UnderConstruction);
    }

    #[test]
    fn damage_is_detected() {
        let (ns, blocks) = sample();
        let bytes = encode_image(1, &ns, &blocks);
        for cut in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_image(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(matches!(decode_image(&flipped), Err(ImageError::BadChecksum { .. })));
        // Bodies without the CRC still decode defensively.
        for cut in 0..bytes.len() - 4 - IMAGE_HEADER_SIZE {
            let body = &bytes[IMAGE_HEADER_SIZE..IMAGE_HEADER_SIZE + cut];
            assert!(decode_image_body(body).is_err(), "partial body of {cut} bytes decoded");
        }
    }
}
