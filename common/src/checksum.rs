//! Chunked CRC32C/CRC32 checksums, the `.meta` file header, and the MD5-of-MD5-of-CRC
//! file checksum behind `hadoop fs -checksum`.

use md5::{Digest, Md5};

use crate::limits::{BYTES_PER_CHECKSUM_MAX, CHECKSUM_SIZE, META_HEADER_SIZE, META_VERSION};
use crate::proto::hdfs::ChecksumTypeProto;

/// Checksum algorithm, with the ids used on the wire and in `.meta` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChecksumKind {
    Null = 0,
    /// zlib's polynomial.
    Crc32 = 1,
    /// Castagnoli; HDFS's default, hardware-accelerated.
    Crc32c = 2,
}

impl ChecksumKind {
    pub fn from_id(id: u8) -> Option<ChecksumKind> {
        match id {
            0 => Some(ChecksumKind::Null),
            1 => Some(ChecksumKind::Crc32),
            2 => Some(ChecksumKind::Crc32c),
            _ => None,
        }
    }

    /// Bytes per stored checksum: 4 for the CRCs, 0 for NULL.
    pub fn size(self) -> usize {
        match self {
            ChecksumKind::Null => 0,
            ChecksumKind::Crc32 | ChecksumKind::Crc32c => CHECKSUM_SIZE,
        }
    }

    pub fn to_proto(self) -> ChecksumTypeProto {
        match self {
            ChecksumKind::Null => ChecksumTypeProto::ChecksumNull,
            ChecksumKind::Crc32 => ChecksumTypeProto::ChecksumCrc32,
            ChecksumKind::Crc32c => ChecksumTypeProto::ChecksumCrc32c,
        }
    }

    pub fn from_proto(proto: i32) -> Option<ChecksumKind> {
        u8::try_from(proto).ok().and_then(ChecksumKind::from_id)
    }

    /// The CRC of one chunk.
    pub fn crc(self, chunk: &[u8]) -> u32 {
        match self {
            ChecksumKind::Null => 0,
            ChecksumKind::Crc32 => crc32fast::hash(chunk),
            ChecksumKind::Crc32c => crc32c::crc32c(chunk),
        }
    }

    /// Name used in `-checksum` output (MD5-of-0MD5-of-512CRC32C).
    pub fn algorithm_name(self) -> &'static str {
        match self {
            ChecksumKind::Null => "NULL",
            ChecksumKind::Crc32 => "CRC32",
            ChecksumKind::Crc32c => "CRC32C",
        }
    }
}

/// Errors from checksum parameters and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("unknown checksum type id {id}")]
    UnknownKind { id: u8 },
    #[error("bytes per checksum {bytes_per_checksum} is outside 1..={max}")]
    BadBytesPerChecksum { bytes_per_checksum: u32, max: u32 },
    #[error("checksum mismatch in chunk {chunk} at offset {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    Mismatch { chunk: usize, offset: u64, stored: u32, computed: u32 },
    #[error("{available} checksum bytes cannot cover {data_len} data bytes ({needed} needed)")]
    WrongChecksumLength { data_len: usize, needed: usize, available: usize },
    #[error("meta header of {available} bytes is shorter than {META_HEADER_SIZE}")]
    ShortMetaHeader { available: usize },
    #[error("meta file version {version} is not {META_VERSION}")]
    MetaVersion { version: u16 },
}

/// A checksum algorithm and its chunk size: what HDFS calls a DataChecksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataChecksum {
    pub kind: ChecksumKind,
    pub bytes_per_checksum: u32,
}

impl DataChecksum {
    pub const CRC32C_512: DataChecksum = DataChecksum { kind: ChecksumKind::Crc32c, bytes_per_checksum: 512 };

