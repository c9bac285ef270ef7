//! One data directory (`dfs.datanode.data.dir` entry): its lock, its storage identity,
//! its block pool directories and its space accounting.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};

use super::error::StoreError;
use super::layout::{BlockPoolDirs, LOCK_FILE, VERSION_FILE};
use super::version_file::{Properties, DATANODE_LAYOUT_VERSION};

/// What the namenode's versionRequest told us about its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceIdentity {
    pub block_pool_id: String,
    pub cluster_id: String,
    pub namespace_id: u32,
    pub ctime: u64,
}

/// Space figures of a volume, as heartbeats report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeUsage {
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub non_dfs_used: u64,
}

/// A data directory.
#[derive(Debug)]
pub struct Volume {
    pub index: usize,
    pub root: PathBuf,
    /// `DS-<uuid>`, persisted in `current/VERSION`.
    pub storage_id: String,
    /// Persisted datanode uuid, if this volume had one.
    pub(crate) datanode_uuid: Option<String>,
    /// clusterID from `current/VERSION`, if the volume was formatted before.
    pub(crate) cluster_id: Option<String>,
    block_pool: OnceLock<BlockPoolDirs>,
    /// Bytes of replicas (data + meta) on this volume.
    dfs_used: AtomicU64,
    _lock: Flock<File>,
}

