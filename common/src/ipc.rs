//! Hadoop IPC (RPC v9) framing, both halves, without I/O.
//!
//! ```text
//! client -> server, once:  "hrpc" | version 9 | service class | auth (0 NONE, 0xDF SASL)
//! then frames both ways:   u32 BE length N | N bytes
//!   connection context:    delimited RpcRequestHeaderProto (callId -3) | delimited IpcConnectionContextProto
//!   call:                  delimited RpcRequestHeaderProto | delimited RequestHeaderProto | delimited request
//!   ping:                  delimited RpcRequestHeaderProto (callId -4); never answered
//!   SASL:                  delimited RpcRequestHeaderProto (callId -33) | delimited RpcSaslProto
//!   response SUCCESS:      delimited RpcResponseHeaderProto | delimited response (0x00 when empty)
//!   response ERROR/FATAL:  delimited RpcResponseHeaderProto only
//! ```

use bytes::{Buf, Bytes};
use prost::Message;

use crate::limits::{IPC_VERSION, RPC_HEADER_SIZE_MAX};
use crate::proto::common::{
    rpc_request_header_proto::OperationProto, rpc_response_header_proto::RpcErrorCodeProto,
    rpc_response_header_proto::RpcStatusProto, IpcConnectionContextProto, RequestHeaderProto, RpcKindProto,
    RpcRequestHeaderProto, RpcResponseHeaderProto, RpcSaslProto, UserInformationProto,
};

/// The four bytes every IPC connection opens with.
pub const MAGIC: [u8; 4] = *b"hrpc";
/// Length of the connection preamble.
pub const PREAMBLE_SIZE: usize = 7;
/// Length of the big-endian frame length prefix.
pub const FRAME_LENGTH_SIZE: usize = 4;

/// Call id of the connection-context frame.
pub const CONNECTION_CONTEXT_CALL_ID: i32 = -3;
/// Call id of a client ping.
pub const PING_CALL_ID: i32 = -4;
/// Call id of SASL messages, both directions.
pub const SASL_CALL_ID: i32 = -33;
/// Call id the server uses for fatal errors not tied to a call.
pub const FATAL_CALL_ID: i32 = -1;

/// Protocol names as clients put them in the connection context and request headers.
pub mod protocol {
    /// ClientProtocol: what every HDFS client speaks to the namenode.
    pub const CLIENT: &str = "org.apache.hadoop.hdfs.protocol.ClientProtocol";
    /// DatanodeProtocol: datanode to namenode.
    pub const DATANODE: &str = "org.apache.hadoop.hdfs.server.protocol.DatanodeProtocol";
    /// ClientDatanodeProtocol: client to the datanode's IPC port.
    pub const CLIENT_DATANODE: &str = "org.apache.hadoop.hdfs.protocol.ClientDatanodeProtocol";
}

/// Java exception class names the clients unwrap by exact string match.
pub mod exception {
    pub const IO: &str = "java.io.IOException";
    pub const FILE_NOT_FOUND: &str = "java.io.FileNotFoundException";
    pub const FILE_ALREADY_EXISTS: &str = "org.apache.hadoop.fs.FileAlreadyExistsException";
    pub const PARENT_NOT_DIRECTORY: &str = "org.apache.hadoop.fs.ParentNotDirectoryException";
    pub const PATH_IS_NOT_EMPTY_DIRECTORY: &str = "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException";
    pub const ACCESS_CONTROL: &str = "org.apache.hadoop.security.AccessControlException";
    pub const SAFE_MODE: &str = "org.apache.hadoop.hdfs.server.namenode.SafeModeException";
    pub const ALREADY_BEING_CREATED: &str = "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException";
    pub const LEASE_EXPIRED: &str = "org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException";
    pub const NOT_REPLICATED_YET: &str = "org.apache.hadoop.hdfs.server.namenode.NotReplicatedYetException";
    pub const INVALID_PATH: &str = "org.apache.hadoop.fs.InvalidPathException";
    pub const UNSUPPORTED_OPERATION: &str = "java.lang.UnsupportedOperationException";
    pub const ILLEGAL_ARGUMENT: &str = "java.lang.IllegalArgumentException";
    pub const HADOOP_ILLEGAL_ARGUMENT: &str = "org.apache.hadoop.HadoopIllegalArgumentException";
    pub const NS_QUOTA_EXCEEDED: &str = "org.apache.hadoop.hdfs.protocol.NSQuotaExceededException";
    pub const DS_QUOTA_EXCEEDED: &str = "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException";
    pub const STANDBY: &str = "org.apache.hadoop.ipc.StandbyException";
    pub const RECOVERY_IN_PROGRESS: &str = "org.apache.hadoop.hdfs.protocol.RecoveryInProgressException";
    pub const NO_SUCH_METHOD: &str = "org.apache.hadoop.ipc.RpcNoSuchMethodException";
    pub const NO_SUCH_PROTOCOL: &str = "org.apache.hadoop.ipc.RpcNoSuchProtocolException";
    pub const VERSION_MISMATCH: &str = "org.apache.hadoop.ipc.RPC$VersionMismatch";
    pub const RPC_SERVER: &str = "org.apache.hadoop.ipc.RpcServerException";
    pub const UNREGISTERED_NODE: &str = "org.apache.hadoop.hdfs.server.protocol.UnregisteredNodeException";
    pub const DISALLOWED_DATANODE: &str =
        "org.apache.hadoop.hdfs.server.protocol.DisallowedDatanodeException";
}

