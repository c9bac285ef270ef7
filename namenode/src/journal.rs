//! The edit log writer with group commit.
//!
//! Mutating calls append their framed record to an in-memory queue while holding the
//! namespace lock (so log order is apply order), release the lock, then wait until a
//! sync covering their txid has finished. Replies therefore never precede durability,
//! and many concurrent calls share one disk flush.
//!
//! Slow syncs overlap: [`SYNC_THREADS`] threads take turns taking the queued records and
//! writing them (one writer at a time, so batches reach the file in queue order), then
//! each fdatasyncs on its own file handle without holding any lock. A thread starts a
//! batch beside a sync in flight only once that sync has taken [`SYNC_OVERLAP_AFTER`]: a
//! healthy disk keeps one sync at a time (fewer, larger batches), a stalled one no longer
//! holds every record queued behind it. An fdatasync makes durable everything written to
//! the file before it was called, so whichever sync returns makes its batch and every
//! earlier one durable. Each thread syncs through its own open file description, so a
//! writeback error is reported to every thread's next sync (Linux reports an error once
//! per description) and a success is never taken for a batch whose pages failed; after
//! any failure nothing more is acknowledged.
//!
//! Segments are files `edits_<first txid>` in the `current` directory; a roll (at a
//! checkpoint) closes the segment at a txid and starts the next one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::edits::{encode_edit_record, encode_segment_header, EditOp};

/// Threads writing and syncing batches. Two let a batch be written and synced while a
/// slow sync is still in the device: on the build VM's virtio disk, while other work keeps
/// it busy, a lone write+fdatasync takes about 4 ms while overlapping ones complete in
/// 0.2-0.4 ms (measured); quiet, one takes about 0.15 ms.
pub const SYNC_THREADS: usize = 2;
/// How long a sync runs before another thread starts the next batch beside it: twice a
/// healthy fdatasync on the build VM (0.13-0.15 ms), far below a stalled one (4 ms). Each
/// sync costs CPU (about 70 us of this VM's), so they overlap only when it pays. Measured
/// (64 clients, create+complete, quiet disk): overlapping at once 27.2k files/s with 10.2k
/// syncs, after 0.3 ms 27.8k/s with 7.6k syncs, after 1 ms 25.5k/s with 7.7k syncs.
pub const SYNC_OVERLAP_AFTER: Duration = Duration::from_micros(300);

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("edit log failed, the namenode must stop: {0}")]
    Failed(String),
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
    /// A write or sync failed: nothing more is written or acknowledged.
    failed: bool,
    /// A thread is writing a batch; the next batch waits for it (never for its sync).
    writing: bool,
    /// Sync threads waiting for work, and callers blocked in `flush_blocking`: a condvar
    /// is signalled only when someone waits on it (each signal is a system call, and
    /// `append` runs inside the namesystem's write lock).
    idle_threads: usize,
    flush_waiters: usize,
    /// When each thread's sync in flight started.
    syncing_since: [Option<Instant>; SYNC_THREADS],
    /// Emptied buffers, reused for the next batches.
    spare: Vec<Vec<u8>>,
}

/// The segment being written: one handle for writes, one per sync thread for syncs,
/// all opened before anything was written through them.
#[derive(Debug)]
struct Segment {
    writer: File,
    syncers: Vec<Arc<File>>,
}

