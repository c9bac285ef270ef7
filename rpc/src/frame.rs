//! Reads length-prefixed IPC frames into one growing buffer per connection: frames are
//! split off it without copying or zero-filling, and the announced length is checked
//! against the cap before any space is reserved for it.

use bytes::{Buf, Bytes, BytesMut};
use ringfs_common::ipc::{self, IpcError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Space reserved per read when no larger frame has been announced.
const READ_CHUNK_SIZE: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    TruncatedFrame { buffered: usize },
}

pub struct FrameReader<R> {
    read: R,
    buffer: BytesMut,
    frame_size_max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(read: R, frame_size_max: usize) -> FrameReader<R> {
        FrameReader { read, buffer: BytesMut::with_capacity(READ_CHUNK_SIZE), frame_size_max }
    }

    /// The next frame body (without its length prefix), or `None` at a clean EOF.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.buffered()? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::TruncatedFrame { buffered: self.buffer.len() });
            }
        }
    }

    /// A complete frame already in the buffer, without reading.
    pub fn buffered(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some((_, consumed)) = ipc::split_frame(&self.buffer, self.frame_size_max)? else {
            return Ok(None);
        };
        let mut frame = self.buffer.split_to(consumed);
        frame.advance(ipc::FRAME_LENGTH_SIZE);
        Ok(Some(frame.freeze()))
    }

    /// Reads once into the buffer (room for the announced frame, at least
    /// [`READ_CHUNK_SIZE`]); returns the bytes read, 0 at EOF. Cancel-safe: bytes are
    /// either in the buffer or still in the socket.
    pub async fn fill(&mut self) -> Result<usize, FrameError> {
        let wanted = if self.buffer.len() >= ipc::FRAME_LENGTH_SIZE {
            let prefix: [u8; 4] = self.buffer[..4].try_into().expect("4 bytes");
            ipc::FRAME_LENGTH_SIZE + ipc::frame_size(prefix, self.frame_size_max)?
        } else {
            0
        };
        self.buffer.reserve(wanted.saturating_sub(self.buffer.len()).max(READ_CHUNK_SIZE));
        Ok(self.read.read_buf(&mut self.buffer).await?)
    }

    /// Bytes of an unfinished frame held at EOF.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_frames_across_reads_and_refuses_oversized_ones() {
        let mut wire = Vec::new();
        for body in [&b"abc"[..], b"", &[7u8; 100_000]] {
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        let mut reader = FrameReader::new(&wire[..], 1 << 20);
        assert_eq!(reader.next().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(reader.next().await.unwrap().unwrap(), Bytes::new());
        assert_eq!(reader.next().await.unwrap().unwrap().len(), 100_000);
        assert!(reader.next().await.unwrap().is_none());

        let truncated = [0u8, 0, 0, 5, 1, 2];
        let mut reader = FrameReader::new(&truncated[..], 1 << 20);
        assert!(matches!(reader.next().await, Err(FrameError::TruncatedFrame { buffered: 6 })));

        let huge = (u32::MAX).to_be_bytes();
        let mut reader = FrameReader::new(&huge[..], 1 << 20);
        assert!(matches!(reader.next().await, Err(FrameError::Ipc(IpcError::FrameTooLarge { .. }))));
    }
}
