//! The in-flight table: `user_data` of every SQE is an index into this slab (plus a
//! generation, to catch a stale completion). Each entry OWNS what its operation touches
//! (buffer slot, fd, fixed file, pipe, timespec, socket address) until the kernel is done
//! with it: the result CQE, and for SEND_ZC also the notification CQE. If the future that
//! submitted the op is dropped first, the entry is marked ignored and keeps everything
//! until then (monoio's `Ignored` lifecycle state).

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::types::Timespec;

use super::arena::SharedSlot;
use super::files::FixedFile;
use super::pipes::PipeFds;

/// `user_data` of an AsyncCancel SQE; its completion is ignored.
pub(crate) const CANCEL_USER_DATA: u64 = u64::MAX - 1;

/// `user_data` of a LinkTimeout SQE; the linked op's own completion reports the timeout.
pub(crate) const LINK_TIMEOUT_USER_DATA: u64 = u64::MAX - 2;

/// Set in a SEND_ZC notification's result when the kernel had to copy the data after all
/// (always the case over loopback); requested with IORING_SEND_ZC_REPORT_USAGE.
pub(crate) const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// No neighbour in a linked chain.
const NO_LINK: u32 = u32::MAX;

/// Most resources one operation keeps alive (e.g. splice: file, pipe; send: slot, socket).
pub(crate) const HOLDS_MAX: usize = 3;

/// A resource an in-flight operation keeps alive. Most variants are never read: holding
/// them is the point, their Drop runs when the kernel is done.
#[allow(dead_code)]
pub(crate) enum Hold {
    Slot(SharedSlot),
    File(FixedFile),
    Fd(Rc<dyn AsRawFd>),
    Pipe(Rc<PipeFds>),
    /// Read by the kernel when the SQE is prepared (timeouts).
    Time(Timespec),
    /// A socket address the kernel reads (connect).
    Addr(Box<(libc::sockaddr_storage, libc::socklen_t)>),
}

/// The resources of one operation.
#[derive(Default)]
pub(crate) struct Holds(pub(crate) [Option<Hold>; HOLDS_MAX]);

impl Holds {
    pub(crate) fn new(holds: impl IntoIterator<Item = Hold>) -> Holds {
        let mut all = Holds::default();
        for (index, hold) in holds.into_iter().enumerate() {
            assert!(index < HOLDS_MAX, "an op holds at most {HOLDS_MAX} resources");
            all.0[index] = Some(hold);
        }
        all
    }

    /// Takes the first slot handle back out.
    pub(crate) fn take_slot(&mut self) -> Option<SharedSlot> {
        self.0.iter_mut().find_map(|hold| match hold.take() {
            Some(Hold::Slot(slot)) => Some(slot),
            other => {
                *hold = other;
                None
            }
        })
    }

    pub(crate) fn time(&self) -> Option<&Timespec> {
        self.0.iter().find_map(|hold| match hold {
            Some(Hold::Time(time)) => Some(time),
            _ => None,
        })
    }

