//! A single-threaded executor that drives one ring: tasks are futures polled on this
//! thread; the loop polls every woken task, submits all SQEs they queued with one
//! io_uring_enter (waiting for a completion only when nothing is runnable), then reaps
//! completions in batches, which wakes the tasks waiting for them.
//!
//! Other threads reach a ring through [`Remote`]: it queues a job and, if the ring thread
//! is parked in io_uring_enter, writes to an eventfd whose read is always armed on the ring.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::error::Errno;
use super::limits::DRAIN_TIMEOUT_MS;
use super::ops::Io;
use super::ring::{RingConfig, RingError};

/// Id of the future passed to `block_on` in the ready queue.
const MAIN_TASK: usize = usize::MAX;

/// Work sent to a ring from another thread.
type Job = Box<dyn FnOnce(&Io) + Send>;

/// State shared with wakers and remotes, which may live on other threads.
pub(crate) struct ReadyQueue {
    tasks: Mutex<VecDeque<usize>>,
    jobs: Mutex<VecDeque<Job>>,
    /// The ring thread is (about to be) blocked in io_uring_enter.
    parked: AtomicBool,
    eventfd: OwnedFd,
}

impl ReadyQueue {
    fn new() -> Result<ReadyQueue, Errno> {
        // SAFETY: eventfd takes integers and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)));
        }
        // SAFETY: eventfd just returned this fd; nothing else owns it.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ReadyQueue {
            tasks: Mutex::new(VecDeque::with_capacity(256)),
            jobs: Mutex::new(VecDeque::new()),
            parked: AtomicBool::new(false),
            eventfd,
        })
    }

    fn push_task(&self, id: usize) {
        self.tasks.lock().expect("ready queue poisoned").push_back(id);
        self.unpark();
    }

    /// Wakes the ring thread if it is blocked in the kernel (only a cross-thread wake can
    /// find it parked: the ring thread itself never wakes tasks while parked).
    fn unpark(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            let written = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            // EAGAIN means the counter is saturated: the ring is being woken anyway.
            debug_assert!(written == 8 || written < 0, "short eventfd write");
        }
    }

    fn has_work(&self) -> bool {
        !self.tasks.lock().expect("ready queue poisoned").is_empty()
            || !self.jobs.lock().expect("job queue poisoned").is_empty()
    }
}

/// The waker of one task: queues its id once until the task is polled again.
struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push_task(self.id);
        }
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Arc<TaskWaker>,
}

pub(crate) struct Executor {
    tasks: RefCell<Vec<Option<Task>>>,
    vacant: RefCell<Vec<usize>>,
    pub(crate) ready: Arc<ReadyQueue>,
    /// Ids taken off the ready queue for one pass (reused, so no allocation per pass).
    batch: RefCell<Vec<usize>>,
    main_ready: Cell<bool>,
}

