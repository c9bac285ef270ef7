//! The startup scan: every replica of the block pool on every volume.
//!
//! Finalized replicas are found by directory listing alone: names give id and
//! genstamp, the directory entry's `fstatat` (no open) gives the length, and the
//! `subdir` trees of all volumes are walked by a few threads at once. Replicas left in
//! `rbw/` by a crash are opened and their length is cut back to the data their
//! checksums cover: what a reader can trust.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use ringfs_common::checksum::ChecksumKind;
use ringfs_common::limits::META_HEADER_SIZE;
use tracing::warn;

use super::error::StoreError;
use super::files::{meta_offset, read_meta_header};
use super::layout::{block_file_name, meta_file_name, parse_replica_file_name, ReplicaFileName};
use super::replica::ReplicaState;
use super::volume::Volume;
use crate::limits::{SCAN_DIR_DEPTH_MAX, SCAN_THREADS_MAX};

/// A replica found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedReplica {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub state: ReplicaState,
    pub volume: usize,
    /// Finalized: the block file's length. RBW: the checksummed length.
    pub length: u64,
}

/// What a scan found, for the startup log line.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub replicas: Vec<ScannedReplica>,
    /// Data files without a meta file or the other way round.
    pub orphans: usize,
    /// Files removed from `tmp/` (interrupted replications).
    pub temporaries_removed: usize,
}

/// Scans every volume's block pool (which must be attached).
pub fn scan_volumes(volumes: &[Volume]) -> Result<ScanReport, StoreError> {
    let mut report = ScanReport::default();
    for volume in volumes {
        report.temporaries_removed += clear_tmp(volume)?;
        let (rbw, orphans) = scan_rbw(volume)?;
        report.replicas.extend(rbw);
        report.orphans += orphans;
    }
    let (finalized, orphans) = scan_finalized(volumes)?;
    report.replicas.extend(finalized);
    report.orphans += orphans;
    Ok(report)
}

/// Interrupted replications are not worth keeping: the namenode will ask again.
fn clear_tmp(volume: &Volume) -> Result<usize, StoreError> {
    let tmp = &volume.dirs()?.tmp;
    let mut removed = 0;
    for entry in std::fs::read_dir(tmp).map_err(StoreError::io("list", tmp))? {
        let entry = entry.map_err(StoreError::io("list", tmp))?;
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(StoreError::io("remove", &path))?;
        removed += 1;
    }
    Ok(removed)
}

/// Files of one directory, paired by block id.
#[derive(Default)]
struct DirListing {
    /// block id -> data file length
    data: HashMap<u64, u64>,
    /// block id -> genstamps of meta files (normally one)
    meta: HashMap<u64, Vec<u64>>,
    subdirs: Vec<PathBuf>,
}

fn list_dir(dir: &Path, with_lengths: bool) -> Result<DirListing, StoreError> {
    let mut listing = DirListing::default();
    for entry in std::fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let file_type = entry.file_type().map_err(StoreError::io("stat", entry.path()))?;
        if file_type.is_dir() {
            if name.starts_with("subdir") {
                listing.subdirs.push(entry.path());
            }
            continue;
        }
        match parse_replica_file_name(name) {
            Some(ReplicaFileName::Data { block_id }) => {
                // DirEntry::metadata is fstatat on the directory fd: no open per file.
                let length = if with_lengths {
                    entry.metadata().map_err(StoreError::io("stat", entry.path()))?.len()
                } else {
                    0
                };
                listing.data.insert(block_id, length);
            }
            Some(ReplicaFileName::Meta { block_id, gen_stamp }) => {
                listing.meta.entry(block_id).or_default().push(gen_stamp);
            }
            None => {}
        }
    }
    Ok(listing)
}

