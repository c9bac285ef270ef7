//! READ_BLOCK: streams a byte range of one replica, verifying each packet's chunk
//! checksums before handing out its bytes.
//!
//! ```text
//! client -> DN   version 28 | op 81 | OpReadBlockProto{offset, len}
//! DN -> client   BlockOpResponseProto{SUCCESS, readOpChecksumInfo{checksum, chunkOffset}}
//! DN -> client   packets seqno 0, 1, ... from chunkOffset through the chunk holding the
//!                last requested byte, then one empty packet with lastPacketInBlock
//! client -> DN   ClientReadStatusProto{CHECKSUM_OK when verified, else SUCCESS}
//! ```

use std::sync::Arc;

use ringfs_common::checksum::{ChecksumKind, DataChecksum};
use ringfs_common::dtp::{OpRequest, PacketLayout};
use ringfs_common::proto::common::TokenProto;
use ringfs_common::proto::hdfs::{ClientReadStatusProto, ExtendedBlockProto, OpReadBlockProto, Status};

use crate::datanode::{self, client_header, DnReader, DnWriter, PeerCache};
use crate::error::{DfsError, Result};

/// One READ_BLOCK stream.
pub struct BlockReader {
    reader: DnReader,
    writer: DnWriter,
    block_id: u64,
    checksum: DataChecksum,
    verify_checksum: bool,
    /// Offset in the block of the next byte handed out.
    position: u64,
    /// Offset in the block just past the last requested byte.
    end: u64,
    next_seqno: i64,
    /// offsetInBlock the next packet must carry.
    next_packet_offset: u64,
    /// The packet being handed out and how many of its data bytes are used up.
    current: Option<(PacketLayout, usize)>,
    finished: bool,
    peer_cache: Option<Arc<PeerCache>>,
}

/// Parameters of one READ_BLOCK.
pub struct ReadBlockRequest<'a> {
    pub addr: &'a str,
    pub block: &'a ExtendedBlockProto,
    pub token: &'a TokenProto,
    pub client_name: &'a str,
    /// Offset in the block of the first byte wanted.
    pub offset: u64,
    /// Bytes wanted; the range must lie within the replica.
    pub len: u64,
    pub verify_checksum: bool,
    /// Where to find an idle connection to `addr` and to leave this one when done.
    pub peer_cache: Option<Arc<PeerCache>>,
}

