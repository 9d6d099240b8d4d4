//! IRPs with the Windows lifecycle, as WSK uses caller-allocated IRPs (WSK-FACTS §3, §8).
//!
//! A host IRP is in one of four states:
//! - `Ready`: allocated or reused; the driver may set a completion routine and hand it to WSK;
//! - `Pending`: a provider owns it; the driver may not touch it (WSK IRPs are not cancelled:
//!   closing the socket completes them, WSK-FACTS §3);
//! - `Completing`: its completion routine runs; the routine owns it (may free or reuse it);
//! - `Completed`: back with the driver; it must be reused before it is submitted again.
//!
//! Every misuse is a verifier violation: free or reuse while pending, submitting a pending IRP or
//! a completed one without IoReuseIrp, completing twice, a routine that returns anything but
//! STATUS_MORE_PROCESSING_REQUIRED (every host IRP is driver-allocated), a pointer that is not a
//! live IRP.

use rustc_hash::FxHashSet;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use wsk::{IRP, NtStatus, PfnIoCompletionRoutine};

use crate::accounting::COUNTERS;
use crate::irql;
use crate::schedule::{self, Fault};
use crate::verifier::{CompletionRoutineScope, Rule, violation};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IrpState {
    Ready,
    Pending,
    Completing,
    Completed,
}

#[derive(Clone, Copy)]
struct Completion {
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
    on_success: bool,
    on_error: bool,
    on_cancel: bool,
}

struct Inner {
    state: IrpState,
    completion: Option<Completion>,
    status: NtStatus,
    information: usize,
    owner: &'static str,
}

/// The host's IRP object. `*mut IRP` handed to the driver points at one of these.
///
/// # Invariants
/// It lives in a `Box` whose address is in `LIVE` from IoAllocateIrp to IoFreeIrp.
struct HostIrp {
    serial: u64,
    inner: Mutex<Inner>,
}

// SAFETY: the raw context pointer inside is the driver's; the driver promised (IoSetCompletion-
// Routine) that its completion routine may run on any thread with that context.
unsafe impl Send for HostIrp {}
// SAFETY: shared references reach only `serial` (immutable after construction) and `inner`, a
// Mutex that serialises every access; the context pointer inside is only copied out under that
// lock and handed to the routine, which the driver promised may run on any thread with it.
unsafe impl Sync for HostIrp {}

/// Every allocated, not yet freed IRP. Lock order: LIVE before an IRP's `inner` (the tail of
/// `complete` holds LIVE while it updates the IRP, so that it cannot be freed meanwhile); no path
/// takes LIVE while holding an `inner`.
static LIVE: Mutex<Option<FxHashSet<usize>>> = Mutex::new(None);
static SERIAL: AtomicU64 = AtomicU64::new(1);

fn is_live(irp: *mut IRP) -> bool {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|set| set.contains(&(irp as usize)))
}

/// Resolves a driver IRP pointer, or stops with `InvalidIrp`.
fn host<'a>(irp: *mut IRP, what: &str) -> &'a HostIrp {
    if irp.is_null() || !is_live(irp) {
        violation(
            Rule::InvalidIrp,
            format_args!("{what}: {irp:p} is not a live IRP (freed or never allocated)"),
        );
    }
    // SAFETY: the address is in LIVE, so it is a boxed HostIrp that has not been freed; it can
    // only be freed through IoFreeIrp, and freeing one still in use is a violation of its own.
    unsafe { &*irp.cast::<HostIrp>() }
}

fn lock(irp: &HostIrp) -> MutexGuard<'_, Inner> {
    irp.inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// IoAllocateIrp(StackSize, FALSE). Returns NULL when `stack_size < 1` or the schedule injects an
/// allocation failure. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn io_allocate_irp(stack_size: i8) -> *mut IRP {
    irql::assert_at_most_dispatch("IoAllocateIrp");
    if stack_size < 1 || schedule::should_fail(Fault::IrpAllocation) {
        return std::ptr::null_mut();
    }
    let irp = Box::into_raw(Box::new(HostIrp {
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        inner: Mutex::new(Inner {
            state: IrpState::Ready,
            completion: None,
            status: NtStatus::SUCCESS,
            information: 0,
            owner: "",
        }),
    }))
    .cast::<IRP>();
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(FxHashSet::default)
        .insert(irp as usize);
    COUNTERS.irps.fetch_add(1, Ordering::SeqCst);
    crate::accounting::IRP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    irp
}

/// IoFreeIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` must not be used after this call.
pub unsafe fn io_free_irp(irp: *mut IRP) {
    irql::assert_at_most_dispatch("IoFreeIrp");
    let host_irp = host(irp, "IoFreeIrp");
    {
        let inner = lock(host_irp);
        if inner.state == IrpState::Pending {
            violation(
                Rule::FreePendingIrp,
                format_args!("IoFreeIrp({irp:p}) while {} still owns it", inner.owner),
            );
        }
    }
    // Out of LIVE under its lock before the memory goes: whoever finds an IRP in LIVE while
    // holding that lock (the tail of `complete`) may touch it until they release it.
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(FxHashSet::default)
        .remove(&(irp as usize));
    // SAFETY: the IRP was allocated by `Box::into_raw` in io_allocate_irp, is no longer pending,
    // and was just removed from LIVE, so this is the one and only free.
    drop(unsafe { Box::from_raw(irp.cast::<HostIrp>()) });
    COUNTERS.irps.fetch_sub(1, Ordering::SeqCst);
}

