//! WRITE_BLOCK: streams one block down a datanode pipeline.
//!
//! The caller fills [`Packet`]s (one copy of the user's bytes) and hands them to
//! [`BlockWriter::send`], which computes the chunk checksums in place and queues the
//! packet for the sender task. Many packets are in flight at once (a window of
//! [`PACKETS_IN_FLIGHT_MAX`]); an ack task checks that acks come back in seqno order
//! with SUCCESS from every node, and releases the window. When idle the sender task
//! sends heartbeat packets so the pipeline stays open.
//!
//! Sent packets stay in the unacked queue until every node acknowledged them. When a
//! node fails, the writer recovers as Java's DataStreamer does: it drops the node (the
//! one an ack or firstBadLink names, else the first), gets a new generation stamp
//! (updateBlockForPipeline), reopens the pipeline to the remaining nodes with a recovery
//! stage, resends the unacked packets and records the new pipeline (updatePipeline).
//!
//! Packet buffer layout, so that neither the data nor the checksums ever move:
//! ```text
//! | spare | PLEN HLEN header | checksums (right-aligned) | data ...          |
//! 0       start              data_start - checksum_len   data_start
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{ack_statuses, OpRequest, PacketHeader};
use ringfs_common::limits::{HEARTBEAT_SEQNO, PACKET_HEADER_SIZE_MAX, UNKNOWN_SEQNO};
use ringfs_common::proto::common::TokenProto;
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage;
use ringfs_common::proto::hdfs::{
    BlockOpResponseProto, ChecksumProto, DatanodeInfoProto, ExtendedBlockProto, LocatedBlockProto,
    OpWriteBlockProto, PipelineAckProto, Status, StorageTypeProto,
};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::datanode::{self, client_header, token_or_empty, xfer_addr, DnReader, DnWriter};
use crate::error::{DfsError, Result};
use crate::namenode::NamenodeClient;

/// Packets sent but not yet acknowledged: Java's `dfs.client.write.max-packets-in-flight`.
pub const PACKETS_IN_FLIGHT_MAX: usize = 80;

/// Bytes of a full write packet on the wire: `dfs.client-write-packet-size`.
pub const WRITE_PACKET_SIZE: usize = 64 * 1024;

/// An idle pipeline gets a heartbeat packet this often: half the 60 s socket timeout,
/// as Java and hdfs-native do.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Pipeline recoveries one block may go through before the write fails; each drops a
/// node, so a 3-node pipeline can lose two.
const RECOVERIES_MAX: usize = 5;

/// Packets queued between the caller and the sender task. Small: the window, not this
/// queue, bounds what is in flight.
const SEND_QUEUE_DEPTH: usize = 8;

/// How a pipeline is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineStage {
    /// A new, empty block.
    Create,
    /// Appending to a partial last block.
    Append,
}

/// Everything needed to open a pipeline.
pub struct PipelineSetup<'a> {
    pub located: &'a LocatedBlockProto,
    /// For recoveries: new generation stamps and the updated pipeline.
    pub namenode: &'a Arc<NamenodeClient>,
    pub stage: PipelineStage,
    pub checksum: DataChecksum,
    /// 0 when creating; the block's (possibly new) generation stamp when appending.
    pub latest_generation_stamp: u64,
    /// Bytes already in the block (0 when creating).
    pub bytes_in_block: u64,
}

/// Opening a pipeline failed; `bad_node` is the index of the node to blame (the one
/// named by firstBadLink, else the first), so the caller can exclude it.
#[derive(Debug)]
pub struct PipelineSetupError {
    pub bad_node: usize,
    pub error: DfsError,
}

/// Chunks in a full packet for `bytes_per_checksum`: as many as fit in 64 KiB with
/// their checksums and the largest header (126 for 512-byte chunks).
pub fn chunks_per_packet(checksum: DataChecksum) -> usize {
    let chunk_wire_size = checksum.chunk_size() + checksum.kind.size();
    ((WRITE_PACKET_SIZE - PACKET_HEADER_SIZE_MAX) / chunk_wire_size).max(1)
}

/// A packet being filled: data goes straight into its final place in the buffer.
pub struct Packet {
    /// `data_start` header/checksum bytes, then the data appended so far.
    buf: Vec<u8>,
    data_start: usize,
    data_capacity: usize,
    offset_in_block: u64,
}

