//! EvtIoDeviceControl: METHOD_BUFFERED buffers to the portable dispatcher (`control.rs`).
//!
//! METHOD_BUFFERED gives input and output one system buffer, so the input is copied before the
//! dispatcher writes output. Its size is checked against the largest valid message first and the
//! copy is a fallible pool allocation: no caller-chosen length reaches an allocation unchecked.

use core::ffi::c_void;

use wdk_sys::{NTSTATUS, ULONG, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding};
use wsk::NtStatus;

use super::{engine, nt_success, parked};
use crate::control;
use crate::kernel::{PoolSlice, tags};

/// A request's buffers: a pool copy of the input and the output.
pub(super) struct Buffers<'a> {
    pub(super) input: PoolSlice<u8>,
    pub(super) output: &'a mut [u8],
}

/// Retrieves and copies the request's buffers. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `request` is a live device-control request this driver owns (delivered or retrieved, not yet
/// completed), with these buffer lengths; the output slice is used only until it completes.
pub(super) unsafe fn buffers<'a>(
    request: WDFREQUEST,
    input_len: usize,
    output_len: usize,
) -> Result<Buffers<'a>, NtStatus> {
    if input_len > ioctl::MAX_INPUT {
        // Larger than every valid message: refused before anything is retrieved or copied.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let mut input: *mut c_void = core::ptr::null_mut();
    let mut output: *mut c_void = core::ptr::null_mut();
    let mut length = 0usize;
    if input_len > 0 {
        // SAFETY: a live request (the caller's guarantee) and out-pointers to locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                input_len,
                &raw mut input,
                &raw mut length
            )
        };
        if !nt_success(status) {
            return Err(NtStatus(status));
        }
    }
    let copy = if input.is_null() {
        PoolSlice::try_new(tags::CALL, 0, |_| Ok(0u8))?
    } else {
        // SAFETY: WDF retrieved at least `input_len` readable bytes, valid until completion; the
        // copy is taken before the output (the same system buffer) is borrowed mutably.
        let source = unsafe { core::slice::from_raw_parts(input.cast::<u8>(), input_len) };
        PoolSlice::try_new(tags::CALL, input_len, |i| Ok(source[i]))?
    };
    if output_len > 0 {
        // SAFETY: a live request (the caller's guarantee) and out-pointers to locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                output_len,
                &raw mut output,
                &raw mut length
            )
        };
        if !nt_success(status) {
            return Err(NtStatus(status));
        }
    }
    let output: &mut [u8] = if output.is_null() {
        &mut []
    } else {
        // SAFETY: WDF retrieved at least `output_len` writable bytes, valid until the request
        // completes; the input was copied out above, so this is the only live view.
        unsafe { core::slice::from_raw_parts_mut(output.cast::<u8>(), output_len) }
    };
    Ok(Buffers {
        input: copy,
        output,
    })
}

/// Completes a request this driver owns. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `request` is a live request the driver owns (delivered or retrieved, not forwarded, requeued
/// or completed), completed once, here; `information` is the count of bytes written to its
/// output buffer.
pub(super) unsafe fn complete(request: WDFREQUEST, status: NTSTATUS, information: usize) {
    // SAFETY: the caller's guarantee: a request we own, completed once, with a true byte count.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status,
            information as u64
        );
    }
}

/// EvtIoDeviceControl of the default queue: GET_PENDING goes to [`parked`], every other code to
/// the portable dispatcher. IRQL: PASSIVE_LEVEL (the device's ExecutionLevel).
///
/// # Safety
/// Called by the framework as the queue's EvtIoDeviceControl: `request` is a live request this
/// driver owns until it completes or forwards it.
pub(super) unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_len: usize,
    input_len: usize,
    code: ULONG,
) {
    if code == ioctl::IOCTL_GET_PENDING {
        // SAFETY: a request KMDF just delivered to us with these lengths.
        unsafe { parked::get_pending(request, input_len, output_len) };
        return;
    }
    // SAFETY: a request KMDF just delivered to us with these lengths.
    let buffers = match unsafe { buffers(request, input_len, output_len) } {
        Ok(buffers) => buffers,
        // SAFETY: a request KMDF just delivered to us, not completed yet; completed once here.
        Err(status) => return unsafe { complete(request, status.0, 0) },
    };
    let (status, information) = match engine() {
        Some(engine) => control::dispatch(engine, code, &buffers.input, buffers.output),
        None => (NtStatus::DEVICE_NOT_READY, 0),
    };
    // SAFETY: a request KMDF just delivered to us, not completed yet; completed once here with the
    // count of bytes the dispatcher wrote to its output buffer.
    unsafe { complete(request, status.0, information) };
}