impl Segment {
    fn open(dir: &Path, first_txid: u64, writer: File) -> std::io::Result<Segment> {
        let path = dir.join(segment_file_name(first_txid));
        let syncers = (0..SYNC_THREADS)
            .map(|_| OpenOptions::new().write(true).open(&path).map(Arc::new))
            .collect::<std::io::Result<_>>()?;
        Ok(Segment { writer, syncers })
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    /// Signalled (with `queue` locked) after each sync, for blocking waiters.
    synced_signal: Condvar,
    /// The last txid known durable.
    synced: AtomicU64,
    /// Tasks waiting for a txid, woken once a sync covers it (never before: with two
    /// syncs in flight, a sync of earlier records must not wake every waiter).
    waiters: Mutex<BTreeMap<u64, Vec<Waker>>>,
    failure: Mutex<Option<String>>,
    /// Used by the thread that is writing (`Queue::writing`).
    segment: Mutex<Option<Segment>>,
}

/// The edit log writer (cheap to share: wrap in `Arc`).
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Journal {
    /// Starts writing into `current_segment` (already created with its header), whose
    /// records continue after `last_txid`.
    pub fn start(dir: PathBuf, current_segment: File, last_txid: u64) -> Journal {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { last_txid, ..Queue::default() }),
            wakeup: Condvar::new(),
            synced_signal: Condvar::new(),
            synced: AtomicU64::new(last_txid),
            waiters: Mutex::new(BTreeMap::new()),
            failure: Mutex::new(None),
            segment: Mutex::new(None),
        });
        match Segment::open(&dir, last_txid + 1, current_segment) {
            Ok(segment) => *shared.segment.lock().expect("segment lock") = Some(segment),
            Err(e) => fail(&shared, format!("opening the edit log segment in {}: {e}", dir.display())),
        }
        let threads = (0..SYNC_THREADS)
            .map(|index| {
                let worker = Arc::clone(&shared);
                let dir = dir.clone();
                std::thread::Builder::new()
                    .name("edit-log-sync".into())
                    .spawn(move || sync_loop(worker, dir, index))
                    .expect("spawn the edit log thread")
            })
            .collect();
        Journal { shared, threads: Mutex::new(threads) }
    }

    /// Why the log stopped accepting writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().expect("failure lock").clone()
    }

    /// Queues a record; the caller then waits with [`Journal::wait_synced`].
    pub fn append(&self, txid: u64, op: &EditOp) {
        let mut queue = self.shared.queue.lock().expect("journal queue");
        debug_assert!(txid == queue.last_txid + 1, "txids are consecutive");
        // Records queued before this one already woke a thread, and a writing thread
        // looks again when it is done.
        let wake = queue.buf.is_empty() && queue.idle_threads > 0 && !queue.writing;
        encode_edit_record(txid, op, &mut queue.buf);
        queue.last_txid = txid;
        drop(queue);
        if wake {
            self.shared.wakeup.notify_one();
        }
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
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Waits until `txid` is durable on disk.
    pub async fn wait_synced(&self, txid: u64) -> Result<(), JournalError> {
        std::future::poll_fn(|cx| {
            if self.synced_txid() >= txid {
                return Poll::Ready(Ok(()));
            }
            if let Some(failure) = self.failure() {
                return Poll::Ready(Err(JournalError::Failed(failure)));
            }
            let mut waiters = self.shared.waiters.lock().expect("journal waiters");
            // A sync publishing now either finds this waker or stored its txid before
            // taking the lock: checked again under it, no wake-up is lost.
            if self.synced_txid() >= txid {
                return Poll::Ready(Ok(()));
            }
            let wakers = waiters.entry(txid).or_default();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
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
            queue.flush_waiters += 1;
            queue = self.shared.synced_signal.wait(queue).expect("journal queue");
            queue.flush_waiters -= 1;
        }
    }

    /// Flushes and stops the writer threads.
    pub fn shutdown(&self) -> Result<(), JournalError> {
        let flushed = self.flush_blocking();
        self.shared
            .failure
            .lock()
            .expect("failure lock")
            .get_or_insert_with(|| "the edit log is closed".to_string());
        wake_waiters(&self.shared, u64::MAX);
        self.stop_threads();
        flushed
    }

    fn stop_threads(&self) {
        self.shared.queue.lock().expect("journal queue").shutdown = true;
        self.shared.wakeup.notify_all();
        for thread in self.threads.lock().expect("thread lock").drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Records a failure (the first one wins), stops further writes and wakes every waiter so
/// it sees it.
fn fail(shared: &Shared, message: String) {
    error!("{message}");
    // Poison-tolerant: this also runs while a sync thread unwinds.
    shared.failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(message);
    let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    queue.failed = true;
    shared.synced_signal.notify_all();
    drop(queue);
    shared.wakeup.notify_all();
    wake_waiters(shared, u64::MAX);
}

/// Wakes the tasks waiting for txids up to `txid` (all of them after a failure, which
/// they then see).
fn wake_waiters(shared: &Shared, txid: u64) {
    let ready = {
        let mut waiters = shared.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        match txid.checked_add(1) {
            Some(after) => {
                let later = waiters.split_off(&after);
                std::mem::replace(&mut *waiters, later)
            }
            None => std::mem::take(&mut *waiters),
        }
    };
    for waker in ready.into_values().flatten() {
        waker.wake();
    }
}

/// Fails the journal if a sync thread unwinds, so callers get an error and the namenode
/// stops instead of waiting forever for syncs that will not come.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fail(self.0, "an edit log sync thread panicked".to_string());
        }
    }
}