/// Pairs data and meta files; returns the pairs and the count of unpaired files.
fn pair(dir: &Path, listing: &DirListing) -> (Vec<(u64, u64, u64)>, usize) {
    let mut pairs = Vec::with_capacity(listing.data.len());
    let mut orphans = 0;
    for (&block_id, &length) in &listing.data {
        match listing.meta.get(&block_id).map(Vec::as_slice) {
            Some([gen_stamp]) => pairs.push((block_id, *gen_stamp, length)),
            Some(gen_stamps) => {
                // Two metas: a crash between writing the new one and removing the old;
                // the newest genstamp is the one the namenode moved to.
                let newest = *gen_stamps.iter().max().expect("non-empty");
                warn!(dir = %dir.display(), block_id, ?gen_stamps, "several meta files; using the newest");
                pairs.push((block_id, newest, length));
            }
            None => {
                warn!(dir = %dir.display(), block_id, "block file without a meta file; ignored");
                orphans += 1;
            }
        }
    }
    for block_id in listing.meta.keys().filter(|id| !listing.data.contains_key(id)) {
        warn!(dir = %dir.display(), block_id, "meta file without a block file; ignored");
        orphans += 1;
    }
    (pairs, orphans)
}

fn scan_finalized(volumes: &[Volume]) -> Result<(Vec<ScannedReplica>, usize), StoreError> {
    let mut queue = Vec::new();
    for volume in volumes {
        queue.push((volume.index, volume.dirs()?.finalized.clone(), 0usize));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() * 2).clamp(1, SCAN_THREADS_MAX);
    let work = (Mutex::new(Work { queue, busy: 0 }), Condvar::new());
    let results = Mutex::new(ScanResults::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| scan_worker(&work, &results));
        }
    });
    let results = results.into_inner().expect("scan results");
    match results.error {
        Some(e) => Err(e),
        None => Ok((results.replicas, results.orphans)),
    }
}

/// Directories still to list, and how many workers are listing one (and so may add more).
struct Work {
    queue: Vec<(usize, PathBuf, usize)>,
    busy: usize,
}

#[derive(Default)]
struct ScanResults {
    replicas: Vec<ScannedReplica>,
    orphans: usize,
    error: Option<StoreError>,
}

/// Lists directories until none is left and no other worker can add more.
fn scan_worker(work: &(Mutex<Work>, Condvar), results: &Mutex<ScanResults>) {
    let (state, wakeup) = work;
    loop {
        let (volume, dir, depth) = {
            let mut state = state.lock().expect("scan queue");
            loop {
                if let Some(item) = state.queue.pop() {
                    state.busy += 1;
                    break item;
                }
                if state.busy == 0 {
                    wakeup.notify_all();
                    return;
                }
                state = wakeup.wait(state).expect("scan queue");
            }
        };
        let mut subdirs = Vec::new();
        match list_dir(&dir, true) {
            Ok(listing) => {
                let (pairs, orphans) = pair(&dir, &listing);
                let mut results = results.lock().expect("scan results");
                results.replicas.extend(pairs.into_iter().map(|(block_id, gen_stamp, length)| {
                    ScannedReplica { block_id, gen_stamp, state: ReplicaState::Finalized, volume, length }
                }));
                results.orphans += orphans;
                if depth < SCAN_DIR_DEPTH_MAX {
                    subdirs = listing.subdirs;
                }
            }
            Err(e) => {
                results.lock().expect("scan results").error.get_or_insert(e);
            }
        }
        let mut state = state.lock().expect("scan queue");
        state.queue.extend(subdirs.into_iter().map(|d| (volume, d, depth + 1)));
        state.busy -= 1;
        wakeup.notify_all();
    }
}

fn scan_rbw(volume: &Volume) -> Result<(Vec<ScannedReplica>, usize), StoreError> {
    let rbw = &volume.dirs()?.rbw;
    let listing = list_dir(rbw, false)?;
    let (pairs, orphans) = pair(rbw, &listing);
    let mut replicas = Vec::with_capacity(pairs.len());
    for (block_id, gen_stamp, _) in pairs {
        let data_path = rbw.join(block_file_name(block_id));
        let meta_path = rbw.join(meta_file_name(block_id, gen_stamp));
        let length = validate_rbw(&data_path, &meta_path)?;
        replicas.push(ScannedReplica {
            block_id,
            gen_stamp,
            state: ReplicaState::Rbw,
            volume: volume.index,
            length,
        });
    }
    Ok((replicas, orphans))
}

