//! KeGetCurrentProcessorNumberEx: each host thread is its own processor. That is what a driver
//! may conclude from a processor number on Windows, at DISPATCH_LEVEL: code that runs on one
//! processor at DISPATCH_LEVEL runs to its end before anything else at that level starts there.
//! A host thread is sequential in the same way (the OS may preempt it, but nothing else runs as
//! that thread meanwhile).
//!
//! Each numbered thread also has the processor's DPC queue ([`crate::dpc`] queues on it). A
//! processor is `BUSY` while its thread is at or above DISPATCH_LEVEL: when the thread's IRQL
//! drops below, the thread runs its queue first (still at DISPATCH_LEVEL, at the end of the
//! outermost `irql::at_dispatch` section or spin-lock hold, never inside it), then becomes
//! `FREE`. What is queued for a `FREE` processor, or one whose thread has exited (`GONE`), is run
//! at once by the host's DPC thread, which claims the processor (`CLAIMED`) and runs the queue
//! *as* that processor (this module answers its number there meanwhile); the processor's own
//! thread, raising its IRQL meanwhile, waits until the claim ends, as a processor interrupted by
//! its DPC would. So nothing queued runs earlier than Windows would run it, and nothing waits for
//! an idle thread that may never lower its IRQL again.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use crate::irql::{self, DISPATCH_LEVEL};
use crate::verifier;

static NEXT: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static NUMBER: Cell<Option<u32>> = const { Cell::new(None) };
    static IMPERSONATING: Cell<Option<u32>> = const { Cell::new(None) };
}

/// KeGetCurrentProcessorNumberEx(NULL): this thread's processor number, given on first use (the
/// number of the processor the DPC thread runs as, while it does).
#[must_use]
pub fn current() -> u32 {
    if let Some(number) = IMPERSONATING.with(Cell::get) {
        return number;
    }
    NUMBER.with(|n| {
        n.get().unwrap_or_else(|| {
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            n.set(Some(number));
            register(number);
            number
        })
    })
}

/// Something queued on a processor: `run(address)` runs it (at DISPATCH_LEVEL, as the processor).
#[derive(Clone, Copy)]
pub(crate) struct Queued {
    pub(crate) address: usize,
    pub(crate) run: fn(usize),
}

const FREE: u8 = 0;
const BUSY: u8 = 1;
const CLAIMED: u8 = 2;
const GONE: u8 = 3;

/// One processor's queue and state.
struct Processor {
    number: u32,
    state: AtomicU8,
    /// Entries queued and not taken off the queue yet.
    pending: AtomicUsize,
    queue: Mutex<VecDeque<Queued>>,
}

/// Every processor by number (kept for the life of the process).
static PROCESSORS: LazyLock<Mutex<HashMap<u32, Arc<Processor>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Marks this thread's processor `GONE` when the thread exits.
struct Exit(Option<Arc<Processor>>);

impl Drop for Exit {
    fn drop(&mut self) {
        if let Some(processor) = self.0.take() {
            processor.state.store(GONE, Ordering::SeqCst);
            if processor.pending.load(Ordering::SeqCst) > 0 {
                wake_dpc_thread();
            }
        }
    }
}

thread_local! {
    /// This thread's processor once it has a number (null before): an entry of [`PROCESSORS`].
    static MINE: Cell<*const Processor> = const { Cell::new(std::ptr::null()) };
    static EXIT: RefCell<Exit> = const { RefCell::new(Exit(None)) };
}

/// The processor numbered `number`, made on first use (a number no thread has yet is `GONE`).
fn processor(number: u32) -> Arc<Processor> {
    let mut all = PROCESSORS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(number).or_insert_with(|| {
        Arc::new(Processor {
            number,
            state: AtomicU8::new(GONE),
            pending: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        })
    }))
}

/// This thread gets processor `number`: busy if it is at DISPATCH_LEVEL now.
fn register(number: u32) {
    irql::install_dispatch_hooks(entering_dispatch, leaving_dispatch);
    let processor = processor(number);
    let state = if irql::current() >= DISPATCH_LEVEL {
        BUSY
    } else {
        FREE
    };
    processor.state.store(state, Ordering::SeqCst);
    MINE.with(|mine| mine.set(Arc::as_ptr(&processor)));
    let _ = EXIT.try_with(|exit| exit.borrow_mut().0 = Some(processor));
}

/// This thread's processor, if it has a number.
fn mine() -> Option<&'static Processor> {
    let processor = MINE.with(Cell::get);
    // SAFETY: a non-null `MINE` points into an `Arc` that `PROCESSORS` holds for the life of the
    // process (entries are never removed).
    (!processor.is_null()).then(|| unsafe { &*processor })
}

