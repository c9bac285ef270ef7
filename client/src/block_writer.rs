//! WRITE_BLOCK: streams one block down a datanode pipeline.
//!
//! The caller fills [`Packet`]s (one copy of the user's bytes, into a pooled buffer)
//! and hands them to [`BlockWriter::send`], which computes the chunk checksums in place
//! and queues the packet for the sender task. Many packets are in flight at once (a
//! window of [`PACKETS_IN_FLIGHT_MAX`]); an ack task checks that acks come back in
//! seqno order with SUCCESS from every node, and releases the window. When idle the
//! sender task sends heartbeat packets so the pipeline stays open.
//!
//! Packet buffer layout, so that neither the data nor the checksums ever move:
//! ```text
//! | spare | PLEN HLEN header | checksums (right-aligned) | data ...          |
//! 0       start              data_start - checksum_len   data_start
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{ack_statuses, OpRequest, PacketHeader};
use ringfs_common::limits::{HEARTBEAT_SEQNO, PACKET_HEADER_SIZE_MAX, UNKNOWN_SEQNO};
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage;
use ringfs_common::proto::hdfs::{
    ChecksumProto, DatanodeInfoProto, ExtendedBlockProto, LocatedBlockProto, OpWriteBlockProto,
    PipelineAckProto, Status, StorageTypeProto,
};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::datanode::{self, client_header, token_or_empty, xfer_addr, DnReader, DnWriter};
use crate::error::{DfsError, Result};

/// Packets sent but not yet acknowledged: Java's `dfs.client.write.max-packets-in-flight`.
pub const PACKETS_IN_FLIGHT_MAX: usize = 80;

/// Bytes of a full write packet on the wire: `dfs.client-write-packet-size`.
pub const WRITE_PACKET_SIZE: usize = 64 * 1024;

/// An idle pipeline gets a heartbeat packet this often: half the 60 s socket timeout,
/// as Java and hdfs-native do.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

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
    pub client_name: &'a str,
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
    buf: Vec<u8>,
    data_start: usize,
    data_len: usize,
    data_capacity: usize,
    offset_in_block: u64,
}

impl Packet {
    /// Copies as much of `data` as fits; returns the count.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let count = data.len().min(self.data_capacity - self.data_len);
        let at = self.data_start + self.data_len;
        self.buf[at..at + count].copy_from_slice(&data[..count]);
        self.data_len += count;
        count
    }

    pub fn is_full(&self) -> bool {
        self.data_len == self.data_capacity
    }

    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }

    pub fn data_len(&self) -> usize {
        self.data_len
    }

    pub fn offset_in_block(&self) -> u64 {
        self.offset_in_block
    }

    /// The data bytes filled so far.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data_start..self.data_start + self.data_len]
    }
}

/// A packet ready for the wire: `buf[start..end]`.
struct Outgoing {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// What the ack task has seen.
#[derive(Debug, Clone, Default)]
struct AckProgress {
    /// Highest data seqno acknowledged by every node (-1: none yet).
    acked_seqno: i64,
    failure: Option<String>,
}

/// An entry of the ack queue: a packet that was sent and must be acked next.
struct Expected {
    seqno: i64,
    last: bool,
}

type BufferPool = Arc<Mutex<Vec<Vec<u8>>>>;

/// One block's write pipeline.
pub struct BlockWriter {
    block: ExtendedBlockProto,
    nodes: Vec<DatanodeInfoProto>,
    checksum: DataChecksum,
    packet_buffer_size: usize,
    data_start: usize,
    full_packet_data_size: usize,
    /// Offset in the block of the next byte to packetise.
    bytes_queued: u64,
    next_seqno: i64,
    window: Arc<Semaphore>,
    progress: watch::Receiver<AckProgress>,
    expected_tx: mpsc::UnboundedSender<Expected>,
    send_tx: Option<mpsc::Sender<Outgoing>>,
    pool: BufferPool,
    sender_task: tokio::task::JoinHandle<()>,
    ack_task: tokio::task::JoinHandle<()>,
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        self.sender_task.abort();
        self.ack_task.abort();
    }
}