impl Executor {
    fn new() -> Result<Executor, Errno> {
        Ok(Executor {
            tasks: RefCell::new(Vec::with_capacity(256)),
            vacant: RefCell::new(Vec::with_capacity(256)),
            ready: Arc::new(ReadyQueue::new()?),
            batch: RefCell::new(Vec::with_capacity(256)),
            main_ready: Cell::new(true),
        })
    }

    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().iter().filter(|task| task.is_some()).count()
    }

    fn spawn_boxed(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let id = self.vacant.borrow_mut().pop().unwrap_or_else(|| {
            let mut tasks = self.tasks.borrow_mut();
            tasks.push(None);
            tasks.len() - 1
        });
        let waker = Arc::new(TaskWaker { id, queued: AtomicBool::new(true), ready: self.ready.clone() });
        let previous = self.tasks.borrow_mut()[id].replace(Task { future, waker });
        assert!(previous.is_none(), "task slot {id} reused while occupied");
        self.ready.push_task(id);
    }

    /// Polls every task that was woken before this pass started.
    fn run_ready(&self) {
        let mut batch = self.batch.borrow_mut();
        batch.extend(self.ready.tasks.lock().expect("ready queue poisoned").drain(..));
        for &id in batch.iter() {
            if id == MAIN_TASK {
                self.main_ready.set(true);
                continue;
            }
            // Taken out while polling: the task may spawn, which needs the slab.
            let Some(mut task) = self.tasks.borrow_mut().get_mut(id).and_then(Option::take) else {
                continue; // A stale wake of a finished task.
            };
            task.waker.queued.store(false, Ordering::Release);
            let waker = Waker::from(task.waker.clone());
            let mut cx = Context::from_waker(&waker);
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| task.future.as_mut().poll(&mut cx)));
            match polled {
                Ok(Poll::Pending) => self.tasks.borrow_mut()[id] = Some(task),
                Ok(Poll::Ready(())) => self.vacant.borrow_mut().push(id),
                Err(panic) => {
                    // One connection's bug must not take down the ring and every other
                    // connection on it: log, drop the task (its ops are cancelled).
                    let message = panic_message(&panic);
                    tracing::error!(task = id, %message, "task panicked; dropped");
                    drop(task);
                    self.vacant.borrow_mut().push(id);
                }
            }
        }
        batch.clear();
    }

    fn run_jobs(&self, io: &Io) {
        loop {
            let Some(job) = self.ready.jobs.lock().expect("job queue poisoned").pop_front() else { break };
            job(io);
        }
    }

    /// Drops every task (their pending ops become ignored and are cancelled).
    fn drop_all_tasks(&self) {
        loop {
            let tasks: Vec<Task> = self.tasks.borrow_mut().iter_mut().filter_map(Option::take).collect();
            if tasks.is_empty() {
                break;
            }
            // Dropping a task may spawn or drop others; loop until none is left.
            drop(tasks);
        }
        self.tasks.borrow_mut().clear();
        self.vacant.borrow_mut().clear();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Owner of one ring and its executor. Create it on the thread that will use it (the
/// ring is SINGLE_ISSUER); dropping it cancels every in-flight op and waits for the kernel
/// to finish with their buffers before the arenas can be freed.
pub struct Runtime {
    io: Io,
}

impl Runtime {
    pub fn new(config: &RingConfig) -> Result<Runtime, RingError> {
        let executor = Executor::new().map_err(|errno| RingError::EventFd { errno })?;
        let io = Io::new(config, executor)?;
        let runtime = Runtime { io };
        runtime.io.spawn(wake_listener(runtime.io.clone()));
        Ok(runtime)
    }

    pub fn io(&self) -> &Io {
        &self.io
    }

    /// A handle other threads use to run work on this ring.
    pub fn remote(&self) -> Remote {
        Remote { ready: self.io.shared.executor.ready.clone() }
    }

    /// Runs tasks and the ring until `future` completes.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let shared = &self.io.shared;
        let executor = &shared.executor;
        let mut future = pin!(future);
        let main_task = Arc::new(TaskWaker {
            id: MAIN_TASK,
            queued: AtomicBool::new(false),
            ready: executor.ready.clone(),
        });
        let main_waker = Waker::from(main_task.clone());
        executor.main_ready.set(true);
        loop {
            if executor.main_ready.replace(false) {
                main_task.queued.store(false, Ordering::Release);
                let mut cx = Context::from_waker(&main_waker);
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    // Submit what the last poll queued (e.g. cancels) before returning.
                    shared.core.enter(false);
                    return output;
                }
            }
            executor.run_ready(); // Loops: bounded by the tasks woken before this pass.
            executor.run_jobs(&self.io);
            let runnable = executor.main_ready.get() || executor.ready.has_work();
            if runnable {
                shared.core.enter(false);
            } else {
                executor.ready.parked.store(true, Ordering::SeqCst);
                if executor.ready.has_work() {
                    executor.ready.parked.store(false, Ordering::SeqCst);
                    shared.core.enter(false);
                } else {
                    shared.core.enter(true);
                    executor.ready.parked.store(false, Ordering::SeqCst);
                }
            }
            shared.core.reap();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let shared = &self.io.shared;
        shared.executor.drop_all_tasks();
        shared.executor.ready.jobs.lock().map(|mut jobs| jobs.clear()).ok();
        if let Err(pending) = shared.core.drain(Duration::from_millis(DRAIN_TIMEOUT_MS)) {
            // The kernel may still write into the arenas: leak them (memory is safer lost
            // than reused) before failing loudly.
            std::mem::forget(shared.control.clone());
            std::mem::forget(shared.packets.clone());
            let count = pending.len();
            if std::thread::panicking() {
                // A second panic would abort the process; the first one is already on its way.
                tracing::error!(count, ?pending, "ring dropped with ops still in flight; arenas leaked");
                return;
            }
            panic!("ring dropped with {count} ops still in flight after cancel: {pending:?}");
        }
        assert!(shared.core.inflight.borrow().is_empty(), "in-flight table not empty after drain");
    }
}

/// Keeps a read armed on the wake-up eventfd, so a remote wake ends io_uring_enter.
async fn wake_listener(io: Io) {
    let fd = io.shared.executor.ready.eventfd.as_raw_fd();
    // Taken once, while the arena is still empty, and kept: a listener that had to wait
    // for a control slot could not end the io_uring_enter that frees one.
    let mut slot = io.control_arena().acquire(8).await.expect("8 bytes fit a control slot");
    loop {
        let (result, returned) = io.read_eventfd(fd, slot).await;
        slot = returned;
        if let Err(error) = result {
            tracing::error!(%error, "reading the ring's wake-up eventfd failed; remote wakes now rely on polling");
            io.sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A `Send` handle to a ring, for other threads.
#[derive(Clone)]
pub struct Remote {
    ready: Arc<ReadyQueue>,
}

impl Remote {
    /// Runs `job` on the ring's thread (it may spawn tasks there).
    pub fn run(&self, job: impl FnOnce(&Io) + Send + 'static) {
        self.ready.jobs.lock().expect("job queue poisoned").push_back(Box::new(job));
        self.ready.unpark();
    }
}

/// Output of a spawned task.
pub struct JoinHandle<T> {
    state: Rc<JoinState<T>>,
}

struct JoinState<T> {
    output: RefCell<Option<T>>,
    finished: Cell<bool>,
    aborted: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
    task_waker: RefCell<Option<Waker>>,
}

impl<T> JoinHandle<T> {
    /// Stops the task at its next poll: its future is dropped, which cancels its ops.
    pub fn abort(&self) {
        self.state.aborted.set(true);
        if let Some(waker) = self.state.task_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.state.finished.get()
    }
}

impl<T> Future for JoinHandle<T> {
    /// `None` if the task was aborted or panicked.
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.state.finished.get() {
            return Poll::Ready(self.state.output.borrow_mut().take());
        }
        *self.state.waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Marks the join state finished when the task ends in any way (done, aborted, panicked,
/// dropped at shutdown).
struct FinishGuard<T>(Rc<JoinState<T>>);

impl<T> Drop for FinishGuard<T> {
    fn drop(&mut self) {
        self.0.finished.set(true);
        if let Some(waker) = self.0.waiter.borrow_mut().take() {
            waker.wake();
        }
    }
}

impl Io {
    /// Runs `future` as a task on this ring.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let state = Rc::new(JoinState {
            output: RefCell::new(None),
            finished: Cell::new(false),
            aborted: Cell::new(false),
            waiter: RefCell::new(None),
            task_waker: RefCell::new(None),
        });
        let task_state = state.clone();
        let task = async move {
            let _finish = FinishGuard(task_state.clone());
            let mut future = pin!(future);
            let output = std::future::poll_fn(|cx| {
                if task_state.aborted.get() {
                    return Poll::Ready(None);
                }
                *task_state.task_waker.borrow_mut() = Some(cx.waker().clone());
                future.as_mut().poll(cx).map(Some)
            })
            .await;
            *task_state.output.borrow_mut() = output;
        };
        self.shared.executor.spawn_boxed(Box::pin(task));
        JoinHandle { state }
    }

    /// Tasks alive on this ring (the internal wake-up listener included).
    pub fn task_count(&self) -> usize {
        self.shared.executor.task_count()
    }
}