impl Packet {
    /// Copies as much of `data` as fits; returns the count.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let count = data.len().min(self.data_capacity - self.data_len());
        self.buf.extend_from_slice(&data[..count]);
        count
    }

    pub fn is_full(&self) -> bool {
        self.data_len() == self.data_capacity
    }

    pub fn is_empty(&self) -> bool {
        self.data_len() == 0
    }

    pub fn data_len(&self) -> usize {
        self.buf.len() - self.data_start
    }

    pub fn offset_in_block(&self) -> u64 {
        self.offset_in_block
    }

    /// The data bytes filled so far.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data_start..]
    }
}

/// Why the pipeline stopped, and whom to blame.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    /// Index in the pipeline of the failed node, when known.
    bad_node: Option<usize>,
}

/// What the ack task has seen.
#[derive(Debug, Clone)]
struct AckProgress {
    /// Highest data seqno acknowledged by every node (-1: none yet).
    acked_seqno: i64,
    /// Offset in the block just past the last acknowledged byte.
    acked_bytes: u64,
    failure: Option<Failure>,
}

/// A sent packet that is not yet acknowledged.
struct InFlight {
    seqno: i64,
    last: bool,
    end_offset: u64,
    wire: Bytes,
}

/// State shared by the writer, its sender task and its ack task.
struct Shared {
    unacked: Mutex<VecDeque<InFlight>>,
    progress: watch::Sender<AckProgress>,
    /// Packet buffers handed back once acknowledged, for the next packets.
    pool: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn fail(&self, reason: String, bad_node: Option<usize>) {
        self.progress.send_modify(|p| {
            if p.failure.is_none() {
                p.failure = Some(Failure { reason, bad_node });
            }
        });
    }
}

/// One connection's tasks.
struct Pipeline {
    send_tx: mpsc::Sender<Bytes>,
    sender_task: tokio::task::JoinHandle<()>,
    ack_task: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    async fn stop(self) {
        self.sender_task.abort();
        self.ack_task.abort();
        let _ = self.sender_task.await;
        let _ = self.ack_task.await;
    }
}

/// One block's write pipeline.
pub struct BlockWriter {
    namenode: Arc<NamenodeClient>,
    /// Current generation stamp; `num_bytes` is kept at the bytes queued.
    block: ExtendedBlockProto,
    token: TokenProto,
    nodes: Vec<DatanodeInfoProto>,
    storage_ids: Vec<String>,
    storage_types: Vec<i32>,
    stage: PipelineStage,
    checksum: DataChecksum,
    packet_buffer_size: usize,
    data_start: usize,
    full_packet_data_size: usize,
    /// Offset in the block of the next byte to packetise.
    bytes_queued: u64,
    next_seqno: i64,
    window: Arc<Semaphore>,
    shared: Arc<Shared>,
    progress: watch::Receiver<AckProgress>,
    pipeline: Option<Pipeline>,
    recoveries: usize,
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.sender_task.abort();
            pipeline.ack_task.abort();
        }
    }
}

/// What WRITE_BLOCK says about the pipeline being opened.
struct OpenRequest<'a> {
    block: &'a ExtendedBlockProto,
    token: &'a TokenProto,
    nodes: &'a [DatanodeInfoProto],
    storage_ids: &'a [String],
    storage_types: &'a [i32],
    client_name: &'a str,
    stage: BlockConstructionStage,
    min_bytes_received: u64,
    max_bytes_received: u64,
    latest_generation_stamp: u64,
    checksum: DataChecksum,
}