impl BlockWriter {
    /// Connects to the first node, sends WRITE_BLOCK naming the rest of the pipeline,
    /// and waits for the pipeline's connect ack.
    pub async fn open(setup: PipelineSetup<'_>) -> std::result::Result<BlockWriter, PipelineSetupError> {
        let located = setup.located;
        let nodes = located.locs.clone();
        if nodes.is_empty() {
            let error = DfsError::Pipeline {
                block_id: located.b.block_id,
                reason: "the namenode allocated the block on no datanode".to_string(),
            };
            return Err(PipelineSetupError { bad_node: 0, error });
        }
        let first = xfer_addr(&nodes[0]);
        let at_first = |error| PipelineSetupError { bad_node: 0, error };
        let (mut reader, mut writer) = datanode::connect(&first).await.map_err(at_first)?;
        let op = write_block_op(&setup);
        writer.send_op(&OpRequest::WriteBlock(op)).await.map_err(at_first)?;
        let response =
            reader.read_delimited::<ringfs_common::proto::hdfs::BlockOpResponseProto>("BlockOpResponseProto");
        let response = response.await.map_err(at_first)?;
        if response.status() != Status::Success {
            let bad_link = response.first_bad_link.clone().unwrap_or_default();
            let bad_node = nodes.iter().position(|n| xfer_addr(n) == bad_link).unwrap_or(0);
            let mut message = response.message.clone().unwrap_or_default();
            if !bad_link.is_empty() {
                message = format!("{message} (first bad link {bad_link})");
            }
            let error = DfsError::DatanodeStatus {
                node: first,
                op: "WRITE_BLOCK",
                status: response.status(),
                message,
            };
            return Err(PipelineSetupError { bad_node, error });
        }
        Ok(BlockWriter::start(setup, nodes, reader, writer))
    }

    fn start(
        setup: PipelineSetup<'_>,
        nodes: Vec<DatanodeInfoProto>,
        reader: DnReader,
        writer: DnWriter,
    ) -> Self {
        let checksum = setup.checksum;
        let chunks = chunks_per_packet(checksum);
        let data_start = PACKET_HEADER_SIZE_MAX + chunks * checksum.kind.size();
        let full_packet_data_size = chunks * checksum.chunk_size();
        let (progress_tx, progress) = watch::channel(AckProgress { acked_seqno: -1, failure: None });
        let progress_tx = Arc::new(progress_tx);
        let (expected_tx, expected_rx) = mpsc::unbounded_channel();
        let (send_tx, send_rx) = mpsc::channel(SEND_QUEUE_DEPTH);
        let window = Arc::new(Semaphore::new(PACKETS_IN_FLIGHT_MAX));
        let pool: BufferPool = Arc::new(Mutex::new(Vec::new()));
        let sender_task =
            tokio::spawn(send_packets(writer, send_rx, Arc::clone(&pool), Arc::clone(&progress_tx)));
        let ack_task = tokio::spawn(read_acks(
            reader,
            expected_rx,
            nodes.len(),
            Arc::clone(&window),
            Arc::clone(&progress_tx),
        ));
        let mut block = setup.located.b.clone();
        if setup.stage == PipelineStage::Append && setup.latest_generation_stamp != 0 {
            block.generation_stamp = setup.latest_generation_stamp;
        }
        block.num_bytes = Some(setup.bytes_in_block);
        BlockWriter {
            block,
            nodes,
            checksum,
            packet_buffer_size: data_start + full_packet_data_size,
            data_start,
            full_packet_data_size,
            bytes_queued: setup.bytes_in_block,
            next_seqno: 0,
            window,
            progress,
            expected_tx,
            send_tx: Some(send_tx),
            pool,
            sender_task,
            ack_task,
        }
    }

