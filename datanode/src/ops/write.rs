//! WRITE_BLOCK: stages, roles, the mirror request, packet planning and ack composition.
//!
//! Per packet, an engine does: read it whole; forward the raw bytes to the mirror;
//! [`ReceiveState::plan`] it; [`ReceiveState::verify`] when this node verifies; write
//! `data[plan.data_skip..]` at `plan.data_file_offset` and
//! [`ReceiveState::disk_checksums`] at chunk `plan.first_disk_chunk`; sync if asked;
//! [`ReceiveState::commit`]; then queue the ack. The last packet finalizes through
//! [`complete`] before its ack goes upstream.

use std::borrow::Cow;

use ringfs_common::checksum::{ChecksumKind, DataChecksum};
use ringfs_common::dtp::{ack_statuses, pipeline_ack, OpRequest, PacketHeader};
use ringfs_common::limits::PIPELINE_TARGETS_MAX;
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage as Stage;
use ringfs_common::proto::hdfs::{
    BlockOpResponseProto, DatanodeInfoProto, ExtendedBlockProto, OpWriteBlockProto, PipelineAckProto, Status,
};

use super::OpError;
use crate::events::{EventSink, ReplicaEvent, ReplicaEventKind};
use crate::store::{BlockStore, RbwWriter, Replica, ReplicaState};

/// Who is writing: a client pipeline (acks flow back) or another datanode copying a
/// replica (empty client name: no connect-ack, no packet acks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterRole {
    Client { name: String },
    Datanode,
}

/// A validated WRITE_BLOCK request.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub proto: OpWriteBlockProto,
    pub stage: Stage,
    pub role: WriterRole,
    /// Checksum the packets carry.
    pub client_checksum: DataChecksum,
}

/// The downstream datanode and what to send it.
#[derive(Debug, Clone)]
pub struct MirrorTarget {
    /// `ip:xferPort`, also the `firstBadLink` reported if it fails.
    pub addr: String,
    pub request: OpRequest,
}

