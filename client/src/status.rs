//! Typed views of the namenode's file status, content summary and quota messages.

use ringfs_common::proto::hdfs::{
    hdfs_file_status_proto, ContentSummaryProto, HdfsFileStatusProto, QuotaUsageProto,
};

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
    Symlink,
}

/// Sticky bit in `FileStatus::permission`.
pub const STICKY_BIT: u16 = 0o1000;

/// HdfsFileStatusProto.flags bits.
const FLAG_HAS_ACL: u32 = 0x01;
const FLAG_HAS_CRYPT: u32 = 0x02;
const FLAG_HAS_EC: u32 = 0x04;
/// Old-style extended permission bits some namenodes still set in `perm`.
const PERM_EXTENDED_ACL: u32 = 1 << 12;

/// One file or directory as the namenode describes it, with its full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// Absolute, normalised path.
    pub path: String,
    pub kind: FileKind,
    pub length: u64,
    /// rwxrwxrwx bits plus [`STICKY_BIT`].
    pub permission: u16,
    pub owner: String,
    pub group: String,
    pub modification_time_ms: u64,
    pub access_time_ms: u64,
    /// 0 for directories.
    pub replication: u16,
    /// 0 for directories.
    pub block_size: u64,
    pub file_id: u64,
    /// Entries of a directory, -1 when the namenode did not say.
    pub children_count: i32,
    pub symlink_target: Option<String>,
    pub has_acl: bool,
    pub is_encrypted: bool,
    pub is_erasure_coded: bool,
}

impl FileStatus {
    /// Converts a status whose `path` field is empty (getFileInfo) or a local name
    /// (listings) into one carrying the full path: `parent` + name, or `full_path`.
    pub fn from_proto(proto: &HdfsFileStatusProto, dir_or_path: &str) -> FileStatus {
        let path = if proto.path.is_empty() {
            dir_or_path.to_string()
        } else {
            let name = String::from_utf8_lossy(&proto.path);
            if dir_or_path.ends_with('/') {
                format!("{dir_or_path}{name}")
            } else {
                format!("{dir_or_path}/{name}")
            }
        };
        let kind = match proto.file_type() {
            hdfs_file_status_proto::FileType::IsDir => FileKind::Directory,
            hdfs_file_status_proto::FileType::IsFile => FileKind::File,
            hdfs_file_status_proto::FileType::IsSymlink => FileKind::Symlink,
        };
        let perm = proto.permission.perm;
        let flags = proto.flags.unwrap_or(0);
        FileStatus {
            path,
            kind,
            length: proto.length,
            permission: (perm & 0o1777) as u16,
            owner: proto.owner.clone(),
            group: proto.group.clone(),
            modification_time_ms: proto.modification_time,
            access_time_ms: proto.access_time,
            replication: proto.block_replication.unwrap_or(0) as u16,
            block_size: proto.blocksize.unwrap_or(0),
            file_id: proto.file_id.unwrap_or(0),
            children_count: proto.children_num.unwrap_or(-1),
            symlink_target: proto.symlink.as_ref().map(|s| String::from_utf8_lossy(s).into_owned()),
            has_acl: flags & FLAG_HAS_ACL != 0 || perm & PERM_EXTENDED_ACL != 0,
            is_encrypted: flags & FLAG_HAS_CRYPT != 0,
            is_erasure_coded: flags & FLAG_HAS_EC != 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }

    /// The last path component (empty for `/`).
    pub fn name(&self) -> &str {
        ringfs_common::path::file_name(&self.path)
    }
}

/// `-1` as the namenode sends it in unsigned quota fields: "no quota".
const QUOTA_NONE: u64 = u64::MAX;

fn quota(value: u64) -> i64 {
    if value == QUOTA_NONE {
        -1
    } else {
        value as i64
    }
}

/// getContentSummary's answer; quotas are -1 when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentSummary {
    pub length: u64,
    pub file_count: u64,
    /// Includes the directory itself.
    pub directory_count: u64,
    pub quota: i64,
    pub space_consumed: u64,
    pub space_quota: i64,
}

impl From<&ContentSummaryProto> for ContentSummary {
    fn from(p: &ContentSummaryProto) -> ContentSummary {
        ContentSummary {
            length: p.length,
            file_count: p.file_count,
            directory_count: p.directory_count,
            quota: quota(p.quota),
            space_consumed: p.space_consumed,
            space_quota: quota(p.space_quota),
        }
    }
}

/// getQuotaUsage's answer; quotas are -1 when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    pub file_and_directory_count: u64,
    pub quota: i64,
    pub space_consumed: u64,
    pub space_quota: i64,
}

impl From<&QuotaUsageProto> for QuotaUsage {
    fn from(p: &QuotaUsageProto) -> QuotaUsage {
        QuotaUsage {
            file_and_directory_count: p.file_and_directory_count,
            quota: quota(p.quota),
            space_consumed: p.space_consumed,
            space_quota: quota(p.space_quota),
        }
    }
}

/// getFsStats's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
    pub under_replicated: u64,
    pub corrupt_blocks: u64,
    pub missing_blocks: u64,
    pub missing_repl_one_blocks: u64,
    pub blocks_in_future: u64,
    pub pending_deletion_blocks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::proto::hdfs::FsPermissionProto;

    fn proto(path: &[u8], file_type: hdfs_file_status_proto::FileType) -> HdfsFileStatusProto {
        HdfsFileStatusProto {
            file_type: file_type as i32,
            path: bytes::Bytes::copy_from_slice(path),
            length: 7,
            permission: FsPermissionProto { perm: 0o1755 },
            owner: "alice".into(),
            group: "supergroup".into(),
            modification_time: 1000,
            access_time: 2000,
            block_replication: Some(3),
            blocksize: Some(128 << 20),
            ..Default::default()
        }
    }

    #[test]
    fn paths_join_local_names_and_keep_full_paths() {
        let file = hdfs_file_status_proto::FileType::IsFile;
        assert_eq!(FileStatus::from_proto(&proto(b"", file), "/a/b").path, "/a/b");
        assert_eq!(FileStatus::from_proto(&proto(b"c", file), "/a").path, "/a/c");
        assert_eq!(FileStatus::from_proto(&proto(b"c", file), "/").path, "/c");
        let status = FileStatus::from_proto(&proto(b"c", file), "/");
        assert_eq!(status.permission, 0o1755);
        assert_eq!(status.replication, 3);
        assert_eq!(status.name(), "c");
        assert!(status.is_file());
        assert!(!status.has_acl);
    }

    #[test]
    fn unset_quotas_are_minus_one() {
        let summary = ContentSummaryProto {
            length: 10,
            file_count: 1,
            directory_count: 2,
            quota: u64::MAX,
            space_consumed: 30,
            space_quota: 100,
            ..Default::default()
        };
        let summary = ContentSummary::from(&summary);
        assert_eq!(summary.quota, -1);
        assert_eq!(summary.space_quota, 100);
    }
}
