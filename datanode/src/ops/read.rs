//! READ_BLOCK (and the sending side of DN-to-DN copies): validation and packet planning.
//!
//! A read of `[offset, offset + len)` is served from `chunk_offset` (offset rounded
//! down to a chunk) through the end of the chunk holding the last requested byte, in
//! packets of [`READ_PACKET_DATA_SIZE`] data bytes, then one empty last packet. Each
//! packet's checksums come from the `.meta` file; only the last partial chunk of a
//! replica still being written gets a fresh CRC, because its stored one may already
//! cover bytes past the visible length.

use ringfs_common::checksum::{ChecksumKind, DataChecksum};
use ringfs_common::dtp::PacketHeader;
use ringfs_common::limits::READ_PACKET_DATA_SIZE;
use ringfs_common::proto::hdfs::{
    BlockOpResponseProto, ChecksumProto, OpReadBlockProto, ReadOpChecksumInfoProto, Status,
};

use super::OpError;
use crate::store::{BlockStore, ReplicaReader, StoreError};

/// A validated read and everything needed to send it.
#[derive(Debug)]
pub struct ReadPlan {
    pub reader: ReplicaReader,
    /// Checksum stored on disk.
    pub disk_checksum: DataChecksum,
    /// Checksum announced to the client: the stored one, or NULL when it asked for none.
    pub wire_checksum: DataChecksum,
    /// First byte sent (a chunk boundary).
    pub chunk_offset: u64,
    /// One past the last byte sent.
    pub end_offset: u64,
    /// Data bytes per packet (whole chunks).
    pub packet_data_max: usize,
    /// `(chunk index, crc)` to send instead of the stored checksum of that chunk.
    pub fresh_last_crc: Option<(u64, u32)>,
    /// OS readahead ahead of the packet being sent (`dfs.datanode.readahead.bytes`;
    /// 0 = none). Set with [`ReadPlan::with_readahead`].
    pub readahead_bytes: u64,
}

/// Reads shorter than this get no readahead (Hadoop's BlockSender uses the same 256 KiB):
/// a positional read of 64 KiB must not pull megabytes off the disk.
pub const LONG_READ_THRESHOLD_BYTES: u64 = 256 * 1024;

/// Tracks what a long read has asked the kernel to read ahead, so a cold read streams from
/// the disk while its packets go out instead of waiting for one 64 KiB read at a time.
#[derive(Debug)]
pub struct Readahead {
    window: u64,
    /// One past the last byte already requested.
    requested_end: u64,
    limit: u64,
}

impl Readahead {
    /// The range `(offset, len)` of the block file to advise WILLNEED before sending the
    /// packet at `position`: the window ahead of it, asked for again once less than half
    /// of the window is left.
    pub fn next(&mut self, position: u64) -> Option<(u64, u64)> {
        if self.window == 0 || self.requested_end >= self.limit {
            return None;
        }
        if self.requested_end > position && self.requested_end - position > self.window / 2 {
            return None;
        }
        let start = self.requested_end.max(position);
        let end = position.saturating_add(self.window).min(self.limit);
        self.requested_end = end;
        (end > start).then(|| (start, end - start))
    }
}

/// One packet of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPacket {
    pub seqno: i64,
    pub offset_in_block: u64,
    pub data_len: usize,
    /// Checksum bytes the packet carries.
    pub checksum_len: usize,
    /// Chunk index of the packet's first chunk.
    pub first_chunk: u64,
    /// The empty packet that ends the read.
    pub last: bool,
}

impl ReadPacket {
    pub fn header(&self) -> PacketHeader {
        PacketHeader {
            offset_in_block: self.offset_in_block as i64,
            seqno: self.seqno,
            last_packet_in_block: self.last,
            data_len: self.data_len as i32,
            sync_block: false,
        }
    }
}

impl ReadPlan {
    /// Validates a READ_BLOCK request against the replica and plans it.
    pub fn prepare(store: &BlockStore, request: &OpReadBlockProto) -> Result<ReadPlan, OpError> {
        let block = &request.header.base_header.block;
        store.check_pool(&block.pool_id)?;
        let reader = store.open_for_read(block.block_id, block.generation_stamp)?;
        ReadPlan::for_range(reader, request.offset, request.len, request.send_checksums.unwrap_or(true))
    }

