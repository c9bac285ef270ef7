//! Writing a file: packets into a block pipeline, a new block from the namenode each
//! time one fills, complete() on close.

use std::sync::Arc;

use ringfs_common::checksum::DataChecksum;
use ringfs_common::ipc::exception;
use ringfs_common::proto::hdfs::{DatanodeInfoProto, ExtendedBlockProto, LocatedBlockProto};

use crate::block_writer::{BlockWriter, Packet, PipelineSetup, PipelineStage};
use crate::dfs::ClientInner;
use crate::error::{DfsError, Result};
use crate::namenode::LeaseGuard;

/// Pipelines tried for one new block before the write fails; each failure excludes the
/// node the pipeline blamed, as Java's `dfs.client.block.write.retries` (3) does.
const PIPELINE_ATTEMPTS_MAX: usize = 3;

/// A file open for write. Bytes are acknowledged by the datanodes asynchronously;
/// [`FileWriter::close`] waits for all of them and completes the file.
pub struct FileWriter {
    client: Arc<ClientInner>,
    path: String,
    file_id: u64,
    block_size: u64,
    checksum: DataChecksum,
    block: Option<BlockWriter>,
    packet: Option<Packet>,
    /// The last finished block, passed to addBlock/complete with its final length.
    previous: Option<ExtendedBlockProto>,
    /// A partial last block handed back by append(), opened lazily on the first write.
    append_block: Option<LocatedBlockProto>,
    length: u64,
    failure: Option<String>,
    closed: bool,
    _lease: LeaseGuard,
}

pub(crate) struct WriterStart {
    pub path: String,
    pub file_id: u64,
    pub block_size: u64,
    pub checksum: DataChecksum,
    pub length: u64,
    pub append_block: Option<LocatedBlockProto>,
    pub previous: Option<ExtendedBlockProto>,
}

impl FileWriter {
    pub(crate) fn new(client: Arc<ClientInner>, start: WriterStart) -> FileWriter {
        assert!(start.block_size > 0, "the namenode reports a block size for every file");
        let lease = client.namenode.lease_guard();
        FileWriter {
            client,
            path: start.path,
            file_id: start.file_id,
            block_size: start.block_size,
            checksum: start.checksum,
            block: None,
            packet: None,
            previous: start.previous,
            append_block: start.append_block,
            length: start.length,
            failure: None,
            closed: false,
            _lease: lease,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes in the file, including those not yet acknowledged.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    fn check_usable(&self) -> Result<()> {
        if self.closed {
            return Err(DfsError::Closed {
                path: self.path.clone(),
                reason: "the file is closed".to_string(),
            });
        }
        if let Some(reason) = &self.failure {
            return Err(DfsError::Closed {
                path: self.path.clone(),
                reason: format!("an earlier write failed: {reason}"),
            });
        }
        Ok(())
    }

    /// Runs `step`, remembering a failure so the writer refuses further use.
    fn record<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.failure = Some(e.to_string());
        }
        result
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.check_usable()?;
        let result = self.write_inner(data).await;
        self.record(result)
    }