    pub(crate) fn addr(&self) -> Option<&(libc::sockaddr_storage, libc::socklen_t)> {
        self.0.iter().find_map(|hold| match hold {
            Some(Hold::Addr(addr)) => Some(&**addr),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Vacant,
    /// Submitted; the future is waiting for it.
    Pending,
    /// Submitted; the future was dropped, so the entry frees itself on completion.
    Ignored,
    /// Done; the future has not collected the result yet.
    Completed,
}

struct Entry {
    generation: u32,
    state: State,
    op: &'static str,
    holds: Holds,
    waker: Option<Waker>,
    result: i32,
    /// The op's result CQE has arrived.
    result_seen: bool,
    /// The result CQE said a SEND_ZC notification follows, and it has not come yet.
    awaiting_notification: bool,
    /// A SEND_ZC notification arrived (possibly before the result).
    notification_seen: bool,
    /// Neighbours in a chain submitted with IOSQE_CQE_SKIP_SUCCESS on every link but the
    /// last: only one CQE arrives for the whole chain, and it settles the others.
    chain_prev: u32,
    chain_next: u32,
    /// The result a link that completed silently (skipped CQE) is known to have had.
    silent_result: i32,
}

/// What the future gets back when its op completed.
pub(crate) struct Completion {
    pub(crate) result: i32,
    pub(crate) holds: Holds,
}

/// What the driver does after handing a CQE to the table.
pub(crate) enum Delivered {
    /// Nothing yet (a SEND_ZC result whose notification is still to come).
    Nothing,
    Wake(Waker),
    /// An ignored op finished: drop its resources (outside the table's borrow).
    Release(Holds),
}

/// What dropping a pending future requires.
pub(crate) enum Abandoned {
    /// Still in the kernel: cancel it; the entry frees itself when it completes.
    Cancel { user_data: u64 },
    /// Already complete: drop these resources.
    Release(Holds),
}

pub(crate) struct InFlight {
    entries: Box<[Entry]>,
    vacant: Vec<u32>,
    waiters: Vec<Waker>,
    /// What the last `deliver` settled (reused, so delivering allocates nothing).
    pub(crate) settled: Vec<Delivered>,
    /// Notifications that said the kernel copied a SEND_ZC payload.
    pub(crate) zc_copied_count: u64,
    /// Notifications that came after their op was settled (see `deliver`).
    pub(crate) stray_notification_count: u64,
}

impl InFlight {
    pub(crate) fn new(capacity: usize) -> InFlight {
        assert!(capacity > 0 && capacity < u32::MAX as usize);
        let entries = (0..capacity)
            .map(|_| Entry {
                generation: 0,
                state: State::Vacant,
                op: "",
                holds: Holds::default(),
                waker: None,
                result: 0,
                result_seen: false,
                awaiting_notification: false,
                notification_seen: false,
                chain_prev: NO_LINK,
                chain_next: NO_LINK,
                silent_result: 0,
            })
            .collect();
        let vacant = (0..capacity as u32).rev().collect();
        InFlight {
            entries,
            vacant,
            waiters: Vec::with_capacity(64),
            settled: Vec::with_capacity(super::limits::CHAIN_OPS_MAX),
            zc_copied_count: 0,
            stray_notification_count: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.vacant.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.vacant.len() == self.entries.len()
    }

    pub(crate) fn vacant_count(&self) -> usize {
        self.vacant.len()
    }

    /// Parks a task until an entry frees up.
    pub(crate) fn wait_for_vacancy(&mut self, waker: &Waker) {
        self.waiters.push(waker.clone());
    }

    /// Claims an entry for `op` and moves its resources in. Returns `(index, user_data)`.
    pub(crate) fn insert(&mut self, op: &'static str, holds: Holds) -> Option<(u32, u64)> {
        let index = self.vacant.pop()?;
        let entry = &mut self.entries[index as usize];
        assert_eq!(entry.state, State::Vacant);
        entry.generation = entry.generation.wrapping_add(1);
        entry.state = State::Pending;
        entry.op = op;
        entry.holds = holds;
        entry.waker = None;
        entry.result = 0;
        entry.result_seen = false;
        entry.awaiting_notification = false;
        entry.notification_seen = false;
        entry.chain_prev = NO_LINK;
        entry.chain_next = NO_LINK;
        entry.silent_result = 0;
        Some((index, user_data(index, entry.generation)))
    }

    /// Marks `indices` (in link order) as one chain whose links but the last carry
    /// IOSQE_CQE_SKIP_SUCCESS; `silent_results[i]` is what link `i` returns on success.
    ///
    /// The kernel then posts exactly one CQE for the chain: the last link's, or the first
    /// failed link's (a failure clears its skip flag and skips the cancelled links after
    /// it). That CQE settles every other link: those before it succeeded, those after it
    /// were cancelled.
    pub(crate) fn link_silent_chain(&mut self, indices: &[u32], silent_results: &[i32]) {
        assert_eq!(indices.len(), silent_results.len());
        for (position, &index) in indices.iter().enumerate() {
            let entry = &mut self.entries[index as usize];
            assert_eq!(entry.state, State::Pending, "chain links are fresh entries");
            entry.chain_prev = if position == 0 { NO_LINK } else { indices[position - 1] };
            entry.chain_next = indices.get(position + 1).copied().unwrap_or(NO_LINK);
            entry.silent_result = silent_results[position];
        }
    }

    /// The resources of a just-inserted entry, for building its SQE (addresses of a
    /// timespec or sockaddr stay put: entries never move).
    pub(crate) fn holds(&self, index: u32) -> &Holds {
        &self.entries[index as usize].holds
    }

    /// Hands over one CQE; what it settled is left in `self.settled`.
    pub(crate) fn deliver(&mut self, user_data: u64, result: i32, flags: u32) {
        assert!(self.settled.is_empty(), "settled completions not collected");
        let (index, generation) = split_user_data(user_data);
        let entry = &mut self.entries[index as usize];
        if io_uring::cqueue::notif(flags) {
            // A notification can outlive its op's entry: a SEND_ZC cancelled as a link
            // follower completes with -ECANCELED and no F_MORE, and the kernel still posts
            // its notification afterwards. By then the entry may be settled, collected or
            // reused; a send that never ran pinned no pages, so the notification is dropped.
            let live =
                entry.generation == generation && matches!(entry.state, State::Pending | State::Ignored);
            if !live {
                self.stray_notification_count += 1;
                return;
            }
            if result as u32 & NOTIF_USAGE_ZC_COPIED != 0 {
                self.zc_copied_count += 1;
            }
            entry.notification_seen = true;
            if !entry.result_seen || !entry.awaiting_notification {
                return; // The result (still to come) settles it.
            }
            entry.awaiting_notification = false;
        } else {
            assert_eq!(entry.generation, generation, "stale completion for entry {index} ({})", entry.op);
            assert!(matches!(entry.state, State::Pending | State::Ignored), "{} completed twice", entry.op);
            entry.result = result;
            entry.result_seen = true;
            // For SEND_ZC, F_MORE on the result means the buffer is still in use until a
            // notification CQE arrives; we use no multishot ops, so it means nothing else.
            entry.awaiting_notification = io_uring::cqueue::more(flags) && !entry.notification_seen;
            if entry.awaiting_notification {
                return;
            }
        }
        let (mut previous, mut next) = (entry.chain_prev, entry.chain_next);
        let failed = entry.result != entry.silent_result;
        self.settle(index);
        // Links before this one ran to completion without a CQE.
        while previous != NO_LINK {
            let link = &mut self.entries[previous as usize];
            assert!(matches!(link.state, State::Pending | State::Ignored), "{} settled twice", link.op);
            link.result = link.silent_result;
            let before = link.chain_prev;
            self.settle(previous);
            previous = before;
        }
        // Links after a failed one were cancelled, their CQEs skipped with it. (A link
        // that succeeded with a CQE anyway leaves the rest to report for themselves.)
        while next != NO_LINK && failed {
            let link = &mut self.entries[next as usize];
            assert!(matches!(link.state, State::Pending | State::Ignored), "{} settled twice", link.op);
            link.result = -libc::ECANCELED;
            let after = link.chain_next;
            self.settle(next);
            next = after;
        }
        if next != NO_LINK {
            self.entries[next as usize].chain_prev = NO_LINK;
        }
    }

    /// The op at `index` is done: wake its future, or free an ignored entry.
    fn settle(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.chain_prev = NO_LINK;
        entry.chain_next = NO_LINK;
        let delivered = match entry.state {
            State::Pending => {
                entry.state = State::Completed;
                entry.waker.take().map_or(Delivered::Nothing, Delivered::Wake)
            }
            State::Ignored => Delivered::Release(self.vacate(index)),
            State::Vacant | State::Completed => unreachable!("settled an op that is not in flight"),
        };
        self.settled.push(delivered);
    }

    /// Polls for the completion of the op at `index`.
    pub(crate) fn poll(&mut self, index: u32, generation: u32, cx: &mut Context<'_>) -> Poll<Completion> {
        let entry = &mut self.entries[index as usize];
        assert_eq!(entry.generation, generation);
        match entry.state {
            State::Pending => {
                match &entry.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => entry.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            State::Completed => {
                let result = entry.result;
                let holds = self.vacate(index);
                Poll::Ready(Completion { result, holds })
            }
            State::Vacant | State::Ignored => unreachable!("polled an op that is not pending"),
        }
    }

    /// The future of the op at `index` was dropped before collecting its result.
    pub(crate) fn abandon(&mut self, index: u32, generation: u32) -> Abandoned {
        let entry = &mut self.entries[index as usize];
        assert_eq!(entry.generation, generation);
        match entry.state {
            State::Pending => {
                entry.state = State::Ignored;
                entry.waker = None;
                Abandoned::Cancel { user_data: user_data(index, generation) }
            }
            State::Completed => Abandoned::Release(self.vacate(index)),
            State::Vacant | State::Ignored => unreachable!("abandoned an op twice"),
        }
    }

    /// Names of the ops still in flight (for the drain diagnostic).
    pub(crate) fn pending_ops(&self) -> Vec<&'static str> {
        self.entries.iter().filter(|e| e.state != State::Vacant).map(|e| e.op).collect()
    }

    fn vacate(&mut self, index: u32) -> Holds {
        let entry = &mut self.entries[index as usize];
        assert!(entry.chain_prev == NO_LINK && entry.chain_next == NO_LINK, "vacating a linked entry");
        entry.state = State::Vacant;
        entry.waker = None;
        self.vacant.push(index);
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
        std::mem::take(&mut entry.holds)
    }
}

fn user_data(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split_user_data(user_data: u64) -> (u32, u32) {
    (user_data as u32, (user_data >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn generation(user_data: u64) -> u32 {
        (user_data >> 32) as u32
    }

    // Flag values from the kernel ABI (io_uring.h): IORING_CQE_F_MORE, IORING_CQE_F_NOTIF.
    const CQE_F_MORE: u32 = 1 << 1;
    const CQE_F_NOTIF: u32 = 1 << 3;

    #[test]
    fn entries_cycle_and_reject_stale_generations() {
        let mut table = InFlight::new(2);
        let (index, user_data) = table.insert("nop", Holds::default()).unwrap();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(table.poll(index, generation(user_data), &mut cx).is_pending());
        table.deliver(user_data, 7, 0);
        let Some(Delivered::Wake(w)) = table.settled.pop() else { panic!("expected a wake") };
        w.wake();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        let Poll::Ready(done) = table.poll(index, generation(user_data), &mut cx) else { panic!() };
        assert_eq!(done.result, 7);
        assert!(table.is_empty());
        let (again, second) = table.insert("nop", Holds::default()).unwrap();
        assert_eq!(again, index);
        assert_ne!(second, user_data, "a reused entry gets a new generation");
        let stale = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| table.deliver(user_data, 0, 0)));
        assert!(stale.is_err(), "a stale completion is caught");
    }

    #[test]
    fn zero_copy_results_wait_for_the_notification() {
        let mut table = InFlight::new(1);
        let (index, user_data) = table.insert("send_zc", Holds::default()).unwrap();
        assert!(matches!(table.abandon(index, generation(user_data)), Abandoned::Cancel { .. }));
        table.deliver(user_data, 100, CQE_F_MORE);
        assert!(table.settled.is_empty());
        assert_eq!(table.len(), 1, "buffer kept until the notification");
        table.deliver(user_data, NOTIF_USAGE_ZC_COPIED as i32, CQE_F_NOTIF);
        assert!(matches!(table.settled.pop(), Some(Delivered::Release(_))));
        assert!(table.is_empty());
        assert_eq!(table.zc_copied_count, 1);
    }

    #[test]
    fn a_cancelled_send_zc_settles_on_its_result_and_its_late_notification_is_dropped() {
        let mut table = InFlight::new(1);
        let (index, user_data) = table.insert("send_zc", Holds::default()).unwrap();
        // A link follower cancelled after an earlier link failed: -ECANCELED, no F_MORE.
        table.deliver(user_data, -libc::ECANCELED, 0);
        assert!(matches!(table.settled.pop(), Some(Delivered::Nothing)));
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag);
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(done) = table.poll(index, generation(user_data), &mut cx) else { panic!() };
        assert_eq!(done.result, -libc::ECANCELED);
        // ... and its notification still arrives, after the entry was collected (and reused).
        let (_, reused) = table.insert("recv", Holds::default()).unwrap();
        table.deliver(user_data, 0, CQE_F_NOTIF);
        assert!(table.settled.is_empty());
        assert_eq!(table.stray_notification_count, 1);
        table.deliver(reused, 5, 0);
        assert_eq!(table.settled.len(), 1, "the reused entry is unaffected");
    }

    #[test]
    fn a_notification_before_its_result_is_remembered() {
        let mut table = InFlight::new(1);
        let (_, user_data) = table.insert("send_zc", Holds::default()).unwrap();
        table.deliver(user_data, 0, CQE_F_NOTIF);
        assert!(table.settled.is_empty());
        table.deliver(user_data, 4096, CQE_F_MORE);
        assert_eq!(table.settled.len(), 1, "settled: the notification already came");
    }

    /// Inserts a silent chain of `wanted.len()` links; returns (index, user_data) per link.
    fn silent_chain(table: &mut InFlight, wanted: &[i32]) -> Vec<(u32, u64)> {
        let links: Vec<_> = wanted.iter().map(|_| table.insert("link", Holds::default()).unwrap()).collect();
        let indices: Vec<u32> = links.iter().map(|(index, _)| *index).collect();
        table.link_silent_chain(&indices, wanted);
        links
    }

    fn results(table: &mut InFlight, links: &[(u32, u64)]) -> Vec<i32> {
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag);
        let mut cx = Context::from_waker(&waker);
        links
            .iter()
            .map(|(index, user_data)| match table.poll(*index, generation(*user_data), &mut cx) {
                Poll::Ready(done) => done.result,
                Poll::Pending => panic!("link {index} not settled"),
            })
            .collect()
    }

    #[test]
    fn one_completion_settles_a_silent_chain() {
        let mut table = InFlight::new(8);
        let links = silent_chain(&mut table, &[13, 13, 4096, 4096]);
        // Success: only the last link posts a CQE.
        table.deliver(links[3].1, 4096, 0);
        assert_eq!(table.settled.len(), 4);
        table.settled.clear();
        assert_eq!(results(&mut table, &links), vec![13, 13, 4096, 4096]);
        assert!(table.is_empty());
        // A short second link: it posts its CQE, the links after it were skipped.
        let links = silent_chain(&mut table, &[13, 4096, 4096]);
        table.deliver(links[1].1, 1000, 0);
        table.settled.clear();
        assert_eq!(results(&mut table, &links), vec![13, 1000, -libc::ECANCELED]);
        assert!(table.is_empty());
    }

    #[test]
    fn an_abandoned_silent_chain_frees_itself_on_its_one_completion() {
        let mut table = InFlight::new(4);
        let links = silent_chain(&mut table, &[1, 2, 3]);
        for (index, user_data) in &links {
            assert!(matches!(table.abandon(*index, generation(*user_data)), Abandoned::Cancel { .. }));
        }
        table.deliver(links[0].1, -libc::ECANCELED, 0);
        assert_eq!(table.settled.len(), 3);
        assert!(table.settled.iter().all(|settled| matches!(settled, Delivered::Release(_))));
        table.settled.clear();
        assert!(table.is_empty());
    }
}
