//! The fixed-file table: a sparse table registered once per ring; a block or meta file
//! takes a slot while it is open for a transfer and frees it when the last handle drops.
//! Fixed files spare the kernel an fd lookup and reference per operation.
//!
//! A [`FixedFile`] is reference counted: in-flight entries hold a clone, so a slot is not
//! cleared (and handed to another file) while an operation naming it may still be queued.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

use io_uring::{types, IoUring};

use super::error::Errno;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("all {capacity} fixed-file slots are in use")]
    TableFull { capacity: usize },
    #[error("installing fd {fd} in fixed-file slot {index}: {errno}")]
    Install { fd: i32, index: u32, errno: Errno },
}

/// Handle to a ring's fixed-file table.
#[derive(Clone)]
pub struct FixedFiles {
    inner: Rc<FilesInner>,
}

struct FilesInner {
    uring: Rc<IoUring>,
    capacity: usize,
    state: RefCell<FilesState>,
}

struct FilesState {
    free: Vec<u32>,
    waiters: VecDeque<Waker>,
}

impl FixedFiles {
    /// Wraps a table of `capacity` sparse slots already registered on `uring`.
    pub(crate) fn new(uring: Rc<IoUring>, capacity: usize) -> FixedFiles {
        assert!(capacity <= u32::MAX as usize);
        // Hand out low indices first: easier to read in traces.
        let free = (0..capacity as u32).rev().collect();
        let state = FilesState { free, waiters: VecDeque::with_capacity(16) };
        FixedFiles { inner: Rc::new(FilesInner { uring, capacity, state: RefCell::new(state) }) }
    }

    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    pub fn free_slots(&self) -> usize {
        self.inner.state.borrow().free.len()
    }

    /// Installs `fd` in a free slot. The kernel takes its own reference to the open file,
    /// so the caller may close `fd` afterwards; the slot keeps the file open until the
    /// returned handle (and every clone held by in-flight ops) is dropped.
    pub fn install(&self, fd: BorrowedFd<'_>) -> Result<FixedFile, FilesError> {
        let index = {
            let mut state = self.inner.state.borrow_mut();
            state.free.pop().ok_or(FilesError::TableFull { capacity: self.inner.capacity })?
        };
        let raw = fd.as_raw_fd();
        match self.inner.uring.submitter().register_files_update(index, &[raw]) {
            Ok(1) => Ok(FixedFile { inner: Rc::new(FixedInner { index, files: self.inner.clone() }) }),
            Ok(other) => {
                self.inner.state.borrow_mut().free.push(index);
                panic!("register_files_update installed {other} files, expected 1")
            }
            Err(error) => {
                self.inner.state.borrow_mut().free.push(index);
                let errno = Errno(error.raw_os_error().unwrap_or(libc::EIO));
                Err(FilesError::Install { fd: raw, index, errno })
            }
        }
    }

    /// Installs `fd`, waiting while the table is full (backpressure).
    pub async fn install_wait(&self, fd: BorrowedFd<'_>) -> Result<FixedFile, FilesError> {
        poll_fn(|cx| match self.install(fd) {
            Err(FilesError::TableFull { .. }) => {
                self.inner.state.borrow_mut().waiters.push_back(cx.waker().clone());
                Poll::Pending
            }
            other => Poll::Ready(other),
        })
        .await
    }
}

/// A file installed in the fixed-file table. Clones share the slot.
#[derive(Clone)]
pub struct FixedFile {
    inner: Rc<FixedInner>,
}

struct FixedInner {
    index: u32,
    files: Rc<FilesInner>,
}

impl FixedFile {
    pub fn index(&self) -> u32 {
        self.inner.index
    }

    pub(crate) fn target(&self) -> types::Fixed {
        types::Fixed(self.inner.index)
    }
}

impl std::fmt::Debug for FixedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedFile({})", self.inner.index)
    }
}

impl Drop for FixedInner {
    fn drop(&mut self) {
        // -1 clears the slot; the kernel drops its file reference once no request uses it.
        let cleared = self.files.uring.submitter().register_files_update(self.index, &[-1]);
        if let Err(error) = cleared {
            // The slot keeps its old file until the ring closes; never reuse it.
            tracing::error!(index = self.index, %error, "clearing a fixed-file slot failed; slot retired");
            return;
        }
        let waiters = {
            let mut state = self.files.state.borrow_mut();
            state.free.push(self.index);
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}
