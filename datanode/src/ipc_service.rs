//! The datanode's IPC port: ClientDatanodeProtocol's getReplicaVisibleLength (the Java
//! reader asks it for the last block of a file still being written, which is how
//! hflushed data becomes readable) and InterDatanodeProtocol's lease recovery steps
//! (initReplicaRecovery, updateReplicaUnderRecovery). Every other method is answered
//! RpcNoSuchMethodException, as a Java server answers a method it does not have.

use std::sync::Arc;

use bytes::Bytes;
use ringfs_common::ipc::{exception, RemoteError};
use ringfs_common::proto::hdfs::{GetReplicaVisibleLengthRequestProto, GetReplicaVisibleLengthResponseProto};
use ringfs_rpc::{decode_request, encode_message, CallContext, Service};

use crate::context::DataNodeContext;
use crate::recovery::{self, INTER_DATANODE};
use crate::store::StoreError;

/// Java's ReplicaNotFoundException: clients try the next location on it.
const REPLICA_NOT_FOUND: &str = "org.apache.hadoop.hdfs.server.datanode.ReplicaNotFoundException";

pub struct ClientDatanodeService {
    ctx: Arc<DataNodeContext>,
}

impl ClientDatanodeService {
    pub fn new(ctx: Arc<DataNodeContext>) -> ClientDatanodeService {
        ClientDatanodeService { ctx }
    }

    fn replica_visible_length(&self, request: Bytes) -> Result<Bytes, RemoteError> {
        let request: GetReplicaVisibleLengthRequestProto = decode_request(request)?;
        let block = &request.block;
        self.ctx.store.check_pool(&block.pool_id).map_err(|e| RemoteError::io(e.to_string()))?;
        let length =
            self.ctx.store.visible_length(block.block_id, block.generation_stamp).map_err(|e| match e {
                StoreError::ReplicaNotFound { .. } => RemoteError::new(REPLICA_NOT_FOUND, e.to_string()),
                other => RemoteError::new(exception::IO, other.to_string()),
            })?;
        Ok(encode_message(&GetReplicaVisibleLengthResponseProto { length }))
    }
}

impl Service for ClientDatanodeService {
    fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        request: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, RemoteError>> + Send {
        let node = Arc::clone(&self.ctx);
        let protocol = ctx.protocol.clone();
        let method = method.to_string();
        let immediate = match (protocol.as_str(), method.as_str()) {
            (INTER_DATANODE, "initReplicaRecovery" | "updateReplicaUnderRecovery") => None,
            (_, "getReplicaVisibleLength") => Some(self.replica_visible_length(request.clone())),
            (_, other) => Some(Err(RemoteError::no_such_method(other, &protocol))),
        };
        async move {
            if let Some(outcome) = immediate {
                return outcome;
            }
            // Recovery steps touch files (stop a writer, truncate, rename): off the runtime.
            tokio::task::spawn_blocking(move || inter_datanode(&node, &method, request))
                .await
                .unwrap_or_else(|_| Err(RemoteError::io("recovery step panicked")))
        }
    }
}

/// InterDatanodeProtocol calls from a recovering primary.
fn inter_datanode(ctx: &DataNodeContext, method: &str, request: Bytes) -> Result<Bytes, RemoteError> {
    match method {
        "initReplicaRecovery" => {
            let request = decode_request(request)?;
            let response = recovery::init_local(ctx, &request).map_err(recovery::remote_error)?;
            Ok(encode_message(&response))
        }
        _ => {
            let request = decode_request(request)?;
            let response = recovery::update_local(ctx, &request).map_err(recovery::remote_error)?;
            Ok(encode_message(&response))
        }
    }
}