/// Connects to the first node, sends WRITE_BLOCK naming the rest of the pipeline,
/// and waits for the pipeline's connect ack.
async fn open_connection(
    request: &OpenRequest<'_>,
) -> std::result::Result<(DnReader, DnWriter), PipelineSetupError> {
    let first = xfer_addr(&request.nodes[0]);
    let at_first = |error| PipelineSetupError { bad_node: 0, error };
    let (mut reader, mut writer) = datanode::connect(&first).await.map_err(at_first)?;
    let op = write_block_op(request);
    writer.send_op(&OpRequest::WriteBlock(op)).await.map_err(at_first)?;
    let response: BlockOpResponseProto =
        reader.read_delimited("BlockOpResponseProto").await.map_err(at_first)?;
    if response.status() != Status::Success {
        let bad_link = response.first_bad_link.clone().unwrap_or_default();
        let bad_node = request.nodes.iter().position(|n| xfer_addr(n) == bad_link).unwrap_or(0);
        let mut message = response.message.clone().unwrap_or_default();
        if !bad_link.is_empty() {
            message = format!("{message} (first bad link {bad_link})");
        }
        let error =
            DfsError::DatanodeStatus { node: first, op: "WRITE_BLOCK", status: response.status(), message };
        return Err(PipelineSetupError { bad_node, error });
    }
    Ok((reader, writer))
}

fn write_block_op(request: &OpenRequest<'_>) -> OpWriteBlockProto {
    let storage_type = request.storage_types.first().copied().unwrap_or(StorageTypeProto::Disk as i32);
    OpWriteBlockProto {
        header: client_header(request.block, request.token, request.client_name),
        targets: request.nodes.iter().skip(1).cloned().collect(),
        source: None,
        stage: request.stage as i32,
        pipeline_size: request.nodes.len() as u32,
        min_bytes_rcvd: request.min_bytes_received,
        max_bytes_rcvd: request.max_bytes_received,
        latest_generation_stamp: request.latest_generation_stamp,
        requested_checksum: ChecksumProto {
            r#type: request.checksum.kind.to_proto() as i32,
            bytes_per_checksum: request.checksum.bytes_per_checksum,
        },
        caching_strategy: None,
        storage_type: Some(storage_type),
        target_storage_types: request.storage_types.iter().skip(1).copied().collect(),
        allow_lazy_persist: None,
        pinning: None,
        target_pinnings: Vec::new(),
        storage_id: request.storage_ids.first().cloned(),
        target_storage_ids: request.storage_ids.iter().skip(1).cloned().collect(),
    }
}

impl BlockWriter {
    /// Opens the pipeline of `setup.located`.
    pub async fn open(setup: PipelineSetup<'_>) -> std::result::Result<BlockWriter, PipelineSetupError> {
        let located = setup.located;
        if located.locs.is_empty() {
            let error = DfsError::Pipeline {
                block_id: located.b.block_id,
                reason: "the namenode allocated the block on no datanode".to_string(),
            };
            return Err(PipelineSetupError { bad_node: 0, error });
        }
        let mut block = located.b.clone();
        block.num_bytes = Some(setup.bytes_in_block);
        let token = token_or_empty(Some(&located.block_token));
        let stage = match setup.stage {
            PipelineStage::Create => BlockConstructionStage::PipelineSetupCreate,
            PipelineStage::Append => BlockConstructionStage::PipelineSetupAppend,
        };
        let request = OpenRequest {
            block: &block,
            token: &token,
            nodes: &located.locs,
            storage_ids: &located.storage_i_ds,
            storage_types: &located.storage_types,
            client_name: setup.namenode.client_name(),
            stage,
            min_bytes_received: setup.bytes_in_block,
            max_bytes_received: setup.bytes_in_block,
            latest_generation_stamp: setup.latest_generation_stamp,
            checksum: setup.checksum,
        };
        let (reader, writer) = open_connection(&request).await?;
        if setup.stage == PipelineStage::Append && setup.latest_generation_stamp != 0 {
            block.generation_stamp = setup.latest_generation_stamp;
        }
        let checksum = setup.checksum;
        let chunks = chunks_per_packet(checksum);
        let data_start = PACKET_HEADER_SIZE_MAX + chunks * checksum.kind.size();
        let full_packet_data_size = chunks * checksum.chunk_size();
        let initial = AckProgress { acked_seqno: -1, acked_bytes: setup.bytes_in_block, failure: None };
        let (progress_tx, progress) = watch::channel(initial);
        let shared = Arc::new(Shared {
            unacked: Mutex::new(VecDeque::new()),
            progress: progress_tx,
            pool: Mutex::new(Vec::new()),
        });
        let mut writer_state = BlockWriter {
            namenode: Arc::clone(setup.namenode),
            block,
            token,
            nodes: located.locs.clone(),
            storage_ids: located.storage_i_ds.clone(),
            storage_types: located.storage_types.clone(),
            stage: setup.stage,
            checksum,
            packet_buffer_size: data_start + full_packet_data_size,
            data_start,
            full_packet_data_size,
            bytes_queued: setup.bytes_in_block,
            next_seqno: 0,
            window: Arc::new(Semaphore::new(PACKETS_IN_FLIGHT_MAX)),
            shared,
            progress,
            pipeline: None,
            recoveries: 0,
        };
        writer_state.start_tasks(reader, writer);
        Ok(writer_state)
    }