impl WriteRequest {
    pub fn parse(proto: OpWriteBlockProto) -> Result<WriteRequest, OpError> {
        let stage = Stage::try_from(proto.stage)
            .map_err(|_| OpError::invalid(format!("unknown block construction stage {}", proto.stage)))?;
        if proto.targets.len() > PIPELINE_TARGETS_MAX {
            return Err(OpError::invalid(format!(
                "{} downstream targets exceed the limit of {PIPELINE_TARGETS_MAX}",
                proto.targets.len()
            )));
        }
        let requested = &proto.requested_checksum;
        let kind = ChecksumKind::from_proto(requested.r#type)
            .ok_or_else(|| OpError::invalid(format!("unknown checksum type {}", requested.r#type)))?;
        let client_checksum = DataChecksum::new(kind, requested.bytes_per_checksum)
            .map_err(|source| OpError::Checksum { source })?;
        let name = &proto.header.client_name;
        let role =
            if name.is_empty() { WriterRole::Datanode } else { WriterRole::Client { name: name.clone() } };
        if matches!(stage, Stage::DataStreaming | Stage::PipelineClose) {
            return Err(OpError::invalid(format!("{} is not a pipeline setup stage", stage.as_str_name())));
        }
        Ok(WriteRequest { proto, stage, role, client_checksum })
    }

    pub fn block(&self) -> &ExtendedBlockProto {
        &self.proto.header.base_header.block
    }

    pub fn is_client(&self) -> bool {
        matches!(self.role, WriterRole::Client { .. })
    }

    /// TRANSFER_RBW / TRANSFER_FINALIZED: a copy for a pipeline recovery.
    pub fn is_transfer(&self) -> bool {
        matches!(self.stage, Stage::TransferRbw | Stage::TransferFinalized)
    }

    /// Does the upstream expect a connect-ack and per-packet acks? (Java: client
    /// writes only, not DN-to-DN copies nor transfers.)
    pub fn sends_acks(&self) -> bool {
        self.is_client() && !self.is_transfer()
    }

    /// Does the upstream expect a final BlockOpResponse after the last packet?
    pub fn sends_close_ack(&self) -> bool {
        self.is_transfer()
    }

    /// The genstamp the replica ends up with: latestGenerationStamp for appends and
    /// recoveries, unless a client left it at 0 or at the old value (hdfs-native).
    pub fn new_gen_stamp(&self) -> u64 {
        self.proto.latest_generation_stamp.max(self.block().generation_stamp)
    }

    /// The downstream target and the request to forward, targets shifted by one.
    pub fn mirror(&self) -> Option<MirrorTarget> {
        let first = self.proto.targets.first()?;
        let mut request = self.proto.clone();
        request.targets.remove(0);
        request.storage_type = shift(&mut request.target_storage_types).or(request.storage_type);
        request.storage_id = shift(&mut request.target_storage_ids).or(request.storage_id);
        if let Some(pinning) = shift(&mut request.target_pinnings) {
            request.pinning = Some(pinning);
        }
        Some(MirrorTarget { addr: xfer_addr(first), request: OpRequest::WriteBlock(request) })
    }

    /// Does this node verify packet checksums? Java: the last node of a client
    /// pipeline, every DN-to-DN copy, and any node translating checksums.
    pub fn verifies(&self, has_mirror: bool, disk_checksum: DataChecksum) -> bool {
        !has_mirror || !self.is_client() || self.client_checksum != disk_checksum
    }
}

fn shift<T>(values: &mut Vec<T>) -> Option<T> {
    (!values.is_empty()).then(|| values.remove(0))
}

/// `ip:xferPort` of a datanode.
pub fn xfer_addr(node: &DatanodeInfoProto) -> String {
    format!("{}:{}", node.id.ip_addr, node.id.xfer_port)
}

/// The connect-ack sent upstream: the mirror's status (or ERROR) and the first bad link.
pub fn connect_ack(status: Status, first_bad_link: &str) -> BlockOpResponseProto {
    BlockOpResponseProto {
        status: status as i32,
        first_bad_link: Some(first_bad_link.to_string()),
        ..Default::default()
    }
}

/// What the replica side of a write is after setup.
#[derive(Debug)]
pub enum WriteTarget {
    /// Packets follow; write them into this replica.
    Receive(ReceiveState),
    /// PIPELINE_CLOSE_RECOVERY: the replica was finalized at setup; no packets follow.
    Closed(Replica),
}

/// Creates or reopens the replica as the stage asks. A client-created RBW is reported
/// RECEIVING; a close recovery is reported RECEIVED.
pub fn open_replica(
    store: &BlockStore,
    events: &EventSink,
    request: &WriteRequest,
) -> Result<WriteTarget, OpError> {
    let block = request.block();
    store.check_pool(&block.pool_id)?;
    let (id, gs, new_gs) = (block.block_id, block.generation_stamp, request.new_gen_stamp());
    let proto = &request.proto;
    let temporary = !request.is_client() || request.is_transfer();
    let writer = match request.stage {
        Stage::PipelineSetupCreate | Stage::TransferRbw | Stage::TransferFinalized => {
            let state = if temporary { ReplicaState::Temporary } else { ReplicaState::Rbw };
            // Java sends the block size as numBytes: a free-space hint.
            let size_hint = block.num_bytes.unwrap_or(0);
            store.create(id, gs, request.client_checksum, state, size_hint)?
        }
        Stage::PipelineSetupAppend => store.append(id, gs, proto.min_bytes_rcvd, new_gs)?,
        Stage::PipelineSetupAppendRecovery => store.recover_append(id, gs, new_gs, proto.min_bytes_rcvd)?,
        Stage::PipelineSetupStreamingRecovery => {
            store.recover_rbw(id, gs, new_gs, proto.min_bytes_rcvd, proto.max_bytes_rcvd)?
        }
        Stage::PipelineCloseRecovery if request.is_client() => {
            let replica = store.recover_close(id, gs, new_gs, proto.min_bytes_rcvd)?;
            events.send(event(ReplicaEventKind::Received, &replica));
            return Ok(WriteTarget::Closed(replica));
        }
        stage => return Err(OpError::invalid(format!("stage {} from a datanode", stage.as_str_name()))),
    };
    if writer.state() == ReplicaState::Rbw {
        events.send(ReplicaEvent {
            kind: ReplicaEventKind::Receiving,
            block_id: writer.block_id(),
            gen_stamp: writer.gen_stamp(),
            length: writer.bytes_on_disk(),
            volume: writer.volume(),
        });
    }
    Ok(WriteTarget::Receive(ReceiveState::new(writer, request.client_checksum)))
}

fn event(kind: ReplicaEventKind, replica: &Replica) -> ReplicaEvent {
    ReplicaEvent {
        kind,
        block_id: replica.block_id,
        gen_stamp: replica.gen_stamp,
        length: replica.visible_len(),
        volume: replica.volume,
    }
}

/// After the last packet: finalize (or, for TRANSFER_RBW, make the copy an RBW
/// replica), and report RECEIVED for a finalized one.
pub fn complete(
    store: &BlockStore,
    events: &EventSink,
    request: &WriteRequest,
    state: ReceiveState,
) -> Result<Replica, OpError> {
    let writer = state.into_writer();
    if request.stage == Stage::TransferRbw {
        return Ok(store.convert_temporary_to_rbw(writer)?);
    }
    let replica = store.finalize(writer)?;
    events.send(event(ReplicaEventKind::Received, &replica));
    Ok(replica)
}

/// Gives up on a write that did not complete: an unfinished copy from another datanode
/// is deleted; an RBW replica stays for the namenode to recover.
pub fn abandon(store: &BlockStore, state: ReceiveState) {
    store.abandon(state.into_writer());
}

/// Where a packet's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketPlan {
    pub header: PacketHeader,
    /// Heartbeat: nothing to write, ack with seqno -1.
    pub heartbeat: bool,
    /// Leading data bytes already on disk (a retransmission after recovery).
    pub data_skip: usize,
    /// Where `data[data_skip..]` goes in the block file.
    pub data_file_offset: u64,
    /// Leading packet chunks whose checksums are already on disk.
    pub chunk_skip: usize,
    /// Disk chunk index of the first checksum written.
    pub first_disk_chunk: u64,
    /// Chunks whose checksums are written.
    pub chunks_written: usize,
    /// The packet starts inside a chunk: `(chunk start, bytes of it already on disk)`;
    /// that chunk's checksum is recomputed over the old bytes and the new ones.
    pub partial_prefix: Option<(u64, usize)>,
    /// Block offset just past the packet.
    pub end_offset: u64,
}

impl PacketPlan {
    /// Data bytes written to disk.
    pub fn write_len(&self) -> usize {
        self.header.data_len as usize - self.data_skip
    }
}

/// The receiving side of one write: the replica and the checksum rules.
#[derive(Debug)]
pub struct ReceiveState {
    writer: RbwWriter,
    client_checksum: DataChecksum,
}

impl ReceiveState {
    pub fn new(writer: RbwWriter, client_checksum: DataChecksum) -> ReceiveState {
        ReceiveState { writer, client_checksum }
    }

    pub fn writer(&self) -> &RbwWriter {
        &self.writer
    }

    pub fn into_writer(self) -> RbwWriter {
        self.writer
    }

    pub fn client_checksum(&self) -> DataChecksum {
        self.client_checksum
    }

    pub fn disk_checksum(&self) -> DataChecksum {
        self.writer.checksum()
    }

    /// Must this node compute the stored checksums itself (client sent none, or a
    /// different algorithm or chunk size than the replica stores)?
    pub fn translates(&self) -> bool {
        self.client_checksum != self.disk_checksum()
    }

    /// Plans one packet against the bytes on disk.
    pub fn plan(&self, header: PacketHeader) -> Result<PacketPlan, OpError> {
        let bytes_on_disk = self.writer.bytes_on_disk();
        let mut plan = PacketPlan {
            header,
            heartbeat: header.is_heartbeat(),
            data_skip: 0,
            data_file_offset: bytes_on_disk,
            chunk_skip: 0,
            first_disk_chunk: 0,
            chunks_written: 0,
            partial_prefix: None,
            end_offset: bytes_on_disk,
        };
        if plan.heartbeat || header.data_len == 0 {
            return Ok(plan);
        }
        if header.offset_in_block < 0 {
            return Err(OpError::invalid(format!("negative packet offset {}", header.offset_in_block)));
        }
        let offset = header.offset_in_block as u64;
        let data_len = header.data_len as u64;
        let end = offset + data_len;
        if offset > bytes_on_disk {
            return Err(OpError::invalid(format!(
                "packet at offset {offset} leaves a gap after the {bytes_on_disk} bytes on disk"
            )));
        }
        let bpc = u64::from(self.disk_checksum().bytes_per_checksum);
        let in_chunk = offset % bpc;
        if in_chunk != 0 && in_chunk + data_len > bpc {
            return Err(OpError::invalid(format!(
                "packet at offset {offset} starts inside a chunk but carries {data_len} bytes past its end"
            )));
        }
        plan.end_offset = end.max(bytes_on_disk);
        if end <= bytes_on_disk {
            plan.data_skip = data_len as usize;
            return Ok(plan);
        }
        plan.data_skip = (bytes_on_disk - offset) as usize;
        // Chunks wholly on disk keep their checksums; the first written chunk is the
        // one holding `bytes_on_disk` (or the packet's own first chunk).
        let first_written_start = (bytes_on_disk - bytes_on_disk % bpc).max(offset);
        plan.chunk_skip = ((first_written_start - offset) / bpc) as usize;
        plan.first_disk_chunk = first_written_start / bpc;
        plan.chunks_written = (end - first_written_start).div_ceil(bpc) as usize;
        if !first_written_start.is_multiple_of(bpc) {
            plan.partial_prefix =
                Some((first_written_start - first_written_start % bpc, (first_written_start % bpc) as usize));
        }
        Ok(plan)
    }

    /// Verifies the packet against the client's checksums (callers decide whether this
    /// node verifies at all: [`WriteRequest::verifies`]).
    pub fn verify(&self, plan: &PacketPlan, checksums: &[u8], data: &[u8]) -> Result<(), OpError> {
        if self.client_checksum.kind == ChecksumKind::Null || plan.heartbeat {
            return Ok(());
        }
        self.client_checksum
            .verify(data, checksums, plan.header.offset_in_block.max(0) as u64)
            .map_err(|source| OpError::Checksum { source })
    }

    /// The checksum bytes to store at chunk `plan.first_disk_chunk`: the packet's own
    /// when they are what the disk holds (the common case: no copy), else computed.
    pub fn disk_checksums<'a>(
        &self,
        plan: &PacketPlan,
        checksums: &'a [u8],
        data: &[u8],
    ) -> Result<Cow<'a, [u8]>, OpError> {
        let disk = self.disk_checksum();
        let size = disk.kind.size();
        if plan.chunks_written == 0 || size == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        let reuse = !self.translates() && plan.partial_prefix.is_none();
        if reuse {
            let start = plan.chunk_skip * size;
            let end = start + plan.chunks_written * size;
            return checksums.get(start..end).map(Cow::Borrowed).ok_or_else(|| {
                OpError::invalid(format!("packet carries {} checksum bytes, {end} needed", checksums.len()))
            });
        }
        // Recompute the written chunks over disk bytes + packet bytes.
        let offset = plan.header.offset_in_block as u64;
        let bpc = u64::from(disk.bytes_per_checksum);
        let mut out = Vec::with_capacity(plan.chunks_written * size);
        let mut chunk_start = plan.first_disk_chunk * bpc;
        let end = offset + data.len() as u64;
        while chunk_start < end {
            let chunk_end = (chunk_start + bpc).min(end);
            let mut bytes = Vec::with_capacity((chunk_end - chunk_start) as usize);
            if chunk_start < offset {
                let mut old = vec![0u8; (offset - chunk_start) as usize];
                self.writer.read_data_at(chunk_start, &mut old)?;
                bytes.extend_from_slice(&old);
            }
            let from = chunk_start.max(offset) - offset;
            bytes.extend_from_slice(&data[from as usize..(chunk_end - offset) as usize]);
            out.extend_from_slice(&disk.kind.crc(&bytes).to_be_bytes());
            chunk_start = chunk_end;
        }
        debug_assert_eq!(out.len(), plan.chunks_written * size);
        Ok(Cow::Owned(out))
    }

    /// Writes a planned packet with positioned writes: data, then checksums (so a
    /// crash never leaves a checksum without its data), then fdatasync if asked.
    pub fn write(&self, plan: &PacketPlan, checksums: &[u8], data: &[u8]) -> Result<(), OpError> {
        if plan.write_len() > 0 {
            self.writer.write_data_at(plan.data_file_offset, &data[plan.data_skip..])?;
            let stored = self.disk_checksums(plan, checksums, data)?;
            self.writer.write_checksums_at(plan.first_disk_chunk, &stored)?;
        }
        if plan.header.sync_block {
            self.writer.sync()?;
        }
        Ok(())
    }

    /// Records a written packet: the bytes on disk grow to its end.
    pub fn commit(&self, plan: &PacketPlan) {
        if !plan.heartbeat && plan.end_offset > self.writer.bytes_on_disk() {
            self.writer.progress().set_bytes_on_disk(plan.end_offset);
        }
    }

    /// Records an acknowledged packet: readers may now see through its end.
    pub fn acknowledge(&self, end_offset: u64) {
        self.writer.progress().advance_bytes_acked(end_offset.min(self.writer.bytes_on_disk()));
    }
}

/// What came back from the mirror for one packet.
#[derive(Debug, Clone, Copy)]
pub enum Downstream<'a> {
    /// No mirror: this node is the last of the pipeline.
    None,
    Ack(&'a PipelineAckProto),
    /// The mirror failed (connection lost, bad ack): report it as ERROR.
    Failed,
}

/// The ack sent upstream: this node's status first, then every downstream status in
/// order (both `reply` and `flag` filled).
pub fn compose_ack(seqno: i64, own: Status, downstream: Downstream<'_>) -> PipelineAckProto {
    let mut statuses = vec![own];
    match downstream {
        Downstream::None => {}
        Downstream::Ack(ack) => statuses.extend(ack_statuses(ack)),
        Downstream::Failed => statuses.push(Status::Error),
    }
    pipeline_ack(seqno, &statuses)
}

/// Did the mirror report that it received corrupt data from us? Then this node is the
/// one at fault (the mirror verified): Java stops the write so upstream marks us bad.
pub fn mirror_reports_corruption(ack: &PipelineAckProto) -> bool {
    ack_statuses(ack).first() == Some(&Status::ErrorChecksum)
}
