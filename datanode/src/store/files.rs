//! Open replicas: the block and meta files of a replica being written ([`RbwWriter`])
//! or read ([`ReplicaReader`]). Positioned I/O only, so one handle serves concurrent
//! users and an engine can submit the same fds to io_uring.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ringfs_common::checksum::{DataChecksum, MetaHeader};
use ringfs_common::limits::META_HEADER_SIZE;

use super::error::StoreError;
use super::replica::{ReplicaState, WriteProgress};

/// Reads and decodes the 7-byte header of a meta file.
pub fn read_meta_header(meta: &File, path: &Path) -> Result<MetaHeader, StoreError> {
    let mut header = [0u8; META_HEADER_SIZE];
    let read = read_up_to(meta, &mut header, 0).map_err(StoreError::io("read", path))?;
    MetaHeader::decode(&header[..read])
        .map_err(|source| StoreError::Meta { path: path.to_path_buf(), source })
}

/// Byte offset in the meta file of the checksum of chunk `chunk_index`.
pub fn meta_offset(checksum: DataChecksum, chunk_index: u64) -> u64 {
    META_HEADER_SIZE as u64 + chunk_index * checksum.kind.size() as u64
}

/// Like `read_exact_at` but stops at end of file, returning the bytes read.
pub fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The files of a replica being written (RBW or temporary), owned by one writer.
///
/// Dropping it releases the replica (a recovering pipeline waiting for this writer to
/// stop may proceed); the files stay where they are.
#[derive(Debug)]
pub struct RbwWriter {
    pub(crate) block_id: u64,
    pub(crate) gen_stamp: u64,
    pub(crate) state: ReplicaState,
    pub(crate) volume: usize,
    pub(crate) data_path: PathBuf,
    pub(crate) meta_path: PathBuf,
    data: File,
    meta: File,
    checksum: DataChecksum,
    progress: Arc<WriteProgress>,
    writer_id: u64,
}

impl Drop for RbwWriter {
    fn drop(&mut self) {
        self.progress.release_writer(self.writer_id);
    }
}

impl RbwWriter {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        block_id: u64,
        gen_stamp: u64,
        state: ReplicaState,
        volume: usize,
        paths: (PathBuf, PathBuf),
        files: (File, File),
        checksum: DataChecksum,
        progress: Arc<WriteProgress>,
        writer_id: u64,
    ) -> RbwWriter {
        progress.register_writer(writer_id);
        let (data_path, meta_path) = paths;
        let (data, meta) = files;
        RbwWriter {
            block_id,
            gen_stamp,
            state,
            volume,
            data_path,
            meta_path,
            data,
            meta,
            checksum,
            progress,
            writer_id,
        }
    }

    pub fn block_id(&self) -> u64 {
        self.block_id
    }

    pub fn gen_stamp(&self) -> u64 {
        self.gen_stamp
    }

    pub fn state(&self) -> ReplicaState {
        self.state
    }

    pub fn volume(&self) -> usize {
        self.volume
    }

    /// The checksum the meta file holds (what must be written, whatever the client sent).
    pub fn checksum(&self) -> DataChecksum {
        self.checksum
    }

    pub fn data_file(&self) -> &File {
        &self.data
    }

    pub fn meta_file(&self) -> &File {
        &self.meta
    }

    pub fn progress(&self) -> &Arc<WriteProgress> {
        &self.progress
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.progress.bytes_on_disk()
    }

    /// Installs how to stop this writer when a pipeline recovery takes the replica.
    pub fn set_stopper(&self, stopper: Box<dyn Fn() + Send + Sync>) {
        self.progress.set_stopper(self.writer_id, stopper);
    }

    pub fn write_data_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.data.write_all_at(data, offset).map_err(StoreError::io("write", &self.data_path))
    }

    /// Writes checksums starting at the slot of chunk `first_chunk`.
    pub fn write_checksums_at(&self, first_chunk: u64, checksums: &[u8]) -> Result<(), StoreError> {
        if checksums.is_empty() {
            return Ok(());
        }
        let offset = meta_offset(self.checksum, first_chunk);
        self.meta.write_all_at(checksums, offset).map_err(StoreError::io("write", &self.meta_path))
    }

    /// Reads `buf.len()` bytes of block data at `offset` (the start of a partial chunk).
    pub fn read_data_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.data.read_exact_at(buf, offset).map_err(StoreError::io("read", &self.data_path))
    }

    /// The stored checksum of chunk `chunk_index`.
    pub fn read_checksum(&self, chunk_index: u64) -> Result<u32, StoreError> {
        let mut crc = [0u8; 4];
        let offset = meta_offset(self.checksum, chunk_index);
        self.meta.read_exact_at(&mut crc, offset).map_err(StoreError::io("read", &self.meta_path))?;
        Ok(u32::from_be_bytes(crc))
    }

    /// Cuts the replica back to `length` bytes (pipeline recovery drops unacknowledged,
    /// possibly unverified data) and recomputes the checksum of a now partial last chunk.
    pub fn truncate(&self, length: u64) -> Result<(), StoreError> {
        let bpc = u64::from(self.checksum.bytes_per_checksum);
        let size = self.checksum.kind.size() as u64;
        self.data.set_len(length).map_err(StoreError::io("truncate", &self.data_path))?;
        let meta_len = META_HEADER_SIZE as u64 + length.div_ceil(bpc) * size;
        self.meta.set_len(meta_len).map_err(StoreError::io("truncate", &self.meta_path))?;
        let partial = length % bpc;
        if size > 0 && partial > 0 {
            let chunk_start = length - partial;
            let mut chunk = vec![0u8; partial as usize];
            self.read_data_at(chunk_start, &mut chunk)?;
            let crc = self.checksum.kind.crc(&chunk).to_be_bytes();
            self.write_checksums_at(chunk_start / bpc, &crc)?;
        }
        self.progress.reset(length);
        Ok(())
    }

    /// fdatasync of data then meta (hsync, synconclose).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.data.sync_data().map_err(StoreError::io("fdatasync", &self.data_path))?;
        self.meta.sync_data().map_err(StoreError::io("fdatasync", &self.meta_path))
    }
}

/// The files of a replica opened for reading, with the length readers may see fixed
/// at open time.
#[derive(Debug)]
pub struct ReplicaReader {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub state: ReplicaState,
    pub data: File,
    pub meta: File,
    pub data_path: PathBuf,
    pub meta_path: PathBuf,
    pub checksum: DataChecksum,
    /// Bytes a reader may see: the finalized length or the acknowledged length.
    pub visible_len: u64,
}

impl ReplicaReader {
    /// Reads the stored checksums of `out.len() / checksum size` chunks from `first_chunk`.
    pub fn read_checksums(&self, first_chunk: u64, out: &mut [u8]) -> Result<(), StoreError> {
        if out.is_empty() {
            return Ok(());
        }
        let offset = meta_offset(self.checksum, first_chunk);
        self.meta.read_exact_at(out, offset).map_err(StoreError::io("read", &self.meta_path))
    }

    pub fn read_data(&self, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        self.data.read_exact_at(out, offset).map_err(StoreError::io("read", &self.data_path))
    }

    /// Is the replica still being written (so its last partial chunk's stored
    /// checksum may cover bytes beyond `visible_len`)?
    pub fn is_in_progress(&self) -> bool {
        self.state != ReplicaState::Finalized
    }
}
