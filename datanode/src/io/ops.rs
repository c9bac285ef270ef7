//! Operations on the ring, as safe async functions that take their buffers by value and
//! give them back with the result. Each op:
//!
//! 1. computes its buffer pointers (bounds are checked here, before anything is queued);
//! 2. claims an in-flight entry (waiting while the table is full) and moves into it every
//!    resource the kernel will touch;
//! 3. queues its SQE (submitted with everything else queued this loop iteration);
//! 4. awaits the entry's completion; if its future is dropped first, the entry keeps the
//!    resources and a cancel is queued.
//!
//! A [`Chain`] links several SQEs (IOSQE_IO_LINK) so the kernel runs them in order with
//! one submission, e.g. a whole read packet: meta READ_FIXED, header SEND, two SPLICEs.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::arena::{BufSlot, BufferArena, SharedSlot};
use super::error::{classify, Errno, IoError, Outcome};
use super::executor::Executor;
use super::files::FixedFiles;
use super::inflight::{Completion, Hold, Holds, LINK_TIMEOUT_USER_DATA};
use super::limits::{
    BUFFER_INDEX_CONTROL, BUFFER_INDEX_PACKET, CHAIN_OPS_MAX, CONTROL_SLOT_SIZE, PACKET_SLOT_SIZE,
};
use super::pipes::{PipeFds, PipePool, PooledPipe};
use super::probe::{self, Capabilities};
use super::ring::{RingConfig, RingCore, RingError, RingStats, SetupReport};
use super::socket::{new_tcp_socket, sockaddr, Listener, Socket};
use super::FixedFile;

/// IORING_SEND_ZC_REPORT_USAGE: the notification says whether the kernel had to copy.
const SEND_ZC_REPORT_USAGE: u16 = 8;

/// Slots one chain can own.
const CHAIN_SLOTS_MAX: usize = 8;

/// The ring's state shared by every handle.
pub(crate) struct IoShared {
    pub(crate) core: RingCore,
    pub(crate) control: BufferArena,
    pub(crate) packets: BufferArena,
    pub(crate) files: FixedFiles,
    pub(crate) pipes: PipePool,
    pub(crate) executor: Executor,
    pub(crate) capabilities: Capabilities,
}

/// Handle to this thread's ring: spawns tasks and runs operations. Cheap to clone; not
/// `Send` (the ring belongs to one thread).
#[derive(Clone)]
pub struct Io {
    pub(crate) shared: Rc<IoShared>,
}

/// A [`Io::with_timeout`] deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

impl Io {
    pub(crate) fn new(config: &RingConfig, executor: Executor) -> Result<Io, RingError> {
        let control = BufferArena::new(CONTROL_SLOT_SIZE, config.control_slot_count, BUFFER_INDEX_CONTROL);
        let packets = BufferArena::new(PACKET_SLOT_SIZE, config.packet_slot_count, BUFFER_INDEX_PACKET);
        let core = RingCore::new(config, &[control.iovec(), packets.iovec()])?;
        let capabilities = probe_ring(&core);
        let files = FixedFiles::new(core.uring.clone(), core.setup.fixed_file_count);
        let pipes = PipePool::new(config.pipe_count, config.pipe_size_bytes).map_err(|errno| {
            RingError::Pipes { count: config.pipe_count, size_bytes: config.pipe_size_bytes, errno }
        })?;
        let shared = IoShared { core, control, packets, files, pipes, executor, capabilities };
        Ok(Io { shared: Rc::new(shared) })
    }

    /// Arena of 4 KiB slots for requests, responses, acks and read-packet headers.
    pub fn control_arena(&self) -> &BufferArena {
        &self.shared.control
    }

    /// Arena of packet-sized slots.
    pub fn packet_arena(&self) -> &BufferArena {
        &self.shared.packets
    }

    pub fn files(&self) -> &FixedFiles {
        &self.shared.files
    }

    pub fn pipes(&self) -> &PipePool {
        &self.shared.pipes
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.capabilities
    }

    pub fn setup_report(&self) -> &SetupReport {
        &self.shared.core.setup
    }

    pub fn stats(&self) -> RingStats {
        self.shared.core.stats()
    }

    /// Ops currently in flight on this ring.
    pub fn in_flight_count(&self) -> usize {
        self.shared.core.inflight.borrow().len()
    }

    /// Claims an entry, moves `holds` in, queues the SQE(s) `build` makes from them.
    async fn submit(
        &self,
        op: &'static str,
        holds: Holds,
        build: impl FnOnce(&Holds) -> (squeue::Entry, Option<squeue::Entry>),
    ) -> Completion {
        let mut holds = Some(holds);
        let (index, user_data) = poll_fn(|cx| {
            let mut table = self.shared.core.inflight.borrow_mut();
            if table.vacant_count() == 0 {
                table.wait_for_vacancy(cx.waker());
                return Poll::Pending;
            }
            let holds = holds.take().expect("inserted once");
            Poll::Ready(table.insert(op, holds).expect("vacancy checked"))
        })
        .await;
        let submitted = Submitted { io: self, index, generation: (user_data >> 32) as u32, done: false };
        let (first, linked) = {
            let table = self.shared.core.inflight.borrow();
            build(table.holds(index))
        };
        match linked {
            None => self.shared.core.push(&[first.user_data(user_data)]),
            Some(timeout) => self.shared.core.push(&[
                first.user_data(user_data).flags(squeue::Flags::IO_LINK),
                timeout.user_data(LINK_TIMEOUT_USER_DATA),
            ]),
        }
        submitted.await
    }

