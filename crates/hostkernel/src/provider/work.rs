//! The event loop's queue and handles ([`LoopState`] behind [`LOOP`], a leaf lock): the work
//! posted to the event-loop thread ([`post`], [`post_after`], [`serve_later`],
//! [`complete_later`]), the poller's registry, the FIN waiters and timers; and when posting
//! wakes the loop (not when the loop posts to itself, nor while a wake-up is on its way).

use std::cell::Cell;
use std::collections::VecDeque;

use rustc_hash::FxHashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::Waker;
use wsk::NtStatus;

use crate::irp::IrpRef;

/// A closure for the event-loop thread.
pub(crate) type Deferred = Box<dyn FnOnce() + Send>;

/// Work for the event-loop thread, in the order it was posted.
pub(crate) enum Work {
    /// Run this.
    Run(Deferred),
    /// Complete this IRP with this status and information (a deferred completion, without the
    /// allocation of a closure).
    Complete(IrpRef, NtStatus, usize),
    /// Serve socket `key` as a readiness event on it would (the event loop knows which service
    /// a listening or connection socket needs).
    Serve(usize),
}

/// The event loop's queues and handles, behind their own lock ([`LOOP`]): a leaf lock, taken
/// last (after `state::STATE` and a socket's object lock, if any) and held for queue operations
/// only, never across a system call or driver code.
pub(crate) struct LoopState {
    /// Work posted to the event-loop thread, in order.
    pub(crate) deferred: VecDeque<Work>,
    /// Deferred completions (`Work::Complete`) posted and not yet made: queued, or being made.
    pub(crate) completions: u32,
    /// The poller's registry (epoll_ctl is thread-safe: callers clone the Arc and use it with no
    /// lock held).
    pub(crate) registry: Option<Arc<mio::Registry>>,
    pub(crate) waker: Option<Arc<Waker>>,
    pub(crate) stopping: bool,
    /// Connections whose graceful disconnect waits for the peer to acknowledge the FIN: looked at
    /// again every few milliseconds (no readiness event announces an ACK).
    pub(crate) fin_waiters: FxHashSet<usize>,
    /// Work held back until its time (`set_close_delay`).
    pub(crate) timers: Vec<(Instant, Deferred)>,
}

pub(crate) static LOOP: LazyLock<Mutex<LoopState>> = LazyLock::new(|| {
    Mutex::new(LoopState {
        deferred: VecDeque::new(),
        completions: 0,
        registry: None,
        waker: None,
        stopping: false,
        fin_waiters: FxHashSet::default(),
        timers: Vec::new(),
    })
});

/// Set once a wake-up of the event loop is on its way and the loop has not yet started the
/// drain that will see the work posted meanwhile (so later posts need not wake it again).
pub(crate) static WAKE_PENDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread is the event-loop thread (which drains its queue before it sleeps, so
    /// work it posts itself needs no wake-up).
    pub(crate) static ON_LOOP: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn loop_state() -> MutexGuard<'static, LoopState> {
    LOOP.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether no deferred completion waits or is being made: a completion posted earlier (in order)
/// cannot then be overtaken by one made on the caller's thread. Work that is not a completion (a
/// posted service of a socket) finds a closed socket closed and completes nothing.
pub(crate) fn no_completion_posted() -> bool {
    loop_state().completions == 0
}

/// The poller's registry, if the event loop runs.
pub(crate) fn registry() -> Option<Arc<mio::Registry>> {
    loop_state().registry.clone()
}

/// Queues `work` for the event-loop thread and wakes it if it needs waking: not when the loop
/// posts to itself (it drains the queue before sleeping), nor while a wake-up is already on its
/// way ([`WAKE_PENDING`]: the loop clears it before the drain that will find this work).
pub(crate) fn post_work(work: Work) {
    let waker = {
        let mut queue = loop_state();
        queue.completions += u32::from(matches!(work, Work::Complete(..)));
        queue.deferred.push_back(work);
        if ON_LOOP.with(Cell::get) || WAKE_PENDING.swap(true, Ordering::SeqCst) {
            None
        } else {
            queue.waker.clone()
        }
    };
    if let Some(waker) = waker {
        let _ = waker.wake();
    }
}

/// Queues work for the event-loop thread and wakes it.
pub(crate) fn post(work: Deferred) {
    post_work(Work::Run(work));
}

/// Queues work for the event-loop thread to run once `delay` has passed.
pub(crate) fn post_after(delay: Duration, work: Deferred) {
    if delay.is_zero() {
        return post(work);
    }
    let waker = {
        let mut queue = loop_state();
        queue.timers.push((Instant::now() + delay, work));
        queue.waker.clone()
    };
    if let Some(waker) = waker {
        let _ = waker.wake();
    }
}

/// Completes `irp` later on the provider thread (never inline).
pub(crate) fn complete_later(irp: IrpRef, status: NtStatus, information: usize) {
    post_work(Work::Complete(irp, status, information));
}

/// Asks the event-loop thread to serve socket `key` (what a readiness event on it would do), in
/// order with the work posted before.
pub(crate) fn serve_later(key: usize) {
    post_work(Work::Serve(key));
}