    pub fn block(&self) -> &ExtendedBlockProto {
        &self.block
    }

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
        let buf = self.pool.lock().expect("pool lock").pop();
        let buf = buf.unwrap_or_else(|| vec![0; self.packet_buffer_size]);
        debug_assert_eq!(buf.len(), self.packet_buffer_size);
        Packet {
            buf,
            data_start: self.data_start,
            data_len: 0,
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

    fn failure(&self) -> Option<DfsError> {
        let failure = self.progress.borrow().failure.clone()?;
        Some(DfsError::Pipeline { block_id: self.block.block_id, reason: failure })
    }

    /// Checksums the packet and queues it; waits while the window is full.
    pub async fn send(&mut self, mut packet: Packet, sync_block: bool) -> Result<()> {
        assert!(!packet.is_empty(), "data packets carry data");
        assert_eq!(packet.offset_in_block, self.bytes_queued, "packets are contiguous");
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let permit = self.window.acquire().await.expect("window semaphore is never closed");
        permit.forget();
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let checksum_len = self.checksum.checksum_len(packet.data_len);
        let checksums_start = packet.data_start - checksum_len;
        let (head, data) = packet.buf.split_at_mut(packet.data_start);
        self.checksum.compute(&data[..packet.data_len], &mut head[checksums_start..]);
        let header = PacketHeader {
            offset_in_block: packet.offset_in_block as i64,
            seqno: self.next_seqno,
            last_packet_in_block: false,
            data_len: packet.data_len as i32,
            sync_block,
        };
        let start = checksums_start - header.encoded_prefix_len();
        let mut prefix = &mut packet.buf[start..checksums_start];
        header.encode_prefix(checksum_len, &mut prefix);
        debug_assert!(prefix.is_empty());
        let end = packet.data_start + packet.data_len;
        self.enqueue(Outgoing { buf: packet.buf, start, end }, false).await?;
        self.bytes_queued += packet.data_len as u64;
        Ok(())
    }

    async fn enqueue(&mut self, outgoing: Outgoing, last: bool) -> Result<()> {
        let seqno = self.next_seqno;
        self.next_seqno += 1;
        let _ = self.expected_tx.send(Expected { seqno, last });
        let send_tx = self.send_tx.as_ref().expect("pipeline still open");
        if send_tx.send(outgoing).await.is_err() {
            return Err(self.failure().unwrap_or(DfsError::Pipeline {
                block_id: self.block.block_id,
                reason: "the packet sender stopped".to_string(),
            }));
        }
        Ok(())
    }

    /// Waits until every packet sent so far is acknowledged by the whole pipeline.
    pub async fn flush(&mut self) -> Result<()> {
        self.wait_acked(self.next_seqno - 1).await
    }

    async fn wait_acked(&mut self, seqno: i64) -> Result<()> {
        let progress = self.progress.wait_for(|p| p.acked_seqno >= seqno || p.failure.is_some()).await;
        let failed = progress.map_or(true, |p| p.failure.is_some());
        if failed {
            return Err(self.failure().unwrap_or(DfsError::Pipeline {
                block_id: self.block.block_id,
                reason: "the ack reader stopped".to_string(),
            }));
        }
        Ok(())
    }

    /// Waits for all acks, sends the empty last packet, waits for its ack, and returns
    /// the finished block with its final length.
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
        let end = buf.len();
        let last_seqno = self.next_seqno;
        self.enqueue(Outgoing { buf, start: 0, end }, true).await?;
        self.wait_acked(last_seqno).await?;
        self.send_tx = None;
        let mut block = self.block.clone();
        block.num_bytes = Some(self.bytes_queued);
        Ok(block)
    }
}

fn write_block_op(setup: &PipelineSetup<'_>) -> OpWriteBlockProto {
    let located = setup.located;
    let mut block = located.b.clone();
    block.num_bytes = Some(setup.bytes_in_block);
    let stage = match setup.stage {
        PipelineStage::Create => BlockConstructionStage::PipelineSetupCreate,
        PipelineStage::Append => BlockConstructionStage::PipelineSetupAppend,
    };
    let token = token_or_empty(Some(&located.block_token));
    let storage_type = located.storage_types.first().copied().unwrap_or(StorageTypeProto::Disk as i32);
    OpWriteBlockProto {
        header: client_header(&block, &token, setup.client_name),
        targets: located.locs.iter().skip(1).cloned().collect(),
        source: None,
        stage: stage as i32,
        pipeline_size: located.locs.len() as u32,
        min_bytes_rcvd: setup.bytes_in_block,
        max_bytes_rcvd: setup.bytes_in_block,
        latest_generation_stamp: setup.latest_generation_stamp,
        requested_checksum: ChecksumProto {
            r#type: setup.checksum.kind.to_proto() as i32,
            bytes_per_checksum: setup.checksum.bytes_per_checksum,
        },
        caching_strategy: None,
        storage_type: Some(storage_type),
        target_storage_types: located.storage_types.iter().skip(1).copied().collect(),
        allow_lazy_persist: None,
        pinning: None,
        target_pinnings: Vec::new(),
        storage_id: located.storage_i_ds.first().cloned(),
        target_storage_ids: located.storage_i_ds.iter().skip(1).cloned().collect(),
    }
}

