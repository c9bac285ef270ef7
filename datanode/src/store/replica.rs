//! Replica records: what the datanode knows about each block it holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringfs_common::proto::hdfs::ReplicaStateProto;

/// Lifecycle state of a replica, as HDFS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaState {
    /// Complete and immutable (until an append reopens it).
    Finalized,
    /// Being written by a client pipeline, or left behind by one (`rbw/`).
    Rbw,
    /// Being received from another datanode (replication, pipeline transfer): `tmp/`,
    /// never reported to the namenode, deleted at restart.
    Temporary,
}

impl ReplicaState {
    pub fn to_proto(self) -> ReplicaStateProto {
        match self {
            ReplicaState::Finalized => ReplicaStateProto::Finalized,
            ReplicaState::Rbw => ReplicaStateProto::Rbw,
            ReplicaState::Temporary => ReplicaStateProto::Temporary,
        }
    }
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicaState::Finalized => "FINALIZED",
            ReplicaState::Rbw => "RBW",
            ReplicaState::Temporary => "TEMPORARY",
        })
    }
}

/// Lengths of a replica being written, shared by its writer and its readers.
///
/// `bytes_on_disk` counts data written to the block file with its checksums;
/// `bytes_acked` counts data acknowledged upstream: the length readers may see
/// (`getReplicaVisibleLength`). `bytes_acked <= bytes_on_disk` except for the instant
/// between an ack and a retransmission after pipeline recovery.
#[derive(Debug)]
pub struct WriteProgress {
    bytes_on_disk: AtomicU64,
    bytes_acked: AtomicU64,
    writer: Mutex<Option<WriterRegistration>>,
    writer_released: Condvar,
}

/// The writer currently owning a replica, and how to make it stop.
pub struct WriterRegistration {
    pub writer_id: u64,
    /// Makes the writer give up (e.g. shuts its socket down) so that a recovering
    /// pipeline can take the replica over. Set by the engine once it has a connection.
    pub stopper: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for WriterRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterRegistration")
            .field("writer_id", &self.writer_id)
            .field("stopper", &self.stopper.is_some())
            .finish()
    }
}

impl WriteProgress {
    pub fn new(length: u64) -> WriteProgress {
        WriteProgress {
            bytes_on_disk: AtomicU64::new(length),
            bytes_acked: AtomicU64::new(length),
            writer: Mutex::new(None),
            writer_released: Condvar::new(),
        }
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.bytes_on_disk.load(Ordering::Acquire)
    }

    pub fn bytes_acked(&self) -> u64 {
        self.bytes_acked.load(Ordering::Acquire)
    }

    pub fn set_bytes_on_disk(&self, length: u64) {
        self.bytes_on_disk.store(length, Ordering::Release);
    }

    /// Raises the acknowledged length (never lowers it).
    pub fn advance_bytes_acked(&self, length: u64) {
        self.bytes_acked.fetch_max(length, Ordering::AcqRel);
    }

    /// Resets both lengths (recovery truncation, restart validation).
    pub fn reset(&self, length: u64) {
        self.bytes_on_disk.store(length, Ordering::Release);
        self.bytes_acked.store(length, Ordering::Release);
    }

    pub(crate) fn register_writer(&self, writer_id: u64) {
        let mut writer = self.writer.lock().expect("writer lock");
        *writer = Some(WriterRegistration { writer_id, stopper: None });
    }

    /// Installs the function that stops writer `writer_id`.
    pub fn set_stopper(&self, writer_id: u64, stopper: Box<dyn Fn() + Send + Sync>) {
        let mut writer = self.writer.lock().expect("writer lock");
        if let Some(registration) = writer.as_mut().filter(|r| r.writer_id == writer_id) {
            registration.stopper = Some(stopper);
        }
    }

    pub(crate) fn release_writer(&self, writer_id: u64) {
        let mut writer = self.writer.lock().expect("writer lock");
        if writer.as_ref().is_some_and(|r| r.writer_id == writer_id) {
            *writer = None;
            self.writer_released.notify_all();
        }
    }

    pub fn has_writer(&self) -> bool {
        self.writer.lock().expect("writer lock").is_some()
    }

    /// Asks the current writer to stop and waits until it has released the replica.
    /// Returns false if it still holds it after `timeout`.
    pub(crate) fn stop_writer(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut writer = self.writer.lock().expect("writer lock");
        if let Some(stopper) = writer.as_ref().and_then(|r| r.stopper.as_ref()) {
            stopper();
        }
        while writer.is_some() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            writer = self.writer_released.wait_timeout(writer, deadline - now).expect("writer lock").0;
        }
        true
    }
}

/// One replica in the replica map.
#[derive(Debug, Clone)]
pub struct Replica {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub state: ReplicaState,
    /// Index of the volume holding it.
    pub volume: usize,
    /// Length of a finalized replica; for others see `progress`.
    finalized_len: u64,
    /// Lengths of a replica being written (RBW, temporary).
    pub progress: Option<Arc<WriteProgress>>,
}

impl Replica {
    pub fn finalized(block_id: u64, gen_stamp: u64, volume: usize, length: u64) -> Replica {
        Replica {
            block_id,
            gen_stamp,
            state: ReplicaState::Finalized,
            volume,
            finalized_len: length,
            progress: None,
        }
    }

    pub fn in_progress(
        block_id: u64,
        gen_stamp: u64,
        state: ReplicaState,
        volume: usize,
        progress: Arc<WriteProgress>,
    ) -> Replica {
        assert!(state != ReplicaState::Finalized, "a finalized replica has no write progress");
        Replica { block_id, gen_stamp, state, volume, finalized_len: 0, progress: Some(progress) }
    }

    /// Bytes a reader may see: the length of a finalized replica, the acknowledged
    /// length of one being written.
    pub fn visible_len(&self) -> u64 {
        match &self.progress {
            None => self.finalized_len,
            Some(progress) => progress.bytes_acked(),
        }
    }

    /// Bytes in the block file that carry valid checksums.
    pub fn bytes_on_disk(&self) -> u64 {
        match &self.progress {
            None => self.finalized_len,
            Some(progress) => progress.bytes_on_disk(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn acked_length_only_grows() {
        let progress = WriteProgress::new(100);
        progress.advance_bytes_acked(50);
        assert_eq!(progress.bytes_acked(), 100);
        progress.advance_bytes_acked(600);
        assert_eq!(progress.bytes_acked(), 600);
        progress.reset(10);
        assert_eq!((progress.bytes_acked(), progress.bytes_on_disk()), (10, 10));
    }

    #[test]
    fn stop_writer_calls_the_stopper_and_waits_for_release() {
        let progress = Arc::new(WriteProgress::new(0));
        progress.register_writer(7);
        let stopped = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&progress), Arc::clone(&stopped));
        progress.set_stopper(
            7,
            Box::new(move || {
                s.store(true, Ordering::SeqCst);
                let p = Arc::clone(&p);
                std::thread::spawn(move || p.release_writer(7));
            }),
        );
        assert!(progress.stop_writer(Duration::from_secs(5)));
        assert!(stopped.load(Ordering::SeqCst));
        assert!(!progress.has_writer());
    }

    #[test]
    fn stop_writer_times_out_when_the_writer_hangs_on() {
        let progress = WriteProgress::new(0);
        progress.register_writer(1);
        assert!(!progress.stop_writer(Duration::from_millis(20)));
        // A stale release does not clear a newer writer.
        progress.register_writer(2);
        progress.release_writer(1);
        assert!(progress.has_writer());
    }
}
