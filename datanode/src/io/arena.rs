//! The registered buffer arena: one 4 KiB-aligned allocation per ring, made and registered
//! once at startup, cut into equal slots. A request for more bytes than one slot takes a
//! run of contiguous slots (packets up to 16 MiB are legal). When no run is free the
//! caller waits ([`BufferArena::acquire`]): running out of slots is backpressure, never an
//! allocation.
//!
//! Ownership: a [`BufSlot`] is the only handle to its bytes and may be written; a
//! [`SharedSlot`] is a read-only, reference-counted handle used when one packet is sent
//! downstream and written to disk at the same time. The bytes go back to the arena when
//! the last handle drops, and in-flight entries hold handles until their completions
//! arrive, so the kernel never touches a slot that was handed out again.

use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::limits::ARENA_ALIGNMENT;

/// A request larger than the whole arena: it can never be satisfied.
#[derive(Debug, thiserror::Error)]
#[error("{bytes} bytes requested, the arena holds {capacity} bytes in all")]
pub struct SlotTooLarge {
    pub bytes: usize,
    pub capacity: usize,
}

/// Handle to one arena. Cloning is cheap; the memory lives until the arena and every slot
/// handed out from it are dropped.
#[derive(Clone)]
pub struct BufferArena {
    inner: Rc<ArenaInner>,
}

struct ArenaInner {
    base: NonNull<u8>,
    layout: Layout,
    slot_size: usize,
    slot_count: usize,
    buf_index: u16,
    state: RefCell<ArenaState>,
    /// Per first slot of a run: how many slots the run spans.
    run_len: Box<[Cell<u32>]>,
    /// Per first slot of a run: handles (BufSlot or SharedSlots) alive for it.
    handles: Box<[Cell<u32>]>,
}

struct ArenaState {
    /// Bit set = slot free.
    free_bits: Box<[u64]>,
    free_count: usize,
    /// Tasks waiting for slots; all are woken when any run is released.
    waiters: VecDeque<Waker>,
    /// Times a request found no free run (a backpressure counter for metrics and tests).
    exhausted_count: u64,
}

impl BufferArena {
    /// Allocates `slot_count` zeroed slots of `slot_size` bytes, 4 KiB aligned. The arena is
    /// registered with the ring as buffer `buf_index`.
    pub fn new(slot_size: usize, slot_count: usize, buf_index: u16) -> BufferArena {
        assert!(
            slot_size > 0 && slot_size.is_multiple_of(ARENA_ALIGNMENT),
            "slot size {slot_size} not page-sized"
        );
        assert!(slot_count > 0, "an arena needs at least one slot");
        assert!(slot_count <= u32::MAX as usize);
        let size = slot_size.checked_mul(slot_count).expect("arena size overflows usize");
        let layout = Layout::from_size_align(size, ARENA_ALIGNMENT).expect("arena layout");
        // SAFETY: the layout has a non-zero size (both factors are > 0). The memory is zeroed,
        // so every slice later made over it is initialised; it is freed only in
        // ArenaInner::drop, after the last slot handle (and so the last in-flight entry
        // holding one) is gone.
        let memory = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(memory) else { alloc::handle_alloc_error(layout) };
        let words = slot_count.div_ceil(64);
        let mut free_bits = vec![0u64; words].into_boxed_slice();
        for slot in 0..slot_count {
            free_bits[slot / 64] |= 1 << (slot % 64);
        }
        let state = ArenaState {
            free_bits,
            free_count: slot_count,
            waiters: VecDeque::with_capacity(64),
            exhausted_count: 0,
        };
        let inner = ArenaInner {
            base,
            layout,
            slot_size,
            slot_count,
            buf_index,
            state: RefCell::new(state),
            run_len: (0..slot_count).map(|_| Cell::new(0)).collect(),
            handles: (0..slot_count).map(|_| Cell::new(0)).collect(),
        };
        BufferArena { inner: Rc::new(inner) }
    }

    pub fn slot_size(&self) -> usize {
        self.inner.slot_size
    }

