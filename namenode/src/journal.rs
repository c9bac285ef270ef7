//! The edit log writer with group commit.
//!
//! Mutating calls append their framed record to an in-memory queue while holding the
//! namespace lock (so log order is apply order), release the lock, then wait until a
//! sync covering their txid has finished. One thread writes and fdatasyncs: every record
//! queued while it was syncing goes out in the next write and is covered by the next
//! single fsync. Replies therefore never precede durability, and many concurrent calls
//! share one disk flush.
//!
//! Segments are files `edits_<first txid>` in the `current` directory; a roll (at a
//! checkpoint) closes the segment at a txid and starts the next one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;
use tracing::{error, info};

use crate::edits::{encode_edit_record, encode_segment_header, EditOp};

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("edit log failed, the namenode must stop: {0}")]
    Failed(String),
    #[error("edit log is shut down")]
    Closed,
}

/// The file name of the segment starting at `first_txid`.
pub fn segment_file_name(first_txid: u64) -> String {
    format!("edits_{first_txid:020}")
}

/// Parses `edits_<txid>`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("edits_")?.parse().ok()
}

/// Creates an empty segment (header only), synced, and syncs its directory.
pub fn create_segment(dir: &Path, first_txid: u64) -> std::io::Result<File> {
    let path = dir.join(segment_file_name(first_txid));
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    file.write_all(&encode_segment_header(first_txid))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[derive(Debug, Default)]
struct Queue {
    buf: Vec<u8>,
    /// Txid of the last record in `buf` (or of the last record ever queued).
    last_txid: u64,
    /// Close the current segment after this many bytes of `buf` (ending at txid).
    roll: Option<(usize, u64)>,
    shutdown: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    /// Signalled (with `queue` locked) after each sync, for blocking waiters.
    synced_signal: Condvar,
    synced: watch::Sender<u64>,
    failure: Mutex<Option<String>>,
}

/// The edit log writer (cheap to share: wrap in `Arc`).
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts writing into `current_segment` (already created with its header), whose
    /// records continue after `last_txid`.
    pub fn start(dir: PathBuf, current_segment: File, last_txid: u64) -> Journal {
        let (synced, _) = watch::channel(last_txid);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { last_txid, ..Queue::default() }),
            wakeup: Condvar::new(),
            synced_signal: Condvar::new(),
            synced,
            failure: Mutex::new(None),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("edit-log-sync".into())
            .spawn(move || sync_loop(worker, dir, current_segment))
            .expect("spawn the edit log thread");
        Journal { shared, thread: Mutex::new(Some(thread)) }
    }

    /// Why the log stopped accepting writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().expect("failure lock").clone()
    }

    /// Queues a record; the caller then waits with [`Journal::wait_synced`].
    pub fn append(&self, txid: u64, op: &EditOp) {
        let mut queue = self.shared.queue.lock().expect("journal queue");
        debug_assert!(txid == queue.last_txid + 1, "txids are consecutive");
        encode_edit_record(txid, op, &mut queue.buf);
        queue.last_txid = txid;
        drop(queue);
        self.shared.wakeup.notify_one();
    }

    /// Ends the current segment after the last queued record; the next segment starts
    /// at the following txid. Returns the txid the old segment ends with.
    pub fn roll(&self) -> u64 {
        let mut queue = self.shared.queue.lock().expect("journal queue");
        let at = (queue.buf.len(), queue.last_txid);
        queue.roll = Some(at);
        drop(queue);
        self.shared.wakeup.notify_one();
        at.1
    }

    /// The last txid known durable.
    pub fn synced_txid(&self) -> u64 {
        *self.shared.synced.borrow()
    }

    /// Waits until `txid` is durable on disk.
    pub async fn wait_synced(&self, txid: u64) -> Result<(), JournalError> {
        let mut rx = self.shared.synced.subscribe();
        loop {
            if *rx.borrow_and_update() >= txid {
                return Ok(());
            }
            if let Some(failure) = self.failure() {
                return Err(JournalError::Failed(failure));
            }
            if rx.changed().await.is_err() {
                return Err(JournalError::Closed);
            }
        }
    }

    /// Blocks until everything queued so far is durable (shutdown, checkpoints).
    pub fn flush_blocking(&self) -> Result<(), JournalError> {
        let mut queue = self.shared.queue.lock().expect("journal queue");
        let target = queue.last_txid;
        loop {
            if self.synced_txid() >= target {
                return Ok(());
            }
            if let Some(failure) = self.failure() {
                return Err(JournalError::Failed(failure));
            }
            queue = self.shared.synced_signal.wait(queue).expect("journal queue");
        }
    }

    /// Flushes and stops the writer thread.
    pub fn shutdown(&self) -> Result<(), JournalError> {
        let flushed = self.flush_blocking();
        self.shared
            .failure
            .lock()
            .expect("failure lock")
            .get_or_insert_with(|| "the edit log is closed".to_string());
        self.shared.queue.lock().expect("journal queue").shutdown = true;
        self.shared.wakeup.notify_one();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
        flushed
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("journal queue").shutdown = true;
        self.shared.wakeup.notify_one();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(shared: Arc<Shared>, dir: PathBuf, mut segment: File) {
    let mut spare = Vec::new();
    loop {
        let (mut buf, roll, last_txid) = {
            let mut queue = shared.queue.lock().expect("journal queue");
            while queue.buf.is_empty() && queue.roll.is_none() && !queue.shutdown {
                queue = shared.wakeup.wait(queue).expect("journal queue");
            }
            if queue.buf.is_empty() && queue.roll.is_none() && queue.shutdown {
                return;
            }
            let buf = std::mem::replace(&mut queue.buf, std::mem::take(&mut spare));
            (buf, queue.roll.take(), queue.last_txid)
        };
        let result = write_batch(&dir, &mut segment, &buf, roll);
        match result {
            Ok(()) => {
                let _queue = shared.queue.lock().expect("journal queue");
                shared.synced.send_replace(last_txid);
                shared.synced_signal.notify_all();
            }
            Err(e) => {
                let message = format!("writing edits in {}: {e}", dir.display());
                error!("{message}");
                *shared.failure.lock().expect("failure lock") = Some(message);
                // Wake waiters so they see the failure; stop writing for good.
                let _queue = shared.queue.lock().expect("journal queue");
                shared.synced.send_modify(|_| {});
                shared.synced_signal.notify_all();
                return;
            }
        }
        buf.clear();
        spare = buf;
    }
}

fn write_batch(
    dir: &Path,
    segment: &mut File,
    buf: &[u8],
    roll: Option<(usize, u64)>,
) -> std::io::Result<()> {
    match roll {
        None => {
            segment.write_all(buf)?;
            segment.sync_data()?;
        }
        Some((offset, end_txid)) => {
            segment.write_all(&buf[..offset])?;
            segment.sync_data()?;
            *segment = create_segment(dir, end_txid + 1)?;
            info!(first_txid = end_txid + 1, "started a new edit log segment");
            if offset < buf.len() {
                segment.write_all(&buf[offset..])?;
                segment.sync_data()?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edits::scan_segment;
    use crate::ids::InodeId;

    fn op(n: u64) -> EditOp {
        EditOp::SetReplication { id: InodeId(16386 + n), replication: 1 }
    }

    #[tokio::test]
    async fn group_commit_and_roll() {
        let dir = tempfile::tempdir().unwrap();
        let segment = create_segment(dir.path(), 1).unwrap();
        let journal = Arc::new(Journal::start(dir.path().to_path_buf(), segment, 0));
        let mut waiters = Vec::new();
        for txid in 1..=50u64 {
            journal.append(txid, &op(txid));
            let j = Arc::clone(&journal);
            waiters.push(tokio::spawn(async move { j.wait_synced(txid).await }));
        }
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert_eq!(journal.synced_txid(), 50);
        assert_eq!(journal.roll(), 50);
        journal.append(51, &op(51));
        journal.wait_synced(51).await.unwrap();
        journal.shutdown().unwrap();

        let first = std::fs::read(dir.path().join(segment_file_name(1))).unwrap();
        let scan = scan_segment(&first).unwrap();
        assert_eq!(scan.records.len(), 50);
        assert!(scan.torn_tail.is_none());
        let second = std::fs::read(dir.path().join(segment_file_name(51))).unwrap();
        let scan = scan_segment(&second).unwrap();
        assert_eq!(scan.first_txid, 51);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(parse_segment_file_name(&segment_file_name(51)), Some(51));
    }
}