    /// Validates parameters read from a peer or a file.
    pub fn new(kind: ChecksumKind, bytes_per_checksum: u32) -> Result<DataChecksum, ChecksumError> {
        if bytes_per_checksum == 0 || bytes_per_checksum > BYTES_PER_CHECKSUM_MAX {
            return Err(ChecksumError::BadBytesPerChecksum {
                bytes_per_checksum,
                max: BYTES_PER_CHECKSUM_MAX,
            });
        }
        Ok(DataChecksum { kind, bytes_per_checksum })
    }

    pub fn chunk_size(&self) -> usize {
        self.bytes_per_checksum as usize
    }

    /// Number of chunks (and so of checksums) covering `data_len` bytes.
    pub fn chunk_count(&self, data_len: usize) -> usize {
        data_len.div_ceil(self.chunk_size())
    }

    /// Checksum bytes covering `data_len` bytes of data.
    pub fn checksum_len(&self, data_len: usize) -> usize {
        self.chunk_count(data_len) * self.kind.size()
    }

    /// Writes one big-endian checksum per chunk of `data` into `out`, which must be
    /// exactly `checksum_len(data.len())` bytes.
    pub fn compute(&self, data: &[u8], out: &mut [u8]) {
        let size = self.kind.size();
        assert_eq!(out.len(), self.checksum_len(data.len()), "checksum buffer size");
        if size == 0 {
            return;
        }
        for (chunk, slot) in data.chunks(self.chunk_size()).zip(out.chunks_exact_mut(size)) {
            slot.copy_from_slice(&self.kind.crc(chunk).to_be_bytes());
        }
    }

    /// Computes into a new vector.
    pub fn compute_vec(&self, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.checksum_len(data.len())];
        self.compute(data, &mut out);
        out
    }

    /// Verifies `data` against `checksums`; `offset` is the position of `data[0]` in the
    /// block, used only to report where a mismatch is.
    pub fn verify(&self, data: &[u8], checksums: &[u8], offset: u64) -> Result<(), ChecksumError> {
        let size = self.kind.size();
        if size == 0 {
            return Ok(());
        }
        let needed = self.checksum_len(data.len());
        if checksums.len() != needed {
            return Err(ChecksumError::WrongChecksumLength {
                data_len: data.len(),
                needed,
                available: checksums.len(),
            });
        }
        for (chunk_index, (chunk, stored)) in
            data.chunks(self.chunk_size()).zip(checksums.chunks_exact(size)).enumerate()
        {
            let stored = u32::from_be_bytes(stored.try_into().expect("4-byte checksum"));
            let computed = self.kind.crc(chunk);
            if stored != computed {
                return Err(ChecksumError::Mismatch {
                    chunk: chunk_index,
                    offset: offset + (chunk_index * self.chunk_size()) as u64,
                    stored,
                    computed,
                });
            }
        }
        Ok(())
    }
}

/// The 7-byte header of a `blk_<id>_<gs>.meta` file.
///
/// ```text
/// u16 BE version (1) | u8 checksum type | u32 BE bytes per checksum | then one CRC per chunk
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    pub checksum: DataChecksum,
}

impl MetaHeader {
    pub fn decode(buf: &[u8]) -> Result<MetaHeader, ChecksumError> {
        if buf.len() < META_HEADER_SIZE {
            return Err(ChecksumError::ShortMetaHeader { available: buf.len() });
        }
        let version = u16::from_be_bytes([buf[0], buf[1]]);
        if version != META_VERSION {
            return Err(ChecksumError::MetaVersion { version });
        }
        let kind = ChecksumKind::from_id(buf[2]).ok_or(ChecksumError::UnknownKind { id: buf[2] })?;
        let bytes_per_checksum = u32::from_be_bytes(buf[3..7].try_into().expect("4 bytes"));
        Ok(MetaHeader { checksum: DataChecksum::new(kind, bytes_per_checksum)? })
    }

    pub fn encode(&self) -> [u8; META_HEADER_SIZE] {
        let v = META_VERSION.to_be_bytes();
        let b = self.checksum.bytes_per_checksum.to_be_bytes();
        [v[0], v[1], self.checksum.kind as u8, b[0], b[1], b[2], b[3]]
    }

