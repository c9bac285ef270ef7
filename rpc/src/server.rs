//! The IPC server loop. A malformed frame closes only its own connection (with a FATAL
//! response where Java would send one); every other connection keeps being served.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use ringfs_common::ipc::{
    self, exception, AuthProtocol, CallId, ClientFrame, IpcError, Preamble, RemoteError,
};
use ringfs_common::limits::RPC_FRAME_SIZE_MAX;
use ringfs_common::proto::common::{
    rpc_response_header_proto::RpcErrorCodeProto, rpc_sasl_proto::SaslState, RpcSaslProto,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::frame::{FrameError, FrameReader};

/// Who is calling: the connection's effective user (simple auth), address and protocol.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub user: String,
    pub peer: SocketAddr,
    pub protocol: String,
    pub client_id: Bytes,
}

/// A protocol implementation: decodes the request bytes for `method`, runs it and returns
/// the encoded response message (see [`decode_request`] and [`encode_message`]).
pub trait Service: Send + Sync + 'static {
    fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        request: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, RemoteError>> + Send;
}

/// Decodes a request message; a malformed one is reported to the caller as Java's
/// server does (RpcServerException), without closing the connection.
pub fn decode_request<M: Message + Default>(request: Bytes) -> Result<M, RemoteError> {
    M::decode(request).map_err(|e| RemoteError {
        class_name: exception::RPC_SERVER.to_string(),
        message: format!("Error decoding request: {e}"),
        detail: RpcErrorCodeProto::ErrorRpcServer,
    })
}

/// Encodes a response message for [`Service::call`].
pub fn encode_message<M: Message>(response: &M) -> Bytes {
    Bytes::from(response.encode_to_vec())
}

/// Accepts connections forever, serving each on its own task.
pub async fn serve<S: Service>(listener: TcpListener, service: Arc<S>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, service).await {
                debug!(%peer, error = %e, "IPC connection closed");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Protocol(&'static str),
}

async fn serve_connection<S: Service>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
) -> Result<(), ConnectionError> {
    let (mut reader, mut writer) = stream.into_split();
    let mut preamble = [0u8; ipc::PREAMBLE_SIZE];
    reader.read_exact(&mut preamble).await?;
    let mut reader = FrameReader::new(reader, RPC_FRAME_SIZE_MAX);
    let preamble = match Preamble::decode(&preamble) {
        Ok(Some((p, _))) => p,
        Ok(None) => unreachable!("7 bytes were read"),
        Err(e @ IpcError::VersionMismatch { .. }) => {
            let error = RemoteError {
                class_name: exception::VERSION_MISMATCH.to_string(),
                message: e.to_string(),
                detail: RpcErrorCodeProto::FatalVersionMismatch,
            };
            send_fatal(&mut writer, &error).await;
            return Err(e.into());
        }
        Err(e) => {
            if preamble.starts_with(b"GET ") {
                let _ = writer
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-type: text/plain\r\n\r\nIt looks like you are making an HTTP request to a Hadoop IPC port. This is not the correct port for the web interface on this daemon.\r\n")
                    .await;
            }
            return Err(e.into());
        }
    };

    // Frames until the connection context: optional SASL negotiation, then the context.
    let context = loop {
        let Some(body) = reader.next().await? else { return Ok(()) };
        let frame = match ClientFrame::decode(body, RPC_FRAME_SIZE_MAX) {
            Ok(frame) => frame,
            Err(e) => return fatal(&mut writer, e, RpcErrorCodeProto::FatalDeserializingRequest).await,
        };
        match frame {
            ClientFrame::Sasl { message, .. } if preamble.auth == AuthProtocol::Sasl => {
                if let Some(reply) = sasl_reply(&message) {
                    let mut out = Vec::new();
                    ipc::encode_sasl_response(&reply, &mut out);
                    writer.write_all(&out).await?;
                }
            }
            ClientFrame::ConnectionContext { context, .. } => break context,
            ClientFrame::Ping { .. } => {}
            _ => {
                let e = IpcError::InvalidHeader { reason: "call before connection context" };
                return fatal(&mut writer, e, RpcErrorCodeProto::FatalInvalidRpcHeader).await;
            }
        }
    };
    let user = context.user_info.and_then(|u| u.effective_user).unwrap_or_default();
    if user.is_empty() {
        return Err(ConnectionError::Protocol("connection context names no user"));
    }
    let protocol = context.protocol.unwrap_or_default();

    // Responses are written by one task so concurrent calls can finish in any order.
    let (responses, mut response_rx) = mpsc::channel::<Vec<u8>>(256);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = response_rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });

    let result = loop {
        let body = match reader.next().await {
            Ok(Some(body)) => body,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let (header, request, payload) = match ClientFrame::decode(body, RPC_FRAME_SIZE_MAX) {
            Ok(ClientFrame::Call { header, request, payload }) => (header, request, payload),
            Ok(ClientFrame::Ping { .. }) => continue,
            Ok(_) => break Err(ConnectionError::Protocol("unexpected out-of-band frame after context")),
            Err(e) => {
                let error = RemoteError {
                    class_name: exception::RPC_SERVER.to_string(),
                    message: e.to_string(),
                    detail: RpcErrorCodeProto::FatalDeserializingRequest,
                };
                let mut out = Vec::new();
                let call = CallId { call_id: ipc::FATAL_CALL_ID, client_id: Bytes::new(), retry_count: -1 };
                ipc::encode_error(&call, &error, true, &mut out);
                let _ = responses.send(out).await;
                break Err(e.into());
            }
        };
        let call = CallId::of(&header);
        let ctx = CallContext {
            user: user.clone(),
            peer,
            protocol: protocol.clone(),
            client_id: header.client_id.clone(),
        };
        let service = Arc::clone(&service);
        let responses = responses.clone();
        tokio::spawn(async move {
            let method = request.method_name;
            let declared = request.declaring_class_protocol_name;
            let outcome = if !declared.is_empty() && declared != ctx.protocol && !ctx.protocol.is_empty() {
                Err(RemoteError::no_such_protocol(&declared))
            } else {
                service.call(&ctx, &method, payload).await
            };
            let mut out = Vec::new();
            match outcome {
                Ok(body) => ipc::encode_response_bytes(&call, &body, &mut out),
                Err(error) => ipc::encode_error(&call, &error, false, &mut out),
            }
            let _ = responses.send(out).await;
        });
    };
    drop(responses);
    let _ = writer_task.await;
    result
}

/// A simple-auth server answers NEGOTIATE with SUCCESS, switching the client to SIMPLE;
/// INITIATE of SIMPLE needs no answer.
fn sasl_reply(message: &RpcSaslProto) -> Option<RpcSaslProto> {
    match SaslState::try_from(message.state) {
        Ok(SaslState::Negotiate) => {
            Some(RpcSaslProto { state: SaslState::Success as i32, ..Default::default() })
        }
        _ => None,
    }
}

async fn send_fatal(writer: &mut tokio::net::tcp::OwnedWriteHalf, error: &RemoteError) {
    let mut out = Vec::new();
    let call = CallId { call_id: ipc::FATAL_CALL_ID, client_id: Bytes::new(), retry_count: -1 };
    ipc::encode_error(&call, error, true, &mut out);
    let _ = writer.write_all(&out).await;
}

async fn fatal(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    e: IpcError,
    detail: RpcErrorCodeProto,
) -> Result<(), ConnectionError> {
    warn!(error = %e, "closing IPC connection");
    let error = RemoteError { class_name: exception::RPC_SERVER.to_string(), message: e.to_string(), detail };
    send_fatal(writer, &error).await;
    Err(e.into())
}
