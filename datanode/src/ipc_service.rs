//! The datanode's IPC port: ClientDatanodeProtocol. Only getReplicaVisibleLength is
//! served (the Java reader asks it for the last block of a file still being written,
//! which is how hflushed data becomes readable); every other method is answered
//! RpcNoSuchMethodException, as a Java server answers a method it does not have.

use std::sync::Arc;

use bytes::Bytes;
use ringfs_common::ipc::{exception, RemoteError};
use ringfs_common::proto::hdfs::{GetReplicaVisibleLengthRequestProto, GetReplicaVisibleLengthResponseProto};
use ringfs_rpc::{decode_request, encode_message, CallContext, Service};

use crate::context::DataNodeContext;
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
        let outcome = match method {
            "getReplicaVisibleLength" => self.replica_visible_length(request),
            other => Err(RemoteError::no_such_method(other, &ctx.protocol)),
        };
        std::future::ready(outcome)
    }
}