    /// Length of a meta file covering a block of `block_len` bytes. Saturates at
    /// `u64::MAX` for lengths no file can have (a client may claim any u64).
    pub fn meta_file_len(&self, block_len: u64) -> u64 {
        let chunks = block_len.div_ceil(u64::from(self.checksum.bytes_per_checksum));
        chunks.saturating_mul(self.checksum.kind.size() as u64).saturating_add(META_HEADER_SIZE as u64)
    }
}

/// MD5 of a block's stored CRC bytes: what a datanode answers to BLOCK_CHECKSUM.
pub fn block_checksum_md5(crc_bytes: &[u8]) -> [u8; 16] {
    Md5::digest(crc_bytes).into()
}

/// A whole file's MD5-of-MD5-of-CRC checksum, as `FileSystem.getFileChecksum` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChecksum {
    pub bytes_per_crc: u32,
    /// The client reports 0 for single-block files and the first block's count otherwise.
    pub crc_per_block: u64,
    pub md5: [u8; 16],
    pub kind: ChecksumKind,
}

impl FileChecksum {
    /// Combines per-block MD5s in file order, as Java does: the MD5s are written into a
    /// DataOutputBuffer (32 bytes, doubling when full) and the MD5 is taken over the
    /// buffer's whole backing array, so the concatenation is zero-padded to that
    /// capacity (one block: 16 MD5 bytes + 16 zeros).
    pub fn combine(
        bytes_per_crc: u32,
        crc_per_block: u64,
        kind: ChecksumKind,
        block_md5s: &[[u8; 16]],
    ) -> FileChecksum {
        const JAVA_BUFFER_INITIAL: usize = 32;
        let written = block_md5s.len() * 16;
        let mut capacity = JAVA_BUFFER_INITIAL;
        while capacity < written {
            capacity *= 2;
        }
        let mut md5 = Md5::new();
        for block in block_md5s {
            md5.update(block);
        }
        md5.update(vec![0u8; capacity - written]);
        FileChecksum { bytes_per_crc, crc_per_block, md5: md5.finalize().into(), kind }
    }

    /// `MD5-of-<crcPerBlock>MD5-of-<bytesPerCRC><CRC32C|CRC32>`.
    pub fn algorithm_name(&self) -> String {
        format!("MD5-of-{}MD5-of-{}{}", self.crc_per_block, self.bytes_per_crc, self.kind.algorithm_name())
    }

    /// The 28 bytes Java serialises: i32 bytesPerCRC, i64 crcPerBlock, 16-byte MD5.
    pub fn to_bytes(&self) -> [u8; 28] {
        let mut out = [0u8; 28];
        out[..4].copy_from_slice(&self.bytes_per_crc.to_be_bytes());
        out[4..12].copy_from_slice(&self.crc_per_block.to_be_bytes());
        out[12..].copy_from_slice(&self.md5);
        out
    }

    pub fn to_hex(&self) -> String {
        self.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod file_checksum_tests {
    use super::*;

    /// Values printed by `hadoop fs -checksum` (Hadoop 3.5) for files written to ringfs.
    #[test]
    fn combine_pads_like_javas_data_output_buffer() {
        let block: [u8; 16] =
            [0x06, 0x31, 0xcc, 0x59, 0x4e, 0xc0, 0x58, 0x9d, 0x7b, 0xbe, 0x76, 0xdc, 0xe1, 0xa7, 0x95, 0x3b];
        let one = FileChecksum::combine(512, 0, ChecksumKind::Crc32c, &[block]);
        assert_eq!(one.to_hex(), "0000020000000000000000002b559725e23eb93541b0675b41e25ab3");
        // Three blocks fill 48 of a 64-byte buffer.
        let three = FileChecksum::combine(512, 2048, ChecksumKind::Crc32c, &[block; 3]);
        let mut padded = [block; 3].concat();
        padded.resize(64, 0);
        assert_eq!(three.md5, <[u8; 16]>::from(Md5::digest(&padded)));
    }
}
