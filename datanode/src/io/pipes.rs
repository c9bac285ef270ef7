//! A pool of pipes for splice (file -> pipe -> socket), created at startup and sized to
//! one read packet with F_SETPIPE_SZ. Pooled because a pipe per connection hits the
//! per-user pipe page limit (`pipe-user-pages-soft`) near a thousand connections.
//!
//! A pipe goes back to the pool only empty and with no operation still holding it;
//! otherwise it is closed and a fresh one is created in its place on a later take.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::error::Errno;

/// The two ends of one pipe. In-flight splices hold an `Rc` of it.
pub(crate) struct PipeFds {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    buffered: Cell<usize>,
}

impl PipeFds {
    fn create(size_bytes: usize) -> Result<PipeFds, Errno> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two fds into the 2-element array and touches nothing else.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(last_errno());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on an fd we own; F_SETPIPE_SZ takes an int and touches no memory.
        let granted =
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size_bytes as libc::c_int) };
        if granted < 0 {
            return Err(last_errno());
        }
        assert!(granted as usize >= size_bytes, "kernel granted a {granted}-byte pipe");
        Ok(PipeFds { read, write, buffered: Cell::new(0) })
    }

    pub(crate) fn note_spliced_in(&self, bytes: usize) {
        self.buffered.set(self.buffered.get() + bytes);
    }

    pub(crate) fn note_spliced_out(&self, bytes: usize) {
        let buffered = self.buffered.get();
        assert!(bytes <= buffered, "spliced {bytes} bytes out of a pipe holding {buffered}");
        self.buffered.set(buffered - bytes);
    }
}

fn last_errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// Handle to a ring's pipe pool.
#[derive(Clone)]
pub struct PipePool {
    inner: Rc<PoolInner>,
}

struct PoolInner {
    size_bytes: usize,
    capacity: usize,
    state: RefCell<PoolState>,
}

struct PoolState {
    idle: Vec<Rc<PipeFds>>,
    /// Pipes in existence: idle, lent out, or still held by in-flight splices.
    alive: usize,
    waiters: VecDeque<Waker>,
}

impl PipePool {
    /// Creates `capacity` pipes of at least `size_bytes` each, all at once.
    pub fn new(capacity: usize, size_bytes: usize) -> Result<PipePool, Errno> {
        let mut idle = Vec::with_capacity(capacity);
        for _ in 0..capacity {
            idle.push(Rc::new(PipeFds::create(size_bytes)?));
        }
        let state = PoolState { idle, alive: capacity, waiters: VecDeque::with_capacity(16) };
        Ok(PipePool { inner: Rc::new(PoolInner { size_bytes, capacity, state: RefCell::new(state) }) })
    }

    pub fn size_bytes(&self) -> usize {
        self.inner.size_bytes
    }

    pub fn idle_count(&self) -> usize {
        self.inner.state.borrow().idle.len()
    }

    /// Takes an idle pipe, replacing a discarded one if needed, or `Ok(None)` when all
    /// `capacity` pipes are in use.
    pub fn try_take(&self) -> Result<Option<PooledPipe>, Errno> {
        let mut state = self.inner.state.borrow_mut();
        if let Some(fds) = state.idle.pop() {
            return Ok(Some(PooledPipe { fds, pool: self.inner.clone() }));
        }
        if state.alive < self.inner.capacity {
            let fds = Rc::new(PipeFds::create(self.inner.size_bytes)?);
            state.alive += 1;
            return Ok(Some(PooledPipe { fds, pool: self.inner.clone() }));
        }
        Ok(None)
    }

    /// Takes a pipe, waiting while all are in use (backpressure).
    pub async fn take(&self) -> Result<PooledPipe, Errno> {
        poll_fn(|cx| match self.try_take() {
            Ok(Some(pipe)) => Poll::Ready(Ok(pipe)),
            Err(errno) => Poll::Ready(Err(errno)),
            Ok(None) => {
                self.inner.state.borrow_mut().waiters.push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A pipe lent out of the pool. Splices through it update its buffered byte count.
pub struct PooledPipe {
    fds: Rc<PipeFds>,
    pool: Rc<PoolInner>,
}

impl PooledPipe {
    pub(crate) fn fds(&self) -> &Rc<PipeFds> {
        &self.fds
    }

    pub fn read_fd(&self) -> RawFd {
        self.fds.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.fds.write.as_raw_fd()
    }

    /// Bytes sitting in the pipe.
    pub fn buffered(&self) -> usize {
        self.fds.buffered.get()
    }

    #[cfg(test)]
    pub(crate) fn note_spliced_in(&self, bytes: usize) {
        self.fds.note_spliced_in(bytes);
    }
}

impl Drop for PooledPipe {
    fn drop(&mut self) {
        let reusable = self.fds.buffered.get() == 0 && Rc::strong_count(&self.fds) == 1;
        let waiters = {
            let mut state = self.pool.state.borrow_mut();
            if reusable {
                state.idle.push(self.fds.clone());
            } else {
                // Leftover bytes would corrupt the next stream: close the pipe (when the
                // last in-flight splice lets go of it) and let try_take make a new one.
                state.alive -= 1;
            }
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_sized_and_recycled_only_when_empty() {
        let pool = PipePool::new(2, 64 * 1024).expect("create pipes");
        let first = pool.try_take().unwrap().unwrap();
        // SAFETY: F_GETPIPE_SZ on a pipe we own reads its capacity; no memory is passed.
        let size = unsafe { libc::fcntl(first.write_fd(), libc::F_GETPIPE_SZ) };
        assert!(size >= 64 * 1024, "pipe of {size} bytes");
        let second = pool.try_take().unwrap().unwrap();
        assert!(pool.try_take().unwrap().is_none(), "capacity 2");
        drop(first);
        assert_eq!(pool.idle_count(), 1);
        second.note_spliced_in(10);
        drop(second);
        assert_eq!(pool.idle_count(), 1, "a pipe with bytes left is not pooled");
        let _a = pool.try_take().unwrap().unwrap();
        let b = pool.try_take().unwrap().expect("a fresh pipe replaces the discarded one");
        assert_eq!(b.buffered(), 0);
    }
}