    pub fn slot_count(&self) -> usize {
        self.inner.slot_count
    }

    pub fn capacity_bytes(&self) -> usize {
        self.inner.layout.size()
    }

    pub fn free_slots(&self) -> usize {
        self.inner.state.borrow().free_count
    }

    /// Times a request found the arena exhausted and had to wait.
    pub fn exhausted_count(&self) -> u64 {
        self.inner.state.borrow().exhausted_count
    }

    pub fn buf_index(&self) -> u16 {
        self.inner.buf_index
    }

    /// The iovec to register with the ring.
    pub(crate) fn iovec(&self) -> libc::iovec {
        libc::iovec { iov_base: self.inner.base.as_ptr().cast(), iov_len: self.inner.layout.size() }
    }

    /// Takes a run of slots holding at least `bytes` (at least one slot), or `Ok(None)`
    /// when no such run is free right now.
    pub fn try_acquire(&self, bytes: usize) -> Result<Option<BufSlot>, SlotTooLarge> {
        let count = bytes.div_ceil(self.inner.slot_size).max(1);
        if count > self.inner.slot_count {
            return Err(SlotTooLarge { bytes, capacity: self.capacity_bytes() });
        }
        let mut state = self.inner.state.borrow_mut();
        let Some(first) = state.take_run(count, self.inner.slot_count) else {
            state.exhausted_count += 1;
            return Ok(None);
        };
        drop(state);
        assert_eq!(self.inner.handles[first].get(), 0, "slot {first} handed out twice");
        self.inner.run_len[first].set(count as u32);
        self.inner.handles[first].set(1);
        Ok(Some(BufSlot { arena: self.inner.clone(), first: first as u32 }))
    }

