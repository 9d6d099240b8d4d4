//! The driver's one ordered work queue: a system thread that runs, at PASSIVE_LEVEL and in FIFO
//! order, everything that must not run in a completion routine or event callback (WSK-FACTS §3:
//! no WSK calls there). Queueing is allocation-free and legal at DISPATCH_LEVEL: items are
//! preallocated and intrusive, and an item already queued is not queued twice (its routine runs
//! once for any number of kicks before it starts — routines are written to do all pending work).
//!
//! No lock: producers push an item on an atomic stack with a compare-and-swap, and the thread takes
//! the whole stack with one swap and runs it oldest first. Every push is followed by a set of the
//! thread's wake-up event, and the thread waits only after a swap found the stack empty, so no push
//! is left unseen. (A spin lock over a list took two holds per pass on the thread and one per
//! push.)

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use wsk::NtStatus;

use super::{Event, PoolBox, SystemThread, tags};

/// Routines run by every work queue since the driver loaded (the benchmarks' "worker passes").
static PASSES: AtomicU64 = AtomicU64::new(0);
/// Times a work queue's thread woke from waiting for work (each one a thread switch).
static WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// What the work queues did since the driver loaded, for the benchmarks (cumulative; take the
/// difference over a run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueFigures {
    /// Work item routines run (passes).
    pub passes: u64,
    /// Wake-ups of a queue's thread from an empty queue.
    pub wakeups: u64,
}

/// The work queues' figures so far. IRQL: any.
#[must_use]
pub fn figures() -> QueueFigures {
    QueueFigures {
        passes: PASSES.load(Ordering::Relaxed),
        wakeups: WAKEUPS.load(Ordering::Relaxed),
    }
}

/// A preallocated unit of work.
///
/// # Invariants
/// While `queued` is true the item is linked once in one queue (on its stack, or in the batch its
/// thread took and has not run yet) and must stay alive; its owner keeps it alive until the queue
/// is flushed after the last kick. `next` is written only by whoever links it: the push that set
/// `queued`, then the thread while the item is in its batch.
pub struct WorkItem {
    next: AtomicPtr<WorkItem>,
    queued: AtomicBool,
    routine: unsafe fn(*mut c_void),
    context: AtomicPtr<c_void>,
}

