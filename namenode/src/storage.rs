//! The name directory on disk:
//!
//! ```text
//! <dfs.namenode.name.dir>/in_use.lock        flock'd while a namenode uses the directory
//! <dfs.namenode.name.dir>/current/VERSION    clusterID, namespaceID, blockpoolID, cTime, layoutVersion
//!                            fsimage_<txid>  image of the namespace after txid (newest two kept)
//!                            edits_<txid>    edit log segment whose first record is txid
//! ```
//! Every file is written to a temporary name, fsynced, renamed and its directory
//! fsynced, so a crash leaves either the old or the new version.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tracing::{info, warn};

use crate::blocks::BlockMap;
use crate::edits::{scan_segment, EditDecodeError, EditRecord};
use crate::fsn::{now_ms, NamespaceInfo};
use crate::image::{decode_image, encode_image, ImageContents};
use crate::journal::{create_segment, parse_segment_file_name, segment_file_name, sync_dir};
use crate::namespace::Namespace;

/// Our namenode layout version (negative, as Hadoop numbers them).
pub const LAYOUT_VERSION: i32 = -66;
/// Images kept after a checkpoint: the newest and one fallback.
pub const IMAGES_RETAINED: usize = 2;
/// Largest image file read at startup (a billion-inode namespace is well under it).
pub const IMAGE_SIZE_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// Permission of the root directory of a fresh namespace.
pub const ROOT_PERMISSION: u16 = 0o755;

const VERSION_FILE: &str = "VERSION";
const LOCK_FILE: &str = "in_use.lock";
const IMAGE_PREFIX: &str = "fsimage_";
const CHECKPOINT_SUFFIX: &str = ".ckpt";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not formatted (no current/VERSION); run `ringfs namenode -format` first", .0.display())]
    NotFormatted(PathBuf),
    #[error("{} is not empty; add -force to reformat it (this deletes the namespace)", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} is in use by another namenode (in_use.lock is held)", .0.display())]
    Locked(PathBuf),
    #[error("{}: malformed VERSION file: {reason}", path.display())]
    BadVersion { path: PathBuf, reason: String },
    #[error("no usable image in {}: {reasons}", dir.display())]
    NoImage { dir: PathBuf, reasons: String },
    #[error("edit log {}: {source}", path.display())]
    Edits { path: PathBuf, source: EditDecodeError },
    #[error("edit log in {}: {reason}", dir.display())]
    EditsMissing { dir: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().expect("file in a directory");
    let temp = path.with_extension("tmp");
    {
        let mut file =
            OpenOptions::new().create(true).truncate(true).write(true).open(&temp).map_err(io_err(&temp))?;
        file.write_all(bytes).map_err(io_err(&temp))?;
        file.sync_all().map_err(io_err(&temp))?;
    }
    fs::rename(&temp, path).map_err(io_err(path))?;
    sync_dir(dir).map_err(io_err(dir))
}

fn local_ip() -> String {
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_string())
}

fn version_text(info: &NamespaceInfo) -> String {
    format!(
        "#written by ringfs namenode\nnamespaceID={}\nclusterID={}\ncTime={}\nstorageType=NAME_NODE\nblockpoolID={}\nlayoutVersion={}\n",
        info.namespace_id, info.cluster_id, info.c_time, info.block_pool_id, info.layout_version
    )
}

fn parse_version(path: &Path, text: &str) -> Result<NamespaceInfo, StorageError> {
    let bad = |reason: String| StorageError::BadVersion { path: path.to_path_buf(), reason };
    let mut values = std::collections::HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some((k, v)) = line.split_once('=') {
            values.insert(k.trim(), v.trim());
        }
    }
    let get = |key: &str| values.get(key).copied().ok_or_else(|| bad(format!("{key} is missing")));
    let number = |key: &str| -> Result<i64, StorageError> {
        get(key)?.parse::<i64>().map_err(|_| bad(format!("{key} is not a number")))
    };
    if get("storageType")? != "NAME_NODE" {
        return Err(bad("storageType is not NAME_NODE".into()));
    }
    Ok(NamespaceInfo {
        cluster_id: get("clusterID")?.to_string(),
        namespace_id: number("namespaceID")? as u32,
        block_pool_id: get("blockpoolID")?.to_string(),
        c_time: number("cTime")? as u64,
        layout_version: number("layoutVersion")? as i32,
    })
}

fn lock_dir(root: &Path) -> Result<Flock<File>, StorageError> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let path = root.join(LOCK_FILE);
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    let mut lock =
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| StorageError::Locked(root.into()))?;
    lock.set_len(0).map_err(io_err(&path))?;
    let _ = write!(lock, "{}", std::process::id());
    Ok(lock)
}

