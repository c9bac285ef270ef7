//! The client's error type. Namenode exceptions keep their Java class so callers can
//! match them (`FileNotFoundException`, `AccessControlException`...) the way Java's
//! `RemoteException.unwrapRemoteException` lets FsShell do.

use ringfs_common::checksum::ChecksumError;
use ringfs_common::dtp::DtpError;
use ringfs_common::ipc::{exception, RemoteError};
use ringfs_common::proto::hdfs::Status;
use ringfs_rpc::RpcError;

/// Everything a DFS operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DfsError {
    /// The namenode threw a Java exception; `message` is what Java prints.
    #[error("{}", .0.message)]
    Remote(RemoteError),
    /// The namenode connection failed (not an exception from the server).
    #[error("namenode {addr}: {source}")]
    Rpc { addr: String, source: RpcError },
    /// The path does not exist (the namenode's empty getFileInfo/getListing answer).
    #[error("File {path} does not exist.")]
    NotFound { path: String },
    /// A file operation on a directory or the reverse.
    #[error("{path}: {reason}")]
    WrongKind { path: String, reason: &'static str },
    /// A path the client cannot resolve (bad URI, `..` above the root...).
    #[error("{path}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// TCP to a datanode failed or timed out.
    #[error("datanode {node}: {source}")]
    DatanodeIo { node: String, source: std::io::Error },
    /// A datanode refused an op.
    #[error("datanode {node} answered {status:?} to {op}{}", message_suffix(.message))]
    DatanodeStatus { node: String, op: &'static str, status: Status, message: String },
    /// A datanode sent bytes that do not decode.
    #[error("datanode {node}: {source}")]
    DatanodeProtocol { node: String, source: DtpError },
    /// A datanode broke the protocol's ordering rules (seqno, offsets, lengths).
    #[error("datanode {node}: {reason}")]
    DatanodeSequence { node: String, reason: String },
    /// Data read from a datanode does not match its checksums.
    #[error("checksum error in block {block_id} from datanode {node}: {source}")]
    Checksum { block_id: u64, node: String, source: ChecksumError },
    /// Every replica of a block failed; `last` is the final failure.
    #[error("could not obtain block {block_id} (tried {}): {last}", .tried.join(", "))]
    BlockUnavailable { block_id: u64, tried: Vec<String>, last: Box<DfsError> },
    /// A write pipeline failed and could not be rebuilt.
    #[error("write pipeline for block {block_id} failed: {reason}")]
    Pipeline { block_id: u64, reason: String },
    /// complete() kept answering false.
    #[error(
        "Unable to close file because the last block {block_id} does not have enough number of replicas."
    )]
    CompleteTimeout { block_id: u64 },
    /// The file handle was used after close or after a failed write.
    #[error("{path}: {reason}")]
    Closed { path: String, reason: String },
    /// A namenode answer that violates the protocol (missing required data).
    #[error("namenode answered {method} without {missing}")]
    BadResponse { method: &'static str, missing: &'static str },
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, DfsError>;

impl DfsError {
    pub(crate) fn rpc(addr: &str, source: RpcError) -> DfsError {
        match source {
            RpcError::Remote(remote) => DfsError::Remote(remote),
            source => DfsError::Rpc { addr: addr.to_string(), source },
        }
    }

    /// The Java exception class, for remote errors.
    pub fn remote_class(&self) -> Option<&str> {
        match self {
            DfsError::Remote(e) => Some(&e.class_name),
            _ => None,
        }
    }

    /// Is this the namenode's exception `class_name` (see `ringfs_common::ipc::exception`)?
    pub fn is_remote(&self, class_name: &str) -> bool {
        self.remote_class() == Some(class_name)
    }

    /// Path missing: an empty answer or a FileNotFoundException.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DfsError::NotFound { .. }) || self.is_remote(exception::FILE_NOT_FOUND)
    }

    pub fn is_already_exists(&self) -> bool {
        self.is_remote(exception::FILE_ALREADY_EXISTS)
    }

    pub fn is_access_denied(&self) -> bool {
        self.is_remote(exception::ACCESS_CONTROL)
    }

    /// Worth trying another datanode for (as opposed to a namenode or usage error).
    pub(crate) fn is_datanode_failure(&self) -> bool {
        matches!(
            self,
            DfsError::DatanodeIo { .. }
                | DfsError::DatanodeStatus { .. }
                | DfsError::DatanodeProtocol { .. }
                | DfsError::DatanodeSequence { .. }
                | DfsError::Checksum { .. }
        )
    }
}
