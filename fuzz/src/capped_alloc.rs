//! A global allocator that aborts on any single allocation above a limit, so a decoder
//! that sizes a buffer by a length it has only been told about is caught at once (as a
//! libFuzzer crash, or as an aborted replay test) instead of exhausting memory.
//!
//! Shared by the fuzz crate and `common/tests/fuzz_regressions.rs` (included by path).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Forwards to the system allocator after checking the size against [`LIMIT`].
pub struct CappedAllocator;

/// The largest allocation allowed right now; `usize::MAX` outside oracles.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Abort on an allocation over the limit (fuzzing), or only record it (replay tests,
/// which then name the input).
static ABORT_ON_EXCESS: AtomicBool = AtomicBool::new(true);

/// The largest allocation over its limit since the last [`take_excess`]; 0 if none.
static EXCESS: AtomicUsize = AtomicUsize::new(0);

/// Records allocations over the limit instead of aborting.
pub fn record_instead_of_abort() {
    ABORT_ON_EXCESS.store(false, Ordering::SeqCst);
}

/// The largest over-limit allocation since the previous call, if any.
pub fn take_excess() -> Option<usize> {
    Some(EXCESS.swap(0, Ordering::SeqCst)).filter(|&size| size > 0)
}

/// Runs `f` with single allocations capped at `limit` bytes. A panic lifts the cap
/// while it is reported (backtraces load debug info) and restores it as it unwinds.
pub fn with_allocation_limit<R>(limit: usize, f: impl FnOnce() -> R) -> R {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LIMIT.store(usize::MAX, Ordering::SeqCst);
            report(info);
        }));
    });
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.store(self.0, Ordering::SeqCst);
        }
    }
    let _restore = Restore(LIMIT.swap(limit, Ordering::SeqCst));
    f()
}

fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if size > limit && !ABORT_ON_EXCESS.load(Ordering::Relaxed) {
        EXCESS.fetch_max(size, Ordering::SeqCst);
    } else if size > limit {
        // No allocation from here on: format into stack buffers, then abort so libFuzzer
        // records the input as a crash.
        let mut stderr = std::io::stderr();
        let _ = stderr.write_all(b"\n==ringfs-fuzz== allocation of ");
        let _ = stderr.write_all(decimal(size, &mut [0; 20]));
        let _ = stderr.write_all(b" bytes exceeds the limit of ");
        let _ = stderr.write_all(decimal(limit, &mut [0; 20]));
        let _ = stderr.write_all(b" bytes\n");
        std::process::abort();
    }
}

fn decimal(mut value: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// GlobalAlloc contract; the added check only reads atomics and may abort the process.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's layout contract is passed through to System.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: `ptr` was allocated by System with `layout` (all allocations go through
        // this type), as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
