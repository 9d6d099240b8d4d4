//! GET_PENDING as a KMDF inverted call: a request that finds nothing deferred to user mode waits
//! in a manual queue until a deferral arrives or its `timeout_ms` runs out; one system thread,
//! the pump, answers parked requests.
//!
//! - A request is answered at once when something is pending or its timeout is 0 (a success with
//!   no output: the WSAEWOULDBLOCK case). Otherwise its deadline goes into its request context
//!   and it is forwarded to the manual queue.
//! - The pump sleeps on the engine's pending-ready event with the earliest parked deadline as its
//!   timeout (no deadline: no timeout), so it wakes for a deferral, a deadline, a newly parked
//!   request or a stop, never to poll.
//! - A deferral that arrives during a pass makes another pass at once (the engine's deferral
//!   count), so one that a later look in the pass cleared the signal of is never slept through.
//! - Each wake-up is one pass over the queue with WdfIoQueueFindRequest: every parked request is
//!   looked at once per pass, whatever its position, so no request (or listener) starves. A
//!   request that still has no answer is requeued; its context's pass mark makes the pass skip it
//!   when the walk meets it again at the head.
//! - The pump is started in EvtDeviceSelfManagedIoInit and stopped and joined in
//!   EvtDeviceSelfManagedIoCleanup, before the framework deletes the queue with the device: the
//!   pump never touches a deleted queue. Requests still parked then are cancelled by KMDF when
//!   it purges the queue.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::time::Duration;

use wdk_sys::{
    NTSTATUS, STATUS_NOT_FOUND, STATUS_SUCCESS, WDF_NO_HANDLE, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};
use wsk::NtStatus;

use super::requests::{buffers, complete};
use super::{engine, nt_success, wdf_init};
use crate::control;
use crate::engine::Engine;
use crate::kernel::{SpinLock, SystemThread, interrupt_time};

/// The manual queue GET_PENDING requests wait in (set in EvtDriverDeviceAdd).
///
/// # Invariants
/// Null, or the device's manual queue, which lives until the device is deleted: after
/// EvtDeviceSelfManagedIoCleanup (which joins the pump) and after every request callback.
static QUEUE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
/// The pump thread while it runs.
static PUMP: SpinLock<Option<SystemThread>> = SpinLock::new(None);
/// Asks the pump to return.
static PUMP_STOP: AtomicBool = AtomicBool::new(false);

/// The context every request of the device carries (WdfDeviceInitSetRequestAttributes); only
/// parked GET_PENDING requests use it.
#[repr(C)]
struct ParkedRequest {
    /// When to answer with nothing, in interrupt time (100 ns units).
    deadline: u64,
    /// The last pump pass that looked at the request (0: none).
    pass: u32,
}

/// WDF_OBJECT_CONTEXT_TYPE_INFO is raw pointers to static data, which Rust does not know to be
/// shareable.
///
/// # Invariants
/// The info is never written after compilation; KMDF only reads it.
#[repr(transparent)]
struct ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the type's invariant: immutable static data (a name string, sizes, a self pointer).
unsafe impl Sync for ContextType {}

/// What WDF_DECLARE_CONTEXT_TYPE_WITH_NAME(ParkedRequest, ...) declares in C.
static PARKED_CONTEXT: ContextType = ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: wdf_init::size_of_ulong::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
    ContextName: c"wskaccept.ParkedRequest".as_ptr(),
    ContextSize: size_of::<ParkedRequest>(),
    UniqueType: &raw const PARKED_CONTEXT.0,
    EvtDriverGetUniqueContextType: None,
});

/// WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE(&attributes, ParkedRequest), for the device's
/// requests. IRQL: any.
pub(super) fn request_attributes() -> WDF_OBJECT_ATTRIBUTES {
    let mut attributes = wdf_init::object_attributes();
    attributes.ContextTypeInfo = &raw const PARKED_CONTEXT.0;
    attributes
}

/// Records the device's manual queue. IRQL: PASSIVE_LEVEL.
pub(super) fn set_queue(queue: WDFQUEUE) {
    QUEUE.store(queue.cast(), Ordering::Release);
}

/// The request's ParkedRequest context. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `request` is a live request of the device (every one carries the context).
unsafe fn context(request: WDFREQUEST) -> *mut ParkedRequest {
    // SAFETY: a live WDF object (the caller's guarantee) and the static type info its context
    // was declared with.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            request.cast(),
            &raw const PARKED_CONTEXT.0
        )
    }
    .cast()
}

