//! What every engine thread shares: the block store, the settings, the replica event
//! sink, counters, and the shutdown flag.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::DataNodeConfig;
use crate::events::EventSink;
use crate::store::BlockStore;

/// Shared state of a running datanode, handed to the engine as `Arc<DataNodeContext>`.
#[derive(Debug)]
pub struct DataNodeContext {
    pub store: BlockStore,
    pub config: DataNodeConfig,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    /// `ip:xferPort` this datanode registered with (for logs and firstBadLink).
    pub xfer_addr: OnceLock<String>,
    shutdown: AtomicBool,
}

impl DataNodeContext {
    pub fn new(store: BlockStore, config: DataNodeConfig, events: EventSink) -> DataNodeContext {
        DataNodeContext {
            store,
            config,
            events,
            metrics: Arc::new(Metrics::default()),
            xfer_addr: OnceLock::new(),
            shutdown: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }
}

/// Which engine serves the data port, and why if it is not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub name: &'static str,
    pub fallback_reason: Option<String>,
}

/// Counters shown on the http port and sent in heartbeats.
#[derive(Debug, Default)]
pub struct Metrics {
    xceivers: AtomicUsize,
    transfers: AtomicUsize,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub blocks_read: AtomicU64,
    pub blocks_written: AtomicU64,
    pub blocks_replicated: AtomicU64,
    pub ops_failed: AtomicU64,
    pub checksum_errors: AtomicU64,
    pub engine: OnceLock<EngineInfo>,
}

impl Metrics {
    /// Counts a data-port connection while the guard lives, if under `max`.
    pub fn enter_xceiver(self: &Arc<Self>, max: usize) -> Option<ActiveGuard> {
        ActiveGuard::enter(Arc::clone(self), |m| &m.xceivers, max)
    }

    /// Counts a DN-to-DN transfer while the guard lives, if under `max`.
    pub fn enter_transfer(self: &Arc<Self>, max: usize) -> Option<ActiveGuard> {
        ActiveGuard::enter(Arc::clone(self), |m| &m.transfers, max)
    }

    pub fn xceivers(&self) -> usize {
        self.xceivers.load(Ordering::Relaxed)
    }

    pub fn transfers(&self) -> usize {
        self.transfers.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// Decrements its counter when dropped.
pub struct ActiveGuard {
    metrics: Arc<Metrics>,
    counter: fn(&Metrics) -> &AtomicUsize,
}

impl ActiveGuard {
    fn enter(
        metrics: Arc<Metrics>,
        counter: fn(&Metrics) -> &AtomicUsize,
        max: usize,
    ) -> Option<ActiveGuard> {
        let entered = counter(&metrics)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok();
        entered.then(|| ActiveGuard { metrics, counter })
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        (self.counter)(&self.metrics).fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_cap_and_release() {
        let metrics = Arc::new(Metrics::default());
        let a = metrics.enter_xceiver(2).unwrap();
        let _b = metrics.enter_xceiver(2).unwrap();
        assert!(metrics.enter_xceiver(2).is_none());
        assert_eq!(metrics.xceivers(), 2);
        drop(a);
        assert_eq!(metrics.xceivers(), 1);
        assert!(metrics.enter_xceiver(2).is_some());
    }
}