/// Queues `entry` on processor `number`, to run when that processor is below DISPATCH_LEVEL.
pub(crate) fn queue(number: u32, entry: Queued) {
    // The usual target is the caller's own processor: no lock on the table of all of them.
    let own = mine().filter(|p| p.number == number);
    let shared;
    let processor = if let Some(processor) = own {
        processor
    } else {
        shared = self::processor(number);
        &*shared
    };
    processor
        .queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(entry);
    processor.pending.fetch_add(1, Ordering::SeqCst);
    if processor.state.load(Ordering::SeqCst) != BUSY {
        wake_dpc_thread();
    }
}

/// The first queued entry (on any processor) for which `matches` holds, with its processor.
pub(crate) fn find_queued(matches: impl Fn(&Queued) -> bool) -> Option<(u32, Queued)> {
    let all = PROCESSORS.lock().unwrap_or_else(PoisonError::into_inner);
    all.values().find_map(|processor| {
        let queue = processor
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue
            .iter()
            .find(|q| matches(q))
            .map(|q| (processor.number, *q))
    })
}

/// Wakes the DPC thread (KeFlushQueuedDpcs does, too).
pub(crate) fn kick() {
    wake_dpc_thread();
}

/// Hook: the thread's IRQL rises to DISPATCH_LEVEL from below. Its processor is busy (waiting
/// while the DPC thread runs its queue, as an interrupted processor would).
fn entering_dispatch() {
    let Some(processor) = mine() else {
        return;
    };
    while processor
        .state
        .compare_exchange(FREE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        std::thread::yield_now();
    }
}

/// Hook: the thread's IRQL is about to drop below DISPATCH_LEVEL (it is still at
/// DISPATCH_LEVEL): runs this processor's queue, then `lower`s and marks the processor free.
fn leaving_dispatch(lower: &dyn Fn()) {
    let Some(processor) = mine() else {
        return lower();
    };
    loop {
        drain(processor);
        lower();
        processor.state.store(FREE, Ordering::SeqCst);
        if processor.pending.load(Ordering::SeqCst) == 0
            || processor
                .state
                .compare_exchange(FREE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            // Nothing queued since, or the DPC thread took it.
            return;
        }
        // Queued between the drain and the store: run it here, at DISPATCH_LEVEL again.
        let _ = irql::raise_quietly(DISPATCH_LEVEL);
    }
}

/// Runs `processor`'s queue on this thread (which holds the processor, at DISPATCH_LEVEL).
fn drain(processor: &Processor) {
    while processor.pending.load(Ordering::SeqCst) > 0 {
        let Some(entry) = processor
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        else {
            break;
        };
        processor.pending.fetch_sub(1, Ordering::SeqCst);
        (entry.run)(entry.address);
    }
}

/// Runs `f` as processor `number` (the DPC thread, running that processor's queue).
fn impersonate<R>(number: u32, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IMPERSONATING.with(|i| i.set(None));
        }
    }
    IMPERSONATING.with(|i| i.set(Some(number)));
    let _reset = Reset;
    f()
}

static DPC_THREAD: LazyLock<(Mutex<bool>, Condvar)> = LazyLock::new(|| {
    std::thread::Builder::new()
        .name("hostkernel-dpc".into())
        .spawn(dpc_thread)
        .expect("hostkernel: cannot start the DPC thread");
    (Mutex::new(false), Condvar::new())
});

fn wake_dpc_thread() {
    let (signal, wake) = &*DPC_THREAD;
    *signal.lock().unwrap_or_else(PoisonError::into_inner) = true;
    wake.notify_one();
}

/// Runs the queues of idle and gone processors, as those processors.
fn dpc_thread() {
    verifier::abort_on_violation_in_this_thread();
    loop {
        {
            let (signal, wake) = &*DPC_THREAD;
            let mut signalled = signal.lock().unwrap_or_else(PoisonError::into_inner);
            if !*signalled {
                signalled = wake
                    .wait_timeout(signalled, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            *signalled = false;
        }
        let waiting: Vec<Arc<Processor>> = PROCESSORS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|p| p.pending.load(Ordering::SeqCst) > 0)
            .cloned()
            .collect();
        for processor in waiting {
            for idle in [FREE, GONE] {
                if processor
                    .state
                    .compare_exchange(idle, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    impersonate(processor.number, || irql::at_dispatch(|| drain(&processor)));
                    processor.state.store(idle, Ordering::SeqCst);
                    if processor.pending.load(Ordering::SeqCst) > 0 {
                        wake_dpc_thread();
                    }
                    break;
                }
            }
        }
    }
}
