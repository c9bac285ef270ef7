//! The io_uring engine: one ring per core, each on its own pinned thread, serving the
//! same DataTransferProtocol as the threads engine through the engine-neutral logic in
//! [`crate::ops`]; only the I/O differs.
//!
//! ```text
//! ring 0 (this thread)    ACCEPT on the ring -> connection i goes to ring i % rings
//! ring k (thread k)       connection tasks: op loop, READ_BLOCK sender, WRITE_BLOCK
//!                         receiver + ack responder, BLOCK_CHECKSUM, TRANSFER_BLOCK
//! ```
//!
//! Reads: each packet's header is encoded into a registered packet slot, its CRCs and
//! data are read right after it with READ_FIXED (from the `.meta` and the block file) and
//! the whole packet leaves with one SEND_ZC; 8 packets are one linked chain (one
//! submission). [`ReadMode::Splice`] (header + CRCs from a control slot, data file ->
//! pooled pipe -> socket) measured slower: see [`ReadMode`].
//!
//! Writes: a packet is received straight into a registered packet slot; the same slot
//! is sent to the mirror and written to the block and meta files with WRITE_FIXED (the
//! send is queued first), with no copy in between; the last node verifies the CRCs on
//! that slot. Acks go upstream in order from a responder task.

mod conn;
mod inbound;
mod read;
mod write;

use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub use read::ReadMode;

use super::EngineError;
use crate::context::DataNodeContext;
use crate::io::sync::Signal;
use crate::io::{self, IoError, Listener, Remote, RingConfig, Runtime, Socket};

/// How the engine runs; [`serve`] uses the defaults and `dfs.datanode.uring.rings`.
#[derive(Debug, Clone)]
pub struct UringOptions {
    /// Rings (one thread each); 0 = one per core.
    pub rings: usize,
    pub read_mode: ReadMode,
    /// Forward write packets to the mirror with SEND_ZC instead of SEND.
    pub mirror_send_zc: bool,
    pub ring: RingConfig,
}

impl UringOptions {
    pub fn from_context(ctx: &DataNodeContext) -> UringOptions {
        UringOptions {
            rings: ctx.config.uring_rings,
            read_mode: ReadMode::DEFAULT,
            // Over loopback the kernel copies zero-copy sends anyway and adds a
            // notification per send; across hosts SEND_ZC pays off above ~3 KB.
            mirror_send_zc: false,
            ring: RingConfig::default(),
        }
    }

    fn ring_count(&self) -> usize {
        if self.rings == 0 {
            io::available_cores()
        } else {
            self.rings
        }
    }
}

/// Pause after accept fails for lack of fds or memory, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Can this kernel (and this process's limits) run the engine? `Err` says why not.
pub fn probe() -> Result<(), String> {
    let locked_bytes = RingConfig::default().locked_bytes() * io::available_cores() as u64;
    io::probe(locked_bytes).map(|_| ()).map_err(|why| why.to_string())
}

/// Serves the data port until shutdown with the default options.
pub fn serve(listener: TcpListener, ctx: Arc<DataNodeContext>) -> Result<(), EngineError> {
    let options = UringOptions::from_context(&ctx);
    serve_with(listener, ctx, options)
}

/// Serves the data port until `ctx` is shutting down.
pub fn serve_with(
    listener: TcpListener,
    ctx: Arc<DataNodeContext>,
    options: UringOptions,
) -> Result<(), EngineError> {
    let rings = options.ring_count().max(1);
    let options = Arc::new(options);
    let stops: Vec<Signal> = (0..rings).map(|_| Signal::new()).collect();
    let (ready_sender, ready_receiver) = mpsc::channel();
    let mut threads = Vec::with_capacity(rings - 1);
    for (index, stop) in stops.iter().enumerate().skip(1) {
        let (options, stop, ready) = (options.clone(), stop.clone(), ready_sender.clone());
        let thread = std::thread::Builder::new()
            .name(format!("dn-uring-{index}"))
            .stack_size(crate::limits::ENGINE_THREAD_STACK_BYTES)
            .spawn(move || ring_thread((index, rings), &options, stop, ready))
            .map_err(|source| EngineError::Io { action: "spawn a ring thread", source })?;
        threads.push(thread);
    }
    drop(ready_sender);
    let mut remotes: Vec<Option<Remote>> = (0..rings).map(|_| None).collect();
    let mut failure = None;
    for _ in 1..rings {
        match ready_receiver.recv() {
            Ok((index, Ok(remote))) => remotes[index] = Some(remote),
            Ok((_, Err(reason))) => failure = Some(reason),
            Err(_) => failure = Some("a ring thread died during setup".to_string()),
        }
    }
    let outcome = match failure.map_or_else(|| new_runtime(0, rings, &options), Err) {
        Ok(runtime) => {
            let io = runtime.io().clone();
            let accept = accept_loop(io, listener, ctx, options.clone(), remotes);
            let outcome = runtime.block_on(accept);
            drop(runtime); // Cancels ring 0's connections and waits for the kernel.
            outcome
        }
        Err(reason) => Err(EngineError::UringUnavailable { reason }),
    };
    for stop in &stops {
        stop.raise();
    }
    for thread in threads {
        if thread.join().is_err() {
            return Err(EngineError::Panicked);
        }
    }
    outcome
}