/// Errors decoding IPC bytes. Each closes the connection it came from.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("bad connection magic {found:?}, expected \"hrpc\"")]
    BadMagic { found: [u8; 4] },
    #[error("IPC version {version} is not supported, expected {expected}")]
    VersionMismatch { version: u8, expected: u8 },
    #[error("unknown auth protocol byte {auth:#04x}")]
    UnknownAuth { auth: u8 },
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { size: usize, max: usize },
    #[error("{what} of {size} bytes exceeds the {max}-byte limit")]
    MessageTooLarge { what: &'static str, size: usize, max: usize },
    #[error("truncated {what}: needs {needed} bytes, frame has {available}")]
    Truncated { what: &'static str, needed: usize, available: usize },
    #[error("malformed {what}: {source}")]
    Decode { what: &'static str, source: prost::DecodeError },
    #[error("{remaining} unexpected bytes after {what}")]
    TrailingBytes { what: &'static str, remaining: usize },
    #[error("invalid RPC request header: {reason}")]
    InvalidHeader { reason: &'static str },
    #[error("unknown out-of-band call id {call_id}")]
    UnknownOutOfBand { call_id: i32 },
}

/// The auth byte of the preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AuthProtocol {
    None = 0x00,
    /// -33 as a signed byte.
    Sasl = 0xDF,
}

/// The 7-byte connection preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub service_class: u8,
    pub auth: AuthProtocol,
}

impl Preamble {
    /// Decodes the preamble; `Ok(None)` until 7 bytes are available.
    pub fn decode(buf: &[u8]) -> Result<Option<(Preamble, usize)>, IpcError> {
        if buf.len() < PREAMBLE_SIZE {
            return Ok(None);
        }
        let found: [u8; 4] = buf[..4].try_into().expect("4 bytes");
        if found != MAGIC {
            return Err(IpcError::BadMagic { found });
        }
        if buf[4] != IPC_VERSION {
            return Err(IpcError::VersionMismatch { version: buf[4], expected: IPC_VERSION });
        }
        let auth = match buf[6] {
            0x00 => AuthProtocol::None,
            0xDF => AuthProtocol::Sasl,
            auth => return Err(IpcError::UnknownAuth { auth }),
        };
        Ok(Some((Preamble { service_class: buf[5], auth }, PREAMBLE_SIZE)))
    }

    pub fn encode(&self) -> [u8; PREAMBLE_SIZE] {
        [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], IPC_VERSION, self.service_class, self.auth as u8]
    }
}

/// Splits one length-prefixed frame off `buf`: `Ok(Some((body_len, consumed)))` with the
/// body at `buf[4..consumed]`, or `Ok(None)` until the whole frame is there. The length
/// is checked against `size_max` before the caller allocates for it.
pub fn split_frame(buf: &[u8], size_max: usize) -> Result<Option<(usize, usize)>, IpcError> {
    if buf.len() < FRAME_LENGTH_SIZE {
        return Ok(None);
    }
    let size = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if size > size_max {
        return Err(IpcError::FrameTooLarge { size, max: size_max });
    }
    let consumed = FRAME_LENGTH_SIZE + size;
    if buf.len() < consumed {
        return Ok(None);
    }
    Ok(Some((size, consumed)))
}

/// Reads the body length a frame announces, once its 4-byte prefix is available, so a
/// reader can size its buffer (after the cap check).
pub fn frame_size(prefix: [u8; 4], size_max: usize) -> Result<usize, IpcError> {
    let size = u32::from_be_bytes(prefix) as usize;
    if size > size_max {
        return Err(IpcError::FrameTooLarge { size, max: size_max });
    }
    Ok(size)
}

/// Takes one varint-delimited message off the front of a complete frame body.
pub fn take_delimited<M: Message + Default>(
    body: &mut Bytes,
    what: &'static str,
    size_max: usize,
) -> Result<M, IpcError> {
    let size =
        prost::decode_length_delimiter(&mut *body).map_err(|source| IpcError::Decode { what, source })?;
    if size > size_max {
        return Err(IpcError::MessageTooLarge { what, size, max: size_max });
    }
    if body.len() < size {
        return Err(IpcError::Truncated { what, needed: size, available: body.len() });
    }
    let message = body.split_to(size);
    M::decode(message).map_err(|source| IpcError::Decode { what, source })
}

/// Takes the varint-delimited payload off a frame body without decoding it, returning
/// its bytes (zero-copy slice of the frame).
pub fn take_delimited_bytes(
    body: &mut Bytes,
    what: &'static str,
    size_max: usize,
) -> Result<Bytes, IpcError> {
    let size =
        prost::decode_length_delimiter(&mut *body).map_err(|source| IpcError::Decode { what, source })?;
    if size > size_max {
        return Err(IpcError::MessageTooLarge { what, size, max: size_max });
    }
    if body.len() < size {
        return Err(IpcError::Truncated { what, needed: size, available: body.len() });
    }
    Ok(body.split_to(size))
}

fn expect_end(body: &Bytes, what: &'static str) -> Result<(), IpcError> {
    if body.has_remaining() {
        return Err(IpcError::TrailingBytes { what, remaining: body.remaining() });
    }
    Ok(())
}

/// A frame a server reads from a client, after the preamble.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    ConnectionContext { header: RpcRequestHeaderProto, context: IpcConnectionContextProto },
    Ping { header: RpcRequestHeaderProto },
    Sasl { header: RpcRequestHeaderProto, message: RpcSaslProto },
    Call { header: RpcRequestHeaderProto, request: RequestHeaderProto, payload: Bytes },
}

