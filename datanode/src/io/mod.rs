//! The io_uring layer of the datanode: the only module where `unsafe` is allowed.
//!
//! Everything above it (the uring engine) uses safe, ownership-passing operations:
//!
//! ```text
//! Runtime (one per thread, pinned)        owns the ring; drop cancels and drains it
//!  └─ Io (cheap Rc handle)                ops: recv/send/send_zc/read_fixed/write_fixed/splice/...
//!      ├─ Ring                            SQ/CQ, setup flags with fallback, batched submit and reap
//!      ├─ InFlight                        user_data = slab index; each entry OWNS the buffer
//!      │                                  slot, fd and pipe it uses until its last CQE (and the
//!      │                                  SEND_ZC notification) arrives, even if the op's future
//!      │                                  was dropped
//!      ├─ BufferArena ×2                  control (4 KiB) and packet (128 KiB) slots, 4 KiB aligned,
//!      │                                  allocated and registered once; exhaustion = backpressure
//!      ├─ FixedFiles                      sparse fixed-file table, a slot per open block/meta file
//!      └─ PipePool                        pipes sized to a packet for file -> pipe -> socket splice
//! ```
//!
//! Operations take their buffers by value and hand them back with the result
//! (`(Result<usize, IoError>, BufSlot)`), as monoio and tokio-uring do: a future that is
//! dropped mid-operation leaves its buffer with the in-flight table, never with the
//! kernel alone. Completions are queued (a woken task runs later), never run inline.
//!
//! Rules for `unsafe` here: every block has a `// SAFETY:` comment naming what keeps the
//! memory and fds alive until the completion arrives; public functions are all safe.

#![allow(unsafe_code)] // The one place the crate-wide deny(unsafe_code) is lifted.

mod arena;
mod error;
mod executor;
mod files;
mod inflight;
pub mod limits;
mod ops;
mod pipes;
mod probe;
mod ring;
mod socket;
pub mod sync;
mod thread;

pub use arena::{BufSlot, BufferArena, SharedSlot, SlotTooLarge};
pub use error::{Errno, IoError};
pub use executor::{JoinHandle, Remote, Runtime};
pub use files::{FilesError, FixedFile, FixedFiles};
pub use ops::{Chain, ChainResults, Io, SpliceEnd, TimedOut};
pub use pipes::{PipePool, PooledPipe};
pub use probe::{probe, Capabilities, OpcodeSupport, Unavailable};
pub use ring::{RingConfig, RingError, SetupReport};
pub use socket::{Listener, Socket};
pub use thread::{available_cores, pin_current_thread};

#[cfg(test)]
mod tests;