    fn start_tasks(&mut self, reader: DnReader, writer: DnWriter) {
        let (send_tx, send_rx) = mpsc::channel(SEND_QUEUE_DEPTH);
        let sender_task = tokio::spawn(send_packets(writer, send_rx, Arc::clone(&self.shared)));
        let ack_task = tokio::spawn(read_acks(
            reader,
            self.nodes.len(),
            Arc::clone(&self.window),
            Arc::clone(&self.shared),
            self.packet_buffer_size,
        ));
        self.pipeline = Some(Pipeline { send_tx, sender_task, ack_task });
    }

    pub fn block(&self) -> &ExtendedBlockProto {
        &self.block
    }

    /// The datanodes of the pipeline now (fewer after a recovery).
    pub fn nodes(&self) -> &[DatanodeInfoProto] {
        &self.nodes
    }

    pub fn checksum(&self) -> DataChecksum {
        self.checksum
    }

    /// Offset in the block of the next byte a new packet would carry.
    pub fn bytes_queued(&self) -> u64 {
        self.bytes_queued
    }

    /// Data bytes of a full packet.
    pub fn full_packet_data_size(&self) -> usize {
        self.full_packet_data_size
    }

    /// A packet starting at `bytes_queued()`, holding at most `max_len` bytes. When the
    /// block does not end on a chunk boundary (append), the packet fills exactly the
    /// partial chunk, as the datanode requires.
    pub fn new_packet(&mut self, max_len: usize) -> Packet {
        let chunk = self.checksum.chunk_size() as u64;
        let misalignment = (self.bytes_queued % chunk) as usize;
        let capacity =
            if misalignment != 0 { chunk as usize - misalignment } else { self.full_packet_data_size };
        let mut buf = self.shared.pool.lock().expect("pool lock").pop().unwrap_or_default();
        buf.clear();
        buf.reserve_exact(self.packet_buffer_size);
        // Only the header and checksum area is zeroed; data is appended after it.
        buf.resize(self.data_start, 0);
        Packet {
            buf,
            data_start: self.data_start,
            data_capacity: capacity.min(max_len),
            offset_in_block: self.bytes_queued,
        }
    }

    /// Packet whose data restarts at `offset_in_block` (≤ bytes queued, at a chunk
    /// boundary): used after a flush of a partial chunk, whose bytes are sent again.
    pub fn new_packet_at(&mut self, offset_in_block: u64, max_len: usize) -> Packet {
        assert!(offset_in_block <= self.bytes_queued);
        assert_eq!(offset_in_block % self.checksum.chunk_size() as u64, 0);
        self.bytes_queued = offset_in_block;
        self.new_packet(max_len)
    }

    fn failed(&self) -> bool {
        self.progress.borrow().failure.is_some()
    }

