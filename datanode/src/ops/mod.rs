//! Engine-neutral DataTransferProtocol op logic: validation, replica lifecycle, packet
//! planning, checksum decisions and ack composition. No sockets here: the threads
//! engine and the io_uring engine both drive these with their own I/O.
//!
//! ```text
//! READ_BLOCK      read::ReadPlan::prepare -> response() -> packets() (+ fill_checksums)
//! WRITE_BLOCK     write::WriteRequest::parse -> open_replica -> mirror_request/connect_ack
//!                 -> per packet: ReceiveState::plan -> verify -> disk_checksums/write -> commit
//!                 -> ack: compose_ack -> complete (finalize + RECEIVED event)
//! BLOCK_CHECKSUM  checksum::block_checksum
//! TRANSFER_BLOCK  transfer::TransferPlan (the sending side of a DN-to-DN copy)
//! ```

pub mod checksum;
pub mod read;
pub mod transfer;
pub mod write;

use ringfs_common::checksum::ChecksumError;
use ringfs_common::dtp::DtpError;
use ringfs_common::proto::hdfs::{BlockOpResponseProto, Status};

use crate::store::StoreError;

/// Why an op failed, mapped to the status the client sees.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid request: {reason}")]
    Invalid { reason: String },
    #[error("{what} is not supported by ringfs")]
    Unsupported { what: String },
    #[error("checksum error in received data: {source}")]
    Checksum { source: ChecksumError },
    #[error(transparent)]
    Wire(#[from] DtpError),
}

impl OpError {
    pub fn invalid(reason: impl Into<String>) -> OpError {
        OpError::Invalid { reason: reason.into() }
    }

    pub fn unsupported(what: impl Into<String>) -> OpError {
        OpError::Unsupported { what: what.into() }
    }

    pub fn status(&self) -> Status {
        match self {
            OpError::Store(StoreError::ReplicaExists { .. }) => Status::ErrorExists,
            OpError::Unsupported { .. } => Status::ErrorUnsupported,
            OpError::Checksum { .. } => Status::ErrorChecksum,
            OpError::Invalid { .. } | OpError::Wire(_) => Status::ErrorInvalid,
            OpError::Store(_) => Status::Error,
        }
    }

    /// The BlockOpResponseProto reporting this error.
    pub fn response(&self) -> BlockOpResponseProto {
        error_response(self.status(), self.to_string())
    }
}

/// A response with a status and a message (Java clients print the message).
pub fn error_response(status: Status, message: impl Into<String>) -> BlockOpResponseProto {
    BlockOpResponseProto { status: status as i32, message: Some(message.into()), ..Default::default() }
}

/// A plain SUCCESS response.
pub fn success_response() -> BlockOpResponseProto {
    BlockOpResponseProto { status: Status::Success as i32, ..Default::default() }
}

#[cfg(test)]
mod tests;
