//! DPCs: KeInitializeDpc, KeSetTargetProcessorDpcEx, KeInsertQueueDpc and KeFlushQueuedDpcs on
//! the host's processors (each numbered thread is one: [`crate::processor`]).
//!
//! What Windows guarantees, and the host keeps: a DPC runs at DISPATCH_LEVEL on its target
//! processor, never while that processor is at or above DISPATCH_LEVEL. A processor runs its DPC
//! queue when its IRQL drops below DISPATCH_LEVEL; an idle processor (below DISPATCH_LEVEL) runs
//! it at once. So a DPC queued by code at DISPATCH_LEVEL on processor p runs after that code, and
//! everything else at DISPATCH_LEVEL on p at the time, has ended.
//!
//! How the host does it: each numbered thread is a processor with a queue ([`crate::processor`]):
//! the thread runs its queue when its IRQL drops below DISPATCH_LEVEL (the end of the outermost
//! `irql::at_dispatch` section or spin-lock hold, never inside it), and the host's DPC thread
//! runs, as that processor, the queue of one that is idle (below DISPATCH_LEVEL) or whose thread
//! has exited. No DPC runs earlier than Windows would run it, and none — nor KeFlushQueuedDpcs —
//! waits for an idle thread that may never lower its IRQL again.
//!
//! Verifier checks: queuing a KDPC that KeInitializeDpc never initialised; freeing (pool, or
//! dropping) memory that holds a queued KDPC; KeFlushQueuedDpcs above PASSIVE_LEVEL.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::irql;
use crate::processor::{self, Queued};
use crate::verifier::{Rule, violation};

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
            NO_TARGET => processor::current(),
            number => number,
        };
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
        let address = std::ptr::from_ref(self) as usize;
        processor::queue(target, Queued { address, run });
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

/// DPCs queued or running, everywhere (KeFlushQueuedDpcs waits for 0).
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);
static FLUSHED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
/// Threads in KeFlushQueuedDpcs (counted under `FLUSHED`'s lock): only they need telling, and a
/// notify with nobody waiting would still be a futex call per DPC.
static FLUSH_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Runs the DPC at `address`, just taken off its processor's queue (at DISPATCH_LEVEL, as that
/// processor: [`crate::processor`]).
fn run(address: usize) {
    // SAFETY: a queued DPC stays alive at its address until its routine is called
    // (KeInsertQueueDpc's contract, and the verifier's check on freeing a queued DPC).
    let dpc = unsafe { &*(address as *const Kdpc) };
    let setup = *dpc.setup.lock().unwrap_or_else(PoisonError::into_inner);
    let (argument1, argument2) = *dpc.arguments.lock().unwrap_or_else(PoisonError::into_inner);
    // Off the queue before the routine runs: it may queue the DPC again (as on Windows).
    dpc.queued.store(false, Ordering::Release);
    if let Some(setup) = setup {
        // SAFETY: the routine and context the driver gave KeInitializeDpc, called as a DPC
        // routine is: at DISPATCH_LEVEL, on the target processor, with the DPC's address and the
        // insert's arguments.
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
        if FLUSH_WAITERS.load(Ordering::SeqCst) > 0 {
            FLUSHED.1.notify_all();
        }
    }
}

/// KeFlushQueuedDpcs: returns once every DPC queued anywhere has run. IRQL: PASSIVE_LEVEL.
pub fn flush_queued_dpcs() {
    irql::assert_passive("KeFlushQueuedDpcs");
    processor::kick();
    let mut guard = FLUSHED.0.lock().unwrap_or_else(PoisonError::into_inner);
    FLUSH_WAITERS.fetch_add(1, Ordering::SeqCst);
    while OUTSTANDING.load(Ordering::SeqCst) > 0 {
        guard = FLUSHED
            .1
            .wait_timeout(guard, Duration::from_millis(10))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    FLUSH_WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Violation when `start..start + length` (memory being freed) holds a queued DPC.
pub(crate) fn check_free(start: usize, length: usize) {
    let within = |q: &Queued| (start..start + length).contains(&q.address);
    if let Some((processor, queued)) = processor::find_queued(within) {
        violation(
            Rule::FreeQueuedDpc,
            format_args!(
                "ExFreePoolWithTag({start:#x}): the block holds a DPC ({:#x}) queued for \
                 processor {processor}",
                queued.address
            ),
        );
    }
}