    /// Checksums the packet and queues it; waits while the window is full, recovering
    /// the pipeline if a node fails meanwhile.
    pub async fn send(&mut self, mut packet: Packet, sync_block: bool) -> Result<()> {
        assert!(!packet.is_empty(), "data packets carry data");
        assert_eq!(packet.offset_in_block, self.bytes_queued, "packets are contiguous");
        loop {
            if self.failed() {
                self.recover().await?;
            }
            let mut progress = self.progress.clone();
            tokio::select! {
                permit = self.window.acquire() => {
                    permit.expect("window semaphore is never closed").forget();
                    break;
                }
                _ = progress.wait_for(|p| p.failure.is_some()) => {}
            }
        }
        let data_len = packet.data_len();
        let checksum_len = self.checksum.checksum_len(data_len);
        let checksums_start = packet.data_start - checksum_len;
        let (head, data) = packet.buf.split_at_mut(packet.data_start);
        self.checksum.compute(data, &mut head[checksums_start..]);
        let header = PacketHeader {
            offset_in_block: packet.offset_in_block as i64,
            seqno: self.next_seqno,
            last_packet_in_block: false,
            data_len: data_len as i32,
            sync_block,
        };
        let start = checksums_start - header.encoded_prefix_len();
        let mut prefix = &mut packet.buf[start..checksums_start];
        header.encode_prefix(checksum_len, &mut prefix);
        debug_assert!(prefix.is_empty());
        let end_offset = packet.offset_in_block + data_len as u64;
        let wire = Bytes::from(packet.buf).slice(start..);
        self.enqueue(wire, false, end_offset).await;
        self.bytes_queued = end_offset;
        self.block.num_bytes = Some(end_offset);
        Ok(())
    }

    /// Records the packet as unacknowledged, then hands it to the sender task. A dead
    /// sender is noticed through the failure state; the packet is resent on recovery.
    async fn enqueue(&mut self, wire: Bytes, last: bool, end_offset: u64) {
        let seqno = self.next_seqno;
        self.next_seqno += 1;
        let in_flight = InFlight { seqno, last, end_offset, wire: wire.clone() };
        self.shared.unacked.lock().expect("unacked lock").push_back(in_flight);
        let pipeline = self.pipeline.as_ref().expect("a pipeline is open");
        if pipeline.send_tx.send(wire).await.is_err() {
            self.shared.fail("the packet sender stopped".to_string(), None);
        }
    }

    /// Waits until every packet sent so far is acknowledged by the whole pipeline.
    pub async fn flush(&mut self) -> Result<()> {
        self.wait_acked(self.next_seqno - 1).await
    }

    async fn wait_acked(&mut self, seqno: i64) -> Result<()> {
        loop {
            let mut progress = self.progress.clone();
            // The watch guard must be gone before recovering: recovery writes the state.
            let acked = match progress.wait_for(|p| p.acked_seqno >= seqno || p.failure.is_some()).await {
                Ok(state) => state.failure.is_none(),
                Err(_) => false,
            };
            if acked {
                return Ok(());
            }
            self.recover().await?;
        }
    }

