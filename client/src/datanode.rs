//! A connection to a datanode's data port: ops out, varint-delimited responses and
//! packets in, through one reusable receive buffer so packets are decoded in place.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use prost::Message;
use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{self, OpRequest, PacketLayout};
use ringfs_common::limits::PACKET_SIZE_MAX;
use ringfs_common::proto::common::TokenProto;
use ringfs_common::proto::hdfs::{
    BaseHeaderProto, BlockOpResponseProto, ClientOperationHeaderProto, DatanodeInfoProto, ExtendedBlockProto,
    Status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::{DfsError, Result};

/// Connect and read timeout of the data port: Java's `dfs.client.socket-timeout` (60 s).
pub const DATANODE_SOCKET_TIMEOUT: Duration = Duration::from_secs(60);

/// Initial receive buffer: two 64 KiB packets and their checksums, so a read syscall
/// usually brings in a whole packet.
const RECEIVE_BUFFER_SIZE: usize = 256 * 1024;

/// How long an idle data-port connection is kept for reuse: Java's
/// `dfs.client.socketcache.expiryMsec` (3 s), under the datanode's 4 s keepalive.
pub const PEER_CACHE_EXPIRY: Duration = Duration::from_secs(3);

/// Idle connections kept per client: Java's `dfs.client.socketcache.capacity`.
pub const PEER_CACHE_CAPACITY: usize = 16;

/// Idle data-port connections whose last op ended cleanly, kept so the next op to the
/// same datanode skips the TCP handshake (Java's PeerCache).
#[derive(Default)]
pub struct PeerCache {
    idle: Mutex<HashMap<String, Vec<IdleConnection>>>,
}

struct IdleConnection {
    reader: DnReader,
    writer: DnWriter,
    since: Instant,
}

impl PeerCache {
    /// A cached connection to `addr` that has not expired.
    pub fn take(&self, addr: &str) -> Option<(DnReader, DnWriter)> {
        let mut idle = self.idle.lock().expect("peer cache lock");
        let connections = idle.get_mut(addr)?;
        while let Some(idle) = connections.pop() {
            if idle.since.elapsed() < PEER_CACHE_EXPIRY {
                return Some((idle.reader, idle.writer));
            }
        }
        None
    }

    /// Keeps a connection whose op is complete (nothing left unread) for reuse.
    pub fn put(&self, reader: DnReader, writer: DnWriter) {
        if !reader.buffer.is_empty() {
            return;
        }
        let mut idle = self.idle.lock().expect("peer cache lock");
        idle.retain(|_, connections| {
            connections.retain(|idle| idle.since.elapsed() < PEER_CACHE_EXPIRY);
            !connections.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        if total < PEER_CACHE_CAPACITY {
            let node = reader.node.clone();
            idle.entry(node).or_default().push(IdleConnection { reader, writer, since: Instant::now() });
        }
    }
}

/// `ip:xferPort` of a datanode, the address clients dial.
pub fn xfer_addr(node: &DatanodeInfoProto) -> String {
    format!("{}:{}", node.id.ip_addr, node.id.xfer_port)
}

/// The block token of a located block, or the empty one when tokens are off.
pub fn token_or_empty(token: Option<&TokenProto>) -> TokenProto {
    token.cloned().unwrap_or_default()
}

/// The header every client op carries.
pub fn client_header(
    block: &ExtendedBlockProto,
    token: &TokenProto,
    client_name: &str,
) -> ClientOperationHeaderProto {
    ClientOperationHeaderProto {
        base_header: BaseHeaderProto { block: block.clone(), token: Some(token.clone()), trace_info: None },
        client_name: client_name.to_string(),
    }
}

/// The receiving half of a data-port connection.
pub struct DnReader {
    node: String,
    stream: OwnedReadHalf,
    buffer: BytesMut,
}

/// The sending half of a data-port connection.
pub struct DnWriter {
    node: String,
    stream: OwnedWriteHalf,
}

/// Opens a connection to `addr` (`ip:port`).
pub async fn connect(addr: &str) -> Result<(DnReader, DnWriter)> {
    let io_err = |source| DfsError::DatanodeIo { node: addr.to_string(), source };
    let stream = tokio::time::timeout(DATANODE_SOCKET_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io_err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))?
        .map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    let (read, write) = stream.into_split();
    Ok((
        DnReader {
            node: addr.to_string(),
            stream: read,
            buffer: BytesMut::with_capacity(RECEIVE_BUFFER_SIZE),
        },
        DnWriter { node: addr.to_string(), stream: write },
    ))
}

impl DnWriter {
    pub fn node(&self) -> &str {
        &self.node
    }

    pub async fn send_op(&mut self, op: &OpRequest) -> Result<()> {
        let mut out = Vec::with_capacity(256);
        op.encode(&mut out);
        self.write_all(&out).await
    }

    /// Sends a varint-delimited message (ClientReadStatusProto...).
    pub async fn send_delimited(&mut self, message: &impl Message) -> Result<()> {
        let mut out = Vec::with_capacity(16);
        dtp::encode_delimited(message, &mut out);
        self.write_all(&out).await
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let node = &self.node;
        let write = self.stream.write_all(bytes);
        match tokio::time::timeout(DATANODE_SOCKET_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DfsError::DatanodeIo { node: node.clone(), source }),
            Err(_) => Err(timed_out(node, "write")),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

fn timed_out(node: &str, what: &str) -> DfsError {
    DfsError::DatanodeIo {
        node: node.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} timed out after {} s", DATANODE_SOCKET_TIMEOUT.as_secs()),
        ),
    }
}

impl DnReader {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Reads more bytes into the buffer, making room for at least `wanted` in total.
    async fn fill(&mut self, wanted: usize) -> Result<()> {
        let needed = wanted.saturating_sub(self.buffer.len()).max(4096);
        if self.buffer.capacity() - self.buffer.len() < needed {
            self.buffer.reserve(needed.max(RECEIVE_BUFFER_SIZE));
        }
        let read = self.stream.read_buf(&mut self.buffer);
        match tokio::time::timeout(DATANODE_SOCKET_TIMEOUT, read).await {
            Ok(Ok(0)) => Err(DfsError::DatanodeIo {
                node: self.node.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by datanode",
                ),
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(DfsError::DatanodeIo { node: self.node.clone(), source }),
            Err(_) => Err(timed_out(&self.node, "read")),
        }
    }

    /// Reads one varint-delimited message.
    pub async fn read_delimited<M: Message + Default>(&mut self, what: &'static str) -> Result<M> {
        loop {
            let decoded = dtp::decode_delimited::<M>(&self.buffer, what)
                .map_err(|source| DfsError::DatanodeProtocol { node: self.node.clone(), source })?;
            if let Some((message, consumed)) = decoded {
                self.buffer.advance(consumed);
                return Ok(message);
            }
            self.fill(self.buffer.len() + 1).await?;
        }
    }

    /// Reads the op response and fails unless its status is SUCCESS.
    pub async fn read_op_response(&mut self, op: &'static str) -> Result<BlockOpResponseProto> {
        let response: BlockOpResponseProto = self.read_delimited("BlockOpResponseProto").await?;
        if response.status() != Status::Success {
            let mut message = response.message.clone().unwrap_or_default();
            if let Some(bad) = response.first_bad_link.as_deref().filter(|b| !b.is_empty()) {
                message = format!("{message} (first bad link {bad})");
            }
            return Err(DfsError::DatanodeStatus {
                node: self.node.clone(),
                op,
                status: response.status(),
                message,
            });
        }
        Ok(response)
    }

    /// Waits until a whole packet is buffered and returns its layout; the packet's
    /// bytes are `self.packet_bytes(&layout)` until [`DnReader::consume`].
    pub async fn next_packet(&mut self, checksum: Option<DataChecksum>) -> Result<PacketLayout> {
        loop {
            let layout = PacketLayout::decode(&self.buffer, checksum)
                .map_err(|source| DfsError::DatanodeProtocol { node: self.node.clone(), source })?;
            match layout {
                Some(layout) if self.buffer.len() >= layout.total_len() => return Ok(layout),
                Some(layout) => {
                    debug_assert!(layout.total_len() <= PACKET_SIZE_MAX);
                    self.fill(layout.total_len()).await?
                }
                None => self.fill(self.buffer.len() + 1).await?,
            }
        }
    }

    /// Checksums and data of the buffered packet described by `layout`.
    pub fn packet_parts(&self, layout: &PacketLayout) -> (&[u8], &[u8]) {
        let checksums_end = layout.prefix_len + layout.checksum_len;
        (&self.buffer[layout.prefix_len..checksums_end], &self.buffer[checksums_end..layout.total_len()])
    }

    /// Drops the buffered packet.
    pub fn consume(&mut self, layout: &PacketLayout) {
        self.buffer.advance(layout.total_len());
    }
}
