//! The IPC server loop. A malformed frame closes only its own connection (with a FATAL
//! response where Java would send one); every other connection keeps being served.
//!
//! One task per connection reads frames, runs each call as far as it goes without
//! waiting, and writes the responses: a read such as getFileInfo costs no task spawn, no
//! channel and no second wake-up, and responses ready together leave in one write.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use prost::Message;
use ringfs_common::ipc::{
    self, exception, AuthProtocol, CallId, ClientFrame, IpcError, Preamble, RemoteError,
};
use ringfs_common::limits::RPC_FRAME_SIZE_MAX;
use ringfs_common::proto::common::{
    rpc_response_header_proto::RpcErrorCodeProto, rpc_sasl_proto::SaslState, RequestHeaderProto, RpcSaslProto,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
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
    let context = CallContext { user, peer, protocol, client_id: Bytes::new() };
    serve_calls(reader, writer, context, service).await
}

/// Largest response buffer kept between writes; a bigger one (a long listing) is freed.
const RESPONSE_BUFFER_KEPT_MAX: usize = 1024 * 1024;
/// Calls of one connection that may wait at once (each holds a task); beyond it the
/// connection is not read until some finish, so a client cannot pile up tasks without
/// bound.
const CALLS_WAITING_PER_CONNECTION_MAX: usize = 1024;