/// IoReuseIrp(Irp, Status): back to `Ready`, completion routine cleared. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` must be an IRP from [`io_allocate_irp`].
pub unsafe fn io_reuse_irp(irp: *mut IRP, status: NtStatus) {
    irql::assert_at_most_dispatch("IoReuseIrp");
    let host_irp = host(irp, "IoReuseIrp");
    let mut inner = lock(host_irp);
    if inner.state == IrpState::Pending {
        violation(
            Rule::ReusePendingIrp,
            format_args!("IoReuseIrp({irp:p}) while {} still owns it", inner.owner),
        );
    }
    inner.state = IrpState::Ready;
    inner.completion = None;
    inner.status = status;
    inner.information = 0;
    inner.owner = "";
}

/// IoSetCompletionRoutine(Irp, Routine, Context, InvokeOnSuccess, InvokeOnError, InvokeOnCancel).
/// Every host IRP comes from IoAllocateIrp, so the driver owns it and its routine must run on
/// every outcome to take it back: any InvokeOnXxx FALSE is a violation (WSK-FACTS §3).
/// IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` must be an IRP from [`io_allocate_irp`]; `routine` must be callable with `context` from
/// any thread at DISPATCH_LEVEL until the IRP completes.
pub unsafe fn io_set_completion_routine(
    irp: *mut IRP,
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
    on_success: bool,
    on_error: bool,
    on_cancel: bool,
) {
    let host_irp = host(irp, "IoSetCompletionRoutine");
    if !(on_success && on_error && on_cancel) {
        violation(
            Rule::CompletionRoutineMustAlwaysRun,
            format_args!(
                "IoSetCompletionRoutine({irp:p}, InvokeOnSuccess {on_success}, InvokeOnError \
                 {on_error}, InvokeOnCancel {on_cancel}) on an IRP from IoAllocateIrp: the driver \
                 owns it, so its routine must run on every outcome (all three TRUE)"
            ),
        );
    }
    let mut inner = lock(host_irp);
    if inner.state == IrpState::Pending {
        violation(
            Rule::ResubmitPendingIrp,
            format_args!("IoSetCompletionRoutine({irp:p}) on a pending IRP"),
        );
    }
    inner.completion = Some(Completion {
        routine,
        context,
        on_success,
        on_error,
        on_cancel,
    });
}

/// Irp->IoStatus: `(Status, Information)`. IRQL: any.
///
/// # Safety
/// `irp` must be an IRP from [`io_allocate_irp`] that is not pending.
#[must_use]
pub unsafe fn io_status(irp: *mut IRP) -> (NtStatus, usize) {
    let inner = lock(host(irp, "Irp->IoStatus"));
    (inner.status, inner.information)
}

/// A pending IRP as a provider holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IrpRef(*mut IRP);

// SAFETY: the provider moves pending IRPs to its thread; the IRP object is Sync (see HostIrp).
unsafe impl Send for IrpRef {}

/// A provider takes ownership of `irp` for `function` (Ready → Pending).
pub(crate) fn take(irp: *mut IRP, function: &'static str) -> IrpRef {
    if irp.is_null() {
        violation(
            Rule::IrpRequired,
            format_args!("{function} requires an IRP"),
        );
    }
    let host_irp = host(irp, function);
    let mut inner = lock(host_irp);
    match inner.state {
        IrpState::Ready => {}
        IrpState::Pending | IrpState::Completing => violation(
            Rule::ResubmitPendingIrp,
            format_args!("{function}: IRP {irp:p} is still owned by {}", inner.owner),
        ),
        IrpState::Completed => violation(
            Rule::SubmitCompletedIrp,
            format_args!(
                "{function}: IRP {irp:p} was completed by {} and not reused (IoReuseIrp)",
                inner.owner
            ),
        ),
    }
    if inner.completion.is_none() {
        violation(
            Rule::InvalidArgument,
            format_args!("{function}: IRP {irp:p} has no completion routine"),
        );
    }
    inner.state = IrpState::Pending;
    inner.owner = function;
    inner.status = NtStatus::PENDING;
    inner.information = 0;
    IrpRef(irp)
}