fn fail(progress: &watch::Sender<AckProgress>, reason: String) {
    progress.send_modify(|p| {
        if p.failure.is_none() {
            p.failure = Some(reason);
        }
    });
}

async fn send_packets(
    mut writer: DnWriter,
    mut queue: mpsc::Receiver<Outgoing>,
    pool: BufferPool,
    progress: Arc<watch::Sender<AckProgress>>,
) {
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
            Ok(Some(outgoing)) => {
                let result = writer.write_all(&outgoing.buf[outgoing.start..outgoing.end]).await;
                let mut pool = pool.lock().expect("pool lock");
                if outgoing.buf.len() > PACKET_HEADER_SIZE_MAX && pool.len() < PACKETS_IN_FLIGHT_MAX {
                    pool.push(outgoing.buf);
                }
                result
            }
            Ok(None) => return,
            Err(_) => writer.write_all(&heartbeat).await,
        };
        if let Err(e) = result {
            fail(&progress, format!("sending to {}: {e}", writer.node()));
            return;
        }
    }
}

async fn read_acks(
    mut reader: DnReader,
    mut expected: mpsc::UnboundedReceiver<Expected>,
    pipeline_size: usize,
    window: Arc<Semaphore>,
    progress: Arc<watch::Sender<AckProgress>>,
) {
    loop {
        let ack = match reader.read_delimited::<PipelineAckProto>("PipelineAckProto").await {
            Ok(ack) => ack,
            Err(e) => return fail(&progress, format!("reading acks: {e}")),
        };
        if let Err(reason) = check_ack_statuses(&ack, pipeline_size) {
            return fail(&progress, reason);
        }
        if ack.seqno == HEARTBEAT_SEQNO {
            continue;
        }
        if ack.seqno == UNKNOWN_SEQNO {
            return fail(&progress, "a datanode in the pipeline is restarting (out-of-band ack)".to_string());
        }
        let Ok(next) = expected.try_recv() else {
            return fail(&progress, format!("ack for seqno {} of a packet never sent", ack.seqno));
        };
        if ack.seqno != next.seqno {
            return fail(&progress, format!("Expecting seqno {} but received {}", next.seqno, ack.seqno));
        }
        progress.send_modify(|p| p.acked_seqno = ack.seqno);
        if next.last {
            return;
        }
        window.add_permits(1);
    }
}

/// Every node must answer, and answer SUCCESS.
fn check_ack_statuses(ack: &PipelineAckProto, pipeline_size: usize) -> std::result::Result<(), String> {
    let statuses = ack_statuses(ack);
    if statuses.len() != pipeline_size {
        return Err(format!(
            "ack {} carries {} statuses for a pipeline of {pipeline_size}",
            ack.seqno,
            statuses.len()
        ));
    }
    if let Some((index, status)) = statuses.iter().enumerate().find(|(_, s)| **s != Status::Success) {
        return Err(format!("ack {}: pipeline node {index} answered {status:?}", ack.seqno));
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
        assert!(check_ack_statuses(&pipeline_ack(3, &[Status::Success; 2]), 3).is_err());
        let bad = pipeline_ack(3, &[Status::Success, Status::ErrorChecksum, Status::Success]);
        let reason = check_ack_statuses(&bad, 3).unwrap_err();
        assert!(reason.contains("node 1"), "{reason}");
    }
}
