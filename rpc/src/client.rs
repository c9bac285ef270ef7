//! A multiplexed Hadoop IPC client connection: many calls in flight on one socket,
//! responses matched by call id by a background reader task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use ringfs_common::ipc::{self, AuthProtocol, IpcError, Preamble, RemoteError, Response};
use ringfs_common::limits::RPC_FRAME_SIZE_MAX;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex as AsyncMutex};

use crate::frame::FrameReader;

/// How long a connection attempt may take before it is reported as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of an RPC call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("bad response from {addr}: {source}")]
    Ipc { addr: String, source: IpcError },
    #[error("undecodable {method} response: {source}")]
    Decode { method: String, source: prost::DecodeError },
    #[error("connection to {addr} closed")]
    Closed { addr: String },
}

impl RpcError {
    /// The remote exception, if the server answered with one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            RpcError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

type Pending = Arc<Mutex<Option<HashMap<i32, oneshot::Sender<Result<Bytes, RemoteError>>>>>>;

/// One IPC connection speaking one protocol as one user.
pub struct RpcClient {
    addr: String,
    protocol: &'static str,
    client_id: [u8; 16],
    next_call_id: AtomicI32,
    writer: AsyncMutex<tokio::net::tcp::OwnedWriteHalf>,
    pending: Pending,
    reader_task: tokio::task::JoinHandle<()>,
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

impl RpcClient {
    /// Connects, sends the preamble (simple auth) and the connection context.
    pub async fn connect(addr: &str, user: &str, protocol: &'static str) -> Result<RpcClient, RpcError> {
        let connect_err = |source| RpcError::Connect { addr: addr.to_string(), source };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
            .map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let client_id = *uuid::Uuid::new_v4().as_bytes();
        let (reader, mut writer) = stream.into_split();
        let mut hello = Preamble { service_class: 0, auth: AuthProtocol::None }.encode().to_vec();
        ipc::encode_connection_context(&client_id, user, protocol, &mut hello);
        writer.write_all(&hello).await.map_err(connect_err)?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader_task = tokio::spawn(read_responses(reader, Arc::clone(&pending)));
        Ok(RpcClient {
            addr: addr.to_string(),
            protocol,
            client_id,
            next_call_id: AtomicI32::new(0),
            writer: AsyncMutex::new(writer),
            pending,
            reader_task,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Is the connection still usable?
    pub fn is_open(&self) -> bool {
        self.pending.lock().expect("pending lock").is_some()
    }

    /// Calls `method` and decodes its response.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, RpcError> {
        let body = self.call_raw(method, request).await?;
        Resp::decode(body).map_err(|source| RpcError::Decode { method: method.to_string(), source })
    }

    /// Calls `method`, returning the undecoded response message bytes.
    pub async fn call_raw<Req: Message>(&self, method: &str, request: &Req) -> Result<Bytes, RpcError> {
        let call_id = self.next_call_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            let Some(map) = pending.as_mut() else {
                return Err(RpcError::Closed { addr: self.addr.clone() });
            };
            map.insert(call_id, tx);
        }
        let mut frame = Vec::with_capacity(64 + request.encoded_len());
        ipc::encode_call(call_id, &self.client_id, method, self.protocol, request, &mut frame);
        {
            let mut writer = self.writer.lock().await;
            if let Err(source) = writer.write_all(&frame).await {
                if let Some(map) = self.pending.lock().expect("pending lock").as_mut() {
                    map.remove(&call_id);
                }
                return Err(RpcError::Io { addr: self.addr.clone(), source });
            }
        }
        match rx.await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(remote)) => Err(RpcError::Remote(remote)),
            Err(_) => Err(RpcError::Closed { addr: self.addr.clone() }),
        }
    }
}

async fn read_responses(reader: tokio::net::tcp::OwnedReadHalf, pending: Pending) {
    let mut reader = FrameReader::new(reader, RPC_FRAME_SIZE_MAX);
    while let Ok(Some(body)) = reader.next().await {
        let Ok(response) = Response::decode(body, RPC_FRAME_SIZE_MAX) else { break };
        let Response { call_id, outcome, fatal } = response;
        let waiter = pending.lock().expect("pending lock").as_mut().and_then(|m| m.remove(&call_id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
        // After a FATAL response the server closes: fail every other caller.
        if fatal {
            break;
        }
    }
    // Dropping the senders wakes every waiter with Closed.
    pending.lock().expect("pending lock").take();
}