impl BlockReader {
    /// Connects (or reuses an idle connection), sends READ_BLOCK and checks the
    /// datanode's answer.
    pub async fn open(request: ReadBlockRequest<'_>) -> Result<BlockReader> {
        assert!(request.len > 0, "empty reads never reach a datanode");
        let op = OpRequest::ReadBlock(OpReadBlockProto {
            header: client_header(request.block, request.token, request.client_name),
            offset: request.offset,
            len: request.len,
            send_checksums: Some(true),
            caching_strategy: None,
        });
        let cached = request.peer_cache.as_ref().and_then(|cache| cache.take(request.addr));
        let attempt = match cached {
            Some((mut reader, mut writer)) => {
                match start_op(&mut reader, &mut writer, &op).await {
                    Ok(response) => Some((reader, writer, response)),
                    // The datanode may have closed the idle connection: use a fresh one.
                    Err(DfsError::DatanodeIo { .. }) => None,
                    Err(other) => return Err(other),
                }
            }
            None => None,
        };
        let (reader, writer, response) = match attempt {
            Some(started) => started,
            None => {
                let (mut reader, mut writer) = datanode::connect(request.addr).await?;
                let response = start_op(&mut reader, &mut writer, &op).await?;
                (reader, writer, response)
            }
        };
        let node = request.addr;
        let sequence_err = |reason: String| DfsError::DatanodeSequence { node: node.to_string(), reason };
        let info = response
            .read_op_checksum_info
            .ok_or_else(|| sequence_err("READ_BLOCK answer lacks readOpChecksumInfo".to_string()))?;
        let kind = ChecksumKind::from_proto(info.checksum.r#type)
            .ok_or_else(|| sequence_err(format!("unknown checksum type {}", info.checksum.r#type)))?;
        let checksum = DataChecksum::new(kind, info.checksum.bytes_per_checksum).map_err(|source| {
            DfsError::Checksum { block_id: request.block.block_id, node: node.to_string(), source }
        })?;
        let chunk_offset = info.chunk_offset;
        // Java's rule: the read starts at the chunk holding `offset`, never after it.
        if chunk_offset > request.offset
            || request.offset - chunk_offset >= u64::from(checksum.bytes_per_checksum)
        {
            return Err(sequence_err(format!(
                "chunkOffset {chunk_offset} does not start the chunk holding offset {}",
                request.offset
            )));
        }
        Ok(BlockReader {
            reader,
            writer,
            block_id: request.block.block_id,
            checksum,
            verify_checksum: request.verify_checksum && kind != ChecksumKind::Null,
            position: request.offset,
            end: request.offset + request.len,
            next_seqno: 0,
            next_packet_offset: chunk_offset,
            current: None,
            finished: false,
            peer_cache: request.peer_cache,
        })
    }

    pub fn node(&self) -> &str {
        self.reader.node()
    }

    /// Bytes of the requested range not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.end - self.position
    }

    /// Copies up to `out.len()` bytes of the range into `out`; 0 once it is all read (at
    /// which point the read status has been sent).
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.position == self.end {
            self.finish().await?;
            return Ok(0);
        }
        if self.current.is_none() {
            self.current = Some((self.next_data_packet().await?, 0));
        }
        let (layout, used) = self.current.as_mut().expect("a packet is current");
        let packet_offset = layout.header.offset_in_block as u64;
        let skip = (self.position - packet_offset) as usize;
        debug_assert!(skip >= *used);
        *used = skip;
        let available = layout.data_len - skip;
        let wanted = (self.end - self.position).min(out.len() as u64) as usize;
        let count = available.min(wanted);
        let (_, data) = self.reader.packet_parts(layout);
        out[..count].copy_from_slice(&data[skip..skip + count]);
        self.position += count as u64;
        *used += count;
        let layout = *layout;
        if *used == layout.data_len || self.position == self.end {
            self.reader.consume(&layout);
            self.current = None;
        }
        Ok(count)
    }

    /// Fills `out` completely from the range.
    pub async fn read_exact(&mut self, mut out: &mut [u8]) -> Result<()> {
        while !out.is_empty() {
            let count = self.read(out).await?;
            if count == 0 {
                return Err(self.sequence_err(format!("range ended {} bytes early", out.len())));
            }
            out = &mut out[count..];
        }
        Ok(())
    }

    fn sequence_err(&self, reason: String) -> DfsError {
        DfsError::DatanodeSequence { node: self.reader.node().to_string(), reason }
    }

    async fn next_data_packet(&mut self) -> Result<PacketLayout> {
        let layout = self.reader.next_packet(Some(self.checksum)).await?;
        let header = layout.header;
        if header.seqno != self.next_seqno {
            return Err(self.sequence_err(format!(
                "expected packet seqno {} but received {}",
                self.next_seqno, header.seqno
            )));
        }
        if header.offset_in_block < 0 || header.offset_in_block as u64 != self.next_packet_offset {
            return Err(self.sequence_err(format!(
                "packet {} starts at block offset {}, expected {}",
                header.seqno, header.offset_in_block, self.next_packet_offset
            )));
        }
        if layout.data_len == 0 {
            return Err(self.sequence_err(format!(
                "empty packet {} at block offset {} before the requested end {}",
                header.seqno, header.offset_in_block, self.end
            )));
        }
        if self.verify_checksum {
            let (checksums, data) = self.reader.packet_parts(&layout);
            if let Err(source) = self.checksum.verify(data, checksums, header.offset_in_block as u64) {
                return Err(DfsError::Checksum {
                    block_id: self.block_id,
                    node: self.reader.node().to_string(),
                    source,
                });
            }
        }
        self.next_seqno += 1;
        self.next_packet_offset += layout.data_len as u64;
        Ok(layout)
    }

    /// Reads the empty end-of-read packet and sends the client read status, leaving the
    /// datanode free to reuse or close the connection.
    pub async fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        if self.position != self.end {
            return Err(self.sequence_err("finish() before the requested range was read".to_string()));
        }
        if let Some((layout, _)) = self.current.take() {
            self.reader.consume(&layout);
        }
        let layout = self.reader.next_packet(Some(self.checksum)).await?;
        if !layout.header.last_packet_in_block || layout.data_len != 0 {
            return Err(self.sequence_err(format!(
                "expected the empty end-of-read packet, got seqno {} with {} bytes",
                layout.header.seqno, layout.data_len
            )));
        }
        self.reader.consume(&layout);
        let status = if self.verify_checksum { Status::ChecksumOk } else { Status::Success };
        self.writer.send_delimited(&ClientReadStatusProto { status: status as i32 }).await?;
        self.finished = true;
        Ok(())
    }

    /// Finishes the read and leaves the connection in the peer cache for the next op.
    pub async fn finish_and_release(mut self) -> Result<()> {
        self.finish().await?;
        match self.peer_cache.take() {
            Some(cache) => cache.put(self.reader, self.writer),
            None => self.writer.shutdown().await,
        }
        Ok(())
    }
}

/// Sends the op and reads the datanode's (successful) answer.
async fn start_op(
    reader: &mut DnReader,
    writer: &mut DnWriter,
    op: &OpRequest,
) -> Result<ringfs_common::proto::hdfs::BlockOpResponseProto> {
    writer.send_op(op).await?;
    reader.read_op_response("READ_BLOCK").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::dtp::{self, PacketHeader};
    use ringfs_common::proto::hdfs::{BlockOpResponseProto, ChecksumProto, ReadOpChecksumInfoProto};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the fake datanode misbehaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        WrongSeqno,
        CorruptData,
        NoEndPacket,
    }

