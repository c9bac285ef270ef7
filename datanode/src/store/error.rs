//! Errors of the block store.

use std::path::PathBuf;

use ringfs_common::checksum::ChecksumError;

use super::replica::ReplicaState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("no data directory configured (dfs.datanode.data.dir)")]
    NoVolumes,
    #[error("{dir} is in use by another datanode (in_use.lock is held)")]
    VolumeLocked { dir: PathBuf },
    #[error("{path}: {reason}")]
    BadVersionFile { path: PathBuf, reason: String },
    #[error(
        "incompatible clusterIDs in {dir}: namenode clusterID = {expected}; datanode clusterID = {found}"
    )]
    IncompatibleClusterId { dir: PathBuf, expected: String, found: String },
    #[error("volumes disagree on the datanode uuid: {first} in {first_dir}, {second} in {second_dir}")]
    InconsistentDatanodeUuid { first: String, first_dir: PathBuf, second: String, second_dir: PathBuf },
    #[error("the block pool is not known yet (the namenode handshake has not completed)")]
    NoBlockPool,
    #[error("block pool {requested} is not served here (this datanode serves {served})")]
    WrongBlockPool { requested: String, served: String },
    #[error("replica not found for block {block_id}")]
    ReplicaNotFound { block_id: u64 },
    #[error("replica for block {block_id} already exists in state {state} with genstamp {gen_stamp}")]
    ReplicaExists { block_id: u64, state: ReplicaState, gen_stamp: u64 },
    #[error("replica for block {block_id} is {state}, expected {expected}")]
    WrongState { block_id: u64, state: ReplicaState, expected: &'static str },
    #[error(
        "replica for block {block_id} has genstamp {replica_gen_stamp}, outside the requested {min}..={max}"
    )]
    GenStampMismatch { block_id: u64, replica_gen_stamp: u64, min: u64, max: u64 },
    #[error("replica for block {block_id} has {actual} bytes, expected {expected}")]
    LengthMismatch { block_id: u64, expected: u64, actual: u64 },
    #[error(
        "replica for block {block_id} has {bytes_acked} bytes acked and {bytes_on_disk} received, \
         outside the requested range [{min}, {max}]"
    )]
    RecoveryRangeMismatch { block_id: u64, bytes_acked: u64, bytes_on_disk: u64, min: u64, max: u64 },
    #[error("the writer of block {block_id} did not stop within {timeout_ms} ms")]
    WriterBusy { block_id: u64, timeout_ms: u64 },
    #[error("bad meta file {path}: {source}")]
    Meta { path: PathBuf, source: ChecksumError },
    #[error("block {block_id} is under recovery {current}; recovery {requested} is older")]
    RecoveryInProgress { block_id: u64, current: u64, requested: u64 },
    #[error("block {block_id} has no recovery {recovery_id} in progress")]
    NoRecovery { block_id: u64, recovery_id: u64 },
    #[error("no volume has {needed} bytes free")]
    NoSpace { needed: u64 },
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }

    /// Is this a "not found" that a retry after a concurrent rename may fix?
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