    /// Plans sending `[offset, offset + len)` of an open replica.
    pub fn for_range(
        reader: ReplicaReader,
        offset: u64,
        len: u64,
        send_checksums: bool,
    ) -> Result<ReadPlan, OpError> {
        let visible = reader.visible_len;
        let end = offset.checked_add(len).filter(|&end| end <= visible).ok_or_else(|| {
            OpError::invalid(format!(
                "offset {offset} and length {len} do not match block {} (visible length {visible})",
                reader.block_id
            ))
        })?;
        let disk_checksum = reader.checksum;
        let bytes_per_checksum = u64::from(disk_checksum.bytes_per_checksum);
        let chunk_offset = offset - offset % bytes_per_checksum;
        let end_offset = (end.div_ceil(bytes_per_checksum) * bytes_per_checksum).min(visible);
        let chunks_per_packet = (READ_PACKET_DATA_SIZE / disk_checksum.chunk_size()).max(1);
        let wire_checksum = if send_checksums {
            disk_checksum
        } else {
            DataChecksum { kind: ChecksumKind::Null, bytes_per_checksum: disk_checksum.bytes_per_checksum }
        };
        let mut plan = ReadPlan {
            disk_checksum,
            wire_checksum,
            chunk_offset,
            end_offset,
            packet_data_max: chunks_per_packet * disk_checksum.chunk_size(),
            fresh_last_crc: None,
            readahead_bytes: 0,
            reader,
        };
        plan.fresh_last_crc = plan.compute_fresh_last_crc()?;
        Ok(plan)
    }

    /// A replica being written may have rewritten the checksum of its last partial
    /// chunk to cover bytes past the visible length; send a CRC of what we send.
    fn compute_fresh_last_crc(&self) -> Result<Option<(u64, u32)>, StoreError> {
        let bytes_per_checksum = u64::from(self.disk_checksum.bytes_per_checksum);
        let partial = self.end_offset % bytes_per_checksum;
        if !self.reader.is_in_progress() || partial == 0 || self.wire_checksum.kind == ChecksumKind::Null {
            return Ok(None);
        }
        let chunk_start = self.end_offset - partial;
        let mut chunk = vec![0u8; partial as usize];
        self.reader.read_data(chunk_start, &mut chunk)?;
        Ok(Some((chunk_start / bytes_per_checksum, self.disk_checksum.kind.crc(&chunk))))
    }

    /// Asks for `bytes` of OS readahead (applied only to long reads).
    pub fn with_readahead(mut self, bytes: u64) -> ReadPlan {
        self.readahead_bytes = bytes;
        self
    }

    /// The readahead tracker of this read: inactive for short reads.
    pub fn readahead(&self) -> Readahead {
        let long = self.data_len() >= LONG_READ_THRESHOLD_BYTES;
        Readahead {
            window: if long { self.readahead_bytes } else { 0 },
            requested_end: self.chunk_offset,
            limit: self.end_offset,
        }
    }

    /// The SUCCESS response opening the read.
    pub fn response(&self) -> BlockOpResponseProto {
        BlockOpResponseProto {
            status: Status::Success as i32,
            read_op_checksum_info: Some(ReadOpChecksumInfoProto {
                checksum: ChecksumProto {
                    r#type: self.wire_checksum.kind.to_proto() as i32,
                    bytes_per_checksum: self.wire_checksum.bytes_per_checksum,
                },
                chunk_offset: self.chunk_offset,
            }),
            ..Default::default()
        }
    }

    /// Data bytes the read sends.
    pub fn data_len(&self) -> u64 {
        self.end_offset - self.chunk_offset
    }

    /// The packets in order, ending with the empty last packet.
    pub fn packets(&self) -> impl Iterator<Item = ReadPacket> + '_ {
        let bytes_per_checksum = u64::from(self.disk_checksum.bytes_per_checksum);
        let mut offset = self.chunk_offset;
        let mut seqno = 0i64;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let data_len = (self.end_offset - offset).min(self.packet_data_max as u64) as usize;
            let last = data_len == 0;
            let packet = ReadPacket {
                seqno,
                offset_in_block: offset,
                data_len,
                checksum_len: self.wire_checksum.checksum_len(data_len),
                first_chunk: offset / bytes_per_checksum,
                last,
            };
            done = last;
            offset += data_len as u64;
            seqno += 1;
            Some(packet)
        })
    }

    /// Fills `out` (exactly `packet.checksum_len` bytes) with the packet's checksums.
    pub fn fill_checksums(&self, packet: &ReadPacket, out: &mut [u8]) -> Result<(), StoreError> {
        assert_eq!(out.len(), packet.checksum_len, "checksum buffer sized by the plan");
        if out.is_empty() {
            return Ok(());
        }
        self.reader.read_checksums(packet.first_chunk, out)?;
        self.patch_checksums(packet, out);
        Ok(())
    }

    /// Replaces the stored checksum of the last partial chunk of a replica being
    /// written, for engines that read the meta file themselves.
    pub fn patch_checksums(&self, packet: &ReadPacket, out: &mut [u8]) {
        let Some((chunk, crc)) = self.fresh_last_crc else { return };
        let size = self.wire_checksum.kind.size();
        let chunks = (out.len() / size.max(1)) as u64;
        if size > 0 && chunk >= packet.first_chunk && chunk < packet.first_chunk + chunks {
            let at = (chunk - packet.first_chunk) as usize * size;
            out[at..at + size].copy_from_slice(&crc.to_be_bytes());
        }
    }
}
