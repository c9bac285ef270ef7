//! Identifiers the namenode hands out, and where their sequences start (as HDFS numbers them).

use std::fmt;

/// An inode id (HDFS `fileId`). Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeId(pub u64);

/// A block id. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u64);

/// The root directory's inode id (INodeId.ROOT_INODE_ID).
pub const ROOT_INODE_ID: InodeId = InodeId(16385);

/// The first id given to a created inode: HDFS reserves everything up to the root.
pub const FIRST_INODE_ID: u64 = 16386;

/// The first block id of a fresh namespace (SequentialBlockIdGenerator.LAST_RESERVED_BLOCK_ID + 1).
pub const FIRST_BLOCK_ID: u64 = 1_073_741_825;

/// The largest block id a namespace may hold: Java's block ids are signed longs, and
/// contiguous (non-erasure-coded) blocks are the non-negative ones. Bounding ids here keeps
/// `id + 1` (the next id to allocate) from overflowing when an image or edit is damaged.
pub const BLOCK_ID_MAX: u64 = i64::MAX as u64 - 1;

/// The first generation stamp of a fresh namespace (GenerationStamp.LAST_RESERVED_STAMP + 1).
pub const FIRST_GEN_STAMP: u64 = 1001;

impl fmt::Display for InodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blk_{}", self.0)
    }
}

/// `blk_<id>_<genstamp>`, as HDFS logs name a block.
pub fn block_name(id: BlockId, gen_stamp: u64) -> String {
    format!("blk_{}_{}", id.0, gen_stamp)
}