impl Volume {
    /// Creates the directory if needed, takes its lock and reads its VERSION.
    pub fn open(index: usize, root: &Path) -> Result<Volume, StoreError> {
        let current = root.join("current");
        std::fs::create_dir_all(&current).map_err(StoreError::io("create", &current))?;
        let lock_path = root.join(LOCK_FILE);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io("open", &lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::VolumeLocked { dir: root.to_path_buf() })?;
        let version_path = current.join(VERSION_FILE);
        let props = Properties::read(&version_path).map_err(StoreError::io("read", &version_path))?;
        let (storage_id, datanode_uuid, cluster_id) = match props {
            Some(props) => {
                let storage_id = props.get("storageID").filter(|s| !s.is_empty()).ok_or_else(|| {
                    StoreError::BadVersionFile { path: version_path.clone(), reason: "no storageID".into() }
                })?;
                (
                    storage_id.to_string(),
                    props.get("datanodeUuid").filter(|s| !s.is_empty()).map(String::from),
                    props.get("clusterID").filter(|s| !s.is_empty()).map(String::from),
                )
            }
            None => (format!("DS-{}", uuid::Uuid::new_v4()), None, None),
        };
        Ok(Volume {
            index,
            root: root.to_path_buf(),
            storage_id,
            datanode_uuid,
            cluster_id,
            block_pool: OnceLock::new(),
            dfs_used: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Writes both VERSION files and creates the block pool directories. Refuses a
    /// volume formatted for another cluster, as the Java DataNode does.
    pub fn attach_block_pool(&self, ns: &NamespaceIdentity, datanode_uuid: &str) -> Result<(), StoreError> {
        let current = self.root.join("current");
        if let Some(found) = &self.cluster_id {
            if found != &ns.cluster_id {
                return Err(StoreError::IncompatibleClusterId {
                    dir: self.root.clone(),
                    expected: ns.cluster_id.clone(),
                    found: found.clone(),
                });
            }
        }
        let mut storage = Properties::default();
        storage.set("storageID", &self.storage_id);
        storage.set("clusterID", &ns.cluster_id);
        storage.set("cTime", 0);
        storage.set("datanodeUuid", datanode_uuid);
        storage.set("storageType", "DATA_NODE");
        storage.set("layoutVersion", DATANODE_LAYOUT_VERSION);
        let version_path = current.join(VERSION_FILE);
        storage.write(&version_path).map_err(StoreError::io("write", &version_path))?;

        let dirs = BlockPoolDirs::new(&self.root, &ns.block_pool_id);
        for dir in [&dirs.finalized, &dirs.rbw, &dirs.tmp] {
            std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        }
        let mut pool = Properties::default();
        pool.set("namespaceID", ns.namespace_id);
        pool.set("cTime", ns.ctime);
        pool.set("blockpoolID", &ns.block_pool_id);
        pool.set("layoutVersion", DATANODE_LAYOUT_VERSION);
        let pool_version = dirs.current.join(VERSION_FILE);
        pool.write(&pool_version).map_err(StoreError::io("write", &pool_version))?;
        // A second attach (re-registration) keeps the first: the pool id cannot change
        // while the process runs.
        let _ = self.block_pool.set(dirs);
        Ok(())
    }

    pub fn dirs(&self) -> Result<&BlockPoolDirs, StoreError> {
        self.block_pool.get().ok_or(StoreError::NoBlockPool)
    }

    pub fn add_used(&self, bytes: u64) {
        self.dfs_used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub_used(&self, bytes: u64) {
        let _ = self
            .dfs_used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }

    pub fn dfs_used(&self) -> u64 {
        self.dfs_used.load(Ordering::Relaxed)
    }

    /// Capacity and free space from statvfs, with our own usage.
    pub fn usage(&self) -> VolumeUsage {
        let dfs_used = self.dfs_used();
        match nix::sys::statvfs::statvfs(&self.root) {
            Ok(stat) => {
                let fragment = stat.fragment_size().max(1);
                let capacity = stat.blocks().saturating_mul(fragment);
                let remaining = stat.blocks_available().saturating_mul(fragment);
                let fs_used = stat.blocks().saturating_sub(stat.blocks_free()).saturating_mul(fragment);
                VolumeUsage { capacity, dfs_used, remaining, non_dfs_used: fs_used.saturating_sub(dfs_used) }
            }
            Err(e) => {
                tracing::warn!(volume = %self.root.display(), error = %e, "statvfs failed");
                VolumeUsage { dfs_used, ..VolumeUsage::default() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> NamespaceIdentity {
        NamespaceIdentity {
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            cluster_id: "CID-a".into(),
            namespace_id: 42,
            ctime: 0,
        }
    }

    #[test]
    fn identity_survives_reopen_and_layout_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let storage_id = {
            let volume = Volume::open(0, dir.path()).unwrap();
            assert!(volume.storage_id.starts_with("DS-"));
            volume.attach_block_pool(&ns(), "uuid-1").unwrap();
            let dirs = volume.dirs().unwrap();
            assert!(dirs.finalized.is_dir() && dirs.rbw.is_dir() && dirs.tmp.is_dir());
            assert!(dirs.current.join("VERSION").is_file());
            volume.storage_id.clone()
        };
        let volume = Volume::open(0, dir.path()).unwrap();
        assert_eq!(volume.storage_id, storage_id);
        assert_eq!(volume.datanode_uuid.as_deref(), Some("uuid-1"));
        assert_eq!(volume.cluster_id.as_deref(), Some("CID-a"));
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Volume::open(0, dir.path()).unwrap();
        assert!(matches!(Volume::open(1, dir.path()), Err(StoreError::VolumeLocked { .. })));
    }

    #[test]
    fn another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Volume::open(0, dir.path()).unwrap().attach_block_pool(&ns(), "u").unwrap();
        let volume = Volume::open(0, dir.path()).unwrap();
        let other = NamespaceIdentity { cluster_id: "CID-b".into(), ..ns() };
        assert!(matches!(
            volume.attach_block_pool(&other, "u"),
            Err(StoreError::IncompatibleClusterId { .. })
        ));
    }

    #[test]
    fn usage_reports_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let volume = Volume::open(0, dir.path()).unwrap();
        volume.add_used(100);
        volume.sub_used(300);
        let usage = volume.usage();
        assert_eq!(usage.dfs_used, 0);
        assert!(usage.capacity > 0 && usage.remaining <= usage.capacity);
    }
}