/// Creates ring `index` of `rings` on the calling thread, pinned to a core.
fn new_runtime(index: usize, rings: usize, options: &UringOptions) -> Result<Runtime, String> {
    let pinned = io::pin_current_thread(index);
    let runtime = Runtime::new(&options.ring).map_err(|error| format!("ring {index}: {error}"))?;
    if index == 0 {
        let io = runtime.io();
        info!(
            rings,
            setup = %io.setup_report(),
            kernel = %io.capabilities(),
            read_mode = ?options.read_mode,
            "io_uring engine ready"
        );
    }
    if let Err(errno) = pinned {
        warn!(ring = index, %errno, "could not pin the ring thread to a core");
    }
    Ok(runtime)
}

type Ready = mpsc::Sender<(usize, Result<Remote, String>)>;

fn ring_thread((index, rings): (usize, usize), options: &UringOptions, stop: Signal, ready: Ready) {
    let runtime = match new_runtime(index, rings, options) {
        Ok(runtime) => runtime,
        Err(reason) => {
            let _ = ready.send((index, Err(reason)));
            return;
        }
    };
    let _ = ready.send((index, Ok(runtime.remote())));
    runtime.block_on(stop.raised());
}

/// Accepts on ring 0 and deals connections round-robin to the rings.
async fn accept_loop(
    io: io::Io,
    listener: TcpListener,
    ctx: Arc<DataNodeContext>,
    options: Arc<UringOptions>,
    remotes: Vec<Option<Remote>>,
) -> Result<(), EngineError> {
    let listener = Listener::from_std(listener)
        .map_err(|source| EngineError::Io { action: "set up the listener", source })?;
    let mut next = 0usize;
    loop {
        let accepted = io.accept(&listener).await;
        if ctx.is_shutting_down() {
            return Ok(());
        }
        let socket = match accepted {
            Ok(socket) => socket,
            Err(error) if is_transient_accept_error(&error) => {
                warn!(%error, "accept failed; retrying");
                io.sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
            Err(error) => {
                return Err(EngineError::Io {
                    action: "accept on the data port",
                    source: to_std_error(error),
                })
            }
        };
        let Some(guard) = ctx.metrics.enter_xceiver(ctx.config.xceivers_max) else {
            warn!(max = ctx.config.xceivers_max, "xceiver count exceeds the limit; connection refused");
            continue;
        };
        let ring = next % remotes.len();
        next = next.wrapping_add(1);
        let Some(remote) = &remotes[ring] else {
            io.spawn(conn::serve(io.clone(), socket, ctx.clone(), options.clone(), guard));
            continue;
        };
        // Accepted sockets are not shared yet, so the std stream moves out whole.
        let Ok(stream) = socket.into_std() else {
            warn!("a fresh connection was still shared; dropped");
            continue;
        };
        let (ctx, options) = (ctx.clone(), options.clone());
        remote.run(move |io| match Socket::from_std(stream) {
            Ok(socket) => {
                io.spawn(conn::serve(io.clone(), socket, ctx, options, guard));
            }
            Err(error) => warn!(%error, "connection setup failed"),
        });
    }
}

fn is_transient_accept_error(error: &IoError) -> bool {
    matches!(error, IoError::Os { errno, .. }
        if [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EPROTO].contains(&errno.0))
}

fn to_std_error(error: IoError) -> std::io::Error {
    std::io::Error::other(error)
}
