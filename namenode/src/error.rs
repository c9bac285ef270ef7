//! The namenode's error type: a kind that maps to the exact Java exception class the
//! clients unwrap (by string equality), plus the message Java would send.

use ringfs_common::ipc::{exception, RemoteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    FileNotFound,
    FileAlreadyExists,
    ParentNotDirectory,
    PathIsNotEmptyDirectory,
    AccessControl,
    SafeMode,
    AlreadyBeingCreated,
    LeaseExpired,
    NotReplicatedYet,
    InvalidPath,
    PathComponentTooLong,
    MaxDirectoryItemsExceeded,
    UnsupportedOperation,
    HadoopIllegalArgument,
    RecoveryInProgress,
    UnregisteredNode,
    IncorrectVersion,
    Io,
}

impl ErrorKind {
    /// The Java class name sent as exceptionClassName.
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorKind::FileNotFound => exception::FILE_NOT_FOUND,
            ErrorKind::FileAlreadyExists => exception::FILE_ALREADY_EXISTS,
            ErrorKind::ParentNotDirectory => exception::PARENT_NOT_DIRECTORY,
            ErrorKind::PathIsNotEmptyDirectory => exception::PATH_IS_NOT_EMPTY_DIRECTORY,
            ErrorKind::AccessControl => exception::ACCESS_CONTROL,
            ErrorKind::SafeMode => exception::SAFE_MODE,
            ErrorKind::AlreadyBeingCreated => exception::ALREADY_BEING_CREATED,
            ErrorKind::LeaseExpired => exception::LEASE_EXPIRED,
            ErrorKind::NotReplicatedYet => exception::NOT_REPLICATED_YET,
            ErrorKind::InvalidPath => exception::INVALID_PATH,
            ErrorKind::PathComponentTooLong => {
                "org.apache.hadoop.hdfs.protocol.FSLimitException$PathComponentTooLongException"
            }
            ErrorKind::MaxDirectoryItemsExceeded => {
                "org.apache.hadoop.hdfs.protocol.FSLimitException$MaxDirectoryItemsExceededException"
            }
            ErrorKind::UnsupportedOperation => exception::UNSUPPORTED_OPERATION,
            ErrorKind::HadoopIllegalArgument => exception::HADOOP_ILLEGAL_ARGUMENT,
            ErrorKind::RecoveryInProgress => exception::RECOVERY_IN_PROGRESS,
            ErrorKind::UnregisteredNode => exception::UNREGISTERED_NODE,
            ErrorKind::IncorrectVersion => "org.apache.hadoop.hdfs.server.common.IncorrectVersionException",
            ErrorKind::Io => exception::IO,
        }
    }
}

/// A failed namenode operation, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.class_name())]
pub struct FsError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> FsError {
        FsError { kind, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::FileNotFound, message)
    }

    /// `File does not exist: /p`, the message Java uses for most missing paths.
    pub fn no_such_file(path: &str) -> FsError {
        FsError::not_found(format!("File does not exist: {path}"))
    }

    pub fn exists(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::FileAlreadyExists, message)
    }

    pub fn access(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::AccessControl, message)
    }

    pub fn io(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::Io, message)
    }

    pub fn illegal_argument(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::HadoopIllegalArgument, message)
    }

    pub fn lease(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::LeaseExpired, message)
    }

    pub fn unsupported(message: impl Into<String>) -> FsError {
        FsError::new(ErrorKind::UnsupportedOperation, message)
    }

    pub fn to_remote(&self) -> RemoteError {
        RemoteError::new(self.kind.class_name(), self.message.clone())
    }
}

impl From<ringfs_common::path::InvalidPath> for FsError {
    fn from(e: ringfs_common::path::InvalidPath) -> FsError {
        FsError::new(ErrorKind::InvalidPath, e.to_string())
    }
}