/// GET_PENDING from the default queue: answer now, or park. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `request` was just delivered to the driver with these lengths.
pub(super) unsafe fn get_pending(request: WDFREQUEST, input_len: usize, output_len: usize) {
    let Some(engine) = engine() else {
        // SAFETY: the caller's guarantee: a request just delivered to us; completed once here.
        return unsafe { complete(request, NtStatus::DEVICE_NOT_READY.0, 0) };
    };
    // SAFETY: the caller's guarantee.
    let answer = unsafe { answer(engine, request, input_len, output_len) };
    match answer {
        // SAFETY: the delivered request is still ours (not forwarded); completed once here with
        // the bytes `answer` wrote.
        Answer::Now(status, written) => unsafe { complete(request, status, written) },
        Answer::Park(timeout) => {
            let deadline = interrupt_time().saturating_add(timeout.saturating_mul(10_000));
            // SAFETY: a live request of the device.
            let parked = unsafe { context(request) };
            // SAFETY: the request's own context, not yet shared: it is ours until forwarded.
            unsafe { parked.write(ParkedRequest { deadline, pass: 0 }) };
            let queue: WDFQUEUE = QUEUE.load(Ordering::Acquire).cast();
            // SAFETY: a request we own, forwarded to our own manual queue, which QUEUE's
            // invariant keeps alive while any request callback runs. The framework cancels it
            // (STATUS_CANCELLED) if the application cancels or the queue is purged.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, request, queue)
            };
            if !nt_success(status) {
                // SAFETY: the forward failed, so the request is still ours; completed once here.
                unsafe { complete(request, status, 0) };
            }
        }
    }
    // The look above cleared the pending-ready signal (a deferral for a parked request may have
    // set it), and a newly parked request may have the earliest deadline: let the pump look.
    engine.wake_pending_waiters();
}

/// What to do with a GET_PENDING request.
enum Answer {
    /// Complete it with this status and byte count.
    Now(NTSTATUS, usize),
    /// Nothing is pending yet: park it for this many milliseconds.
    Park(u64),
}

/// Looks for an answer to a GET_PENDING request. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `request` is a live device-control request the driver owns, with these lengths.
unsafe fn answer(
    engine: &Engine,
    request: WDFREQUEST,
    input_len: usize,
    output_len: usize,
) -> Answer {
    // SAFETY: the caller's guarantee.
    let buffers = match unsafe { buffers(request, input_len, output_len) } {
        Ok(buffers) => buffers,
        Err(status) => return Answer::Now(status.0, 0),
    };
    let timeout_ms = match ioctl::parse::<ioctl::GetPending>(&buffers.input) {
        Ok(message) => u64::from(message.timeout_ms),
        Err(status) => return Answer::Now(status.0, 0),
    };
    match control::try_get_pending(engine, &buffers.input, buffers.output) {
        Ok(Some(written)) => Answer::Now(STATUS_SUCCESS, written),
        // Nothing pending and no wait asked for: success with no output (WSAEWOULDBLOCK).
        Ok(None) if timeout_ms == 0 => Answer::Now(STATUS_SUCCESS, 0),
        Ok(None) => Answer::Park(timeout_ms),
        Err(status) => Answer::Now(status.0, 0),
    }
}

/// Starts the pump. IRQL: PASSIVE_LEVEL.
///
/// # Errors
/// What SystemThread::spawn returns.
pub(super) fn start_pump() -> Result<(), NtStatus> {
    PUMP_STOP.store(false, Ordering::Release);
    // SAFETY: the pump reads only statics (its context is unused), and stop_pump joins it.
    let thread = unsafe { SystemThread::spawn(pump, core::ptr::null_mut()) }?;
    *PUMP.lock() = Some(thread);
    Ok(())
}

/// Stops and joins the pump, if it runs. IRQL: PASSIVE_LEVEL.
pub(super) fn stop_pump() {
    PUMP_STOP.store(true, Ordering::Release);
    if let Some(engine) = engine() {
        engine.wake_pending_waiters();
    }
    let thread = PUMP.lock().take();
    if let Some(thread) = thread {
        thread.join();
    }
}

/// The pump thread. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Started by [`start_pump`] (the context is unused).
unsafe fn pump(_context: *mut c_void) {
    let mut pass: u32 = 0;
    loop {
        let Some(engine) = engine() else { return };
        let queue: WDFQUEUE = QUEUE.load(Ordering::Acquire).cast();
        // Pass 0 means "not looked at yet".
        pass = pass.wrapping_add(1).max(1);
        // Each look in the pass clears the pending-ready signal, including a deferral's for a
        // request the pass already looked at: the count says whether one came during the pass.
        let deferrals = engine.deferrals();
        let earliest = if queue.is_null() {
            None
        } else {
            // SAFETY: QUEUE's invariant: the pump runs only between device start and cleanup,
            // while the queue lives.
            unsafe { service(engine, queue, pass) }
        };
        // Checked after the pass, whose looks clear the pending-ready signal: stop_pump sets the
        // flag before it signals, so a stop that this check misses is still signalled below.
        if PUMP_STOP.load(Ordering::Acquire) {
            return;
        }
        if engine.deferrals() != deferrals {
            continue;
        }
        let wait = earliest.map(|deadline| {
            Duration::from_nanos(
                deadline
                    .saturating_sub(interrupt_time())
                    .saturating_mul(100),
            )
        });
        engine.wait_pending_ready(wait);
    }
}

