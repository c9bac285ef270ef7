//! Synchronisation between tasks of one ring (single-threaded, no atomics): a bounded
//! channel whose full queue makes the sender wait (backpressure), used e.g. to hand
//! packets from a write pipeline's receiver task to its ack responder.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Runs two futures at once, polling `first` before `second` each time (so the SQE
/// `first` queues is submitted ahead of `second`'s).
pub async fn join<A: Future, B: Future>(first: A, second: B) -> (A::Output, B::Output) {
    let (mut first, mut second) = (pin!(first), pin!(second));
    let (mut first_out, mut second_out) = (None, None);
    poll_fn(|cx| {
        if first_out.is_none() {
            if let Poll::Ready(out) = first.as_mut().poll(cx) {
                first_out = Some(out);
            }
        }
        if second_out.is_none() {
            if let Poll::Ready(out) = second.as_mut().poll(cx) {
                second_out = Some(out);
            }
        }
        if first_out.is_some() && second_out.is_some() {
            return Poll::Ready((first_out.take().expect("ready"), second_out.take().expect("ready")));
        }
        Poll::Pending
    })
    .await
}

/// A one-way signal that any thread may raise and one ring task awaits (e.g. shutdown).
#[derive(Clone, Default)]
pub struct Signal {
    inner: Arc<SignalInner>,
}

#[derive(Default)]
struct SignalInner {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    pub fn new() -> Signal {
        Signal::default()
    }

    pub fn raise(&self) {
        self.inner.raised.store(true, Ordering::Release);
        if let Some(waker) = self.inner.waker.lock().expect("signal poisoned").take() {
            waker.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised.
    pub async fn raised(&self) {
        poll_fn(|cx| {
            if self.is_raised() {
                return Poll::Ready(());
            }
            *self.inner.waker.lock().expect("signal poisoned") = Some(cx.waker().clone());
            // Raised between the check and storing the waker: do not sleep through it.
            if self.is_raised() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Runs blocking `work` on a new thread and waits for its result without blocking the
/// ring: for the rare call that may wait on another task of this very ring (which could
/// then never run). `None` if no thread could be started.
pub async fn off_ring<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let done = Signal::new();
    let output = Arc::new(Mutex::new(None));
    let (raise, store) = (done.clone(), Arc::clone(&output));
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let result = work();
        *store.lock().expect("result slot poisoned") = Some(result);
        raise.raise();
    });
    spawned.ok()?;
    done.raised().await;
    let result = output.lock().expect("result slot poisoned").take();
    result
}

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
