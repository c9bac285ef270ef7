//! Synchronisation between tasks of one ring (single-threaded, no atomics): a bounded
//! channel whose full queue makes the sender wait (backpressure), used e.g. to hand
//! packets from a write pipeline's receiver task to its ack responder.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

struct Shared<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    sender_wakers: Vec<Waker>,
}

/// Sending half; cloneable.
pub struct Sender<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// Receiving half.
pub struct Receiver<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// The receiver is gone; the value comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

/// A channel holding at most `capacity` values (allocated up front).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0);
    let shared = Rc::new(RefCell::new(Shared {
        queue: VecDeque::with_capacity(capacity),
        capacity,
        senders: 1,
        receiver_alive: true,
        receiver_waker: None,
        sender_wakers: Vec::new(),
    }));
    (Sender { shared: shared.clone() }, Receiver { shared })
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    pub async fn send(&self, value: T) -> Result<(), Closed<T>> {
        let mut value = Some(value);
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if !shared.receiver_alive {
                return Poll::Ready(Err(Closed(value.take().expect("sent once"))));
            }
            if shared.queue.len() >= shared.capacity {
                shared.sender_wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
            shared.queue.push_back(value.take().expect("sent once"));
            let waker = shared.receiver_waker.take();
            drop(shared);
            if let Some(waker) = waker {
                waker.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Values queued and not yet received.
    pub fn len(&self) -> usize {
        self.shared.borrow().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.borrow_mut().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.borrow_mut();
            shared.senders -= 1;
            if shared.senders == 0 {
                shared.receiver_waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if let Some(value) = shared.queue.pop_front() {
                let wakers = std::mem::take(&mut shared.sender_wakers);
                drop(shared);
                for waker in wakers {
                    waker.wake();
                }
                return Poll::Ready(Some(value));
            }
            if shared.senders == 0 {
                return Poll::Ready(None);
            }
            shared.receiver_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let wakers = {
            let mut shared = self.shared.borrow_mut();
            shared.receiver_alive = false;
            std::mem::take(&mut shared.sender_wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}
