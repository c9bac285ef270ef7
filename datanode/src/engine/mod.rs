//! Data-port engines and how one is chosen.
//!
//! ## The engine boundary
//!
//! An engine is a function that serves the data port until shutdown:
//!
//! ```text
//! fn serve(listener: std::net::TcpListener, ctx: Arc<DataNodeContext>) -> Result<(), EngineError>
//! ```
//!
//! It owns the listener (already bound; blocking mode, switch it as needed), accepts
//! connections, and for each op calls the engine-neutral logic in [`crate::ops`]
//! (validation, replica lifecycle via `ctx.store`, packet planning, ack composition,
//! RECEIVING/RECEIVED events via `ctx.events`). It returns `Ok(())` once
//! `ctx.is_shutting_down()` is true; [`RunningEngine::stop`] sets the flag and then
//! makes one connection to the listener to wake a blocked accept. It counts its
//! connections with `ctx.metrics.enter_xceiver(ctx.config.xceivers_max)` (heartbeats
//! report the count) and adds to the byte/block counters in `ctx.metrics`.
//!
//! `threads` ([`threads::serve`]) is the baseline and the fallback. The io_uring engine
//! provides `uring::probe() -> Result<(), String>` (why the kernel cannot run it:
//! version, seccomp, memlock) and `uring::serve` with the signature above; `uring`
//! refuses to start when the probe fails, `auto` falls back to threads and says why
//! (log line, and the http status's `engineFallbackReason`).

pub mod threads;
pub mod uring;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::context::{DataNodeContext, EngineInfo};

/// `dfs.datanode.io.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// io_uring or refuse to start.
    Uring,
    /// Thread per connection, blocking I/O, sendfile: the Java DataNode's model.
    Threads,
    /// io_uring when the kernel allows it, else threads (logged loudly).
    Auto,
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(value: &str) -> Result<EngineKind, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" => Ok(EngineKind::Uring),
            "threads" => Ok(EngineKind::Threads),
            "auto" | "" => Ok(EngineKind::Auto),
            other => Err(format!("unknown engine {other:?}; expected uring, threads or auto")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("io_uring engine unavailable: {reason}")]
    UringUnavailable { reason: String },
    #[error("{action}: {source}")]
    Io { action: &'static str, source: std::io::Error },
    #[error("engine thread panicked")]
    Panicked,
}

/// Why the io_uring engine cannot run here, or `None` if it can.
pub fn uring_unavailable() -> Option<String> {
    uring::probe().err()
}

/// An engine serving the data port on its own thread.
pub struct RunningEngine {
    pub info: EngineInfo,
    local_addr: SocketAddr,
    ctx: Arc<DataNodeContext>,
    thread: Option<JoinHandle<Result<(), EngineError>>>,
}

/// Picks the engine for `kind` and starts it on `listener`.
pub fn start(
    kind: EngineKind,
    listener: TcpListener,
    ctx: Arc<DataNodeContext>,
) -> Result<RunningEngine, EngineError> {
    let info = match (kind, uring_unavailable()) {
        (EngineKind::Threads, _) => EngineInfo { name: "threads", fallback_reason: None },
        (EngineKind::Uring, Some(reason)) => return Err(EngineError::UringUnavailable { reason }),
        (EngineKind::Auto, Some(reason)) => {
            warn!("io_uring engine unavailable: {reason}; falling back to threads");
            EngineInfo { name: "threads", fallback_reason: Some(reason) }
        }
        (EngineKind::Uring | EngineKind::Auto, None) => EngineInfo { name: "uring", fallback_reason: None },
    };
    let local_addr = listener
        .local_addr()
        .map_err(|source| EngineError::Io { action: "read listener address", source })?;
    let _ = ctx.metrics.engine.set(info.clone());
    let serve_ctx = Arc::clone(&ctx);
    let name = info.name;
    let thread = std::thread::Builder::new()
        .name(format!("dn-{name}-engine"))
        .stack_size(crate::limits::ENGINE_THREAD_STACK_BYTES)
        .spawn(move || match name {
            "threads" => threads::serve(listener, serve_ctx),
            _ => uring::serve(listener, serve_ctx),
        })
        .map_err(|source| EngineError::Io { action: "spawn engine thread", source })?;
    info!(engine = name, addr = %local_addr, "data port serving");
    Ok(RunningEngine { info, local_addr, ctx, thread: Some(thread) })
}

impl RunningEngine {
    /// Has the engine thread ended (it only does on shutdown or a fatal error)?
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops accepting and waits for the accept loop to end (open connections end on
    /// their own timeouts).
    pub fn stop(mut self) -> Result<(), EngineError> {
        self.ctx.request_shutdown();
        // Wake a blocked accept(); the engine sees the flag on the next connection.
        let wake = if self.local_addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), self.local_addr.port())
        } else {
            self.local_addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => {
                error!(error = %e, "data port engine failed");
                Err(e)
            }
            Some(Err(_)) => Err(EngineError::Panicked),
        }
    }
}
