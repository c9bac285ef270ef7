//! One io_uring instance per thread: setup with the best flags the kernel accepts (and the
//! reason for each one it refused), batched submission, and completions reaped in batches
//! and handed to the in-flight table. Completions only mark entries done and queue wakers;
//! no task runs from inside the reaper.

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::error::Errno;
use super::inflight::{Abandoned, Delivered, InFlight, CANCEL_USER_DATA, LINK_TIMEOUT_USER_DATA};
use super::limits;
use super::probe::{memlock_limit, Unavailable};

/// Sizes of one ring and its resources; defaults come from [`limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    pub submission_entries: u32,
    pub completion_entries: u32,
    pub in_flight_max: usize,
    pub packet_slot_count: usize,
    pub control_slot_count: usize,
    pub fixed_file_count: usize,
    pub pipe_count: usize,
    pub pipe_size_bytes: usize,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            submission_entries: limits::SUBMISSION_ENTRIES,
            completion_entries: limits::COMPLETION_ENTRIES,
            in_flight_max: limits::IN_FLIGHT_MAX,
            packet_slot_count: limits::PACKET_SLOT_COUNT_DEFAULT,
            control_slot_count: limits::CONTROL_SLOT_COUNT_DEFAULT,
            fixed_file_count: limits::FIXED_FILE_COUNT_DEFAULT,
            pipe_count: limits::PIPE_COUNT_DEFAULT,
            pipe_size_bytes: limits::PIPE_SIZE,
        }
    }
}

impl RingConfig {
    /// Bytes of registered (pinned) buffers this configuration needs.
    pub fn locked_bytes(&self) -> u64 {
        (self.packet_slot_count * limits::PACKET_SLOT_SIZE
            + self.control_slot_count * limits::CONTROL_SLOT_SIZE) as u64
    }

    pub fn validate(&self) -> Result<(), RingError> {
        let invalid = |field: &'static str, value: usize, reason: &'static str| {
            Err(RingError::Config { field, value, reason })
        };
        if !self.submission_entries.is_power_of_two() || self.submission_entries < 8 {
            return invalid("submission_entries", self.submission_entries as usize, "a power of two >= 8");
        }
        if (self.completion_entries as usize) < self.in_flight_max * limits::COMPLETIONS_PER_OP_MAX + 1 {
            return invalid(
                "completion_entries",
                self.completion_entries as usize,
                "at least 3 per in-flight op, so completions never overflow",
            );
        }
        if (limits::CHAIN_OPS_MAX) > self.submission_entries as usize {
            return invalid("submission_entries", self.submission_entries as usize, "room for a whole chain");
        }
        if self.in_flight_max < limits::CHAIN_OPS_MAX + 1 {
            return invalid("in_flight_max", self.in_flight_max, "room for a whole chain and its timeout");
        }
        if self.packet_slot_count * limits::PACKET_SLOT_SIZE < ringfs_common::limits::PACKET_SIZE_MAX {
            return invalid("packet_slot_count", self.packet_slot_count, "room for one 16 MiB packet");
        }
        if self.control_slot_count < 2 {
            return invalid("control_slot_count", self.control_slot_count, "at least 2");
        }
        if self.fixed_file_count == 0 || self.fixed_file_count > u16::MAX as usize {
            return invalid("fixed_file_count", self.fixed_file_count, "between 1 and 65535");
        }
        if self.pipe_size_bytes < ringfs_common::limits::READ_PACKET_DATA_SIZE + 4096 {
            return invalid("pipe_size_bytes", self.pipe_size_bytes, "a read packet plus one page");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("ring config {field} = {value} is invalid: must be {reason}")]
    Config { field: &'static str, value: usize, reason: &'static str },
    #[error("registering {count} sparse fixed-file slots: {errno}")]
    RegisterFiles { count: usize, errno: Errno },
    #[error("creating {count} pipes of {size_bytes} bytes: {errno}")]
    Pipes { count: usize, size_bytes: usize, errno: Errno },
    #[error("creating the wake-up eventfd: {errno}")]
    EventFd { errno: Errno },
}

/// Which setup flags the ring got, and why any better ones were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// E.g. "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL".
    pub flags: &'static str,
    /// One line per refused configuration: "DEFER_TASKRUN: EINVAL (needs Linux 6.1)".
    pub fallbacks: Vec<String>,
    pub registered_ring_fd: bool,
    /// Slots of the fixed-file table actually registered.
    pub fixed_file_count: usize,
}

/// The setups tried in order: the first the kernel accepts wins.
const SETUPS: [(&str, &str); 4] = [
    ("SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL", "DEFER_TASKRUN needs Linux 6.1"),
    ("SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL", "SINGLE_ISSUER needs Linux 6.0"),
    ("COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL", "COOP_TASKRUN needs Linux 5.19"),
    ("(no setup flags)", ""),
];

