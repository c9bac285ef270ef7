//! Where HDFS keeps things under a volume, and how its file names are spelled.
//!
//! ```text
//! <volume>/in_use.lock
//! <volume>/current/VERSION                                 storage identity
//! <volume>/current/<BP-id>/current/VERSION                 block pool identity
//! <volume>/current/<BP-id>/current/finalized/subdir<d1>/subdir<d2>/blk_<id>
//! <volume>/current/<BP-id>/current/finalized/subdir<d1>/subdir<d2>/blk_<id>_<gs>.meta
//! <volume>/current/<BP-id>/current/rbw/blk_<id>, blk_<id>_<gs>.meta      replicas being written
//! <volume>/current/<BP-id>/tmp/blk_<id>, blk_<id>_<gs>.meta              replication targets
//! ```
//! d1 = (id >> 16) & 0x1F, d2 = (id >> 8) & 0x1F: Hadoop 2.8+'s 32x32 layout. Block ids are
//! printed as Java prints a signed long, so names match a Java DataNode's byte for byte.

use std::path::{Path, PathBuf};

/// Name of the per-volume lock file (Java's `in_use.lock`).
pub const LOCK_FILE: &str = "in_use.lock";
/// Name of the VERSION properties files.
pub const VERSION_FILE: &str = "VERSION";

/// The block id as Java prints it (a signed long).
pub fn block_id_text(block_id: u64) -> String {
    (block_id as i64).to_string()
}

/// `blk_<id>`.
pub fn block_file_name(block_id: u64) -> String {
    format!("blk_{}", block_id_text(block_id))
}

/// `blk_<id>_<gs>.meta`.
pub fn meta_file_name(block_id: u64, gen_stamp: u64) -> String {
    format!("blk_{}_{}.meta", block_id_text(block_id), gen_stamp)
}

/// The two-level subdirectory of a finalized replica: `subdir<d1>/subdir<d2>`.
pub fn finalized_subdir(block_id: u64) -> PathBuf {
    let d1 = (block_id >> 16) & 0x1F;
    let d2 = (block_id >> 8) & 0x1F;
    PathBuf::from(format!("subdir{d1}")).join(format!("subdir{d2}"))
}

/// A file name found in a replica directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFileName {
    /// `blk_<id>`
    Data { block_id: u64 },
    /// `blk_<id>_<gs>.meta`
    Meta { block_id: u64, gen_stamp: u64 },
}

/// Parses `blk_<id>` and `blk_<id>_<gs>.meta`; anything else (including Java's
/// `.restart` and `.unlinked` leftovers) is `None`.
pub fn parse_replica_file_name(name: &str) -> Option<ReplicaFileName> {
    let rest = name.strip_prefix("blk_")?;
    if let Some(stem) = rest.strip_suffix(".meta") {
        let (id, gs) = stem.rsplit_once('_')?;
        let block_id = parse_block_id(id)?;
        let gen_stamp = gs.parse::<u64>().ok()?;
        return Some(ReplicaFileName::Meta { block_id, gen_stamp });
    }
    Some(ReplicaFileName::Data { block_id: parse_block_id(rest)? })
}

fn parse_block_id(text: &str) -> Option<u64> {
    // Java writes negative ids (striped blocks) with a minus sign.
    text.parse::<i64>().ok().map(|id| id as u64)
}

/// The directories of one block pool on one volume.
#[derive(Debug, Clone)]
pub struct BlockPoolDirs {
    /// `<volume>/current/<BP-id>`
    pub root: PathBuf,
    /// `<volume>/current/<BP-id>/current`
    pub current: PathBuf,
    pub finalized: PathBuf,
    pub rbw: PathBuf,
    pub tmp: PathBuf,
}

impl BlockPoolDirs {
    pub fn new(volume_root: &Path, block_pool_id: &str) -> BlockPoolDirs {
        let root = volume_root.join("current").join(block_pool_id);
        let current = root.join("current");
        BlockPoolDirs {
            finalized: current.join("finalized"),
            rbw: current.join("rbw"),
            tmp: root.join("tmp"),
            current,
            root,
        }
    }

    /// Directory holding a finalized replica.
    pub fn finalized_dir(&self, block_id: u64) -> PathBuf {
        self.finalized.join(finalized_subdir(block_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_java() {
        assert_eq!(block_file_name(1073741825), "blk_1073741825");
        assert_eq!(meta_file_name(1073741825, 1001), "blk_1073741825_1001.meta");
        // Striped block ids are negative in Java.
        assert_eq!(block_file_name(-9223372036854775792i64 as u64), "blk_-9223372036854775792");
    }

    #[test]
    fn subdirs_follow_the_32x32_layout() {
        // 1073741825 = 0x40000001: bits 16-20 = 0, bits 8-12 = 0.
        assert_eq!(finalized_subdir(1073741825), PathBuf::from("subdir0/subdir0"));
        // 0x40_1F_1F_00 -> d1 = 0x1F, d2 = 0x1F
        assert_eq!(finalized_subdir(0x401F_1F00), PathBuf::from("subdir31/subdir31"));
        // Bits above 20 do not matter: 0x40_25_03_00 -> d1 = 0x25 & 0x1F = 5, d2 = 3.
        assert_eq!(finalized_subdir(0x4025_0300), PathBuf::from("subdir5/subdir3"));
    }

    #[test]
    fn parses_replica_names() {
        assert_eq!(parse_replica_file_name("blk_17"), Some(ReplicaFileName::Data { block_id: 17 }));
        assert_eq!(
            parse_replica_file_name("blk_17_1001.meta"),
            Some(ReplicaFileName::Meta { block_id: 17, gen_stamp: 1001 })
        );
        assert_eq!(
            parse_replica_file_name("blk_-5_3.meta"),
            Some(ReplicaFileName::Meta { block_id: -5i64 as u64, gen_stamp: 3 })
        );
        assert_eq!(parse_replica_file_name("blk_17.restart"), None);
        assert_eq!(parse_replica_file_name("blk_x"), None);
        assert_eq!(parse_replica_file_name("blk_17_x.meta"), None);
        assert_eq!(parse_replica_file_name("VERSION"), None);
    }

    #[test]
    fn block_pool_dirs() {
        let dirs = BlockPoolDirs::new(Path::new("/data/1"), "BP-1-127.0.0.1-5");
        assert_eq!(dirs.rbw, PathBuf::from("/data/1/current/BP-1-127.0.0.1-5/current/rbw"));
        assert_eq!(dirs.tmp, PathBuf::from("/data/1/current/BP-1-127.0.0.1-5/tmp"));
        assert_eq!(
            dirs.finalized_dir(0x4025_0300),
            PathBuf::from("/data/1/current/BP-1-127.0.0.1-5/current/finalized/subdir5/subdir3")
        );
    }
}