/// Serves the calls of one connection on this task. Every call is first polled here, so
/// one that finishes at once (every read) costs no task and no channel; one that must
/// wait (a mutation waiting for its edits to be durable) is kept here with its own waker
/// ([`WaitingCalls`]). Responses are written by this task only, those ready together in
/// one write.
async fn serve_calls<S: Service>(
    mut reader: FrameReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    context: CallContext,
    service: Arc<S>,
) -> Result<(), ConnectionError> {
    let mut context = Arc::new(context);
    let mut waiting = WaitingCalls::default();
    let mut out = Vec::new();
    let mut reading = true;
    // Why the connection must close once what is already answered has been written.
    let mut closing: Option<ConnectionError> = None;
    loop {
        while reading && waiting.len() < CALLS_WAITING_PER_CONNECTION_MAX {
            let body = match reader.buffered() {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e) => {
                    (reading, closing) = (false, Some(e.into()));
                    break;
                }
            };
            match ClientFrame::decode(body, RPC_FRAME_SIZE_MAX) {
                Ok(ClientFrame::Call { header, request, payload }) => {
                    if header.client_id != context.client_id {
                        let client_id = header.client_id.clone();
                        context = Arc::new(CallContext { client_id, ..(*context).clone() });
                    }
                    let call = CallId::of(&header);
                    let mut pending =
                        Box::pin(run_call(Arc::clone(&service), Arc::clone(&context), request, payload));
                    match std::future::poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await {
                        Poll::Ready(outcome) => encode_outcome(&call, outcome, &mut out),
                        Poll::Pending => waiting.add(call, pending),
                    }
                }
                Ok(ClientFrame::Ping { .. }) => {}
                Ok(_) => {
                    let e = ConnectionError::Protocol("unexpected out-of-band frame after context");
                    (reading, closing) = (false, Some(e));
                }
                Err(e) => {
                    let error = RemoteError {
                        class_name: exception::RPC_SERVER.to_string(),
                        message: e.to_string(),
                        detail: RpcErrorCodeProto::FatalDeserializingRequest,
                    };
                    let call =
                        CallId { call_id: ipc::FATAL_CALL_ID, client_id: Bytes::new(), retry_count: -1 };
                    ipc::encode_error(&call, &error, true, &mut out);
                    (reading, closing) = (false, Some(e.into()));
                }
            }
        }
        if !waiting.is_empty() {
            // Calls ready now (or just added) answer in this write.
            std::future::poll_fn(|cx| {
                let _ = waiting.poll_finished(cx, &mut out);
                Poll::Ready(())
            })
            .await;
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
            if out.capacity() > RESPONSE_BUFFER_KEPT_MAX {
                out = Vec::new();
            }
        }
        if let Some(e) = closing {
            return Err(e);
        }
        if !reading && waiting.is_empty() {
            return Ok(());
        }
        tokio::select! {
            _ = std::future::poll_fn(|cx| waiting.poll_finished(cx, &mut out)), if !waiting.is_empty() => {}
            filled = reader.fill(), if reading && waiting.len() < CALLS_WAITING_PER_CONNECTION_MAX => match filled {
                // EOF between frames: answer what is still running, then close.
                Ok(0) if reader.pending_bytes() == 0 => reading = false,
                Ok(0) => return Err(FrameError::TruncatedFrame { buffered: reader.pending_bytes() }.into()),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
}

/// One call: the protocol check, then the service.
async fn run_call<S: Service>(
    service: Arc<S>,
    context: Arc<CallContext>,
    request: RequestHeaderProto,
    payload: Bytes,
) -> Result<Bytes, RemoteError> {
    let declared = &request.declaring_class_protocol_name;
    if !declared.is_empty() && *declared != context.protocol && !context.protocol.is_empty() {
        return Err(RemoteError::no_such_protocol(declared));
    }
    service.call(&context, &request.method_name, payload).await
}

fn encode_outcome(call: &CallId, outcome: Result<Bytes, RemoteError>, out: &mut Vec<u8>) {
    match outcome {
        Ok(body) => ipc::encode_response_bytes(call, &body, out),
        Err(error) => ipc::encode_error(call, &error, false, out),
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Bytes, RemoteError>> + Send>>;

/// The calls of one connection that had to wait, kept and polled by the connection task:
/// each has its own waker, which records that this call is ready and wakes the
/// connection task, so a wake-up (an edit log sync) polls only the calls it concerns and
/// costs no task of its own.
#[derive(Default)]
struct WaitingCalls {
    slots: Vec<Option<WaitingCall>>,
    free: Vec<usize>,
    len: usize,
    ready: Arc<ReadyCalls>,
}

struct WaitingCall {
    call: CallId,
    future: CallFuture,
    waker: Waker,
}

/// Slots whose wakers fired since the connection task last looked, and its waker.
#[derive(Default)]
struct ReadyCalls(Mutex<(Vec<usize>, Option<Waker>)>);

struct CallWaker {
    slot: usize,
    ready: Arc<ReadyCalls>,
}

impl Wake for CallWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let task = {
            let mut ready = self.ready.0.lock().expect("ready calls");
            ready.0.push(self.slot);
            ready.1.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl WaitingCalls {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn add(&mut self, call: CallId, future: CallFuture) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let waker = Waker::from(Arc::new(CallWaker { slot, ready: Arc::clone(&self.ready) }));
        self.slots[slot] = Some(WaitingCall { call, future, waker });
        self.len += 1;
        // Its first poll registered the connection task's waker: poll it once more with
        // its own, so the wake-up that finishes it names it.
        self.ready.0.lock().expect("ready calls").0.push(slot);
    }

    /// Polls the calls whose wakers fired, appending the responses of those that
    /// finished; pending (the connection task's waker registered) while none did.
    fn poll_finished(&mut self, cx: &mut Context<'_>, out: &mut Vec<u8>) -> Poll<()> {
        let mut finished = false;
        let mut slots = Vec::new();
        loop {
            {
                let mut ready = self.ready.0.lock().expect("ready calls");
                if ready.0.is_empty() {
                    if !ready.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        ready.1 = Some(cx.waker().clone());
                    }
                    break;
                }
                std::mem::swap(&mut ready.0, &mut slots);
            }
            for slot in slots.drain(..) {
                // A slot may have been reused since its waker fired: a spurious poll.
                let Some(Some(waiting)) = self.slots.get_mut(slot) else { continue };
                let outcome = waiting.future.as_mut().poll(&mut Context::from_waker(&waiting.waker));
                if let Poll::Ready(outcome) = outcome {
                    encode_outcome(&waiting.call, outcome, out);
                    self.slots[slot] = None;
                    self.free.push(slot);
                    self.len -= 1;
                    finished = true;
                }
            }
        }
        if finished {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for WaitingCalls {
    /// A connection that closes with calls still waiting lets them run to the end on
    /// tasks of their own (their effects do not depend on anyone reading the answer).
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        for waiting in self.slots.drain(..).flatten() {
            runtime.spawn(waiting.future);
        }
    }
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
