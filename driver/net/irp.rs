//! A driver-allocated IRP whose type tracks who owns it: idle (the driver) or submitted (the
//! provider, until the completion routine takes it back). Submitting a busy IRP is refused, not
//! done twice; dropping a busy IRP leaks it instead of freeing memory the provider still uses.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use wsk::{IRP, NtStatus, PfnIoCompletionRoutine};

use crate::kernel;

/// An IRP with one stack location (what WSK needs, WSK-FACTS §3).
///
/// # Invariants
/// `irp` is a live IRP from `irp_allocate`; `busy` is true from a successful
/// [`DriverIrp::submit`] until the completion routine calls [`DriverIrp::take_back`].
#[derive(Debug)]
pub struct DriverIrp {
    irp: NonNull<IRP>,
    busy: AtomicBool,
}

// SAFETY: the IRP is a kernel object usable from any thread; ownership is arbitrated by `busy`.
unsafe impl Send for DriverIrp {}
// SAFETY: `&DriverIrp` can only submit (which wins `busy` atomically first) or read the IRP's
// status after the completion routine owns it again, so shared use never races on the IRP.
unsafe impl Sync for DriverIrp {}

impl DriverIrp {
    /// IoAllocateIrp(1, FALSE). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn allocate() -> Result<Self, NtStatus> {
        let irp = NonNull::new(kernel::irp_allocate(1)).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: a live IRP from irp_allocate, not submitted yet, so not busy.
        Ok(Self {
            irp,
            busy: AtomicBool::new(false),
        })
    }

    /// Whether a provider owns the IRP now.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Hands the IRP to `call` (one WSK function) with `routine(context)` as its completion
    /// routine. The routine always runs — possibly before `call` returns (WSK-FACTS §3) — and must
    /// call [`DriverIrp::take_back`]. The WSK return value is deliberately not returned: all logic
    /// runs from the completion routine. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE if the IRP is still with a provider (nothing is submitted).
    ///
    /// # Safety
    /// `routine` must be able to run with `context` on any thread at DISPATCH_LEVEL until the IRP
    /// completes, and `call` must pass the IRP to exactly one WSK function.
    pub unsafe fn submit(
        &self,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
        call: impl FnOnce(*mut IRP) -> NtStatus,
    ) -> Result<(), NtStatus> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.submit_returning(routine, context, call) }.map(|_| ())
    }

    /// [`DriverIrp::submit`], returning what the WSK function returned (PENDING, or the status it
    /// completed the IRP with). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE if the IRP is still with a provider (nothing is submitted).
    ///
    /// # Safety
    /// As [`DriverIrp::submit`].
    pub unsafe fn submit_returning(
        &self,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
        call: impl FnOnce(*mut IRP) -> NtStatus,
    ) -> Result<NtStatus, NtStatus> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: idle (just claimed), so no provider owns it; reuse resets the stack location.
        unsafe { kernel::irp_reuse(self.irp.as_ptr(), NtStatus::SUCCESS) };
        // SAFETY: idle; the caller vouches for routine and context.
        unsafe { kernel::irp_set_completion(self.irp.as_ptr(), routine, context) };
        Ok(call(self.irp.as_ptr()))
    }

    /// Takes back an IRP that a WSK function refused without completing it: it returned a
    /// failure (not STATUS_PENDING) and the completion routine has not run. A conforming provider
    /// completes every IRP it is given, before returning when it returns anything but PENDING,
    /// so this happens only with a provider that does not (Wine 8.0's stubbed WSK functions).
    /// IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The last submission's WSK function returned a failure status and the IRP's completion
    /// routine has not run (and, the call having returned, never will).
    pub unsafe fn reclaim_uncompleted(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// In the completion routine: reads IoStatus and gives the IRP back to the driver.
    /// IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// Only from this IRP's completion routine.
    #[must_use]
    pub unsafe fn take_back(&self) -> (NtStatus, usize) {
        // SAFETY: completing: the provider is done with it and the routine may read it.
        let result = unsafe { kernel::irp_status(self.irp.as_ptr()) };
        self.busy.store(false, Ordering::Release);
        result
    }
}

impl Drop for DriverIrp {
    fn drop(&mut self) {
        if self.is_busy() {
            // Freeing an IRP a provider still holds is a crash on Windows; leaking it is the safe
            // failure (and the host kernel's accounting reports it).
            return;
        }
        // SAFETY: idle and never used again.
        unsafe { kernel::irp_free(self.irp.as_ptr()) };
    }
}