    /// Takes a run of slots holding at least `bytes`, waiting while the arena is exhausted.
    pub async fn acquire(&self, bytes: usize) -> Result<BufSlot, SlotTooLarge> {
        poll_fn(|cx| match self.try_acquire(bytes) {
            Ok(Some(slot)) => Poll::Ready(Ok(slot)),
            Err(too_large) => Poll::Ready(Err(too_large)),
            Ok(None) => {
                self.inner.state.borrow_mut().waiters.push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl ArenaState {
    /// Finds `count` contiguous free slots (first fit), marks them used, returns the first.
    fn take_run(&mut self, count: usize, slot_count: usize) -> Option<usize> {
        if count > self.free_count {
            return None;
        }
        let first = if count == 1 {
            let word = self.free_bits.iter().position(|w| *w != 0)?;
            word * 64 + self.free_bits[word].trailing_zeros() as usize
        } else {
            let mut run_start = 0;
            let mut run = 0;
            let mut found = None;
            for slot in 0..slot_count {
                if self.is_free(slot) {
                    if run == 0 {
                        run_start = slot;
                    }
                    run += 1;
                    if run == count {
                        found = Some(run_start);
                        break;
                    }
                } else {
                    run = 0;
                }
            }
            found?
        };
        for slot in first..first + count {
            assert!(self.is_free(slot));
            self.free_bits[slot / 64] &= !(1 << (slot % 64));
        }
        self.free_count -= count;
        Some(first)
    }

    fn is_free(&self, slot: usize) -> bool {
        self.free_bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn release_run(&mut self, first: usize, count: usize) {
        for slot in first..first + count {
            assert!(!self.is_free(slot), "slot {slot} released twice");
            self.free_bits[slot / 64] |= 1 << (slot % 64);
        }
        self.free_count += count;
    }
}

impl ArenaInner {
    fn run_bytes(&self, first: u32) -> usize {
        self.run_len[first as usize].get() as usize * self.slot_size
    }

    fn run_ptr(&self, first: u32) -> *mut u8 {
        // SAFETY: first < slot_count, so the offset stays inside the allocation.
        unsafe { self.base.as_ptr().add(first as usize * self.slot_size) }
    }

    fn add_handle(&self, first: u32) {
        let handles = &self.handles[first as usize];
        assert!(handles.get() > 0, "handle made for a released run");
        handles.set(handles.get() + 1);
    }

    /// Drops one handle; the last one returns the run to the free map and wakes waiters.
    fn drop_handle(&self, first: u32) {
        let handles = &self.handles[first as usize];
        assert!(handles.get() > 0);
        handles.set(handles.get() - 1);
        if handles.get() > 0 {
            return;
        }
        let count = self.run_len[first as usize].replace(0) as usize;
        let waiters = {
            let mut state = self.state.borrow_mut();
            state.release_run(first as usize, count);
            std::mem::take(&mut state.waiters)
        };
        // Wakes only queue the tasks; none runs here.
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Drop for ArenaInner {
    fn drop(&mut self) {
        let state = self.state.borrow();
        assert_eq!(state.free_count, self.slot_count, "arena dropped with slots handed out");
        // SAFETY: allocated in BufferArena::new with this layout. Every slot handle holds an
        // Rc of this ArenaInner, and in-flight entries hold slot handles until their last
        // completion, so no handle and no kernel operation can reach the memory any more.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// Exclusive handle to a run of slots: readable and writable, never aliased.
pub struct BufSlot {
    arena: Rc<ArenaInner>,
    first: u32,
}

impl BufSlot {
    /// Bytes in the run (a multiple of the arena's slot size).
    pub fn capacity(&self) -> usize {
        self.arena.run_bytes(self.first)
    }

    /// Registered-buffer index of the arena the run belongs to.
    pub fn buf_index(&self) -> u16 {
        self.arena.buf_index
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the run [ptr, ptr + capacity) lies inside the arena allocation, was zeroed
        // at allocation, and belongs to this handle alone: the free map hands a run out once,
        // and a BufSlot exists only while no SharedSlot or in-flight entry refers to it.
        unsafe { std::slice::from_raw_parts(self.arena.run_ptr(self.first), self.capacity()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.arena.run_ptr(self.first), self.capacity()) }
    }

    /// Turns the exclusive handle into a shared, read-only one.
    pub fn share(self) -> SharedSlot {
        let shared = SharedSlot { arena: self.arena.clone(), first: self.first };
        std::mem::forget(self);
        shared
    }

    /// Is this slot from `arena`?
    pub fn is_from(&self, arena: &BufferArena) -> bool {
        Rc::ptr_eq(&self.arena, &arena.inner)
    }

    /// Pointer to byte `offset` of the run, for building SQEs. `offset + len` must stay
    /// inside the run.
    pub(crate) fn ptr_at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.capacity()), "range outside slot");
        // SAFETY: checked just above that the range lies inside the run.
        unsafe { self.arena.run_ptr(self.first).add(offset) }
    }
}

impl Drop for BufSlot {
    fn drop(&mut self) {
        self.arena.drop_handle(self.first);
    }
}

impl std::fmt::Debug for BufSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufSlot(buf {} slot {} x{} B)", self.arena.buf_index, self.first, self.capacity())
    }
}

/// Shared, read-only handle to a run of slots. The kernel may only read through it
/// (send, write), except inside a [`Chain`](super::Chain) that owns every handle.
pub struct SharedSlot {
    arena: Rc<ArenaInner>,
    first: u32,
}

impl SharedSlot {
    pub fn capacity(&self) -> usize {
        self.arena.run_bytes(self.first)
    }

    pub fn buf_index(&self) -> u16 {
        self.arena.buf_index
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the run lies inside the arena and is initialised. While a SharedSlot is
        // outside the in-flight table only kernel reads (send, write) can be in flight on
        // it: ops that write into a slot take a BufSlot, which cannot coexist with this.
        unsafe { std::slice::from_raw_parts(self.arena.run_ptr(self.first), self.capacity()) }
    }

    /// Back to an exclusive handle when this is the only one left.
    pub fn try_unique(self) -> Result<BufSlot, SharedSlot> {
        if self.arena.handles[self.first as usize].get() != 1 {
            return Err(self);
        }
        let unique = BufSlot { arena: self.arena.clone(), first: self.first };
        std::mem::forget(self);
        Ok(unique)
    }

    /// Handles alive for this run, this one included.
    pub fn handle_count(&self) -> u32 {
        self.arena.handles[self.first as usize].get()
    }

    pub(crate) fn ptr_at(&self, offset: usize, len: usize) -> *const u8 {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.capacity()), "range outside slot");
        // SAFETY: checked just above that the range lies inside the run.
        unsafe { self.arena.run_ptr(self.first).add(offset) }
    }

    /// Pointer for a kernel write; only a [`Chain`](super::Chain) holding every handle of
    /// the run may use it.
    pub(crate) fn mut_ptr_at(&self, offset: usize, len: usize) -> *mut u8 {
        self.ptr_at(offset, len).cast_mut()
    }
}

impl Clone for SharedSlot {
    fn clone(&self) -> SharedSlot {
        self.arena.add_handle(self.first);
        SharedSlot { arena: self.arena.clone(), first: self.first }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        self.arena.drop_handle(self.first);
    }
}

impl From<BufSlot> for SharedSlot {
    fn from(slot: BufSlot) -> SharedSlot {
        slot.share()
    }
}

impl std::fmt::Debug for SharedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSlot(buf {} slot {} x{} B)", self.arena.buf_index, self.first, self.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_disjoint_and_returned() {
        let arena = BufferArena::new(4096, 4, 0);
        assert_eq!(arena.iovec().iov_base as usize % ARENA_ALIGNMENT, 0);
        let mut a = arena.try_acquire(100).unwrap().unwrap();
        let b = arena.try_acquire(4096).unwrap().unwrap();
        assert_eq!(arena.free_slots(), 2);
        assert_eq!(a.capacity(), 4096);
        assert_eq!(a.ptr_at(0, 0) as usize % ARENA_ALIGNMENT, 0);
        assert_ne!(a.ptr_at(0, 0), b.ptr_at(0, 0));
        a.as_mut_slice()[..3].copy_from_slice(b"abc");
        assert_eq!(&a.as_slice()[..3], b"abc");
        assert!(b.as_slice().iter().all(|byte| *byte == 0));
        drop(a);
        assert_eq!(arena.free_slots(), 3);
        drop(b);
        assert_eq!(arena.free_slots(), 4);
    }

    #[test]
    fn large_requests_take_contiguous_runs() {
        let arena = BufferArena::new(4096, 8, 0);
        let one = arena.try_acquire(1).unwrap().unwrap();
        let run = arena.try_acquire(3 * 4096 + 1).unwrap().unwrap();
        assert_eq!(run.capacity(), 4 * 4096);
        assert_eq!(arena.free_slots(), 3);
        assert!(arena.try_acquire(4 * 4096).unwrap().is_none(), "only 3 slots left");
        assert!(arena.try_acquire(9 * 4096).is_err(), "larger than the arena");
        drop(one);
        drop(run);
        assert_eq!(arena.free_slots(), 8);
        assert!(arena.try_acquire(8 * 4096).unwrap().is_some());
    }

    #[test]
    fn exhaustion_is_reported_not_allocated() {
        let arena = BufferArena::new(4096, 2, 0);
        let held: Vec<BufSlot> = (0..2).map(|_| arena.try_acquire(10).unwrap().unwrap()).collect();
        assert!(arena.try_acquire(10).unwrap().is_none());
        assert_eq!(arena.exhausted_count(), 1);
        drop(held);
        assert!(arena.try_acquire(10).unwrap().is_some());
    }

    #[test]
    fn shared_handles_release_with_the_last_one() {
        let arena = BufferArena::new(4096, 1, 0);
        let shared = arena.try_acquire(10).unwrap().unwrap().share();
        let copy = shared.clone();
        assert_eq!(shared.handle_count(), 2);
        let shared = shared.try_unique().expect_err("two handles alive");
        drop(copy);
        let unique = shared.try_unique().expect("last handle");
        assert_eq!(arena.free_slots(), 0);
        drop(unique);
        assert_eq!(arena.free_slots(), 1);
    }
}