    /// A no-op round trip through the kernel.
    pub async fn nop(&self) -> Result<(), IoError> {
        let done = self.submit("nop", Holds::default(), |_| (opcode::Nop::new().build(), None)).await;
        match classify("nop", done.result, 0) {
            Outcome::Done(_) => Ok(()),
            Outcome::Resubmit => Err(IoError::from_errno("nop", -done.result)),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// Sleeps on the ring (IORING_OP_TIMEOUT).
    pub async fn sleep(&self, duration: Duration) {
        let holds = Holds::new([Hold::Time(types::Timespec::from(duration))]);
        let done = self
            .submit("sleep", holds, |holds| {
                let time = holds.time().expect("sleep holds its timespec");
                (opcode::Timeout::new(time).build(), None)
            })
            .await;
        // -ETIME is the normal end of a timeout; anything else ends it early, also fine.
        debug_assert!(done.result == -libc::ETIME || done.result <= 0, "timeout result {}", done.result);
    }

    /// Runs `future` until it completes or `duration` passes.
    pub async fn with_timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, TimedOut> {
        let mut future = pin!(future);
        let mut sleep = pin!(self.sleep(duration));
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(TimedOut));
            }
            Poll::Pending
        })
        .await
    }

    /// Reads `len` bytes at file `offset` into `slot[at..]` (READ_FIXED). Returns the bytes
    /// read: fewer than `len` only at end of file.
    pub async fn read_fixed(
        &self,
        file: &FixedFile,
        mut slot: BufSlot,
        at: usize,
        len: usize,
        offset: u64,
    ) -> (Result<usize, IoError>, BufSlot) {
        let op = "read_fixed";
        let (pointer, buf_index, len32) = (slot.ptr_at(at, len), slot.buf_index(), to_u32(len));
        let mut attempts = 0;
        loop {
            let holds = Holds::new([Hold::Slot(slot.share()), Hold::File(file.clone())]);
            let done = self
                .submit(op, holds, |_| {
                    let sqe = opcode::ReadFixed::new(file.target(), pointer, len32, buf_index).offset(offset);
                    (sqe.build(), None)
                })
                .await;
            slot = unique_slot(done.holds);
            match classify(op, done.result, attempts) {
                Outcome::Done(read) => return (Ok(read as usize), slot),
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(error) => return (Err(error), slot),
            }
        }
    }

    /// Writes `slot[at..at + len]` at file `offset` (WRITE_FIXED), resubmitting the rest
    /// after a short write.
    pub async fn write_fixed(
        &self,
        file: &FixedFile,
        slot: SharedSlot,
        at: usize,
        len: usize,
        offset: u64,
    ) -> (Result<(), IoError>, SharedSlot) {
        let op = "write_fixed";
        let buf_index = slot.buf_index();
        let (mut written, mut attempts) = (0, 0);
        while written < len {
            let pointer = slot.ptr_at(at + written, len - written);
            let remaining = to_u32(len - written);
            let position = offset + written as u64;
            let holds = Holds::new([Hold::Slot(slot.clone()), Hold::File(file.clone())]);
            let done = self
                .submit(op, holds, |_| {
                    let sqe = opcode::WriteFixed::new(file.target(), pointer, remaining, buf_index);
                    (sqe.offset(position).build(), None)
                })
                .await;
            match classify(op, done.result, attempts) {
                Outcome::Done(0) => return (Err(IoError::Short { op, done: written, wanted: len }), slot),
                Outcome::Done(bytes) => written += bytes as usize,
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(error) => return (Err(error), slot),
            }
        }
        (Ok(()), slot)
    }

    /// Asks the kernel to start reading `len` bytes at `offset` of `file` into the page
    /// cache (FADVISE WILLNEED); returns once the reads are queued, not done.
    pub async fn readahead(&self, file: &FixedFile, offset: u64, len: u32) -> Result<(), IoError> {
        let op = "fadvise";
        let holds = Holds::new([Hold::File(file.clone())]);
        let done = self
            .submit(op, holds, |_| {
                let advice =
                    opcode::Fadvise::new(file.target(), len as libc::off_t, libc::POSIX_FADV_WILLNEED);
                (advice.offset(offset).build(), None)
            })
            .await;
        match classify(op, done.result, 0) {
            Outcome::Done(_) | Outcome::Resubmit => Ok(()),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// fsync (or fdatasync with `data_only`) of a fixed file.
    pub async fn fsync(&self, file: &FixedFile, data_only: bool) -> Result<(), IoError> {
        let op = if data_only { "fdatasync" } else { "fsync" };
        let flags = if data_only { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
        let mut attempts = 0;
        loop {
            let holds = Holds::new([Hold::File(file.clone())]);
            let done = self
                .submit(op, holds, |_| (opcode::Fsync::new(file.target()).flags(flags).build(), None))
                .await;
            match classify(op, done.result, attempts) {
                Outcome::Done(_) => return Ok(()),
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(error) => return Err(error),
            }
        }
    }

    /// Receives up to `len` bytes into `slot[at..]`. `Ok(0)` is end of stream. With
    /// `timeout`, a linked timeout cancels the receive ([`IoError::TimedOut`]).
    pub async fn recv(
        &self,
        socket: &Socket,
        slot: BufSlot,
        at: usize,
        len: usize,
        timeout: Option<Duration>,
    ) -> (Result<usize, IoError>, BufSlot) {
        self.recv_with_flags(socket, slot, (at, len), 0, timeout).await
    }

    /// Waits until `socket` has bytes to read (or an error or end of stream to report),
    /// holding no buffer meanwhile: an idle connection costs no registered memory.
    pub async fn poll_readable(&self, socket: &Socket, timeout: Option<Duration>) -> Result<(), IoError> {
        let op = "poll";
        let fd = socket.raw_fd();
        let mut attempts = 0;
        loop {
            let time = timeout.map(|timeout| Hold::Time(types::Timespec::from(timeout)));
            let holds = Holds::new([socket.hold()].into_iter().chain(time));
            let done = self
                .submit(op, holds, |holds| {
                    let poll = opcode::PollAdd::new(types::Fd(fd), (libc::POLLIN | libc::POLLRDHUP) as u32);
                    (poll.build(), holds.time().map(|time| opcode::LinkTimeout::new(time).build()))
                })
                .await;
            // Readable, hung up or failed: the receive that follows reports which.
            match classify(op, done.result, attempts) {
                Outcome::Done(_) => return Ok(()),
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(IoError::Cancelled { .. }) if timeout.is_some() => {
                    return Err(IoError::TimedOut { op })
                }
                Outcome::Failed(error) => return Err(error),
            }
        }
    }

    /// Receives exactly `len` bytes into `slot[at..]` (MSG_WAITALL), or fails:
    /// [`IoError::Eof`] if the stream ended before the first byte, [`IoError::Short`] if
    /// it ended mid-way.
    pub async fn recv_exact(
        &self,
        socket: &Socket,
        mut slot: BufSlot,
        at: usize,
        len: usize,
        timeout: Option<Duration>,
    ) -> (Result<(), IoError>, BufSlot) {
        let op = "recv";
        let mut received = 0;
        while received < len {
            let range = (at + received, len - received);
            let (result, returned) =
                self.recv_with_flags(socket, slot, range, libc::MSG_WAITALL, timeout).await;
            slot = returned;
            match result {
                Ok(0) if received == 0 => return (Err(IoError::Eof { op }), slot),
                Ok(0) => return (Err(IoError::Short { op, done: received, wanted: len }), slot),
                Ok(bytes) => received += bytes,
                Err(error) => return (Err(error), slot),
            }
        }
        (Ok(()), slot)
    }

    async fn recv_with_flags(
        &self,
        socket: &Socket,
        mut slot: BufSlot,
        (at, len): (usize, usize),
        flags: i32,
        timeout: Option<Duration>,
    ) -> (Result<usize, IoError>, BufSlot) {
        let op = "recv";
        let (pointer, len32, fd) = (slot.ptr_at(at, len), to_u32(len), socket.raw_fd());
        let mut attempts = 0;
        loop {
            let time = timeout.map(|timeout| Hold::Time(types::Timespec::from(timeout)));
            let holds = Holds::new([Hold::Slot(slot.share()), socket.hold()].into_iter().chain(time));
            let done = self
                .submit(op, holds, |holds| {
                    let recv = opcode::Recv::new(types::Fd(fd), pointer, len32).flags(flags).build();
                    (recv, holds.time().map(|time| opcode::LinkTimeout::new(time).build()))
                })
                .await;
            slot = unique_slot(done.holds);
            match classify(op, done.result, attempts) {
                Outcome::Done(bytes) => return (Ok(bytes as usize), slot),
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(IoError::Cancelled { .. }) if timeout.is_some() => {
                    return (Err(IoError::TimedOut { op }), slot)
                }
                Outcome::Failed(error) => return (Err(error), slot),
            }
        }
    }

    /// Sends `slot[at..at + len]` completely (MSG_WAITALL; the rest is resent after a
    /// partial send). `more` sets MSG_MORE: more data follows at once, so TCP may hold a
    /// small segment back to merge it.
    pub async fn send_all(
        &self,
        socket: &Socket,
        slot: SharedSlot,
        (at, len): (usize, usize),
        more: bool,
        timeout: Option<Duration>,
    ) -> (Result<(), IoError>, SharedSlot) {
        self.send_loop(socket, slot, (at, len), (more, timeout), false).await
    }

    /// Like [`send_all`](Self::send_all) with IORING_OP_SEND_ZC from the registered buffer:
    /// the kernel sends straight from the slot, so the op (and the slot) is held until the
    /// notification CQE says the kernel no longer needs the pages.
    pub async fn send_zc_all(
        &self,
        socket: &Socket,
        slot: SharedSlot,
        (at, len): (usize, usize),
        more: bool,
        timeout: Option<Duration>,
    ) -> (Result<(), IoError>, SharedSlot) {
        self.send_loop(socket, slot, (at, len), (more, timeout), true).await
    }

    async fn send_loop(
        &self,
        socket: &Socket,
        slot: SharedSlot,
        (at, len): (usize, usize),
        (more, timeout): (bool, Option<Duration>),
        zero_copy: bool,
    ) -> (Result<(), IoError>, SharedSlot) {
        let op = if zero_copy { "send_zc" } else { "send" };
        let flags = send_flags(more);
        let (buf_index, fd) = (slot.buf_index(), socket.raw_fd());
        let (mut sent, mut attempts) = (0, 0);
        while sent < len {
            let pointer = slot.ptr_at(at + sent, len - sent);
            let remaining = to_u32(len - sent);
            let time = timeout.map(|timeout| Hold::Time(types::Timespec::from(timeout)));
            let holds = Holds::new([Hold::Slot(slot.clone()), socket.hold()].into_iter().chain(time));
            let done = self
                .submit(op, holds, |holds| {
                    let sqe = if zero_copy {
                        opcode::SendZc::new(types::Fd(fd), pointer, remaining)
                            .buf_index(Some(buf_index))
                            .flags(flags)
                            .zc_flags(SEND_ZC_REPORT_USAGE)
                            .build()
                    } else {
                        opcode::Send::new(types::Fd(fd), pointer, remaining).flags(flags).build()
                    };
                    (sqe, holds.time().map(|time| opcode::LinkTimeout::new(time).build()))
                })
                .await;
            match classify(op, done.result, attempts) {
                Outcome::Done(0) => return (Err(IoError::Short { op, done: sent, wanted: len }), slot),
                Outcome::Done(bytes) => sent += bytes as usize,
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(IoError::Cancelled { .. }) if timeout.is_some() => {
                    return (Err(IoError::TimedOut { op }), slot)
                }
                Outcome::Failed(error) => return (Err(error), slot),
            }
        }
        (Ok(()), slot)
    }

    /// Splices up to `len` bytes from `source` to `target`; one of them must be a pipe.
    /// Returns the bytes moved (0 = end of input).
    pub async fn splice(
        &self,
        source: SpliceEnd<'_>,
        target: SpliceEnd<'_>,
        len: usize,
        more: bool,
    ) -> Result<usize, IoError> {
        let op = splice_name(&source, &target);
        let mut attempts = 0;
        loop {
            let (sqe, holds, pipe_effect) = splice_parts(&source, &target, len, more);
            let done = self.submit(op, holds, |_| (sqe, None)).await;
            match classify(op, done.result, attempts) {
                Outcome::Done(bytes) => {
                    pipe_effect.apply(bytes as usize);
                    return Ok(bytes as usize);
                }
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(error) => return Err(error),
            }
        }
    }

    /// Accepts one connection on `listener`.
    pub async fn accept(&self, listener: &Listener) -> Result<Socket, IoError> {
        let op = "accept";
        let fd = listener.raw_fd();
        let mut attempts = 0;
        loop {
            let holds = Holds::new([listener.hold()]);
            let done = self
                .submit(op, holds, |_| {
                    let accept =
                        opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut());
                    (accept.flags(libc::SOCK_CLOEXEC).build(), None)
                })
                .await;
            match classify(op, done.result, attempts) {
                Outcome::Done(new_fd) => return Ok(Socket::from_owned_fd(owned_fd(new_fd as RawFd))),
                // The peer gave up before we accepted: try the next connection.
                Outcome::Failed(IoError::ConnectionReset { .. }) => {}
                Outcome::Failed(IoError::Os { errno: Errno(libc::ECONNABORTED), .. }) => {}
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(error) => return Err(error),
            }
        }
    }

    /// Connects a new TCP socket to `addr`, giving up after `timeout`.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<Socket, IoError> {
        let op = "connect";
        let fd = new_tcp_socket(&addr).map_err(|errno| IoError::Os { op: "socket", errno })?;
        let fd = Rc::new(fd);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&*fd);
        let mut attempts = 0;
        loop {
            let holds = Holds::new([
                Hold::Fd(fd.clone()),
                Hold::Addr(sockaddr(&addr)),
                Hold::Time(types::Timespec::from(timeout)),
            ]);
            let done = self
                .submit(op, holds, |holds| {
                    let (storage, len) = holds.addr().expect("connect holds its address");
                    let target = (storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
                    let connect = opcode::Connect::new(types::Fd(raw), target, *len).build();
                    let time = holds.time().expect("connect holds its timeout");
                    (connect, Some(opcode::LinkTimeout::new(time).build()))
                })
                .await;
            match classify(op, done.result, attempts) {
                Outcome::Done(_) => break,
                Outcome::Resubmit => attempts += 1,
                Outcome::Failed(IoError::Cancelled { .. }) => return Err(IoError::TimedOut { op }),
                Outcome::Failed(error) => return Err(error),
            }
        }
        let fd = Rc::try_unwrap(fd).expect("the completed connect released its fd");
        Ok(Socket::from_owned_fd(fd))
    }

    /// Reads the 8-byte counter of the wake-up eventfd.
    pub(crate) async fn read_eventfd(&self, fd: RawFd, slot: BufSlot) -> (Result<(), IoError>, BufSlot) {
        let op = "read eventfd";
        let pointer = slot.ptr_at(0, 8);
        // The eventfd is owned by the executor, which outlives every op on this ring.
        let holds = Holds::new([Hold::Slot(slot.share())]);
        let done =
            self.submit(op, holds, |_| (opcode::Read::new(types::Fd(fd), pointer, 8).build(), None)).await;
        let slot = unique_slot(done.holds);
        match classify(op, done.result, 0) {
            Outcome::Done(_) | Outcome::Resubmit => (Ok(()), slot),
            Outcome::Failed(error) => (Err(error), slot),
        }
    }

    /// Starts a chain of linked operations.
    pub fn chain(&self) -> Chain<'_> {
        Chain::new(self, true)
    }

    /// Starts a batch: like a chain, submitted together and waited for together, but not
    /// linked, so the kernel runs the ops side by side (e.g. reads of several packets)
    /// and one failing does not cancel the others.
    pub fn batch(&self) -> Chain<'_> {
        Chain::new(self, false)
    }
}