    /// Serves one READ_BLOCK of `block` in packets of four 512-byte chunks, then returns
    /// the client's read status.
    async fn fake_datanode(listener: TcpListener, block: Vec<u8>, fault: Fault) -> Option<i32> {
        let (mut socket, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut buffer = Vec::new();
        serve_read(&mut socket, &mut buffer, &block, fault).await
    }

    /// Answers one READ_BLOCK arriving on `socket` (bytes already read are in `buffer`);
    /// returns the client's read status, `None` if it sent none.
    async fn serve_read(
        socket: &mut tokio::net::TcpStream,
        buffer: &mut Vec<u8>,
        block: &[u8],
        fault: Fault,
    ) -> Option<i32> {
        let request = loop {
            if let Some((request, consumed)) = OpRequest::decode(buffer).unwrap() {
                buffer.drain(..consumed);
                break request;
            }
            let mut chunk = [0u8; 1024];
            let count = socket.read(&mut chunk).await.unwrap();
            assert!(count > 0, "client closed before sending an op");
            buffer.extend_from_slice(&chunk[..count]);
        };
        let OpRequest::ReadBlock(op) = request else { panic!("expected READ_BLOCK") };
        let checksum = DataChecksum::CRC32C_512;
        let response = BlockOpResponseProto {
            status: Status::Success as i32,
            read_op_checksum_info: Some(ReadOpChecksumInfoProto {
                checksum: ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
                chunk_offset: op.offset - op.offset % 512,
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        dtp::encode_delimited(&response, &mut out);
        let start = (op.offset - op.offset % 512) as usize;
        let end = ((op.offset + op.len).div_ceil(512) * 512).min(block.len() as u64) as usize;
        let mut seqno = 0;
        let mut offset = start;
        while offset < end {
            let data_end = (offset + 4 * 512).min(end);
            let mut data = block[offset..data_end].to_vec();
            let checksums = checksum.compute_vec(&data);
            if fault == Fault::CorruptData {
                data[0] ^= 1;
            }
            let header = PacketHeader {
                offset_in_block: offset as i64,
                seqno: if fault == Fault::WrongSeqno && seqno == 1 { 5 } else { seqno },
                last_packet_in_block: false,
                data_len: data.len() as i32,
                sync_block: false,
            };
            header.encode_prefix(checksums.len(), &mut out);
            out.extend_from_slice(&checksums);
            out.extend_from_slice(&data);
            seqno += 1;
            offset = data_end;
        }
        if fault != Fault::NoEndPacket {
            let last = PacketHeader {
                offset_in_block: end as i64,
                seqno,
                last_packet_in_block: true,
                data_len: 0,
                sync_block: false,
            };
            last.encode_prefix(0, &mut out);
        } else {
            // Another data packet where the empty one belongs.
            let header = PacketHeader {
                offset_in_block: end as i64,
                seqno,
                last_packet_in_block: false,
                data_len: 512,
                sync_block: false,
            };
            header.encode_prefix(4, &mut out);
            out.extend_from_slice(&checksum.compute_vec(&[0u8; 512]));
            out.extend_from_slice(&[0u8; 512]);
        }
        if socket.write_all(&out).await.is_err() {
            return None;
        }
        loop {
            if let Ok(Some((status, consumed))) =
                dtp::decode_delimited::<ClientReadStatusProto>(buffer, "status")
            {
                buffer.drain(..consumed);
                return Some(status.status);
            }
            let mut chunk = [0u8; 64];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(count) => buffer.extend_from_slice(&chunk[..count]),
            }
        }
    }

    async fn read_with(fault: Fault, offset: u64, len: u64) -> (Result<Vec<u8>>, Option<i32>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let block: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let server = tokio::spawn(fake_datanode(listener, block.clone(), fault));
        let extended = ExtendedBlockProto {
            pool_id: "BP-1".into(),
            block_id: 1,
            generation_stamp: 1001,
            num_bytes: Some(5000),
        };
        let token = TokenProto::default();
        let result = async {
            let request = ReadBlockRequest {
                addr: &addr,
                block: &extended,
                token: &token,
                client_name: "test",
                offset,
                len,
                verify_checksum: true,
                peer_cache: None,
            };
            let mut reader = BlockReader::open(request).await?;
            let mut out = vec![0u8; len as usize];
            // Odd-sized reads cross packet boundaries.
            let mut filled = 0;
            while filled < out.len() {
                let end = (filled + 333).min(out.len());
                let count = reader.read(&mut out[filled..end]).await?;
                assert!(count > 0);
                filled += count;
            }
            reader.finish().await?;
            Ok(out)
        }
        .await;
        let status = server.await.unwrap();
        (result, status, block)
    }

    #[tokio::test]
    async fn reads_a_mid_block_range_and_reports_checksum_ok() {
        let (result, status, block) = read_with(Fault::None, 700, 3001).await;
        assert_eq!(result.unwrap(), block[700..3701]);
        assert_eq!(status, Some(Status::ChecksumOk as i32));
    }

    #[tokio::test]
    async fn out_of_order_packets_are_refused() {
        let (result, _, _) = read_with(Fault::WrongSeqno, 0, 5000).await;
        let error = result.unwrap_err();
        assert!(
            matches!(&error, DfsError::DatanodeSequence { reason, .. } if reason.contains("seqno")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn corrupt_data_is_a_checksum_error() {
        let (result, status, _) = read_with(Fault::CorruptData, 0, 5000).await;
        assert!(matches!(result, Err(DfsError::Checksum { block_id: 1, .. })));
        assert_eq!(status, None, "no success status after bad data");
    }

    #[tokio::test]
    async fn a_finished_connection_is_reused_through_the_peer_cache() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let block: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        let served = block.clone();
        // One accepted connection serves both reads; a second connect would be refused.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            drop(listener);
            let mut buffer = Vec::new();
            let first = serve_read(&mut socket, &mut buffer, &served, Fault::None).await;
            let second = serve_read(&mut socket, &mut buffer, &served, Fault::None).await;
            (first, second)
        });
        let cache = Arc::new(PeerCache::default());
        let extended = ExtendedBlockProto {
            pool_id: "BP-1".into(),
            block_id: 2,
            generation_stamp: 1001,
            num_bytes: Some(3000),
        };
        let token = TokenProto::default();
        for (offset, len) in [(0u64, 3000u64), (1000, 700)] {
            let request = ReadBlockRequest {
                addr: &addr,
                block: &extended,
                token: &token,
                client_name: "test",
                offset,
                len,
                verify_checksum: true,
                peer_cache: Some(Arc::clone(&cache)),
            };
            let mut reader = BlockReader::open(request).await.unwrap();
            let mut out = vec![0u8; len as usize];
            reader.read_exact(&mut out).await.unwrap();
            assert_eq!(out, block[offset as usize..(offset + len) as usize]);
            reader.finish_and_release().await.unwrap();
        }
        let ok = Some(Status::ChecksumOk as i32);
        assert_eq!(server.await.unwrap(), (ok, ok));
    }

    #[tokio::test]
    async fn a_missing_end_packet_is_refused() {
        let (result, _, _) = read_with(Fault::NoEndPacket, 0, 5000).await;
        let error = result.unwrap_err();
        assert!(error.to_string().contains("end-of-read"), "{error}");
    }
}