fn build_ring(config: &RingConfig) -> Result<(IoUring, SetupReport), Unavailable> {
    let mut fallbacks = Vec::new();
    for (index, (flags, needs)) in SETUPS.iter().enumerate() {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(config.completion_entries);
        if index <= 2 {
            builder.setup_coop_taskrun().setup_taskrun_flag().setup_submit_all();
        }
        if index <= 1 {
            builder.setup_single_issuer();
        }
        if index == 0 {
            builder.setup_defer_taskrun();
        }
        match builder.build(config.submission_entries) {
            Ok(ring) => {
                let report = SetupReport { flags, fallbacks, registered_ring_fd: false, fixed_file_count: 0 };
                return Ok((ring, report));
            }
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) && index + 1 < SETUPS.len() => {
                fallbacks.push(format!("{flags}: {} ({needs})", Errno(libc::EINVAL)));
            }
            Err(error) => return Err(Unavailable::diagnose(error.raw_os_error().unwrap_or(0))),
        }
    }
    unreachable!("the last setup has no flags and either succeeds or returns an error")
}

/// RLIMIT_NOFILE's soft limit (at least 1).
fn nofile_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass and touches nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return 1024; // The traditional default, should the call ever fail.
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX).max(1)
}

/// Counters that show batching at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub sqes_submitted: u64,
    pub enter_calls: u64,
    pub completions: u64,
    pub zc_copied: u64,
    /// SEND_ZC notifications that arrived after their op was settled.
    pub stray_notifications: u64,
}

pub(crate) struct RingCore {
    pub(crate) uring: Rc<IoUring>,
    pub(crate) inflight: RefCell<InFlight>,
    pub(crate) setup: SetupReport,
    stats: Cell<RingStats>,
}

impl RingCore {
    /// Creates the ring and registers the buffers and a sparse fixed-file table.
    pub(crate) fn new(config: &RingConfig, buffers: &[libc::iovec]) -> Result<RingCore, RingError> {
        config.validate()?;
        let (uring, mut setup) = build_ring(config)?;
        // SAFETY: each iovec describes a whole arena allocation. Every arena lives at least as
        // long as this ring's in-flight ops: Runtime::drop drains the ring before the arenas
        // can be freed, and leaks them if the drain fails. The kernel pins the pages itself.
        if let Err(error) = unsafe { uring.submitter().register_buffers(buffers) } {
            let errno = error.raw_os_error().unwrap_or(0);
            let needed_bytes = buffers.iter().map(|iovec| iovec.iov_len as u64).sum();
            return Err(match errno {
                libc::ENOMEM => Unavailable::Memlock { needed_bytes, limit_bytes: memlock_limit().0 },
                other => Unavailable::diagnose(other),
            }
            .into());
        }
        // The kernel refuses a file table larger than RLIMIT_NOFILE (EMFILE).
        let nofile = nofile_limit();
        let fixed_file_count = config.fixed_file_count.min(nofile);
        if fixed_file_count < config.fixed_file_count {
            setup.fallbacks.push(format!(
                "{} fixed-file slots: RLIMIT_NOFILE is {nofile}, table cut to that",
                config.fixed_file_count
            ));
        }
        uring.submitter().register_files_sparse(fixed_file_count as u32).map_err(|error| {
            RingError::RegisterFiles {
                count: fixed_file_count,
                errno: Errno(error.raw_os_error().unwrap_or(0)),
            }
        })?;
        // Saves an fd lookup per io_uring_enter; optional (Linux 5.18).
        match uring.submitter().register_ring_fd() {
            Ok(()) => setup.registered_ring_fd = true,
            Err(error) => setup.fallbacks.push(format!("register_ring_fd: {error}")),
        }
        setup.fixed_file_count = fixed_file_count;
        Ok(RingCore {
            uring: Rc::new(uring),
            inflight: RefCell::new(InFlight::new(config.in_flight_max)),
            setup,
            stats: Cell::new(RingStats::default()),
        })
    }

    pub(crate) fn stats(&self) -> RingStats {
        let mut stats = self.stats.get();
        let table = self.inflight.borrow();
        stats.zc_copied = table.zc_copied_count;
        stats.stray_notifications = table.stray_notification_count;
        stats
    }

    /// Queues SQEs as one contiguous run (a linked chain must not be split across
    /// submissions). Only when the SQ lacks room does this enter the kernel itself.
    pub(crate) fn push(&self, entries: &[squeue::Entry]) {
        assert!(entries.len() <= self.uring.params().sq_entries() as usize, "chain longer than the SQ");
        for attempt in 0.. {
            {
                // SAFETY: the ring is used from this thread only (RingCore is !Send) and no
                // other SubmissionQueue handle is alive: every use is scoped like this one.
                let mut sq = unsafe { self.uring.submission_shared() };
                if sq.capacity() - sq.len() >= entries.len() {
                    // SAFETY: each entry's buffers, fds and timespecs are owned by its
                    // in-flight entry (or by the arena for registered buffers) until its
                    // completion arrives, as the callers' Holds guarantee.
                    unsafe { sq.push_multiple(entries) }.expect("room checked above");
                    return;
                }
            }
            assert!(attempt < 64, "the submission queue stays full");
            self.enter(false);
            self.reap();
        }
    }

