//! The server and client over loopback: calls are answered, unknown methods get Java's
//! error and keep the connection, and a connection sending garbage is closed alone while
//! every other connection keeps being served.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringfs_common::ipc::{self, RemoteError};
use ringfs_common::limits::RPC_FRAME_SIZE_MAX;
use ringfs_common::proto::hdfs::{GetFileInfoRequestProto, GetFileInfoResponseProto, HdfsFileStatusProto};
use ringfs_rpc::{decode_request, encode_message, CallContext, RpcClient, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Service for Echo {
    async fn call(&self, ctx: &CallContext, method: &str, request: Bytes) -> Result<Bytes, RemoteError> {
        match method {
            "getFileInfo" => {
                let request: GetFileInfoRequestProto = decode_request(request)?;
                if request.src == "/missing" {
                    return Ok(encode_message(&GetFileInfoResponseProto { fs: None }));
                }
                let status = HdfsFileStatusProto {
                    owner: ctx.user.clone(),
                    path: request.src.into(),
                    ..Default::default()
                };
                Ok(encode_message(&GetFileInfoResponseProto { fs: Some(status) }))
            }
            // Answers after a pause: the call has to wait, as a mutation waits for its edits.
            "getListing" => {
                let request: GetFileInfoRequestProto = decode_request(request)?;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let status = HdfsFileStatusProto { path: request.src.into(), ..Default::default() };
                Ok(encode_message(&GetFileInfoResponseProto { fs: Some(status) }))
            }
            // Waits, then has an effect: counted whether or not anyone reads the answer.
            "setReplication" => {
                tokio::time::sleep(Duration::from_millis(30)).await;
                FINISHED_AFTER_WAITING.fetch_add(1, Ordering::SeqCst);
                Ok(encode_message(&GetFileInfoResponseProto { fs: None }))
            }
            _ => Err(RemoteError::no_such_method(method, &ctx.protocol)),
        }
    }
}

static FINISHED_AFTER_WAITING: AtomicUsize = AtomicUsize::new(0);

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(ringfs_rpc::server::serve(listener, Arc::new(Echo)));
    addr
}

async fn get(client: &RpcClient, src: &str) -> Result<GetFileInfoResponseProto, ringfs_rpc::RpcError> {
    client.call("getFileInfo", &GetFileInfoRequestProto { src: src.to_string() }).await
}

#[tokio::test]
async fn calls_errors_and_garbage_neighbours() {
    let addr = start().await;
    let client = RpcClient::connect(&addr, "alice", ipc::protocol::CLIENT).await.unwrap();
    let status = get(&client, "/a").await.unwrap().fs.unwrap();
    assert_eq!(status.owner, "alice", "the caller is the context's effective user");
    assert_eq!(&status.path[..], b"/a");
    assert!(get(&client, "/missing").await.unwrap().fs.is_none());

    let error = client.call_raw("frobnicate", &GetFileInfoRequestProto::default()).await.unwrap_err();
    assert_eq!(error.remote().unwrap().class_name, ipc::exception::NO_SUCH_METHOD);
    assert!(client.is_open(), "an unknown method keeps the connection");

    // Concurrent calls on one connection are all answered.
    let calls = (0..64).map(|i| get(&client, if i % 2 == 0 { "/x" } else { "/missing" }));
    let results = futures_join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.as_ref().unwrap().fs.is_some()).count(), 32);

    // A neighbour sends a valid preamble and then a frame of garbage: it gets a FATAL
    // response and is closed; the first client is unaffected.
    let mut garbage = tokio::net::TcpStream::connect(&addr).await.unwrap();
    garbage.write_all(b"hrpc\x09\x00\x00\x00\x00\x00\x05\xff\xff\xff\xff\xff").await.unwrap();
    let mut reply = Vec::new();
    garbage.read_to_end(&mut reply).await.unwrap();
    assert!(!reply.is_empty(), "a FATAL response before the close");
    let mut oversized = tokio::net::TcpStream::connect(&addr).await.unwrap();
    oversized.write_all(b"hrpc\x09\x00\x00\xff\xff\xff\xff").await.unwrap();
    let _ = oversized.read_to_end(&mut Vec::new()).await;
    let mut wrong_version = tokio::net::TcpStream::connect(&addr).await.unwrap();
    wrong_version.write_all(b"hrpc\x07\x00\x00").await.unwrap();
    let mut reply = Vec::new();
    wrong_version.read_to_end(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("RPC$VersionMismatch"));

    assert!(get(&client, "/still-served").await.unwrap().fs.is_some());
    let second = RpcClient::connect(&addr, "bob", ipc::protocol::CLIENT).await.unwrap();
    assert_eq!(get(&second, "/b").await.unwrap().fs.unwrap().owner, "bob");
}