impl ClientFrame {
    /// Decodes a complete frame body (without its length prefix). Requests of
    /// `payload_size_max` bytes or more are refused before they are sliced.
    pub fn decode(mut body: Bytes, payload_size_max: usize) -> Result<ClientFrame, IpcError> {
        let header: RpcRequestHeaderProto =
            take_delimited(&mut body, "RpcRequestHeaderProto", RPC_HEADER_SIZE_MAX)?;
        match header.call_id {
            CONNECTION_CONTEXT_CALL_ID => {
                let context = take_delimited(&mut body, "IpcConnectionContextProto", RPC_HEADER_SIZE_MAX)?;
                expect_end(&body, "connection context")?;
                Ok(ClientFrame::ConnectionContext { header, context })
            }
            PING_CALL_ID => Ok(ClientFrame::Ping { header }),
            SASL_CALL_ID => {
                let message = take_delimited(&mut body, "RpcSaslProto", RPC_HEADER_SIZE_MAX)?;
                expect_end(&body, "SASL message")?;
                Ok(ClientFrame::Sasl { header, message })
            }
            call_id if call_id < 0 => Err(IpcError::UnknownOutOfBand { call_id }),
            _ => {
                // Java's server refuses a call whose header lacks rpcKind or rpcOp, or
                // whose rpcOp is not a final packet.
                if header.rpc_kind.is_none() {
                    return Err(IpcError::InvalidHeader { reason: "rpcKind missing" });
                }
                match header.rpc_op {
                    None => return Err(IpcError::InvalidHeader { reason: "rpcOp missing" }),
                    Some(op) if op != OperationProto::RpcFinalPacket as i32 => {
                        return Err(IpcError::InvalidHeader { reason: "rpcOp is not RPC_FINAL_PACKET" })
                    }
                    Some(_) => {}
                }
                if header.rpc_kind != Some(RpcKindProto::RpcProtocolBuffer as i32) {
                    return Err(IpcError::InvalidHeader { reason: "rpcKind is not RPC_PROTOCOL_BUFFER" });
                }
                let request = take_delimited(&mut body, "RequestHeaderProto", RPC_HEADER_SIZE_MAX)?;
                let payload = take_delimited_bytes(&mut body, "request", payload_size_max)?;
                expect_end(&body, "request")?;
                Ok(ClientFrame::Call { header, request, payload })
            }
        }
    }
}