/// Initialises a name directory: VERSION, an image holding only the root, the first
/// edit log segment. A non-empty directory is refused unless `force`.
pub fn format(
    root: &Path,
    cluster_id: Option<&str>,
    force: bool,
    superuser: &str,
    supergroup: &str,
) -> Result<NamespaceInfo, StorageError> {
    let has_content = match fs::read_dir(root) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err(root)(e)),
    };
    let _lock = lock_dir(root)?;
    if has_content {
        let only_lock = fs::read_dir(root)
            .map_err(io_err(root))?
            .filter_map(Result::ok)
            .all(|e| e.file_name() == LOCK_FILE);
        if !only_lock && !force {
            return Err(StorageError::NotEmpty(root.into()));
        }
        for entry in fs::read_dir(root).map_err(io_err(root))?.filter_map(Result::ok) {
            if entry.file_name() == LOCK_FILE {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            removed.map_err(io_err(&path))?;
        }
    }
    let current = root.join("current");
    fs::create_dir_all(&current).map_err(io_err(&current))?;
    let now = now_ms() as u64;
    let info = NamespaceInfo {
        cluster_id: cluster_id.map(String::from).unwrap_or_else(|| format!("CID-{}", uuid::Uuid::new_v4())),
        namespace_id: rand::random_range(1..=i32::MAX as u32),
        block_pool_id: format!("BP-{}-{}-{}", rand::random_range(1..=i32::MAX as u32), local_ip(), now),
        c_time: now,
        layout_version: LAYOUT_VERSION,
    };
    let ns = Namespace::new(superuser, supergroup, ROOT_PERMISSION, now as i64);
    let image = encode_image(0, &ns, &BlockMap::new());
    write_atomically(&current.join(image_file_name(0)), &image)?;
    create_segment(&current, 1).map_err(io_err(&current))?;
    write_atomically(&current.join(VERSION_FILE), version_text(&info).as_bytes())?;
    sync_dir(root).map_err(io_err(root))?;
    info!(dir = %root.display(), cluster_id = %info.cluster_id, block_pool_id = %info.block_pool_id, "formatted");
    Ok(info)
}

pub fn image_file_name(txid: u64) -> String {
    format!("{IMAGE_PREFIX}{txid:020}")
}

fn parse_image_file_name(name: &str) -> Option<u64> {
    name.strip_prefix(IMAGE_PREFIX)?.parse().ok()
}

/// What startup reads: the newest usable image and the edits after it.
#[derive(Debug)]
pub struct Loaded {
    pub image: ImageContents,
    pub edits: Vec<EditRecord>,
}

/// An opened (and locked) name directory.
pub struct Storage {
    root: PathBuf,
    current: PathBuf,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("root", &self.root).finish()
    }
}

