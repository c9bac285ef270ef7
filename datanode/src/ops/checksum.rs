//! BLOCK_CHECKSUM (op 85): the MD5 of a replica's stored CRCs, what `hadoop fs
//! -checksum` combines per file. A request shorter than the replica covers
//! floor(len / bpc) stored CRCs plus a fresh CRC of the trailing partial chunk.

use md5::{Digest, Md5};
use ringfs_common::checksum::ChecksumKind;
use ringfs_common::proto::hdfs::{
    BlockChecksumOptionsProto, BlockChecksumTypeProto, OpBlockChecksumProto, OpBlockChecksumResponseProto,
};

use super::OpError;
use crate::store::BlockStore;

/// CRC bytes hashed per read of the meta file: bounds memory for any block size.
const CRC_READ_SIZE: usize = 64 * 1024;

/// Computes the response to a BLOCK_CHECKSUM request.
pub fn block_checksum(
    store: &BlockStore,
    request: &OpBlockChecksumProto,
) -> Result<OpBlockChecksumResponseProto, OpError> {
    let options = request.block_checksum_options.unwrap_or_default();
    let checksum_type = options.block_checksum_type.unwrap_or(BlockChecksumTypeProto::Md5crc as i32);
    if checksum_type != BlockChecksumTypeProto::Md5crc as i32 {
        return Err(OpError::unsupported(format!(
            "block checksum type {} (only MD5CRC; set dfs.checksum.combine.mode=MD5MD5CRC)",
            BlockChecksumTypeProto::try_from(checksum_type).map_or("unknown", |t| t.as_str_name())
        )));
    }
    let block = &request.header.block;
    store.check_pool(&block.pool_id)?;
    let reader = store.open_for_read(block.block_id, block.generation_stamp)?;
    let requested = block.num_bytes.unwrap_or(reader.visible_len);
    if requested > reader.visible_len {
        return Err(OpError::invalid(format!(
            "checksum of {requested} bytes requested, block {} has {}",
            block.block_id, reader.visible_len
        )));
    }
    let checksum = reader.checksum;
    let size = checksum.kind.size();
    let bpc = u64::from(checksum.bytes_per_checksum);
    // A partial request (or a replica still being written) takes whole stored CRCs and
    // a fresh CRC of the tail; a whole finalized replica takes every stored CRC.
    let whole = requested == reader.visible_len && !reader.is_in_progress();
    let (stored_chunks, tail) =
        if whole { (requested.div_ceil(bpc), 0) } else { (requested / bpc, requested % bpc) };
    let mut md5 = Md5::new();
    if let Some(crcs_per_read) = CRC_READ_SIZE.checked_div(size) {
        let mut buf = vec![0u8; CRC_READ_SIZE];
        let mut chunk = 0u64;
        while chunk < stored_chunks {
            let count = (stored_chunks - chunk).min(crcs_per_read as u64) as usize;
            reader.read_checksums(chunk, &mut buf[..count * size])?;
            md5.update(&buf[..count * size]);
            chunk += count as u64;
        }
        if tail > 0 {
            let mut data = vec![0u8; tail as usize];
            reader.read_data(stored_chunks * bpc, &mut data)?;
            md5.update(checksum.kind.crc(&data).to_be_bytes());
        }
    }
    let crc_per_block = if size == 0 { 0 } else { reader.visible_len.div_ceil(bpc) };
    let crc_type =
        if checksum.kind == ChecksumKind::Null { None } else { Some(checksum.kind.to_proto() as i32) };
    Ok(OpBlockChecksumResponseProto {
        bytes_per_crc: checksum.bytes_per_checksum,
        crc_per_block,
        block_checksum: md5.finalize().to_vec().into(),
        crc_type,
        block_checksum_options: Some(BlockChecksumOptionsProto {
            block_checksum_type: Some(BlockChecksumTypeProto::Md5crc as i32),
            stripe_length: None,
        }),
    })
}
