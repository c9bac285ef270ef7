//! Reading a file: block locations from the namenode once, then READ_BLOCK on one
//! replica per block, falling back to the next replica on any datanode error or
//! checksum mismatch (the corrupt replica is reported to the namenode).

use std::collections::HashSet;
use std::sync::Arc;

use ringfs_common::proto::hdfs::{LocatedBlockProto, LocatedBlocksProto};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::block_reader::{BlockReader, ReadBlockRequest};
use crate::datanode::{token_or_empty, xfer_addr};
use crate::dfs::ClientInner;
use crate::error::{DfsError, Result};

/// Buffer of [`FileReader::copy_to`]: big enough that a 64 KiB-packet stream is drained
/// in few writes.
const COPY_BUFFER_SIZE: usize = 1024 * 1024;

/// A file open for read, with a position for sequential reads.
pub struct FileReader {
    client: Arc<ClientInner>,
    path: String,
    length: u64,
    blocks: Vec<LocatedBlockProto>,
    position: u64,
    /// The sequential stream: index of its block and the reader.
    current: Option<(usize, BlockReader)>,
    /// Datanodes that failed for this file; tried again only when nothing else is left.
    dead_nodes: HashSet<String>,
}

impl FileReader {
    pub(crate) fn new(client: Arc<ClientInner>, path: String, located: LocatedBlocksProto) -> FileReader {
        let mut blocks = located.blocks;
        let mut length = located.file_length;
        // A file being written: its last block may be missing from `blocks` and its
        // bytes from fileLength.
        if let Some(last) = located.last_block {
            if !blocks.iter().any(|b| b.b.block_id == last.b.block_id) {
                blocks.push(last);
            }
        }
        blocks.sort_by_key(|b| b.offset);
        if let Some(last) = blocks.last() {
            length = length.max(last.offset + last.b.num_bytes.unwrap_or(0));
        }
        FileReader { client, path, length, blocks, position: 0, current: None, dead_nodes: HashSet::new() }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// The located blocks, in file order.
    pub fn blocks(&self) -> &[LocatedBlockProto] {
        &self.blocks
    }

    /// Moves the sequential position; a stream already open on that block continues
    /// when the position does not move.
    pub fn seek(&mut self, position: u64) {
        if position != self.position {
            self.current = None;
            self.position = position.min(self.length);
        }
    }

    fn block_index(&self, offset: u64) -> Option<usize> {
        let index = self.blocks.partition_point(|b| b.offset <= offset).checked_sub(1)?;
        let block = &self.blocks[index];
        (offset < block.offset + block.b.num_bytes.unwrap_or(0)).then_some(index)
    }

    /// Replicas of a block in the namenode's order, live ones first.
    fn replicas(&self, index: usize) -> Vec<String> {
        let nodes: Vec<String> = self.blocks[index].locs.iter().map(xfer_addr).collect();
        let (live, dead): (Vec<String>, Vec<String>) =
            nodes.into_iter().partition(|n| !self.dead_nodes.contains(n));
        live.into_iter().chain(dead).collect()
    }

    fn missing_block(&self, offset: u64) -> DfsError {
        DfsError::BlockUnavailable {
            block_id: 0,
            tried: Vec::new(),
            last: Box::new(DfsError::InvalidPath {
                path: self.path.clone(),
                reason: format!("no block covers offset {offset} of {}", self.length),
            }),
        }
    }

    /// Opens a stream on block `index` from `offset_in_block` to the block's end,
    /// trying each replica.
    async fn open_stream(&mut self, index: usize, offset_in_block: u64, len: u64) -> Result<BlockReader> {
        let block = self.blocks[index].clone();
        let token = token_or_empty(Some(&block.block_token));
        let mut tried = Vec::new();
        let mut last_error = None;
        for addr in self.replicas(index) {
            let request = ReadBlockRequest {
                addr: &addr,
                block: &block.b,
                token: &token,
                client_name: self.client.namenode.client_name(),
                offset: offset_in_block,
                len,
                verify_checksum: self.client.config.verify_checksum,
                peer_cache: Some(Arc::clone(&self.client.peer_cache)),
            };
            match BlockReader::open(request).await {
                Ok(reader) => return Ok(reader),
                Err(e) if e.is_datanode_failure() => {
                    tracing::warn!(path = %self.path, block = block.b.block_id, node = %addr, error = %e,
                        "cannot read from datanode; trying the next replica");
                    self.dead_nodes.insert(addr.clone());
                    tried.push(addr);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(DfsError::BlockUnavailable {
            block_id: block.b.block_id,
            tried,
            last: Box::new(last_error.unwrap_or(DfsError::Pipeline {
                block_id: block.b.block_id,
                reason: "the block has no locations".to_string(),
            })),
        })
    }

    /// Reports a replica whose data failed its checksum.
    async fn report_corrupt(&self, index: usize, node: &str) {
        let mut block = self.blocks[index].clone();
        block.locs.retain(|n| xfer_addr(n) == node);
        block.storage_i_ds.clear();
        block.storage_types.clear();
        block.is_cached.clear();
        if let Err(e) = self.client.namenode.report_bad_blocks(vec![block]).await {
            tracing::warn!(path = %self.path, node, error = %e, "reportBadBlocks failed");
        }
    }

    async fn handle_read_failure(&mut self, index: usize, node: String, error: &DfsError) {
        tracing::warn!(path = %self.path, node = %node, error = %error, "read failed; trying the next replica");
        if matches!(error, DfsError::Checksum { .. }) {
            self.report_corrupt(index, &node).await;
        }
        self.dead_nodes.insert(node);
    }

    /// Reads from the sequential position into `out`; 0 at end of file.
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() || self.position >= self.length {
            return Ok(0);
        }
        let index = self.block_index(self.position).ok_or_else(|| self.missing_block(self.position))?;
        let replicas = self.blocks[index].locs.len().max(1);
        let mut attempts = 0;
        loop {
            let reader = match self.current.take() {
                Some((current_index, reader)) if current_index == index => reader,
                _ => {
                    let block = &self.blocks[index];
                    let offset_in_block = self.position - block.offset;
                    let len = block.b.num_bytes.unwrap_or(0) - offset_in_block;
                    self.open_stream(index, offset_in_block, len).await?
                }
            };
            let mut reader = reader;
            let mut filled = 0;
            let failure = loop {
                match reader.read(&mut out[filled..]).await {
                    Ok(count) => {
                        filled += count;
                        self.position += count as u64;
                        if count == 0 || filled == out.len() || reader.remaining() == 0 {
                            break None;
                        }
                    }
                    Err(e) => break Some(e),
                }
            };
            match failure {
                None => {
                    if reader.remaining() == 0 {
                        let node = reader.node().to_string();
                        if let Err(e) = reader.finish_and_release().await {
                            tracing::debug!(node, error = %e, "ending the read stream");
                        }
                    } else {
                        self.current = Some((index, reader));
                    }
                    return Ok(filled);
                }
                // Bytes already handed out stay good; the next call reopens the stream.
                Some(_) if filled > 0 => return Ok(filled),
                Some(e) if e.is_datanode_failure() && attempts + 1 < replicas => {
                    attempts += 1;
                    self.handle_read_failure(index, reader.node().to_string(), &e).await;
                }
                Some(e) => return Err(e),
            }
        }
    }

    /// Reads exactly `out.len()` bytes at `offset` without moving the sequential
    /// position; fails at end of file.
    pub async fn read_exact_at(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let count = self.read_at(offset, out).await?;
        if count < out.len() {
            return Err(DfsError::InvalidPath {
                path: self.path.clone(),
                reason: format!(
                    "read of {} bytes at {offset} passes the end of file ({})",
                    out.len(),
                    self.length
                ),
            });
        }
        Ok(())
    }

    /// Reads up to `out.len()` bytes at `offset` (fewer only at end of file) without
    /// moving the sequential position.
    pub async fn read_at(&mut self, offset: u64, out: &mut [u8]) -> Result<usize> {
        if offset >= self.length {
            return Ok(0);
        }
        let total = (out.len() as u64).min(self.length - offset) as usize;
        let mut done = 0;
        while done < total {
            let at = offset + done as u64;
            let index = self.block_index(at).ok_or_else(|| self.missing_block(at))?;
            let block = &self.blocks[index];
            let offset_in_block = at - block.offset;
            let in_block =
                (block.b.num_bytes.unwrap_or(0) - offset_in_block).min((total - done) as u64) as usize;
            self.read_block_range(index, offset_in_block, &mut out[done..done + in_block]).await?;
            done += in_block;
        }
        Ok(total)
    }

    async fn read_block_range(&mut self, index: usize, offset_in_block: u64, out: &mut [u8]) -> Result<()> {
        let replicas = self.blocks[index].locs.len().max(1);
        let mut attempt = 0;
        loop {
            let mut reader = self.open_stream(index, offset_in_block, out.len() as u64).await?;
            let node = reader.node().to_string();
            let result = match reader.read_exact(out).await {
                Ok(()) => reader.finish_and_release().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_datanode_failure() && attempt + 1 < replicas => {
                    attempt += 1;
                    self.handle_read_failure(index, node, &e).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends the rest of the file to `out`.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let start = out.len();
        let remaining = (self.length - self.position) as usize;
        out.resize(start + remaining, 0);
        let mut filled = start;
        while filled < out.len() {
            let count = self.read(&mut out[filled..]).await?;
            if count == 0 {
                break;
            }
            filled += count;
        }
        out.truncate(filled);
        Ok(filled - start)
    }

    /// Streams the rest of the file into `target`; returns the bytes copied.
    pub async fn copy_to<W: AsyncWrite + Unpin>(&mut self, target: &mut W) -> std::io::Result<u64> {
        let mut buffer = vec![0u8; COPY_BUFFER_SIZE.min((self.length - self.position).max(1) as usize)];
        let mut copied = 0;
        loop {
            let count = self.read(&mut buffer).await.map_err(std::io::Error::other)?;
            if count == 0 {
                return Ok(copied);
            }
            target.write_all(&buffer[..count]).await?;
            copied += count as u64;
        }
    }
}
