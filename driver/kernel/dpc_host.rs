//! Host backend of [`Dpc`]: a host-kernel KDPC (`hostkernel::dpc`) whose routine calls the
//! driver's. The Windows twin is `windows/dpc.rs`.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use hostkernel::dpc::Kdpc;

/// A DPC the driver owns: a KDPC whose routine runs `routine(context, argument)` at
/// DISPATCH_LEVEL on the processor it was queued for.
///
/// # Invariants
/// Once [`Dpc::initialize`] ran, the DPC does not move and stays alive until KeFlushQueuedDpcs
/// ([`flush_queued_dpcs`]) returned after its last queueing; `targeted` is set once, by the first
/// [`Dpc::queue_here`], on the one processor that ever queues it.
pub struct Dpc {
    raw: Kdpc,
    routine: unsafe fn(*mut c_void, usize),
    context: AtomicPtr<c_void>,
    argument: AtomicUsize,
    targeted: AtomicBool,
}

impl core::fmt::Debug for Dpc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dpc")
            .field("argument", &self.argument)
            .finish_non_exhaustive()
    }
}

/// The KDPC's routine: the driver's, with its context and argument. IRQL: DISPATCH_LEVEL.
///
/// # Safety
/// Called by the kernel as the routine of the KDPC inside the [`Dpc`] at `context` (given to
/// KeInitializeDpc), which is alive while its DPC can run (type invariant).
unsafe extern "system" fn trampoline(
    _dpc: *mut Kdpc,
    context: *mut c_void,
    _argument1: *mut c_void,
    _argument2: *mut c_void,
) {
    // SAFETY: the DeferredContext is the `Dpc` itself, alive while its DPC can run (invariant).
    let this = unsafe { &*context.cast::<Dpc>() };
    let (context, argument) = (
        this.context.load(Ordering::Acquire),
        this.argument.load(Ordering::Acquire),
    );
    // SAFETY: `initialize`'s caller promised the routine may run with this context.
    unsafe { (this.routine)(context, argument) };
}

impl Dpc {
    /// A DPC that will run `routine(context, argument)`; [`Dpc::initialize`] once it is pinned.
    #[must_use]
    pub const fn new(routine: unsafe fn(*mut c_void, usize)) -> Self {
        Self {
            raw: Kdpc::new(),
            routine,
            context: AtomicPtr::new(core::ptr::null_mut()),
            argument: AtomicUsize::new(0),
            targeted: AtomicBool::new(false),
        }
    }

    /// KeInitializeDpc. IRQL: any.
    ///
    /// # Safety
    /// `self` does not move from now on and stays alive until [`flush_queued_dpcs`] returned
    /// after its last [`Dpc::queue_here`]; the routine may run with `context` and `argument`
    /// until then.
    pub unsafe fn initialize(&self, context: *mut c_void, argument: usize) {
        self.context.store(context, Ordering::Release);
        self.argument.store(argument, Ordering::Release);
        self.raw
            .initialize(trampoline, core::ptr::from_ref(self).cast_mut().cast());
    }

    /// Queues the DPC for the current processor (KeSetTargetProcessorDpcEx with the current
    /// processor on first use, then KeInsertQueueDpc). True when the DPC is queued for this
    /// processor — by this call, or still from an earlier one (KeInsertQueueDpc answers FALSE
    /// then, and the queued DPC has not started: it starts only once this processor drops below
    /// DISPATCH_LEVEL). IRQL: DISPATCH_LEVEL, always on the same processor for one `Dpc`.
    pub fn queue_here(&self) -> bool {
        if !self.targeted.load(Ordering::Relaxed) {
            self.raw.set_target(hostkernel::processor::current());
            self.targeted.store(true, Ordering::Relaxed);
        }
        // SAFETY: initialised, pinned and alive until the flush after its last queueing (type
        // invariant).
        let _ = unsafe {
            self.raw
                .insert(core::ptr::null_mut(), core::ptr::null_mut())
        };
        true
    }
}

/// KeFlushQueuedDpcs: returns once every queued DPC has run. IRQL: PASSIVE_LEVEL.
pub fn flush_queued_dpcs() {
    hostkernel::dpc::flush_queued_dpcs();
}