impl ClientFrame {
    /// Appends the frame with its length prefix: the inverse of [`ClientFrame::decode`].
    /// Unlike [`encode_call`] and [`encode_connection_context`], it writes whatever the
    /// header holds, so a client can send what Java sends (retryCount 0 plus
    /// callerContext "CLI") or snakebite does (retryCount -1 on calls).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out);
        match self {
            ClientFrame::ConnectionContext { header, context } => {
                put_delimited(header, out);
                put_delimited(context, out);
            }
            ClientFrame::Ping { header } => put_delimited(header, out),
            ClientFrame::Sasl { header, message } => {
                put_delimited(header, out);
                put_delimited(message, out);
            }
            ClientFrame::Call { header, request, payload } => {
                put_delimited(header, out);
                put_delimited(request, out);
                prost::encode_length_delimiter(payload.len(), out).expect("Vec<u8> grows as needed");
                out.extend_from_slice(payload);
            }
        }
        finish_frame(out, start);
    }
}

/// An exception to send back to a client: the exact Java class name, its message, and
/// the RPC error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class_name}: {message}")]
pub struct RemoteError {
    pub class_name: String,
    pub message: String,
    pub detail: RpcErrorCodeProto,
}

impl RemoteError {
    /// An application-level exception (ERROR_APPLICATION): the connection stays open.
    pub fn new(class_name: &str, message: impl Into<String>) -> RemoteError {
        RemoteError {
            class_name: class_name.to_string(),
            message: message.into(),
            detail: RpcErrorCodeProto::ErrorApplication,
        }
    }

    pub fn io(message: impl Into<String>) -> RemoteError {
        RemoteError::new(exception::IO, message)
    }

    /// What Java answers for a method the server does not implement.
    pub fn no_such_method(method: &str, protocol: &str) -> RemoteError {
        RemoteError {
            class_name: exception::NO_SUCH_METHOD.to_string(),
            message: format!("Unknown method {method} called on {protocol} protocol."),
            detail: RpcErrorCodeProto::ErrorNoSuchMethod,
        }
    }

    pub fn no_such_protocol(protocol: &str) -> RemoteError {
        RemoteError {
            class_name: exception::NO_SUCH_PROTOCOL.to_string(),
            message: format!("Unknown protocol: {protocol}"),
            detail: RpcErrorCodeProto::ErrorNoSuchProtocol,
        }
    }

    pub fn is(&self, class_name: &str) -> bool {
        self.class_name == class_name
    }
}

/// Identity of a call, echoed in its response so the client can match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallId {
    pub call_id: i32,
    pub client_id: Bytes,
    pub retry_count: i32,
}

impl CallId {
    pub fn of(header: &RpcRequestHeaderProto) -> CallId {
        CallId {
            call_id: header.call_id,
            client_id: header.client_id.clone(),
            retry_count: header.retry_count.unwrap_or(-1),
        }
    }

    fn response_header(&self, status: RpcStatusProto) -> RpcResponseHeaderProto {
        RpcResponseHeaderProto {
            // Java writes the int call id as an unsigned 32-bit varint.
            call_id: self.call_id as u32,
            status: status as i32,
            server_ipc_version_num: Some(u32::from(IPC_VERSION)),
            client_id: if self.client_id.is_empty() { None } else { Some(self.client_id.clone()) },
            retry_count: Some(self.retry_count),
            ..Default::default()
        }
    }
}

fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LENGTH_SIZE]);
    start
}

fn finish_frame(out: &mut [u8], start: usize) {
    let size = out.len() - start - FRAME_LENGTH_SIZE;
    let size = u32::try_from(size).expect("frame size fits in u32");
    out[start..start + FRAME_LENGTH_SIZE].copy_from_slice(&size.to_be_bytes());
}

fn put_delimited(message: &impl Message, out: &mut Vec<u8>) {
    message.encode_length_delimited(out).expect("Vec<u8> grows as needed");
}

/// Appends a SUCCESS response frame: header, then the varint-delimited response (a
/// single 0x00 for an empty message, as Java expects).
pub fn encode_response(call: &CallId, response: &impl Message, out: &mut Vec<u8>) {
    let start = begin_frame(out);
    put_delimited(&call.response_header(RpcStatusProto::Success), out);
    put_delimited(response, out);
    finish_frame(out, start);
}

/// Appends a SUCCESS response frame around an already-encoded response message.
pub fn encode_response_bytes(call: &CallId, response: &[u8], out: &mut Vec<u8>) {
    let start = begin_frame(out);
    put_delimited(&call.response_header(RpcStatusProto::Success), out);
    prost::encode_length_delimiter(response.len(), out).expect("Vec<u8> grows as needed");
    out.extend_from_slice(response);
    finish_frame(out, start);
}

