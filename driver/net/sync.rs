//! One WSK call waited for at PASSIVE_LEVEL: an IRP whose completion routine records IoStatus and
//! sets an event. Used for listener setup and teardown, never on the accept path.

use core::cell::Cell;
use core::ffi::c_void;

use wsk::{DEVICE_OBJECT, IRP, NtStatus};

use super::DriverIrp;
use crate::kernel::Event;

/// An IRP and an event made ahead of time, for a synchronous call that must not fail for want
/// of memory (WskCloseSocket: a socket left open makes WskDeregister wait forever).
#[derive(Debug)]
pub struct Prepared {
    irp: DriverIrp,
    done: Event,
}

struct SyncCall<'a> {
    irp: &'a DriverIrp,
    done: &'a Event,
    result: Cell<(NtStatus, usize)>,
}

/// Completion routine of a synchronous call. IRQL: <= DISPATCH_LEVEL; never blocks or allocates.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a synchronous call's IRP: `context` is
/// the caller's `SyncCall`, which waits on its event given with that IRP, which stays alive until
/// this routine has run.
unsafe extern "system" fn sync_call_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: the context is the SyncCall on `call`'s stack, alive until its wait returns.
    let call = unsafe { &*context.cast::<SyncCall<'_>>() };
    // SAFETY: this is the IRP's completion routine.
    call.result.set(unsafe { call.irp.take_back() });
    call.done.set();
    NtStatus::MORE_PROCESSING_REQUIRED
}

impl Prepared {
    /// Allocates the IRP and the event. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn new() -> Result<Self, NtStatus> {
        Ok(Self {
            irp: DriverIrp::allocate()?,
            done: Event::notification(false)?,
        })
    }

    /// Runs `f` with the prepared IRP and waits for its completion; returns
    /// IoStatus.Information on success. Allocates nothing. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// The completion status when it is not a success; STATUS_INVALID_DEVICE_STATE if the IRP
    /// is still in use (never, for calls made one at a time).
    pub fn call(&self, f: impl FnOnce(*mut IRP) -> NtStatus) -> Result<usize, NtStatus> {
        self.done.clear();
        let state = SyncCall {
            irp: &self.irp,
            done: &self.done,
            result: Cell::new((NtStatus::PENDING, 0)),
        };
        let context = core::ptr::from_ref(&state).cast_mut().cast();
        // SAFETY: `state` outlives the completion (we wait for it below); `f` passes the IRP to
        // one WSK call.
        let returned = unsafe { state.irp.submit_returning(sync_call_done, context, f) }?;
        // A WSK function that returns anything but STATUS_PENDING has completed the IRP before
        // returning: the event is already set. If it is not, the provider refused the call
        // without completing the IRP (Wine's stubs do; Windows never does): the returned failure
        // is final, and waiting would hang forever.
        if returned.is_error() && !state.done.wait(Some(core::time::Duration::ZERO)) {
            // SAFETY: the call returned a failure and the completion routine has not run.
            unsafe { state.irp.reclaim_uncompleted() };
            return Err(returned);
        }
        state.done.wait(None);
        let (status, information) = state.result.get();
        if status.is_success() {
            Ok(information)
        } else {
            Err(status)
        }
    }
}

/// Runs `f` with a fresh IRP and waits for its completion; returns IoStatus.Information on
/// success. IRQL: PASSIVE_LEVEL.
///
/// # Errors
/// The completion status when it is not a success, or STATUS_INSUFFICIENT_RESOURCES.
pub fn call(f: impl FnOnce(*mut IRP) -> NtStatus) -> Result<usize, NtStatus> {
    Prepared::new()?.call(f)
}