    /// Drops the failed node, reopens the pipeline on the others under a new generation
    /// stamp and resends every unacknowledged packet.
    async fn recover(&mut self) -> Result<()> {
        let failure = self
            .progress
            .borrow()
            .failure
            .clone()
            .unwrap_or(Failure { reason: "the pipeline stopped".to_string(), bad_node: None });
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop().await;
        }
        let mut bad_node = failure.bad_node.unwrap_or(0);
        let mut last_reason = failure.reason.clone();
        loop {
            self.recoveries += 1;
            if self.recoveries > RECOVERIES_MAX || self.nodes.len() <= 1 {
                return Err(DfsError::Pipeline {
                    block_id: self.block.block_id,
                    reason: format!("{last_reason}; no datanode left to recover the pipeline with"),
                });
            }
            let removed = self.nodes.remove(bad_node.min(self.nodes.len() - 1));
            if bad_node < self.storage_ids.len() {
                self.storage_ids.remove(bad_node);
            }
            if bad_node < self.storage_types.len() {
                self.storage_types.remove(bad_node);
            }
            tracing::warn!(block = self.block.block_id, node = %xfer_addr(&removed), reason = %last_reason,
                "datanode dropped from the write pipeline; recovering");
            match self.reopen().await {
                Ok(()) => return Ok(()),
                Err(setup) => {
                    bad_node = setup.bad_node;
                    last_reason = setup.error.to_string();
                }
            }
        }
    }

    async fn reopen(&mut self) -> std::result::Result<(), PipelineSetupError> {
        let namenode_err = |error| PipelineSetupError { bad_node: usize::MAX, error };
        let (acked_bytes, closing) = {
            let unacked = self.shared.unacked.lock().expect("unacked lock");
            (self.progress.borrow().acked_bytes, unacked.back().is_some_and(|p| p.last))
        };
        tracing::debug!(
            block = self.block.block_id,
            nodes = self.nodes.len(),
            acked_bytes,
            "recovery: new generation stamp"
        );
        let updated = self.namenode.update_block_for_pipeline(&self.block).await.map_err(namenode_err)?;
        let new_generation_stamp = updated.b.generation_stamp;
        let token = token_or_empty(Some(&updated.block_token));
        let stage = if closing {
            BlockConstructionStage::PipelineCloseRecovery
        } else if self.stage == PipelineStage::Append && self.next_seqno == 0 {
            BlockConstructionStage::PipelineSetupAppendRecovery
        } else {
            BlockConstructionStage::PipelineSetupStreamingRecovery
        };
        let mut block = self.block.clone();
        block.num_bytes = Some(acked_bytes);
        let request = OpenRequest {
            block: &block,
            token: &token,
            nodes: &self.nodes,
            storage_ids: &self.storage_ids,
            storage_types: &self.storage_types,
            client_name: self.namenode.client_name(),
            stage,
            min_bytes_received: acked_bytes,
            max_bytes_received: self.bytes_queued,
            latest_generation_stamp: new_generation_stamp,
            checksum: self.checksum,
        };
        tracing::debug!(block = self.block.block_id, new_generation_stamp, ?stage, "recovery: reopening");
        let (reader, writer) = open_connection(&request).await?;
        tracing::debug!(block = self.block.block_id, "recovery: updatePipeline");
        let mut new_block = block.clone();
        new_block.generation_stamp = new_generation_stamp;
        self.namenode
            .update_pipeline(&block, &new_block, &self.nodes, &self.storage_ids)
            .await
            .map_err(namenode_err)?;
        self.block.generation_stamp = new_generation_stamp;
        self.token = token;
        self.shared.progress.send_modify(|p| p.failure = None);
        self.start_tasks(reader, writer);
        let resend: Vec<Bytes> =
            self.shared.unacked.lock().expect("unacked lock").iter().map(|p| p.wire.clone()).collect();
        tracing::debug!(block = self.block.block_id, packets = resend.len(), "recovery: resending");
        let pipeline = self.pipeline.as_ref().expect("just started");
        for wire in resend {
            if pipeline.send_tx.send(wire).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Waits for all acks, sends the empty last packet, waits for its ack, and returns
    /// the finished block with its final length and generation stamp.
    pub async fn finish(mut self) -> Result<ExtendedBlockProto> {
        self.flush().await?;
        let header = PacketHeader {
            offset_in_block: self.bytes_queued as i64,
            seqno: self.next_seqno,
            last_packet_in_block: true,
            data_len: 0,
            sync_block: false,
        };
        let mut buf = Vec::with_capacity(PACKET_HEADER_SIZE_MAX);
        header.encode_prefix(0, &mut buf);
        let last_seqno = self.next_seqno;
        self.enqueue(Bytes::from(buf), true, self.bytes_queued).await;
        self.wait_acked(last_seqno).await?;
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop().await;
        }
        let mut block = self.block.clone();
        block.num_bytes = Some(self.bytes_queued);
        Ok(block)
    }
}

async fn send_packets(mut writer: DnWriter, mut queue: mpsc::Receiver<Bytes>, shared: Arc<Shared>) {
    let mut heartbeat = Vec::with_capacity(PACKET_HEADER_SIZE_MAX);
    PacketHeader {
        offset_in_block: 0,
        seqno: HEARTBEAT_SEQNO,
        last_packet_in_block: false,
        data_len: 0,
        sync_block: false,
    }
    .encode_prefix(0, &mut heartbeat);
    loop {
        let next = tokio::time::timeout(HEARTBEAT_INTERVAL, queue.recv()).await;
        let result = match next {
            Ok(Some(wire)) => writer.write_all(&wire).await,
            Ok(None) => return,
            Err(_) => writer.write_all(&heartbeat).await,
        };
        if let Err(e) = result {
            // Which node failed is unknown from here: Java blames the first.
            shared.fail(format!("sending to {}: {e}", writer.node()), None);
            return;
        }
    }
}