/// Completes a pending IRP: records status and information, then runs its completion routine at
/// DISPATCH_LEVEL if the invoke-on flags ask for it (WSK-FACTS §3: they all should).
pub(crate) fn complete(irp: IrpRef, status: NtStatus, information: usize) {
    let host_irp = host(irp.0, "IoCompleteRequest");
    let serial = host_irp.serial;
    let completion = {
        let mut inner = lock(host_irp);
        if inner.state != IrpState::Pending {
            violation(
                Rule::CompleteTwice,
                format_args!("IRP {:p} completed twice ({:?})", irp.0, inner.state),
            );
        }
        inner.state = IrpState::Completing;
        inner.status = status;
        inner.information = information;
        inner.completion
    };
    let invoke = completion.filter(|c| {
        if status == NtStatus::CANCELLED {
            c.on_cancel
        } else if status.is_success() {
            c.on_success
        } else {
            c.on_error
        }
    });
    if let Some(c) = invoke {
        let result = irql::at_dispatch(|| {
            let _scope = CompletionRoutineScope::enter();
            // SAFETY: the driver installed this routine and context with IoSetCompletionRoutine
            // and promised they are valid until completion; a NULL device object is what WSK
            // passes.
            unsafe { (c.routine)(std::ptr::null_mut(), irp.0, c.context) }
        });
        if result != NtStatus::MORE_PROCESSING_REQUIRED {
            violation(
                Rule::CompletionMustReturnMoreProcessing,
                format_args!(
                    "completion routine of driver-allocated IRP {:p} returned {result}",
                    irp.0
                ),
            );
        }
    }
    // The routine may have freed or reused the IRP — or let another thread do so, which may
    // happen at any moment from here on (on Windows the I/O manager no longer touches an IRP
    // whose routine returned STATUS_MORE_PROCESSING_REQUIRED). Only a still-completing IRP becomes
    // Completed, and the check and the update happen under LIVE's lock: io_free_irp takes an IRP
    // out of LIVE under that lock before it frees it, so it cannot be freed in between. (Checking
    // first and touching it after the lock was dropped once hung `cargo test`: this thread blocked
    // on the "mutex" of an IRP a test had just freed and whose memory was reused.)
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if live
        .as_ref()
        .is_some_and(|set| set.contains(&(irp.0 as usize)))
    {
        // SAFETY: the address is in LIVE and LIVE's lock is held, so it is a boxed HostIrp that
        // io_free_irp cannot free until the lock is released (HostIrp invariants).
        let host_irp = unsafe { &*irp.0.cast::<HostIrp>() };
        if host_irp.serial == serial {
            let mut inner = lock(host_irp);
            if inner.state == IrpState::Completing {
                inner.state = IrpState::Completed;
            }
        }
    }
    drop(live);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A completion routine that counts its calls.
    ///
    /// # Safety
    /// `count` must point at a live `AtomicU64` (PIO_COMPLETION_ROUTINE's context is the
    /// caller's).
    unsafe extern "system" fn keep(
        _d: *mut wsk::DEVICE_OBJECT,
        _i: *mut IRP,
        count: *mut c_void,
    ) -> NtStatus {
        // SAFETY: `count` points at a live AtomicU64 (this function's # Safety).
        unsafe { (*count.cast::<AtomicU64>()).fetch_add(1, Ordering::SeqCst) };
        NtStatus::MORE_PROCESSING_REQUIRED
    }

    #[test]
    #[should_panic(expected = "complete-irp-twice")]
    fn completing_twice_is_a_violation() {
        let count = AtomicU64::new(0);
        let irp = io_allocate_irp(1);
        // SAFETY: live IRP; `count` outlives it.
        unsafe {
            io_set_completion_routine(
                irp,
                keep,
                std::ptr::from_ref(&count).cast_mut().cast(),
                true,
                true,
                true,
            );
        };
        let taken = take(irp, "test");
        complete(taken, NtStatus::SUCCESS, 0);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        complete(taken, NtStatus::SUCCESS, 0);
    }

    #[test]
    #[should_panic(expected = "completion-routine-must-always-run")]
    fn a_routine_that_may_not_run_on_a_driver_allocated_irp_is_a_violation() {
        let count = AtomicU64::new(0);
        let irp = io_allocate_irp(1);
        let context = std::ptr::from_ref(&count).cast_mut().cast();
        // SAFETY: live IRP; `count` outlives it. Deliberately wrong: InvokeOnCancel FALSE.
        unsafe { io_set_completion_routine(irp, keep, context, true, true, false) };
    }

    #[test]
    fn the_routine_runs_on_cancel_and_the_status_is_kept() {
        let count = AtomicU64::new(0);
        let irp = io_allocate_irp(1);
        let context = std::ptr::from_ref(&count).cast_mut().cast();
        // SAFETY: live IRP; `count` outlives it.
        unsafe { io_set_completion_routine(irp, keep, context, true, true, true) };
        complete(take(irp, "test"), NtStatus::CANCELLED, 0);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // SAFETY: completed and not used again.
        assert_eq!(unsafe { io_status(irp) }, (NtStatus::CANCELLED, 0));
        // SAFETY: `irp` is from io_allocate_irp and completed (not pending); it is not used after
        // this free.
        unsafe { io_free_irp(irp) };
    }

    #[test]
    fn stack_size_zero_is_refused() {
        assert!(io_allocate_irp(0).is_null());
    }
}