    async fn write_inner(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if self.block.is_none() {
                self.open_block().await?;
            }
            let block = self.block.as_mut().expect("a block is open");
            let packet = match self.packet.as_mut() {
                Some(packet) => packet,
                None => {
                    let room = self.block_size - block.bytes_queued();
                    self.packet.insert(block.new_packet(room.min(usize::MAX as u64) as usize))
                }
            };
            let count = packet.append(data);
            data = &data[count..];
            self.length += count as u64;
            if packet.is_full() {
                self.send_packet(false).await?;
            }
        }
        Ok(())
    }

    /// Sends the current packet; finishes the block when it is full.
    async fn send_packet(&mut self, sync_block: bool) -> Result<()> {
        let Some(packet) = self.packet.take() else { return Ok(()) };
        let block = self.block.as_mut().expect("packets belong to an open block");
        block.send(packet, sync_block).await?;
        if block.bytes_queued() == self.block_size {
            let block = self.block.take().expect("checked above");
            self.previous = Some(block.finish().await?);
        }
        Ok(())
    }

    async fn open_block(&mut self) -> Result<()> {
        if let Some(located) = self.append_block.take() {
            return self.open_append_block(located).await;
        }
        let namenode = &self.client.namenode;
        let mut excluded: Vec<DatanodeInfoProto> = Vec::new();
        let mut last_error = None;
        for _ in 0..PIPELINE_ATTEMPTS_MAX {
            let located =
                namenode.add_block(&self.path, self.previous.clone(), &excluded, self.file_id).await?;
            let setup = PipelineSetup {
                located: &located,
                namenode,
                stage: PipelineStage::Create,
                checksum: self.checksum,
                latest_generation_stamp: 0,
                bytes_in_block: 0,
            };
            match BlockWriter::open(setup).await {
                Ok(writer) => {
                    self.block = Some(writer);
                    return Ok(());
                }
                Err(failure) => {
                    tracing::warn!(path = %self.path, block = located.b.block_id, error = %failure.error,
                        "pipeline setup failed; abandoning the block and excluding the node");
                    namenode.abandon_block(&located.b, &self.path, self.file_id).await?;
                    if let Some(node) = located.locs.get(failure.bad_node) {
                        excluded.push(node.clone());
                    }
                    last_error = Some(failure.error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Reopens the pipeline of a partial last block: a new generation stamp from the
    /// namenode (as Java does), WRITE_BLOCK with the append stage, then updatePipeline.
    async fn open_append_block(&mut self, located: LocatedBlockProto) -> Result<()> {
        let namenode = &self.client.namenode;
        let bytes_in_block = located.b.num_bytes.unwrap_or(0);
        let (setup_block, new_gs) = match namenode.update_block_for_pipeline(&located.b).await {
            Ok(updated) => {
                let mut located = located.clone();
                located.block_token = updated.block_token.clone();
                let new_gs = updated.b.generation_stamp;
                (located, new_gs)
            }
            // A namenode without pipeline recovery reopens with the same stamp, as
            // hdfs-native does.
            Err(e) if e.is_remote(exception::NO_SUCH_METHOD) => {
                let gs = located.b.generation_stamp;
                (located.clone(), gs)
            }
            Err(e) => return Err(e),
        };
        let setup = PipelineSetup {
            located: &setup_block,
            namenode,
            stage: PipelineStage::Append,
            checksum: self.checksum,
            latest_generation_stamp: new_gs,
            bytes_in_block,
        };
        let writer = BlockWriter::open(setup).await.map_err(|f| f.error)?;
        if new_gs != located.b.generation_stamp {
            let mut new_block = located.b.clone();
            new_block.generation_stamp = new_gs;
            namenode.update_pipeline(&located.b, &new_block, &located.locs, &located.storage_i_ds).await?;
        }
        self.block = Some(writer);
        Ok(())
    }

    /// Sends buffered bytes and waits until every datanode of the pipeline has them, then
    /// tells the namenode the block's length so new readers see them (Java's hflush).
    pub async fn hflush(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.flush_inner(false).await;
        self.record(result)
    }

    /// hflush, asking the datanodes to sync the block to disk (Java's hsync).
    pub async fn hsync(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.flush_inner(true).await;
        self.record(result)
    }

    async fn flush_inner(&mut self, sync_block: bool) -> Result<()> {
        let Some(block) = self.block.as_mut() else {
            return Ok(());
        };
        if let Some(packet) = self.packet.take() {
            // The bytes of a trailing partial chunk are sent now and again with the
            // next packet, which restarts at the chunk's first byte.
            let chunk = self.checksum.chunk_size() as u64;
            let end = packet.offset_in_block() + packet.data_len() as u64;
            let chunk_start = end - end % chunk;
            let partial_start = chunk_start.max(packet.offset_in_block());
            let tail_start = (partial_start - packet.offset_in_block()) as usize;
            let partial = packet.data()[tail_start..].to_vec();
            let restart_at = if chunk_start >= packet.offset_in_block() { Some(chunk_start) } else { None };
            block.send(packet, sync_block).await?;
            if block.bytes_queued() == self.block_size {
                let block = self.block.take().expect("open");
                self.previous = Some(block.finish().await?);
            } else if let (Some(restart_at), false) = (restart_at, partial.is_empty()) {
                let room = self.block_size - restart_at;
                let mut next = block.new_packet_at(restart_at, room as usize);
                next.append(&partial);
                self.packet = Some(next);
            }
        }
        let block_length = match self.block.as_mut() {
            Some(block) => {
                block.flush().await?;
                let queued = block.bytes_queued();
                let pending = self.packet.as_ref().map_or(0, |p| p.data_len() as u64);
                Some(queued + pending)
            }
            None => None,
        };
        self.client.namenode.fsync(&self.path, self.file_id, block_length).await
    }

    /// Sends what is buffered, finishes the last block and completes the file.
    pub async fn close(mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.close_inner().await;
        self.closed = true;
        self.record(result)
    }

    async fn close_inner(&mut self) -> Result<()> {
        if self.packet.as_ref().is_some_and(|p| !p.is_empty()) {
            self.send_packet(false).await?;
        }
        self.packet = None;
        if let Some(block) = self.block.take() {
            self.previous = Some(block.finish().await?);
        }
        let namenode = &self.client.namenode;
        namenode.complete_with_retry(&self.path, self.previous.clone(), self.file_id).await
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.closed {
            tracing::debug!(path = %self.path, "file writer dropped without close; the namenode recovers the lease");
        }
    }
}
