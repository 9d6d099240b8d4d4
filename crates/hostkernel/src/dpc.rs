//! DPCs: KeInitializeDpc, KeSetTargetProcessorDpcEx, KeInsertQueueDpc and KeFlushQueuedDpcs on
//! the host's processors (each numbered thread is one: [`crate::processor`]).
//!
//! What Windows guarantees, and the host keeps: a DPC runs at DISPATCH_LEVEL on its target
//! processor, never while that processor is at or above DISPATCH_LEVEL. A processor runs its DPC
//! queue when its IRQL drops below DISPATCH_LEVEL; an idle processor (below DISPATCH_LEVEL) runs
//! it at once. So a DPC queued by code at DISPATCH_LEVEL on processor p runs after that code, and
//! everything else at DISPATCH_LEVEL on p at the time, has ended.
//!
//! How the host does it. A processor is `BUSY` while its thread is at or above DISPATCH_LEVEL:
//! when the thread's IRQL drops below, the thread runs its queue first (still at DISPATCH_LEVEL,
//! at the end of the outermost `irql::at_dispatch` section or spin-lock hold, never inside it),
//! then becomes `FREE`. A DPC queued for a `FREE` processor, or one whose thread has exited
//! (`GONE`), is run at once by the host's DPC thread, which claims the processor (`CLAIMED`) and
//! runs its queue *as* that processor (KeGetCurrentProcessorNumberEx answers its number
//! meanwhile); the processor's own thread, raising its IRQL meanwhile, waits until the claim ends,
//! as a processor interrupted by its DPC would. No DPC runs earlier than Windows would run it
//! (never inside a DISPATCH_LEVEL section of its processor), and none waits for an idle thread
//! that may never lower its IRQL again — nor does KeFlushQueuedDpcs.
//!
//! Verifier checks: queuing a KDPC that KeInitializeDpc never initialised; freeing (pool, or
//! dropping) memory that holds a queued KDPC; KeFlushQueuedDpcs above PASSIVE_LEVEL.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use crate::irql::{self, DISPATCH_LEVEL};
use crate::verifier::{self, Rule, violation};

/// PKDEFERRED_ROUTINE: (Dpc, DeferredContext, SystemArgument1, SystemArgument2).
pub type DeferredRoutine =
    unsafe extern "system" fn(*mut Kdpc, *mut c_void, *mut c_void, *mut c_void);

/// The signature of an initialised KDPC ("KDPC").
const LIVE: u32 = 0x4350_444B;
/// What a dropped KDPC's signature becomes.
const DEAD: u32 = 0xDEAD_D9C0;
/// No target set: the DPC runs on the processor that queues it.
const NO_TARGET: u32 = u32::MAX;

/// What KeInitializeDpc records.
#[derive(Clone, Copy)]
struct Setup {
    routine: DeferredRoutine,
    context: usize,
}

/// A KDPC. [`Kdpc::new`] is the zeroed memory a driver allocates; [`Kdpc::initialize`] is
/// KeInitializeDpc.
///
/// # Invariants
/// `queued` is true exactly while the DPC's address is in one processor's queue.
pub struct Kdpc {
    signature: AtomicU32,
    queued: AtomicBool,
    target: AtomicU32,
    setup: Mutex<Option<Setup>>,
    arguments: Mutex<(usize, usize)>,
}

impl std::fmt::Debug for Kdpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kdpc")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("target", &self.target.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Kdpc {
    fn default() -> Self {
        Self::new()
    }
}

impl Kdpc {
    /// Memory for a KDPC, not initialised yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            signature: AtomicU32::new(0),
            queued: AtomicBool::new(false),
            target: AtomicU32::new(NO_TARGET),
            setup: Mutex::new(None),
            arguments: Mutex::new((0, 0)),
        }
    }

    /// KeInitializeDpc. IRQL: any.
    pub fn initialize(&self, routine: DeferredRoutine, context: *mut c_void) {
        if self.queued.load(Ordering::Acquire) {
            violation(
                Rule::InvalidArgument,
                format_args!(
                    "KeInitializeDpc({:p}) on a queued DPC",
                    std::ptr::from_ref(self)
                ),
            );
        }
        *self.setup.lock().unwrap_or_else(PoisonError::into_inner) = Some(Setup {
            routine,
            context: context as usize,
        });
        self.target.store(NO_TARGET, Ordering::Relaxed);
        self.signature.store(LIVE, Ordering::Release);
    }

    fn check_initialized(&self, what: &str) {
        let signature = self.signature.load(Ordering::Acquire);
        if signature != LIVE {
            violation(
                Rule::DpcNotInitialized,
                format_args!(
                    "{what}({:p}): not a DPC KeInitializeDpc initialised (signature {signature:#x})",
                    std::ptr::from_ref(self)
                ),
            );
        }
    }

    /// KeSetTargetProcessorDpcEx with the processor `number` (the host's processors are all in
    /// group 0). IRQL: any.
    pub fn set_target(&self, number: u32) {
        self.check_initialized("KeSetTargetProcessorDpcEx");
        self.target.store(number, Ordering::Relaxed);
    }

    /// KeInsertQueueDpc: false when the DPC is already queued (it then runs once, with the
    /// arguments of the insert that queued it). IRQL: any (<= DISPATCH_LEVEL here).
    ///
    /// # Safety
    /// The DPC stays at this address, alive, until its routine has been called (or
    /// KeFlushQueuedDpcs returned); the routine may run with its context on the target processor.
    pub unsafe fn insert(&self, argument1: *mut c_void, argument2: *mut c_void) -> bool {
        irql::assert_at_most_dispatch("KeInsertQueueDpc");
        self.check_initialized("KeInsertQueueDpc");
        if self.queued.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self
            .arguments
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (argument1 as usize, argument2 as usize);
        let target = match self.target.load(Ordering::Relaxed) {
            NO_TARGET => crate::processor::current(),
            number => number,
        };
        let processor = processor(target);
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
        processor
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(std::ptr::from_ref(self) as usize);
        processor.pending.fetch_add(1, Ordering::SeqCst);
        if processor.state.load(Ordering::SeqCst) != BUSY {
            wake_dpc_thread();
        }
        true
    }
}