impl core::fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkItem")
            .field("queued", &self.queued)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl WorkItem {
    /// An item that will run `routine(context)`; set the context once the owner has a stable
    /// address ([`WorkItem::set_context`]).
    #[must_use]
    pub const fn new(routine: unsafe fn(*mut c_void)) -> Self {
        // INVARIANT: not queued, so on no list.
        Self {
            next: AtomicPtr::new(ptr::null_mut()),
            queued: AtomicBool::new(false),
            routine,
            context: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Sets the context passed to the routine. IRQL: any.
    ///
    /// # Safety
    /// `context` is what the item's routine requires of its argument (its `# Safety`), and stays
    /// so whenever the item can run: from now until the owner's last flush of the queue.
    pub unsafe fn set_context(&self, context: *mut c_void) {
        self.context.store(context, Ordering::Release);
    }
}

struct Inner {
    /// The items pushed since the thread last took them, newest first, linked through `next`
    /// (null: none).
    pushed: AtomicPtr<WorkItem>,
    wake: Event,
    stopping: AtomicBool,
    /// What `flush` needs, made at start so that a flush never allocates and so never fails:
    /// freeing memory after a flush that did not wait would let the worker run on it. `flush_lock`
    /// (a synchronization event, signalled when free) lets one flush at a time use the item.
    flush_item: WorkItem,
    flush_done: Event,
    flush_lock: Event,
}

/// A handle for queueing from any context (completion routines, callbacks).
///
/// # Invariants
/// Points at the `Inner` of a running [`WorkQueue`], which outlives every handle (the
/// owner stops the queue only after everything that holds a handle is gone).
#[derive(Clone, Copy, Debug)]
pub struct WorkQueueHandle(*const Inner);

// SAFETY: `Inner` is shared only through its events and atomics.
unsafe impl Send for WorkQueueHandle {}
// SAFETY: the handle is a pointer to `Inner`, which is only touched through its events and atomics
// (all usable concurrently); copies of the handle share nothing else.
unsafe impl Sync for WorkQueueHandle {}

impl WorkQueueHandle {
    /// Queues `item` unless it is already queued. Never allocates, never blocks.
    /// IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `item` must stay alive until it has run or the queue has been flushed.
    #[inline]
    pub unsafe fn queue(self, item: &WorkItem) {
        // Inlined into the caller: a kick that finds the item queued costs this one swap.
        if item.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: the caller's promise, passed on: `item` stays alive until it has run or the
        // queue has been flushed.
        unsafe { self.append(item) };
    }

    /// [`WorkQueueHandle::queue`] of an item this call marked queued: pushes it and wakes the
    /// thread. IRQL: <= DISPATCH_LEVEL. Lock-free: the compare-and-swap fails only when another
    /// push, or the thread's take, changed the stack meanwhile, and both are bounded (an item is
    /// pushed once per run: there are as many pushes as items, one per listener and two more).
    ///
    /// # Safety
    /// As [`WorkQueueHandle::queue`]; `item.queued` was set by this caller's swap.
    #[inline(never)]
    unsafe fn append(self, item: &WorkItem) {
        // SAFETY: the handle's invariant: the queue is alive.
        let inner = unsafe { &*self.0 };
        let item_ptr = ptr::from_ref(item).cast_mut();
        let mut head = inner.pushed.load(Ordering::Relaxed);
        loop {
            // The item is this caller's to link: its `queued` swap made it so (WorkItem
            // invariant). A stack that changed since the load is read again; `next` is what the
            // item will follow only once the exchange succeeded, so with the head it replaced.
            item.next.store(head, Ordering::Relaxed);
            match inner.pushed.compare_exchange_weak(
                head,
                item_ptr,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        inner.wake.set();
    }
}

/// The queue and its system thread.
pub struct WorkQueue {
    inner: PoolBox<Inner>,
    thread: Option<SystemThread>,
}

impl core::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("inner", &self.inner.as_ptr())
            .field("running", &self.thread.is_some())
            .finish()
    }
}

/// The queue's system thread. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Run only as the queue's thread routine: `context` is the queue's pinned `Inner`, alive until
/// the thread is joined.
unsafe fn run(context: *mut c_void) {
    // SAFETY: the context is the queue's pinned Inner, alive until the thread is joined.
    let inner = unsafe { &*context.cast::<Inner>() };
    loop {
        // Everything pushed so far, newest first (Acquire: each push's `next` and its item).
        let mut taken = inner.pushed.swap(ptr::null_mut(), Ordering::Acquire);
        if taken.is_null() {
            if inner.stopping.load(Ordering::Acquire) {
                // What was queued before the stop was asked for happened before the flag, so this
                // load sees it: run it before stopping.
                if inner.pushed.load(Ordering::Acquire).is_null() {
                    return;
                }
                continue;
            }
            // A push after the swap sets the event after it: the wait returns at once.
            inner.wake.wait(None);
            WAKEUPS.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Oldest first: reverse the batch. Its items stay queued until each runs, so no push
        // touches their links meanwhile (WorkItem invariant).
        let mut batch: *mut WorkItem = ptr::null_mut();
        while !taken.is_null() {
            // SAFETY: `taken` is a queued item in the batch this thread took: alive, and linked
            // only by this thread now (WorkItem invariant).
            let item = unsafe { &*taken };
            taken = item.next.load(Ordering::Relaxed);
            item.next.store(batch, Ordering::Relaxed);
            batch = ptr::from_ref(item).cast_mut();
        }
        while !batch.is_null() {
            // SAFETY: a queued item of the batch: alive until it has run (WorkItem invariant).
            let item = unsafe { &*batch };
            // Read before `queued` is cleared: from then on a kick may push the item again and
            // rewrite its link.
            batch = item.next.load(Ordering::Relaxed);
            // Cleared before running: a kick during the run queues it again, so no work is lost.
            item.queued.store(false, Ordering::Release);
            PASSES.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the owner set a context valid for its routine.
            unsafe { (item.routine)(item.context.load(Ordering::Acquire)) };
        }
    }
}

/// The flush marker's routine: sets the flush event. IRQL: PASSIVE_LEVEL (worker).
///
/// # Safety
/// Run only by the queue as the flush item's routine: `context` is the queue's `flush_done` event,
/// alive as long as the queue.
unsafe fn signal(context: *mut c_void) {
    // SAFETY: the context is the queue's `flush_done`, alive as long as the queue.
    unsafe { (*context.cast::<Event>()).set() };
}

impl WorkQueue {
    /// Starts the queue's thread. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when memory or the thread cannot be had.
    pub fn start() -> Result<Self, NtStatus> {
        let inner = PoolBox::new(
            tags::DRIVER,
            Inner {
                pushed: AtomicPtr::new(ptr::null_mut()),
                wake: Event::synchronization(false)?,
                stopping: AtomicBool::new(false),
                flush_item: WorkItem::new(signal),
                flush_done: Event::notification(false)?,
                flush_lock: Event::synchronization(true)?,
            },
        )?;
        // SAFETY: `signal` needs the queue's `flush_done` event, which lives in the same pinned
        // `Inner` as the item, so it is valid whenever the item can run.
        unsafe {
            inner
                .flush_item
                .set_context(ptr::from_ref(&inner.flush_done).cast_mut().cast());
        }
        // SAFETY: `inner` is pinned in pool and outlives the thread (joined in `stop`/drop).
        let thread = unsafe { SystemThread::spawn(run, inner.as_ptr().cast_mut().cast()) }?;
        Ok(Self {
            inner,
            thread: Some(thread),
        })
    }

    /// A handle to queue work with.
    #[must_use]
    pub fn handle(&self) -> WorkQueueHandle {
        // INVARIANT: `inner` belongs to this running queue; its owner stops it only after every
        // handle holder is gone (the handle's documented rule).
        WorkQueueHandle(self.inner.as_ptr())
    }

    /// Waits until everything queued before this call has run. Allocates nothing, cannot fail.
    /// IRQL: PASSIVE_LEVEL.
    pub fn flush(&self) {
        let inner = &*self.inner;
        inner.flush_lock.wait(None);
        inner.flush_done.clear();
        // SAFETY: the item lives in the queue's own pinned Inner. Under `flush_lock` it is not
        // queued (the previous flush waited for it to run), so this queues it behind everything
        // queued before this call.
        unsafe { self.handle().queue(&inner.flush_item) };
        inner.flush_done.wait(None);
        inner.flush_lock.set();
    }

    fn shut_down(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.inner.stopping.store(true, Ordering::Release);
            self.inner.wake.set();
            thread.join();
        }
    }

    /// Runs what is queued, then stops the thread. IRQL: PASSIVE_LEVEL.
    pub fn stop(mut self) {
        self.shut_down();
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        self.shut_down();
    }
}