/// One pass over the parked requests: answers each that has an answer or whose deadline has
/// passed, requeues the rest; returns the earliest deadline still parked. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `queue` is the live manual queue.
unsafe fn service(engine: &Engine, queue: WDFQUEUE, pass: u32) -> Option<u64> {
    let now = interrupt_time();
    let mut earliest: Option<u64> = None;
    let mut previous: WDFREQUEST = WDF_NO_HANDLE.cast();
    loop {
        let mut parameters = wdf_init::request_parameters();
        let mut found: WDFREQUEST = WDF_NO_HANDLE.cast();
        // SAFETY: the live queue (the caller's guarantee); `previous` is null or a request this
        // loop holds a reference on; out-pointers to locals. FindRequest references `found`.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueFindRequest,
                queue,
                previous,
                core::ptr::null_mut(),
                &raw mut parameters,
                &raw mut found
            )
        };
        if !previous.is_null() {
            // SAFETY: the reference the previous FindRequest took, dropped once.
            unsafe { dereference(previous) };
            previous = WDF_NO_HANDLE.cast();
        }
        match status {
            STATUS_SUCCESS => {}
            // `previous` left the queue (answered, cancelled): walk again from the head; the pass
            // marks skip what this pass already looked at.
            STATUS_NOT_FOUND => continue,
            // STATUS_NO_MORE_ENTRIES ends the pass; so does any other failure (nothing to look at).
            _ => break,
        }
        // SAFETY: `found` is a live, referenced request of the device.
        let parked = unsafe { context(found) };
        // SAFETY: the context of a referenced request; only the pump reads or writes a parked
        // request's pass mark and deadline (get_pending wrote them before forwarding).
        let parked = unsafe { &mut *parked };
        let (deadline, seen) = (parked.deadline, parked.pass == pass);
        if seen {
            previous = found;
            continue;
        }
        parked.pass = pass;
        let mut request: WDFREQUEST = WDF_NO_HANDLE.cast();
        // SAFETY: the live queue and a request FindRequest returned (still referenced).
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveFoundRequest,
                queue,
                found,
                &raw mut request
            )
        };
        // SAFETY: the reference FindRequest took; the walk restarts from the head.
        unsafe { dereference(found) };
        if !nt_success(status) {
            // Cancelled between the find and the retrieve (the framework completes it), or the
            // queue cannot deliver now: look again by its deadline at the latest.
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            continue;
        }
        // SAFETY: a device-control request: the DeviceIoControl member of the union applies.
        let (output_len, input_len) = unsafe {
            let io = &parameters.Parameters.DeviceIoControl;
            (io.OutputBufferLength, io.InputBufferLength)
        };
        // SAFETY: a request just retrieved from our manual queue, with these lengths.
        let answer = unsafe { answer(engine, request, input_len, output_len) };
        match answer {
            // SAFETY: a request retrieved from our manual queue is ours until completed or
            // requeued; completed once here with the bytes `answer` wrote.
            Answer::Now(status, written) => unsafe { complete(request, status, written) },
            // SAFETY: a request retrieved from our manual queue, not requeued, so still ours;
            // completed once here.
            Answer::Park(_) if now >= deadline => unsafe { complete(request, STATUS_SUCCESS, 0) },
            Answer::Park(_) => {
                // SAFETY: a request retrieved from this manual queue goes back to it (its head;
                // the pass mark makes this pass skip it there).
                let status =
                    unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, request) };
                if nt_success(status) {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                } else {
                    // SAFETY: the requeue failed, so the retrieved request is still ours;
                    // completed once here.
                    unsafe { complete(request, status, 0) };
                }
            }
        }
    }
    earliest
}

/// WdfObjectDereference. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `request` holds a reference this code took (WdfIoQueueFindRequest's), dropped once here.
unsafe fn dereference(request: WDFREQUEST) {
    // SAFETY: the caller's guarantee; no tag, line or file (WdfObjectDereference's expansion).
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectDereferenceActual,
            request.cast(),
            core::ptr::null_mut(),
            0,
            core::ptr::null()
        );
    }
}