/// The future of one submitted op; dropping it before completion abandons the op to the
/// in-flight table (which keeps its resources until the CQE) and queues a cancel.
struct Submitted<'a> {
    io: &'a Io,
    index: u32,
    generation: u32,
    done: bool,
}

impl Future for Submitted<'_> {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        let polled = self.io.shared.core.inflight.borrow_mut().poll(self.index, self.generation, cx);
        if polled.is_ready() {
            self.done = true;
        }
        polled
    }
}

impl Drop for Submitted<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.io.shared.core.abandon(self.index, self.generation);
        }
    }
}

fn probe_ring(core: &RingCore) -> Capabilities {
    // The engine probed before creating rings; record what this ring's kernel offers.
    let mut kernel_probe = io_uring::Probe::new();
    let registered = core.uring.submitter().register_probe(&mut kernel_probe).is_ok();
    let supported = |code: u8| registered && kernel_probe.is_supported(code);
    let release = probe::kernel_release();
    let at_least_6_0 = probe::kernel_version(&release).is_some_and(|version| version >= (6, 0));
    Capabilities {
        opcodes: probe::OpcodeSupport {
            read_fixed: supported(opcode::ReadFixed::CODE),
            write_fixed: supported(opcode::WriteFixed::CODE),
            splice: supported(opcode::Splice::CODE),
            send: supported(opcode::Send::CODE),
            recv: supported(opcode::Recv::CODE),
            send_zc: supported(opcode::SendZc::CODE),
            recv_multi: supported(opcode::RecvMulti::CODE)
                && supported(opcode::ProvideBuffers::CODE)
                && at_least_6_0,
            provide_buffers: supported(opcode::ProvideBuffers::CODE),
            accept: supported(opcode::Accept::CODE),
            connect: supported(opcode::Connect::CODE),
            fsync: supported(opcode::Fsync::CODE),
            timeout: supported(opcode::Timeout::CODE),
            link_timeout: supported(opcode::LinkTimeout::CODE),
            async_cancel: supported(opcode::AsyncCancel::CODE),
            read: supported(opcode::Read::CODE),
        },
        kernel_release: release,
    }
}