fn sync_loop(shared: Arc<Shared>, dir: PathBuf, index: usize) {
    let _fail_on_panic = FailOnPanic(&shared);
    loop {
        let mut queue = shared.queue.lock().expect("journal queue");
        loop {
            let work = !queue.buf.is_empty() || queue.roll.is_some();
            if queue.failed || (queue.shutdown && !work && !queue.writing) {
                return;
            }
            if work && !queue.writing {
                let youngest = queue.syncing_since.iter().flatten().map(Instant::elapsed).min();
                match youngest {
                    Some(age) if age < SYNC_OVERLAP_AFTER => {
                        // Not idle: the thread now syncing takes this work itself when
                        // done, unless the timer runs out first.
                        queue = shared
                            .wakeup
                            .wait_timeout(queue, SYNC_OVERLAP_AFTER.saturating_sub(age))
                            .expect("journal queue")
                            .0;
                        continue;
                    }
                    _ => break,
                }
            }
            queue.idle_threads += 1;
            queue = shared.wakeup.wait(queue).expect("journal queue");
            queue.idle_threads -= 1;
        }
        let spare = queue.spare.pop().unwrap_or_default();
        let mut buf = std::mem::replace(&mut queue.buf, spare);
        let (roll, last_txid) = (queue.roll.take(), queue.last_txid);
        queue.writing = true;
        drop(queue);
        let (written, syncer) = {
            let mut segment = shared.segment.lock().expect("segment lock");
            match segment.as_mut() {
                Some(current) => {
                    let written = write_batch(&dir, current, &buf, roll);
                    (written, Some(Arc::clone(&current.syncers[index])))
                }
                None => (Ok(()), None),
            }
        };
        let wake_next = {
            let mut queue = shared.queue.lock().expect("journal queue");
            queue.writing = false;
            queue.syncing_since[index] = Some(Instant::now());
            (!queue.buf.is_empty() || queue.roll.is_some() || queue.shutdown) && queue.idle_threads > 0
        };
        if wake_next {
            // Another thread takes the next batch if this sync runs long.
            shared.wakeup.notify_one();
        }
        let Some(syncer) = syncer else { return };
        match written.and_then(|()| syncer.sync_data()) {
            Ok(()) => {
                let mut queue = shared.queue.lock().expect("journal queue");
                queue.syncing_since[index] = None;
                let published = !queue.failed;
                if published {
                    shared.synced.fetch_max(last_txid, Ordering::AcqRel);
                    if queue.flush_waiters > 0 {
                        shared.synced_signal.notify_all();
                    }
                }
                buf.clear();
                queue.spare.push(buf);
                drop(queue);
                if published {
                    wake_waiters(&shared, last_txid);
                }
            }
            Err(e) => {
                fail(&shared, format!("writing edits in {}: {e}", dir.display()));
                return;
            }
        }
    }
}