impl Storage {
    /// Locks a formatted name directory and reads its VERSION.
    pub fn open(root: &Path) -> Result<(Storage, NamespaceInfo), StorageError> {
        let current = root.join("current");
        let version_path = current.join(VERSION_FILE);
        if !version_path.exists() {
            return Err(StorageError::NotFormatted(root.into()));
        }
        let lock = lock_dir(root)?;
        let text = fs::read_to_string(&version_path).map_err(io_err(&version_path))?;
        let info = parse_version(&version_path, &text)?;
        Ok((Storage { root: root.into(), current, _lock: lock }, info))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn current_dir(&self) -> &Path {
        &self.current
    }

    fn list(&self, parse: impl Fn(&str) -> Option<u64>) -> Result<Vec<(u64, PathBuf)>, StorageError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.current).map_err(io_err(&self.current))?.filter_map(Result::ok) {
            let name = entry.file_name();
            if let Some(txid) = name.to_str().and_then(&parse) {
                found.push((txid, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Loads the newest image that checks out, then every edit after it. Torn tails are
    /// cut off (and the cut fsynced); corruption elsewhere stops startup.
    pub fn load(&self) -> Result<Loaded, StorageError> {
        let images = self.list(parse_image_file_name)?;
        let mut reasons = Vec::new();
        let mut image = None;
        for (_, path) in images.iter().rev() {
            let size = fs::metadata(path).map_err(io_err(path))?.len();
            if size > IMAGE_SIZE_MAX {
                reasons.push(format!(
                    "{}: {size} bytes exceeds the {IMAGE_SIZE_MAX}-byte limit",
                    path.display()
                ));
                continue;
            }
            let bytes = fs::read(path).map_err(io_err(path))?;
            match decode_image(&bytes) {
                Ok(contents) => {
                    info!(image = %path.display(), inodes = contents.namespace.inode_count(), txid = contents.last_txid,
                        "loaded image");
                    image = Some(contents);
                    break;
                }
                Err(e) => {
                    warn!(image = %path.display(), error = %e, "image is unusable; trying an older one");
                    reasons.push(format!("{}: {e}", path.display()));
                }
            }
        }
        let image = image.ok_or_else(|| StorageError::NoImage {
            dir: self.current.clone(),
            reasons: reasons.join("; "),
        })?;
        let mut edits = Vec::new();
        for (first_txid, path) in self.list(parse_segment_file_name)? {
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let scan =
                scan_segment(&bytes).map_err(|source| StorageError::Edits { path: path.clone(), source })?;
            if scan.valid_len == 0 {
                // Created but its header never made it to disk: nothing was ever acknowledged from it.
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if scan.first_txid != first_txid {
                return Err(StorageError::EditsMissing {
                    dir: self.current.clone(),
                    reason: format!("{} starts at txid {}", path.display(), scan.first_txid),
                });
            }
            if let Some(tail) = &scan.torn_tail {
                warn!(segment = %path.display(), valid_bytes = scan.valid_len, dropped_bytes = bytes.len() - scan.valid_len,
                    reason = %tail, "cutting a torn edit log tail");
                let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                file.set_len(scan.valid_len as u64).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
            edits.extend(scan.records.into_iter().filter(|r| r.txid > image.last_txid));
        }
        if let Some(first) = edits.first() {
            if first.txid != image.last_txid + 1 {
                return Err(StorageError::EditsMissing {
                    dir: self.current.clone(),
                    reason: format!(
                        "the image ends at txid {} but the edits resume at {}",
                        image.last_txid, first.txid
                    ),
                });
            }
        }
        Ok(Loaded { image, edits })
    }

    /// Opens a fresh segment for the edits after `last_txid`.
    pub fn start_segment(&self, last_txid: u64) -> Result<File, StorageError> {
        create_segment(&self.current, last_txid + 1).map_err(io_err(&self.current))
    }

    /// Writes an image (temp file, fsync, rename, fsync directory).
    pub fn write_image(&self, txid: u64, bytes: &[u8]) -> Result<PathBuf, StorageError> {
        let path = self.current.join(image_file_name(txid));
        let temp = self.current.join(format!("{}{CHECKPOINT_SUFFIX}", image_file_name(txid)));
        {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&temp)
                .map_err(io_err(&temp))?;
            file.write_all(bytes).map_err(io_err(&temp))?;
            file.sync_all().map_err(io_err(&temp))?;
        }
        fs::rename(&temp, &path).map_err(io_err(&path))?;
        sync_dir(&self.current).map_err(io_err(&self.current))?;
        Ok(path)
    }

    /// Deletes images beyond the newest [`IMAGES_RETAINED`] and the segments the oldest
    /// kept image no longer needs.
    pub fn prune(&self) -> Result<(), StorageError> {
        let images = self.list(parse_image_file_name)?;
        if images.len() > IMAGES_RETAINED {
            for (_, path) in &images[..images.len() - IMAGES_RETAINED] {
                fs::remove_file(path).map_err(io_err(path))?;
            }
        }
        let Some(oldest_kept) = images.iter().rev().take(IMAGES_RETAINED).map(|(t, _)| *t).min() else {
            return Ok(());
        };
        let segments = self.list(parse_segment_file_name)?;
        for pair in segments.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first <= oldest_kept + 1 {
                fs::remove_file(path).map_err(io_err(path))?;
            }
        }
        for entry in fs::read_dir(&self.current).map_err(io_err(&self.current))?.filter_map(Result::ok) {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(CHECKPOINT_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        sync_dir(&self.current).map_err(io_err(&self.current))
    }

    pub fn segment_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.list(parse_segment_file_name)?.into_iter().map(|(t, _)| segment_file_name(t)).collect())
    }

    pub fn image_txids(&self) -> Result<Vec<u64>, StorageError> {
        Ok(self.list(parse_image_file_name)?.into_iter().map(|(t, _)| t).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_refuses_non_empty_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("name");
        let info = format(&root, Some("CID-test"), false, "hdfs", "supergroup").unwrap();
        assert_eq!(info.cluster_id, "CID-test");
        assert!(info.block_pool_id.starts_with("BP-"));
        assert!(matches!(format(&root, None, false, "hdfs", "supergroup"), Err(StorageError::NotEmpty(_))));
        let (storage, read) = Storage::open(&root).unwrap();
        assert_eq!(read, info);
        assert!(matches!(Storage::open(&root), Err(StorageError::Locked(_))));
        assert!(matches!(format(&root, None, true, "hdfs", "supergroup"), Err(StorageError::Locked(_))));
        let loaded = storage.load().unwrap();
        assert_eq!(loaded.image.last_txid, 0);
        assert!(loaded.edits.is_empty());
        drop(storage);
        let again = format(&root, None, true, "hdfs", "supergroup").unwrap();
        assert_ne!(again.cluster_id, info.cluster_id);
        assert!(matches!(Storage::open(&dir.path().join("nope")), Err(StorageError::NotFormatted(_))));
    }
}