async fn read_acks(
    mut reader: DnReader,
    pipeline_size: usize,
    window: Arc<Semaphore>,
    shared: Arc<Shared>,
    packet_buffer_size: usize,
) {
    loop {
        let ack = match reader.read_delimited::<PipelineAckProto>("PipelineAckProto").await {
            Ok(ack) => ack,
            Err(e) => return shared.fail(format!("reading acks: {e}"), None),
        };
        if let Err((reason, bad_node)) = check_ack_statuses(&ack, pipeline_size) {
            return shared.fail(reason, bad_node);
        }
        if ack.seqno == HEARTBEAT_SEQNO {
            continue;
        }
        if ack.seqno == UNKNOWN_SEQNO {
            return shared
                .fail("a datanode in the pipeline is restarting (out-of-band ack)".to_string(), None);
        }
        let acked = {
            let mut unacked = shared.unacked.lock().expect("unacked lock");
            match unacked.front() {
                Some(front) if front.seqno == ack.seqno => unacked.pop_front(),
                Some(front) => {
                    let reason = format!("Expecting seqno {} but received {}", front.seqno, ack.seqno);
                    drop(unacked);
                    return shared.fail(reason, None);
                }
                None => {
                    drop(unacked);
                    return shared.fail(format!("ack for seqno {} of a packet never sent", ack.seqno), None);
                }
            }
        };
        let acked = acked.expect("matched the front");
        shared.progress.send_modify(|p| {
            p.acked_seqno = acked.seqno;
            p.acked_bytes = acked.end_offset;
        });
        if acked.last {
            return;
        }
        window.add_permits(1);
        recycle(&shared, acked.wire, packet_buffer_size);
    }
}

/// Gives a packet's buffer back to the pool when nothing else holds it.
fn recycle(shared: &Shared, wire: Bytes, packet_buffer_size: usize) {
    let Ok(buffer) = wire.try_into_mut() else { return };
    let buffer: Vec<u8> = buffer.into();
    if buffer.capacity() >= packet_buffer_size {
        let mut pool = shared.pool.lock().expect("pool lock");
        if pool.len() < PACKETS_IN_FLIGHT_MAX {
            pool.push(buffer);
        }
    }
}

/// Every node must answer, and answer SUCCESS; else the failing node's index: the
/// last non-SUCCESS reply (as Java's ResponseProcessor scans them), or the first node
/// that did not answer when a datanode cut the list short after losing its mirror.
fn check_ack_statuses(
    ack: &PipelineAckProto,
    pipeline_size: usize,
) -> std::result::Result<(), (String, Option<usize>)> {
    let statuses = ack_statuses(ack);
    if let Some((index, status)) = statuses.iter().enumerate().rev().find(|(_, s)| **s != Status::Success) {
        return Err((format!("ack {}: pipeline node {index} answered {status:?}", ack.seqno), Some(index)));
    }
    if statuses.len() < pipeline_size {
        let reason = format!(
            "ack {} carries {} statuses for a pipeline of {pipeline_size}",
            ack.seqno,
            statuses.len()
        );
        return Err((reason, Some(statuses.len())));
    }
    if statuses.len() > pipeline_size {
        let reason = format!(
            "ack {} carries {} statuses for a pipeline of {pipeline_size}",
            ack.seqno,
            statuses.len()
        );
        return Err((reason, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::dtp::pipeline_ack;

    #[test]
    fn packet_geometry_matches_java() {
        assert_eq!(chunks_per_packet(DataChecksum::CRC32C_512), 126);
    }

    #[test]
    fn acks_need_every_node_and_success() {
        assert!(check_ack_statuses(&pipeline_ack(3, &[Status::Success; 3]), 3).is_ok());
        // A node that lost its mirror answers for itself only: blame the mirror.
        assert_eq!(check_ack_statuses(&pipeline_ack(3, &[Status::Success; 2]), 3).unwrap_err().1, Some(2));
        let mirror_failed = pipeline_ack(3, &[Status::Success, Status::Error]);
        assert_eq!(check_ack_statuses(&mirror_failed, 3).unwrap_err().1, Some(1));
        let bad = pipeline_ack(3, &[Status::Success, Status::ErrorChecksum, Status::Success]);
        let (reason, node) = check_ack_statuses(&bad, 3).unwrap_err();
        assert!(reason.contains("node 1"), "{reason}");
        assert_eq!(node, Some(1));
    }
}