/// Writes a batch into the segment; at a roll, syncs the old segment up to the roll
/// point and continues in a new one. The caller syncs what was written last.
fn write_batch(
    dir: &Path,
    segment: &mut Segment,
    buf: &[u8],
    roll: Option<(usize, u64)>,
) -> std::io::Result<()> {
    match roll {
        None => segment.writer.write_all(buf),
        Some((offset, end_txid)) => {
            segment.writer.write_all(&buf[..offset])?;
            segment.writer.sync_data()?;
            let writer = create_segment(dir, end_txid + 1)?;
            *segment = Segment::open(dir, end_txid + 1, writer)?;
            info!(first_txid = end_txid + 1, "started a new edit log segment");
            segment.writer.write_all(&buf[offset..])
        }
    }
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

    /// Appenders on several threads (in txid order under one lock, as the namesystem
    /// appends) with rolls in between: every record lands once, in order, in the segment
    /// its roll put it in, and a waiter is released only once its txid is durable.
    #[test]
    fn overlapping_syncs_keep_order_across_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let segment = create_segment(dir.path(), 1).unwrap();
        let journal = Arc::new(Journal::start(dir.path().to_path_buf(), segment, 0));
        let next_txid = Arc::new(Mutex::new(0u64));
        let rolls = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let (journal, next_txid, rolls) =
                    (Arc::clone(&journal), Arc::clone(&next_txid), Arc::clone(&rolls));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    for i in 0..250u64 {
                        let txid = {
                            let mut next = next_txid.lock().unwrap();
                            *next += 1;
                            let op = EditOp::SetReplication { id: InodeId(16386 + *next), replication: 1 };
                            journal.append(*next, &op);
                            if worker == 0 && i % 100 == 99 {
                                rolls.lock().unwrap().push(journal.roll());
                            }
                            *next
                        };
                        runtime.block_on(journal.wait_synced(txid)).unwrap();
                        assert!(journal.synced_txid() >= txid);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        runtime.block_on(journal.wait_synced(1000)).unwrap();
        journal.shutdown().unwrap();

        let mut firsts = vec![1u64];
        firsts.extend(rolls.lock().unwrap().iter().map(|end| end + 1));
        let mut expected = 1u64;
        for first in firsts {
            let bytes = std::fs::read(dir.path().join(segment_file_name(first))).unwrap();
            let scan = scan_segment(&bytes).unwrap();
            assert_eq!(scan.first_txid, first);
            assert!(scan.torn_tail.is_none());
            for record in &scan.records {
                assert_eq!(record.txid, expected);
                expected += 1;
            }
        }
        assert_eq!(expected, 1001, "every record is in exactly one segment");
    }

    /// A waiter is woken once its own txid is durable, not by syncs of earlier records.
    #[test]
    fn waiters_wake_only_when_their_txid_is_synced() {
        use std::future::Future;
        use std::sync::atomic::AtomicUsize;
        use std::task::{Context, Wake};

        struct Counter(AtomicUsize);
        impl Wake for Counter {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let segment = create_segment(dir.path(), 1).unwrap();
        let journal = Journal::start(dir.path().to_path_buf(), segment, 0);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut context = Context::from_waker(&waker);
        let mut wait = Box::pin(journal.wait_synced(3));
        assert!(wait.as_mut().poll(&mut context).is_pending());
        for txid in 1..=2 {
            journal.append(txid, &op(txid));
        }
        journal.flush_blocking().unwrap();
        assert_eq!(journal.synced_txid(), 2);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "txids 1-2 synced: not woken");
        journal.append(3, &op(3));
        journal.flush_blocking().unwrap();
        // Published before the sync thread wakes the waiters: give it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counter.0.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(wait.as_mut().poll(&mut context).is_ready());
        journal.shutdown().unwrap();
    }
}