/// Length of the data of an RBW replica that its checksums cover, after a crash that
/// may have cut either file anywhere. Trailing bytes past it are truncated away so
/// that later writes (recovery, append) continue from a consistent point.
pub fn validate_rbw(data_path: &Path, meta_path: &Path) -> Result<u64, StoreError> {
    let open = |path: &Path| {
        std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(StoreError::io("open", path))
    };
    let data = open(data_path)?;
    let meta = open(meta_path)?;
    let data_len = data.metadata().map_err(StoreError::io("stat", data_path))?.len();
    let meta_len = meta.metadata().map_err(StoreError::io("stat", meta_path))?.len();
    let header = match read_meta_header(&meta, meta_path) {
        Ok(header) => header,
        Err(e) => {
            warn!(error = %e, "rbw replica with an unreadable meta header: reporting 0 bytes");
            return Ok(0);
        }
    };
    let checksum = header.checksum;
    let bytes_per_checksum = u64::from(checksum.bytes_per_checksum);
    let checksum_size = checksum.kind.size() as u64;
    let mut valid = if checksum.kind == ChecksumKind::Null {
        data_len
    } else {
        let chunks = meta_len.saturating_sub(META_HEADER_SIZE as u64) / checksum_size;
        data_len.min(chunks * bytes_per_checksum)
    };
    if valid > 0 && checksum.kind != ChecksumKind::Null {
        // The last chunk may have been cut mid-write: check it, drop it if bad.
        let last_chunk = (valid - 1) / bytes_per_checksum;
        let chunk_start = last_chunk * bytes_per_checksum;
        let mut chunk = vec![0u8; (valid - chunk_start) as usize];
        let mut crc = [0u8; 4];
        let readable =
            std::os::unix::fs::FileExt::read_exact_at(&data, &mut chunk, chunk_start).and_then(|_| {
                std::os::unix::fs::FileExt::read_exact_at(&meta, &mut crc, meta_offset(checksum, last_chunk))
            });
        readable.map_err(StoreError::io("read", data_path))?;
        // Data is written before its checksum, so a crash in between leaves a stored
        // CRC covering a prefix of the last chunk: the longest prefix it matches is the
        // data the writer had completed (and possibly acknowledged).
        let stored = u32::from_be_bytes(crc);
        match (1..=chunk.len()).rev().find(|&len| checksum.kind.crc(&chunk[..len]) == stored) {
            Some(len) => valid = chunk_start + len as u64,
            None => {
                warn!(path = %data_path.display(), chunk = last_chunk, "last chunk of rbw replica fails its checksum; dropped");
                valid = chunk_start;
            }
        }
    }
    truncate_replica(&data, data_path, &meta, meta_path, valid, checksum.kind.size(), bytes_per_checksum)?;
    Ok(valid)
}

fn truncate_replica(
    data: &File,
    data_path: &Path,
    meta: &File,
    meta_path: &Path,
    valid: u64,
    checksum_size: usize,
    bytes_per_checksum: u64,
) -> Result<(), StoreError> {
    let data_len = data.metadata().map_err(StoreError::io("stat", data_path))?.len();
    if data_len > valid {
        data.set_len(valid).map_err(StoreError::io("truncate", data_path))?;
    }
    let meta_valid = META_HEADER_SIZE as u64 + valid.div_ceil(bytes_per_checksum) * checksum_size as u64;
    let meta_len = meta.metadata().map_err(StoreError::io("stat", meta_path))?.len();
    if meta_len > meta_valid {
        meta.set_len(meta_valid).map_err(StoreError::io("truncate", meta_path))?;
    }
    Ok(())
}
