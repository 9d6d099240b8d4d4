//! The driver's one ordered work queue: a system thread that runs, at PASSIVE_LEVEL and in FIFO
//! order, everything that must not run in a completion routine or event callback (WSK-FACTS §3:
//! no WSK calls there). Queueing is allocation-free and legal at DISPATCH_LEVEL: items are
//! preallocated and intrusive, and an item already queued is not queued twice (its routine runs
//! once for any number of kicks before it starts — routines are written to do all pending work).

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use wsk::NtStatus;

use super::{Event, PoolBox, SpinLock, SystemThread, tags};

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
/// While `queued` is true the item is linked in exactly one queue's list and must stay
/// alive; its owner keeps it alive until the queue is flushed after the last kick.
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

struct List {
    head: *mut WorkItem,
    tail: *mut WorkItem,
}

// SAFETY: the list only links WorkItems, which are Sync (atomics); the raw pointers are guarded by
// the spin lock that owns the list.
unsafe impl Send for List {}

struct Inner {
    list: SpinLock<List>,
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

// SAFETY: `Inner` is shared only through its spin lock, event and atomics.
unsafe impl Send for WorkQueueHandle {}
// SAFETY: the handle is a pointer to `Inner`, which is only touched through its spin lock, event
// and atomics (all usable concurrently); copies of the handle share nothing else.
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

    /// [`WorkQueueHandle::queue`] of an item this call marked queued: links it and wakes the
    /// thread. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// As [`WorkQueueHandle::queue`]; `item.queued` was set by this caller's swap.
    #[inline(never)]
    unsafe fn append(self, item: &WorkItem) {
        // SAFETY: the handle's invariant: the queue is alive.
        let inner = unsafe { &*self.0 };
        let item_ptr = ptr::from_ref(item).cast_mut();
        item.next.store(ptr::null_mut(), Ordering::Relaxed);
        {
            let mut list = inner.list.lock();
            if list.tail.is_null() {
                list.head = item_ptr;
            } else {
                // SAFETY: `tail` is a queued item, alive by the WorkItem invariant.
                unsafe { (*list.tail).next.store(item_ptr, Ordering::Relaxed) };
            }
            list.tail = item_ptr;
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
        let item = {
            let mut list = inner.list.lock();
            let head = list.head;
            if !head.is_null() {
                // SAFETY: `head` is a queued, alive item.
                list.head = unsafe { (*head).next.load(Ordering::Relaxed) };
                if list.head.is_null() {
                    list.tail = ptr::null_mut();
                }
            }
            head
        };
        if item.is_null() {
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            inner.wake.wait(None);
            WAKEUPS.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // SAFETY: dequeued above; alive until it has run (WorkItem invariant).
        let item = unsafe { &*item };
        // Cleared before running: a kick during the run queues it again, so no work is lost.
        item.queued.store(false, Ordering::Release);
        PASSES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the owner set a context valid for its routine.
        unsafe { (item.routine)(item.context.load(Ordering::Acquire)) };
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
                list: SpinLock::new(List {
                    head: ptr::null_mut(),
                    tail: ptr::null_mut(),
                }),
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