    /// Submits everything queued. With `wait`, blocks until at least one completion is
    /// ready. Errors the kernel uses for "not now" reap first and retry.
    pub(crate) fn enter(&self, wait: bool) {
        let submitter = self.uring.submitter();
        let (queued, taskrun) = {
            // SAFETY: as in push: single thread, no other SQ handle alive.
            let sq = unsafe { self.uring.submission_shared() };
            (sq.len(), sq.taskrun() || sq.cq_overflow())
        };
        if !wait && queued == 0 && !taskrun {
            return; // Nothing to submit and no deferred completions: skip the syscall.
        }
        let mut stats = self.stats.get();
        stats.enter_calls += 1;
        let result = if wait { submitter.submit_and_wait(1) } else { submitter.submit() };
        match result {
            Ok(submitted) => stats.sqes_submitted += submitted as u64,
            // A signal interrupted the wait; the loop comes back around.
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => {}
            // CQ overflow backlog (EBUSY) or no memory for requests right now (EAGAIN):
            // reaping makes room; the caller's loop resubmits.
            Err(error) if matches!(error.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {}
            Err(error) => panic!("io_uring_enter failed: {error}; the ring is unusable"),
        }
        self.stats.set(stats);
    }

    /// Waits up to `timeout` for a completion (used while draining).
    fn enter_with_timeout(&self, timeout: Duration) {
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(error) => panic!("io_uring_enter failed while draining: {error}"),
        }
    }

    /// Reaps every available completion in batches; returns how many.
    pub(crate) fn reap(&self) -> usize {
        let mut batch = [const { MaybeUninit::<cqueue::Entry>::uninit() }; limits::CQE_BATCH_MAX];
        let mut total = 0;
        loop {
            let cqes = {
                // SAFETY: single thread, and no other CompletionQueue handle is alive (each
                // use is scoped like this one); dropping it publishes the new head.
                let mut cq = unsafe { self.uring.completion_shared() };
                let filled = cq.fill(&mut batch);
                filled.iter().map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())).collect::<ArrayBatch>()
            };
            if cqes.len == 0 {
                break;
            }
            total += cqes.len;
            for &(user_data, result, flags) in cqes.as_slice() {
                self.dispatch(user_data, result, flags);
            }
        }
        let mut stats = self.stats.get();
        stats.completions += total as u64;
        self.stats.set(stats);
        total
    }

    fn dispatch(&self, user_data: u64, result: i32, flags: u32) {
        if user_data == CANCEL_USER_DATA || user_data == LINK_TIMEOUT_USER_DATA {
            // The op they aimed at reports its own outcome.
            return;
        }
        let mut settled = {
            let mut table = self.inflight.borrow_mut();
            table.deliver(user_data, result, flags);
            std::mem::take(&mut table.settled)
        };
        // Outside the borrow: releasing a fixed file or a slot may wake tasks.
        for delivered in settled.drain(..) {
            match delivered {
                Delivered::Nothing => {}
                Delivered::Wake(waker) => waker.wake(),
                Delivered::Release(holds) => drop(holds),
            }
        }
        self.inflight.borrow_mut().settled = settled; // Keep the capacity.
    }

    /// The future of an op was dropped: cancel it if the kernel still has it.
    pub(crate) fn abandon(&self, index: u32, generation: u32) {
        let abandoned = self.inflight.borrow_mut().abandon(index, generation);
        match abandoned {
            Abandoned::Cancel { user_data } => {
                let cancel = opcode::AsyncCancel::new(user_data).build().user_data(CANCEL_USER_DATA);
                self.push(&[cancel]);
            }
            Abandoned::Release(holds) => drop(holds),
        }
    }

    /// Cancels everything in flight and waits until the table is empty, at most
    /// `timeout`. Returns the names of ops still in flight if it gives up.
    pub(crate) fn drain(&self, timeout: Duration) -> Result<(), Vec<&'static str>> {
        let deadline = Instant::now() + timeout;
        let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
        self.push(&[cancel_all.user_data(CANCEL_USER_DATA)]);
        while !self.inflight.borrow().is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.inflight.borrow().pending_ops());
            }
            self.enter_with_timeout((deadline - now).min(Duration::from_millis(100)));
            self.reap();
        }
        Ok(())
    }
}

/// A fixed-size copy of one CQE batch, so handlers run after the CQ head is published.
struct ArrayBatch {
    items: [(u64, i32, u32); limits::CQE_BATCH_MAX],
    len: usize,
}

impl ArrayBatch {
    fn as_slice(&self) -> &[(u64, i32, u32)] {
        &self.items[..self.len]
    }
}

impl FromIterator<(u64, i32, u32)> for ArrayBatch {
    fn from_iter<I: IntoIterator<Item = (u64, i32, u32)>>(iter: I) -> ArrayBatch {
        let mut batch = ArrayBatch { items: [(0, 0, 0); limits::CQE_BATCH_MAX], len: 0 };
        for item in iter {
            batch.items[batch.len] = item;
            batch.len += 1;
        }
        batch
    }
}

impl std::fmt::Display for SetupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.flags)?;
        if self.registered_ring_fd {
            write!(f, " +registered ring fd")?;
        }
        for fallback in &self.fallbacks {
            write!(f, "; refused {fallback}")?;
        }
        Ok(())
    }
}