/// Appends an ERROR (or FATAL) response frame: the header only, nothing after it.
pub fn encode_error(call: &CallId, error: &RemoteError, fatal: bool, out: &mut Vec<u8>) {
    let status = if fatal { RpcStatusProto::Fatal } else { RpcStatusProto::Error };
    let mut header = call.response_header(status);
    header.exception_class_name = Some(error.class_name.clone());
    header.error_msg = Some(error.message.clone());
    header.error_detail = Some(error.detail as i32);
    let start = begin_frame(out);
    put_delimited(&header, out);
    finish_frame(out, start);
}

/// Appends a SASL response frame (call id -33) carrying `message`.
pub fn encode_sasl_response(message: &RpcSaslProto, out: &mut Vec<u8>) {
    let call = CallId { call_id: SASL_CALL_ID, client_id: Bytes::new(), retry_count: -1 };
    encode_response(&call, message, out);
}

fn request_header(call_id: i32, client_id: &[u8], retry_count: i32) -> RpcRequestHeaderProto {
    RpcRequestHeaderProto {
        rpc_kind: Some(RpcKindProto::RpcProtocolBuffer as i32),
        rpc_op: Some(OperationProto::RpcFinalPacket as i32),
        call_id,
        client_id: Bytes::copy_from_slice(client_id),
        retry_count: Some(retry_count),
        ..Default::default()
    }
}

/// Appends the connection-context frame a client sends right after the preamble.
pub fn encode_connection_context(client_id: &[u8], user: &str, protocol: &str, out: &mut Vec<u8>) {
    let context = IpcConnectionContextProto {
        user_info: Some(UserInformationProto { effective_user: Some(user.to_string()), real_user: None }),
        protocol: Some(protocol.to_string()),
    };
    let start = begin_frame(out);
    put_delimited(&request_header(CONNECTION_CONTEXT_CALL_ID, client_id, -1), out);
    put_delimited(&context, out);
    finish_frame(out, start);
}

/// Appends a call frame: RPC header, ProtobufRpcEngine2 header naming the method, request.
pub fn encode_call(
    call_id: i32,
    client_id: &[u8],
    method: &str,
    protocol: &str,
    request: &impl Message,
    out: &mut Vec<u8>,
) {
    let start = begin_frame(out);
    put_delimited(&request_header(call_id, client_id, 0), out);
    let header = RequestHeaderProto {
        method_name: method.to_string(),
        declaring_class_protocol_name: protocol.to_string(),
        client_protocol_version: 1,
    };
    put_delimited(&header, out);
    put_delimited(request, out);
    finish_frame(out, start);
}

/// Appends a ping frame (call id -4).
pub fn encode_ping(client_id: &[u8], out: &mut Vec<u8>) {
    let start = begin_frame(out);
    put_delimited(&request_header(PING_CALL_ID, client_id, -1), out);
    finish_frame(out, start);
}

/// A response a client reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub call_id: i32,
    /// The response message bytes on success, the exception otherwise.
    pub outcome: Result<Bytes, RemoteError>,
    /// FATAL: the server closes the connection after this frame.
    pub fatal: bool,
}

impl Response {
    /// Decodes a complete response frame body (without its length prefix).
    pub fn decode(mut body: Bytes, payload_size_max: usize) -> Result<Response, IpcError> {
        let header: RpcResponseHeaderProto =
            take_delimited(&mut body, "RpcResponseHeaderProto", RPC_HEADER_SIZE_MAX)?;
        let call_id = header.call_id as i32;
        let status = RpcStatusProto::try_from(header.status)
            .map_err(|_| IpcError::InvalidHeader { reason: "unknown response status" })?;
        if status == RpcStatusProto::Success {
            let payload = take_delimited_bytes(&mut body, "response", payload_size_max)?;
            expect_end(&body, "response")?;
            return Ok(Response { call_id, outcome: Ok(payload), fatal: false });
        }
        expect_end(&body, "error response header")?;
        let detail = header
            .error_detail
            .and_then(|d| RpcErrorCodeProto::try_from(d).ok())
            .unwrap_or(RpcErrorCodeProto::ErrorApplication);
        let error = RemoteError {
            class_name: header.exception_class_name.unwrap_or_default(),
            message: header.error_msg.unwrap_or_default(),
            detail,
        };
        Ok(Response { call_id, outcome: Err(error), fatal: status == RpcStatusProto::Fatal })
    }
}
