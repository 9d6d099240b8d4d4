//! Windows backend of [`Dpc`]: a KDPC in the owner's nonpaged memory whose routine calls the
//! driver's. The host twin is `dpc_host.rs`. Wine exports each call used here
//! (dlls/ntoskrnl.exe/ntoskrnl.exe.spec); it only stubs KeRemoveQueueDpc, which is not used:
//! nothing queues a listener's DPCs once its listening socket's close completed, and
//! KeFlushQueuedDpcs then waits for those still queued.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use wdk_sys::ntddk::{
    KeFlushQueuedDpcs, KeGetCurrentProcessorNumberEx, KeInitializeDpc, KeInsertQueueDpc,
    KeSetTargetProcessorDpcEx,
};
use wdk_sys::{KDPC, PROCESSOR_NUMBER, PVOID};
use wsk::NtStatus;

/// A DPC the driver owns: a KDPC whose routine runs `routine(context, argument)` at
/// DISPATCH_LEVEL on the processor it was queued for.
///
/// # Invariants
/// Lives in nonpaged memory. Once [`Dpc::initialize`] ran, the DPC does not move and stays alive
/// until KeFlushQueuedDpcs ([`flush_queued_dpcs`]) returned after its last queueing; `targeted`
/// is set once, by the first [`Dpc::queue_here`], on the one processor that ever queues it.
pub struct Dpc {
    raw: UnsafeCell<KDPC>,
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

// SAFETY: the KDPC is touched only through the kernel's DPC calls, which synchronise themselves
// (the DPC queue's lock); the other fields are atomics or immutable.
unsafe impl Sync for Dpc {}
// SAFETY: a KDPC has no thread affinity.
unsafe impl Send for Dpc {}

/// The KDPC's routine (PKDEFERRED_ROUTINE): the driver's, with its context and argument. IRQL:
/// DISPATCH_LEVEL.
///
/// # Safety
/// Called by the kernel as the routine of the KDPC inside the [`Dpc`] at `context` (given to
/// KeInitializeDpc), which is alive while its DPC can run (type invariant).
unsafe extern "C" fn trampoline(
    _dpc: *mut KDPC,
    context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
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
    pub fn new(routine: unsafe fn(*mut c_void, usize)) -> Self {
        Self {
            // SAFETY: KDPC is a C struct of integers, pointers and a nullable function pointer
            // (an Option), for which all-zero bytes are a valid value; KeInitializeDpc
            // initialises it before any use.
            raw: UnsafeCell::new(unsafe { core::mem::zeroed::<KDPC>() }),
            routine,
            context: AtomicPtr::new(core::ptr::null_mut()),
            argument: AtomicUsize::new(0),
            targeted: AtomicBool::new(false),
        }
    }

    /// KeInitializeDpc. IRQL: any.
    ///
    /// # Safety
    /// `self` is in nonpaged memory, does not move from now on and stays alive until
    /// [`flush_queued_dpcs`] returned after its last [`Dpc::queue_here`]; the routine may run
    /// with `context` and `argument` until then.
    pub unsafe fn initialize(&self, context: *mut c_void, argument: usize) {
        self.context.store(context, Ordering::Release);
        self.argument.store(argument, Ordering::Release);
        // SAFETY: `raw` is this pinned, nonpaged KDPC (the caller's promise), not queued (never
        // queued before initialisation); the routine's context is `self`, alive while it can run.
        unsafe {
            KeInitializeDpc(
                self.raw.get(),
                Some(trampoline),
                core::ptr::from_ref(self).cast_mut().cast(),
            );
        }
    }

    /// Queues the DPC for the current processor (KeSetTargetProcessorDpcEx with the
    /// PROCESSOR_NUMBER KeGetCurrentProcessorNumberEx fills in, on first use; then
    /// KeInsertQueueDpc). True when the DPC is queued for this processor — by this call, or
    /// still from an earlier one (KeInsertQueueDpc answers FALSE then, and the queued DPC has
    /// not started: a DPC starts on its processor only once that processor's IRQL drops below
    /// DISPATCH_LEVEL). False when the target cannot be set. IRQL: DISPATCH_LEVEL, always on the
    /// same processor for one `Dpc`.
    pub fn queue_here(&self) -> bool {
        if !self.targeted.load(Ordering::Relaxed) {
            let mut number = PROCESSOR_NUMBER::default();
            // SAFETY: `number` is a writable PROCESSOR_NUMBER; at DISPATCH_LEVEL the processor
            // cannot change under the call.
            let _ = unsafe { KeGetCurrentProcessorNumberEx(&raw mut number) };
            // SAFETY: an initialised KDPC (type invariant) that is not queued (it is queued only
            // below, once targeted); `number` names the current processor.
            let status = unsafe { KeSetTargetProcessorDpcEx(self.raw.get(), &raw mut number) };
            if !NtStatus(status).is_success() {
                return false;
            }
            self.targeted.store(true, Ordering::Relaxed);
        }
        // SAFETY: an initialised KDPC in nonpaged memory that stays alive until the flush after
        // its last queueing (type invariant).
        let _ = unsafe {
            KeInsertQueueDpc(self.raw.get(), core::ptr::null_mut(), core::ptr::null_mut())
        };
        true
    }
}

/// KeFlushQueuedDpcs: returns once every queued DPC has run. IRQL: PASSIVE_LEVEL.
pub fn flush_queued_dpcs() {
    // SAFETY: no arguments; the caller is at PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
}
