//! Replica events for the namenode's incremental block reports: the data path sends
//! them through a channel, the namenode actor batches them into
//! blockReceivedAndDeleted calls. Sending never blocks the data path.

use tokio::sync::mpsc;

/// What happened to a replica (ReceivedDeletedBlockInfoProto.BlockStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaEventKind {
    /// A client pipeline started writing it (RECEIVING_BLOCK).
    Receiving,
    /// It was finalized (RECEIVED_BLOCK): the namenode may count it.
    Received,
    /// It was deleted (DELETED_BLOCK).
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEvent {
    pub kind: ReplicaEventKind,
    pub block_id: u64,
    pub gen_stamp: u64,
    pub length: u64,
    /// Index of the volume (storage) holding it.
    pub volume: usize,
}

/// The sending half, cloned into every engine thread.
#[derive(Debug, Clone)]
pub struct EventSink {
    sender: mpsc::UnboundedSender<ReplicaEvent>,
}

impl EventSink {
    pub fn channel() -> (EventSink, mpsc::UnboundedReceiver<ReplicaEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (EventSink { sender }, receiver)
    }

    /// Queues an event; if the namenode actor is gone (shutdown), the next full block
    /// report carries the state anyway.
    pub fn send(&self, event: ReplicaEvent) {
        let _ = self.sender.send(event);
    }
}