impl Drop for Kdpc {
    fn drop(&mut self) {
        if *self.queued.get_mut() {
            violation(
                Rule::FreeQueuedDpc,
                format_args!("a queued DPC ({:p}) was dropped", std::ptr::from_ref(self)),
            );
        }
        *self.signature.get_mut() = DEAD;
    }
}

const FREE: u8 = 0;
const BUSY: u8 = 1;
const CLAIMED: u8 = 2;
const GONE: u8 = 3;

/// One processor's DPC queue and state.
struct Processor {
    number: u32,
    state: AtomicU8,
    /// DPCs queued, not yet taken off the queue to run.
    pending: AtomicUsize,
    queue: Mutex<VecDeque<usize>>,
}

/// Every processor by number.
static PROCESSORS: LazyLock<Mutex<HashMap<u32, Arc<Processor>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// DPCs queued or running, everywhere (KeFlushQueuedDpcs waits for 0).
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);
static FLUSHED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

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
    /// This thread's processor once it has a number (null before): an entry of [`PROCESSORS`],
    /// which keeps every processor for the life of the process.
    static MINE: Cell<*const Processor> = const { Cell::new(std::ptr::null()) };
    static EXIT: RefCell<Exit> = const { RefCell::new(Exit(None)) };
}

/// The processor numbered `number`, made on first use (a number no thread has yet is `GONE`: the
/// DPC thread runs what is queued for it).
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

/// Called by [`crate::processor::current`] when this thread gets its number.
pub(crate) fn register(number: u32) {
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

/// The thread's IRQL rises to DISPATCH_LEVEL from below: its processor is busy (waiting while
/// the DPC thread runs its DPCs, as an interrupted processor would).
pub(crate) fn entering_dispatch() {
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

/// The thread's IRQL is about to drop below DISPATCH_LEVEL (it is still at DISPATCH_LEVEL):
/// runs this processor's DPCs, then lowers with `lower` and marks the processor free.
pub(crate) fn leaving_dispatch(lower: impl Fn()) {
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

/// Runs `processor`'s queue on this thread, at DISPATCH_LEVEL (the caller holds the processor).
fn drain(processor: &Processor) {
    while processor.pending.load(Ordering::SeqCst) > 0 {
        let Some(address) = processor
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        else {
            break;
        };
        processor.pending.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: a queued DPC stays alive at its address until its routine is called
        // (KeInsertQueueDpc's contract, and the verifier's check on freeing a queued DPC).
        let dpc = unsafe { &*(address as *const Kdpc) };
        let setup = *dpc.setup.lock().unwrap_or_else(PoisonError::into_inner);
        let (argument1, argument2) = *dpc.arguments.lock().unwrap_or_else(PoisonError::into_inner);
        // Off the queue before the routine runs: it may queue the DPC again (as on Windows).
        dpc.queued.store(false, Ordering::Release);
        if let Some(setup) = setup {
            // SAFETY: the routine and context the driver gave KeInitializeDpc, called as a DPC
            // routine is: at DISPATCH_LEVEL, on the target processor, with the DPC's address and
            // the insert's arguments.
            unsafe {
                (setup.routine)(
                    address as *mut Kdpc,
                    setup.context as *mut c_void,
                    argument1 as *mut c_void,
                    argument2 as *mut c_void,
                );
            }
        }
        if OUTSTANDING.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _guard = FLUSHED.0.lock().unwrap_or_else(PoisonError::into_inner);
            FLUSHED.1.notify_all();
        }
    }
}

/// KeFlushQueuedDpcs: returns once every DPC queued anywhere has run. IRQL: PASSIVE_LEVEL.
pub fn flush_queued_dpcs() {
    irql::assert_passive("KeFlushQueuedDpcs");
    wake_dpc_thread();
    let mut guard = FLUSHED.0.lock().unwrap_or_else(PoisonError::into_inner);
    while OUTSTANDING.load(Ordering::SeqCst) > 0 {
        guard = FLUSHED
            .1
            .wait_timeout(guard, Duration::from_millis(10))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Whether `start..start + length` holds a queued DPC (pool frees are checked against it).
pub(crate) fn check_free(start: usize, length: usize) {
    let all = PROCESSORS.lock().unwrap_or_else(PoisonError::into_inner);
    for processor in all.values() {
        let queue = processor
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(dpc) = queue.iter().find(|&&a| a >= start && a < start + length) {
            violation(
                Rule::FreeQueuedDpc,
                format_args!(
                    "ExFreePoolWithTag({start:#x}): the block holds a DPC ({dpc:#x}) queued for \
                     processor {}",
                    processor.number
                ),
            );
        }
    }
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

/// Runs the DPCs of idle and gone processors, as those processors.
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
                    crate::processor::impersonate(processor.number, || {
                        irql::at_dispatch(|| drain(&processor));
                    });
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