async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.collect();
    for f in handles {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn waiting_and_immediate_calls_share_a_connection() {
    let addr = start().await;
    let client = Arc::new(RpcClient::connect(&addr, "alice", ipc::protocol::CLIENT).await.unwrap());
    let mut calls = Vec::new();
    for i in 0..40 {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            let src = format!("/f{i}");
            // Every third call waits before answering; the others answer at once.
            let method = if i % 3 == 0 { "getListing" } else { "getFileInfo" };
            let request = GetFileInfoRequestProto { src: src.clone() };
            let response: GetFileInfoResponseProto = client.call(method, &request).await.unwrap();
            assert_eq!(response.fs.unwrap().path, src.as_bytes(), "{method} answered for its own call");
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    assert!(client.is_open());
}

/// A client that sends its calls and then closes its sending side still gets every answer,
/// including those of calls still waiting when the end of its stream arrived.
#[tokio::test]
async fn calls_sent_before_a_half_close_are_all_answered() {
    let addr = start().await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let client_id = [7u8; 16];
    let mut wire = b"hrpc\x09\x00\x00".to_vec();
    ipc::encode_connection_context(&client_id, "carol", ipc::protocol::CLIENT, &mut wire);
    for call_id in 0..6 {
        let method = if call_id % 2 == 0 { "getListing" } else { "getFileInfo" };
        let request = GetFileInfoRequestProto { src: format!("/c{call_id}") };
        ipc::encode_call(call_id, &client_id, method, ipc::protocol::CLIENT, &request, &mut wire);
    }
    stream.write_all(&wire).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();

    let mut reply = Bytes::from(reply);
    let mut answered = Vec::new();
    while !reply.is_empty() {
        let length = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
        let body = reply.slice(4..4 + length);
        reply = reply.slice(4 + length..);
        let response = ipc::Response::decode(body, RPC_FRAME_SIZE_MAX).unwrap();
        let message: GetFileInfoResponseProto = decode_request(response.outcome.unwrap()).unwrap();
        assert_eq!(message.fs.unwrap().path, format!("/c{}", response.call_id).as_bytes());
        answered.push(response.call_id);
    }
    answered.sort();
    assert_eq!(answered, vec![0, 1, 2, 3, 4, 5]);
}

/// Calls still waiting when their connection goes away run to the end all the same.
#[tokio::test]
async fn waiting_calls_finish_after_their_connection_closes() {
    let addr = start().await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let client_id = [9u8; 16];
    let mut wire = b"hrpc\x09\x00\x00".to_vec();
    ipc::encode_connection_context(&client_id, "dave", ipc::protocol::CLIENT, &mut wire);
    for call_id in 0..3 {
        let request = GetFileInfoRequestProto::default();
        ipc::encode_call(call_id, &client_id, "setReplication", ipc::protocol::CLIENT, &request, &mut wire);
    }
    // Garbage after the calls makes the server close the connection while they wait.
    wire.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    stream.write_all(&wire).await.unwrap();
    let _ = stream.read_to_end(&mut Vec::new()).await;
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while FINISHED_AFTER_WAITING.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(FINISHED_AFTER_WAITING.load(Ordering::SeqCst), 3);
}