fn to_u32(len: usize) -> u32 {
    u32::try_from(len).expect("an io_uring transfer is at most 4 GiB")
}

fn send_flags(more: bool) -> i32 {
    // MSG_NOSIGNAL: a vanished peer is an EPIPE result, not a SIGPIPE.
    libc::MSG_WAITALL | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 }
}

/// The slot an exclusive op lent to its entry, now that the entry released it.
fn unique_slot(mut holds: Holds) -> BufSlot {
    let slot = holds.take_slot().expect("the op held its slot");
    drop(holds);
    slot.try_unique().expect("nothing else holds a slot lent to an exclusive op")
}

fn owned_fd(fd: RawFd) -> OwnedFd {
    assert!(fd >= 0);
    // SAFETY: the kernel just created this fd for us (accept's result) and nothing else
    // owns it.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// One end of a splice.
pub enum SpliceEnd<'a> {
    /// A fixed file at a byte offset.
    File {
        file: &'a FixedFile,
        offset: u64,
    },
    /// The read end of a pooled pipe (data leaves the pipe).
    PipeRead(&'a PooledPipe),
    /// The write end of a pooled pipe (data enters the pipe).
    PipeWrite(&'a PooledPipe),
    Socket(&'a Socket),
}

/// How a completed splice changes a pipe's buffered byte count.
struct PipeEffect {
    into: Option<Rc<PipeFds>>,
    out_of: Option<Rc<PipeFds>>,
}

impl PipeEffect {
    fn apply(&self, bytes: usize) {
        if let Some(pipe) = &self.into {
            pipe.note_spliced_in(bytes);
        }
        if let Some(pipe) = &self.out_of {
            pipe.note_spliced_out(bytes);
        }
    }
}

fn splice_name(source: &SpliceEnd<'_>, target: &SpliceEnd<'_>) -> &'static str {
    match (source, target) {
        (SpliceEnd::File { .. }, SpliceEnd::PipeWrite(_)) => "splice file->pipe",
        (SpliceEnd::PipeRead(_), SpliceEnd::Socket(_)) => "splice pipe->socket",
        (SpliceEnd::Socket(_), SpliceEnd::PipeWrite(_)) => "splice socket->pipe",
        (SpliceEnd::PipeRead(_), SpliceEnd::File { .. }) => "splice pipe->file",
        _ => "splice",
    }
}

fn splice_parts(
    source: &SpliceEnd<'_>,
    target: &SpliceEnd<'_>,
    len: usize,
    more: bool,
) -> (squeue::Entry, Holds, PipeEffect) {
    let is_pipe = |end: &SpliceEnd<'_>| matches!(end, SpliceEnd::PipeRead(_) | SpliceEnd::PipeWrite(_));
    assert!(is_pipe(source) || is_pipe(target), "splice needs a pipe at one end");
    assert!(!matches!(source, SpliceEnd::PipeWrite(_)), "splice source must be a pipe's read end");
    assert!(!matches!(target, SpliceEnd::PipeRead(_)), "splice target must be a pipe's write end");
    let flags = libc::SPLICE_F_MOVE | if more { libc::SPLICE_F_MORE } else { 0 };
    let mut effect = PipeEffect { into: None, out_of: None };
    let source_hold = end_hold(source);
    let target_hold = end_hold(target);
    if let SpliceEnd::PipeRead(pipe) = source {
        effect.out_of = Some(pipe.fds().clone());
    }
    if let SpliceEnd::PipeWrite(pipe) = target {
        effect.into = Some(pipe.fds().clone());
    }
    let len = to_u32(len);
    let sqe = match (source, target) {
        (SpliceEnd::File { file, offset }, target) => {
            opcode::Splice::new(file.target(), *offset as i64, types::Fd(end_fd(target)), -1, len)
        }
        (source, SpliceEnd::File { file, offset }) => {
            opcode::Splice::new(types::Fd(end_fd(source)), -1, file.target(), *offset as i64, len)
        }
        (source, target) => {
            opcode::Splice::new(types::Fd(end_fd(source)), -1, types::Fd(end_fd(target)), -1, len)
        }
    };
    (sqe.flags(flags).build(), Holds::new([source_hold, target_hold]), effect)
}

fn end_hold(end: &SpliceEnd<'_>) -> Hold {
    match end {
        SpliceEnd::File { file, .. } => Hold::File((*file).clone()),
        SpliceEnd::PipeRead(pipe) | SpliceEnd::PipeWrite(pipe) => Hold::Pipe(pipe.fds().clone()),
        SpliceEnd::Socket(socket) => socket.hold(),
    }
}

fn end_fd(end: &SpliceEnd<'_>) -> RawFd {
    match end {
        SpliceEnd::File { .. } => unreachable!("fixed files are passed as Fixed"),
        SpliceEnd::PipeRead(pipe) => pipe.read_fd(),
        SpliceEnd::PipeWrite(pipe) => pipe.write_fd(),
        SpliceEnd::Socket(socket) => socket.raw_fd(),
    }
}

/// A slot lent to a [`Chain`], by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSlot(usize);

struct ChainOp {
    name: &'static str,
    sqe: squeue::Entry,
    holds: Holds,
    /// Bytes the op must move for the chain to go on (the kernel breaks the chain on a
    /// short transfer).
    wanted: usize,
    pipe_effect: PipeEffect,
    /// May complete without a CQE (IOSQE_CQE_SKIP_SUCCESS); SEND_ZC may not.
    skippable: bool,
}

/// Linked operations (IOSQE_IO_LINK): submitted together, run in order; if one fails or
/// moves fewer bytes than asked, the rest complete with ECANCELED. Slots lent to a chain
/// belong to it until every op has completed; the kernel may write into them (READ_FIXED)
/// and read them (SEND) within the same chain.
pub struct Chain<'io> {
    io: &'io Io,
    /// IOSQE_IO_LINK between the ops; a batch ([`Io::batch`]) runs them side by side.
    linked: bool,
    ops: [Option<ChainOp>; CHAIN_OPS_MAX],
    len: usize,
    slots: [Option<SharedSlot>; CHAIN_SLOTS_MAX],
    /// Lent exclusively (the kernel may write into it) rather than shared.
    writable: [bool; CHAIN_SLOTS_MAX],
    slot_count: usize,
}

/// Per-op results of a chain, and the slots it owned.
pub struct ChainResults {
    names: [&'static str; CHAIN_OPS_MAX],
    results: [i32; CHAIN_OPS_MAX],
    wanted: [usize; CHAIN_OPS_MAX],
    len: usize,
    slots: [Option<SharedSlot>; CHAIN_SLOTS_MAX],
}

impl<'io> Chain<'io> {
    fn new(io: &'io Io, linked: bool) -> Chain<'io> {
        Chain {
            io,
            linked,
            ops: [const { None }; CHAIN_OPS_MAX],
            len: 0,
            slots: [const { None }; CHAIN_SLOTS_MAX],
            writable: [false; CHAIN_SLOTS_MAX],
            slot_count: 0,
        }
    }

    /// Ops queued so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `count` more ops?
    pub fn has_room(&self, count: usize) -> bool {
        self.len + count <= CHAIN_OPS_MAX
    }

    /// Lends `slot` to the chain; it comes back from [`ChainResults::take_slot`].
    pub fn lend(&mut self, slot: BufSlot) -> ChainSlot {
        let key = self.lend_shared(slot.share());
        self.writable[key.0] = true;
        key
    }

    /// Lends a shared slot for ops that only read it (send, write); it comes back from
    /// [`ChainResults::take_shared`].
    pub fn lend_shared(&mut self, slot: SharedSlot) -> ChainSlot {
        assert!(self.slot_count < CHAIN_SLOTS_MAX, "a chain owns at most {CHAIN_SLOTS_MAX} slots");
        self.slots[self.slot_count] = Some(slot);
        self.writable[self.slot_count] = false;
        self.slot_count += 1;
        ChainSlot(self.slot_count - 1)
    }

    fn slot(&self, key: ChainSlot) -> &SharedSlot {
        self.slots[key.0].as_ref().expect("lent slot")
    }

    fn add(
        &mut self,
        name: &'static str,
        sqe: squeue::Entry,
        holds: Holds,
        wanted: usize,
        effect: PipeEffect,
    ) {
        assert!(self.len < CHAIN_OPS_MAX, "a chain links at most {CHAIN_OPS_MAX} ops");
        assert!(wanted <= i32::MAX as usize);
        let skippable = name != "send_zc";
        self.ops[self.len] = Some(ChainOp { name, sqe, holds, wanted, pipe_effect: effect, skippable });
        self.len += 1;
    }

    fn no_pipe() -> PipeEffect {
        PipeEffect { into: None, out_of: None }
    }

    /// READ_FIXED of `len` bytes at `offset` into the lent slot at `at`.
    pub fn read_fixed(&mut self, file: &FixedFile, key: ChainSlot, at: usize, len: usize, offset: u64) {
        assert!(self.writable[key.0], "READ_FIXED into a slot lent shared");
        let slot = self.slot(key);
        let sqe =
            opcode::ReadFixed::new(file.target(), slot.mut_ptr_at(at, len), to_u32(len), slot.buf_index())
                .offset(offset)
                .build();
        let holds = Holds::new([Hold::Slot(slot.clone()), Hold::File(file.clone())]);
        self.add("read_fixed", sqe, holds, len, Self::no_pipe());
    }

    /// WRITE_FIXED of the lent slot's `at..at + len` at `offset`.
    pub fn write_fixed(&mut self, file: &FixedFile, key: ChainSlot, at: usize, len: usize, offset: u64) {
        let slot = self.slot(key);
        let sqe = opcode::WriteFixed::new(file.target(), slot.ptr_at(at, len), to_u32(len), slot.buf_index())
            .offset(offset)
            .build();
        let holds = Holds::new([Hold::Slot(slot.clone()), Hold::File(file.clone())]);
        self.add("write_fixed", sqe, holds, len, Self::no_pipe());
    }

    /// SEND of the lent slot's `at..at + len` (MSG_WAITALL, so a partial send breaks the chain).
    pub fn send(&mut self, socket: &Socket, key: ChainSlot, at: usize, len: usize, more: bool) {
        let slot = self.slot(key);
        let sqe = opcode::Send::new(types::Fd(socket.raw_fd()), slot.ptr_at(at, len), to_u32(len))
            .flags(send_flags(more))
            .build();
        let holds = Holds::new([Hold::Slot(slot.clone()), socket.hold()]);
        self.add("send", sqe, holds, len, Self::no_pipe());
    }

    /// SEND_ZC from the registered slot; its completion waits for the notification.
    pub fn send_zc(&mut self, socket: &Socket, key: ChainSlot, at: usize, len: usize, more: bool) {
        let slot = self.slot(key);
        let sqe = opcode::SendZc::new(types::Fd(socket.raw_fd()), slot.ptr_at(at, len), to_u32(len))
            .buf_index(Some(slot.buf_index()))
            .flags(send_flags(more))
            .zc_flags(SEND_ZC_REPORT_USAGE)
            .build();
        let holds = Holds::new([Hold::Slot(slot.clone()), socket.hold()]);
        self.add("send_zc", sqe, holds, len, Self::no_pipe());
    }

    /// fsync (fdatasync with `data_only`) of a fixed file, after the ops before it.
    pub fn fsync(&mut self, file: &FixedFile, data_only: bool) {
        let flags = if data_only { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
        let sqe = opcode::Fsync::new(file.target()).flags(flags).build();
        self.add(
            if data_only { "fdatasync" } else { "fsync" },
            sqe,
            Holds::new([Hold::File(file.clone())]),
            0,
            Self::no_pipe(),
        );
    }

    /// SPLICE of exactly `len` bytes.
    pub fn splice(&mut self, source: SpliceEnd<'_>, target: SpliceEnd<'_>, len: usize, more: bool) {
        let name = splice_name(&source, &target);
        let (sqe, holds, effect) = splice_parts(&source, &target, len, more);
        self.add(name, sqe, holds, len, effect);
    }

    /// Submits the chain and waits for every op. Dropping the future cancels what is left.
    ///
    /// Unless it holds a SEND_ZC, every link but the last carries IOSQE_CQE_SKIP_SUCCESS:
    /// the whole chain then posts one CQE (the last link's, or the failed link's), which
    /// wakes this task once instead of once per link.
    pub async fn submit(mut self) -> ChainResults {
        assert!(self.len > 0, "empty chain");
        let io = self.io;
        let count = self.len;
        let silent = self.linked && self.ops[..count].iter().flatten().all(|op| op.skippable);
        let linked = self.linked;
        let mut indices = [0u32; CHAIN_OPS_MAX];
        let mut names = [""; CHAIN_OPS_MAX];
        let mut wanted = [0; CHAIN_OPS_MAX];
        let mut effects: [Option<PipeEffect>; CHAIN_OPS_MAX] = [const { None }; CHAIN_OPS_MAX];
        let mut sqes: [squeue::Entry; CHAIN_OPS_MAX] = std::array::from_fn(|_| opcode::Nop::new().build());
        let mut pending: [Option<Submitted<'_>>; CHAIN_OPS_MAX] = [const { None }; CHAIN_OPS_MAX];
        poll_fn(|cx| {
            let mut table = io.shared.core.inflight.borrow_mut();
            if table.vacant_count() < count {
                table.wait_for_vacancy(cx.waker());
                return Poll::Pending;
            }
            for index in 0..count {
                let op = self.ops[index].take().expect("queued op");
                let (entry, user_data) = table.insert(op.name, op.holds).expect("vacancy checked");
                let link = match (linked && index + 1 < count, silent) {
                    (true, true) => squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS,
                    (true, false) => squeue::Flags::IO_LINK,
                    (false, _) => squeue::Flags::empty(),
                };
                sqes[index] = op.sqe.user_data(user_data).flags(link);
                indices[index] = entry;
                names[index] = op.name;
                wanted[index] = op.wanted;
                effects[index] = Some(op.pipe_effect);
                pending[index] =
                    Some(Submitted { io, index: entry, generation: (user_data >> 32) as u32, done: false });
            }
            if silent {
                let silent_results: [i32; CHAIN_OPS_MAX] = std::array::from_fn(|index| wanted[index] as i32);
                table.link_silent_chain(&indices[..count], &silent_results[..count]);
            }
            Poll::Ready(())
        })
        .await;
        io.shared.core.push(&sqes[..count]);
        let mut results = [0i32; CHAIN_OPS_MAX];
        for index in 0..count {
            let done = pending[index].as_mut().expect("submitted").await;
            pending[index] = None;
            results[index] = done.result;
            if done.result > 0 {
                effects[index].as_ref().expect("effect").apply(done.result as usize);
            }
        }
        let slots = std::mem::replace(&mut self.slots, [const { None }; CHAIN_SLOTS_MAX]);
        ChainResults { names, results, wanted, len: count, slots }
    }
}

impl ChainResults {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw result of op `index` (bytes, or a negative errno).
    pub fn raw(&self, index: usize) -> i32 {
        assert!(index < self.len);
        self.results[index]
    }

    /// Op `index` as a result: its byte count, or the error that broke the chain there.
    pub fn check(&self, index: usize) -> Result<usize, IoError> {
        let (op, result, wanted) = (self.names[index], self.raw(index), self.wanted[index]);
        match classify(op, result, u32::MAX) {
            Outcome::Done(bytes) if bytes as usize == wanted => Ok(wanted),
            Outcome::Done(bytes) => Err(IoError::Short { op, done: bytes as usize, wanted }),
            Outcome::Resubmit => unreachable!("attempts = MAX never resubmits"),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// The first op that failed or came up short, if any. In a chain, ops after it are
    /// ECANCELED.
    pub fn first_error(&self) -> Option<IoError> {
        (0..self.len).find_map(|index| self.check(index).err())
    }

    /// The slot lent as `key`, exclusive again now that every op is done.
    pub fn take_slot(&mut self, key: ChainSlot) -> BufSlot {
        let slot = self.slots[key.0].take().expect("slot taken once");
        slot.try_unique().expect("no op of a finished chain holds its slots")
    }

    /// The slot lent shared as `key`.
    pub fn take_shared(&mut self, key: ChainSlot) -> SharedSlot {
        self.slots[key.0].take().expect("slot taken once")
    }
}
