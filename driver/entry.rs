//! Windows only: DriverEntry, the root-enumerated KMDF device (admin-only SDDL,
//! FILE_DEVICE_SECURE_OPEN, a device interface), a parallel queue whose EvtIoDeviceControl hands
//! the buffers to the portable dispatcher (`control.rs`), and teardown that stops every listener
//! when the device goes away and unloads the engine with the driver.
//!
//! WRITTEN, NOT BUILT: names follow wdk-sys 0.5 and the KMDF echo sample of
//! Windows-rust-driver-samples; nobody has compiled or run this on Windows yet.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING,
    PWDFDEVICE_INIT, STATUS_SUCCESS, ULONG, UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_PNPPOWER_EVENT_CALLBACKS, WDFDEVICE, WDFDRIVER,
    WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::control;
use crate::engine::Engine;
use crate::kernel::{PoolBox, SpinLock, SystemThread, tags};

#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(not(test))]
extern crate wdk_panic;

/// The loaded engine (DriverEntry to EvtDriverUnload).
static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(core::ptr::null_mut());

/// The manual queue where GET_PENDING requests wait (the inverted call).
static PENDING_QUEUE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
/// The thread that completes parked GET_PENDING requests, and its stop flag.
static PUMP: SpinLock<Option<SystemThread>> = SpinLock::new(None);
static PUMP_STOP: AtomicBool = AtomicBool::new(false);

/// "D:P(A;;GA;;;SY)(A;;GA;;;BA)" = SDDL_DEVOBJ_SYS_ALL_ADM_ALL, as UTF-16.
const SDDL: [u16; 27] = {
    let ascii = b"D:P(A;;GA;;;SY)(A;;GA;;;BA)";
    let mut wide = [0u16; 27];
    let mut i = 0;
    while i < ascii.len() {
        wide[i] = ascii[i] as u16;
        i += 1;
    }
    wide
};

/// FILE_DEVICE_SECURE_OPEN (wdm.h).
const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;

fn engine<'a>() -> Option<&'a Engine> {
    let ptr = ENGINE.load(Ordering::Acquire);
    // SAFETY: set in DriverEntry, cleared only in EvtDriverUnload, after every device (and so
    // every queue callback) is gone.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// DriverEntry. IRQL: PASSIVE_LEVEL.
#[unsafe(export_name = "DriverEntry")]
extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: core::mem::size_of::<WDF_DRIVER_CONFIG>() as ULONG,
        EvtDriverDeviceAdd: Some(device_add),
        EvtDriverUnload: Some(driver_unload),
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: documented WdfDriverCreate arguments.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            core::ptr::from_mut(driver),
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>()
        )
    };
    if status != STATUS_SUCCESS {
        return status;
    }
    // WskRegister here; the provider NPI is captured on the worker (WSK-FACTS §7).
    match Engine::load() {
        Ok(engine) => {
            ENGINE.store(engine.into_raw(), Ordering::Release);
            // SAFETY: the pump reads only statics; it is joined in EvtDriverUnload.
            match unsafe { SystemThread::spawn(pump, core::ptr::null_mut()) } {
                Ok(thread) => *PUMP.lock() = Some(thread),
                Err(status) => return status.0,
            }
            STATUS_SUCCESS
        }
        Err(status) => status.0,
    }
}

/// EvtDriverUnload: every device is gone; unload the engine (stops listeners, deregisters).
/// IRQL: PASSIVE_LEVEL.
unsafe extern "C" fn driver_unload(_driver: WDFDRIVER) {
    PUMP_STOP.store(true, Ordering::Release);
    let pump = PUMP.lock().take();
    if let Some(pump) = pump {
        pump.join();
    }
    let ptr = ENGINE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: the pointer came from `into_raw` in DriverEntry and is taken back once.
    if let Some(engine) = unsafe { PoolBox::from_raw(ptr, tags::DRIVER) } {
        Engine::unload(engine);
    }
}

/// EvtDeviceSelfManagedIoCleanup: the device is going away (disable/uninstall): stop every
/// listener, closing every connection, without waiting for any peer. IRQL: PASSIVE_LEVEL.
unsafe extern "C" fn device_cleanup(_device: WDFDEVICE) {
    // The framework cancels the requests parked in the manual queue with the device.
    PENDING_QUEUE.store(core::ptr::null_mut(), Ordering::Release);
    if let Some(engine) = engine() {
        engine.stop_all();
    }
}

/// EvtDriverDeviceAdd: the root-enumerated device, its interface and queue. IRQL: PASSIVE_LEVEL.
unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    let mut sddl = UNICODE_STRING {
        Length: (SDDL.len() * 2) as u16,
        MaximumLength: (SDDL.len() * 2) as u16,
        Buffer: SDDL.as_ptr().cast_mut(),
    };
    // SAFETY: documented arguments; the SDDL string is static.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceInitAssignSDDLString, init, &raw mut sddl)
    };
    if status != STATUS_SUCCESS {
        return status;
    }
    // SAFETY: documented arguments.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetCharacteristics,
            init,
            FILE_DEVICE_SECURE_OPEN,
            1
        )
    };
    // SAFETY: documented arguments.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetDeviceType,
            init,
            ioctl::FILE_DEVICE_WSKACCEPT
        )
    };
    let mut pnp = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: core::mem::size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>() as ULONG,
        EvtDeviceSelfManagedIoCleanup: Some(device_cleanup),
        ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
    };
    // SAFETY: documented arguments.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            init,
            &raw mut pnp
        )
    };
    let mut device: WDFDEVICE = WDF_NO_HANDLE.cast();
    // SAFETY: documented arguments.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut init,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut device
        )
    };
    if status != STATUS_SUCCESS {
        return status;
    }
    let g = ioctl::DEVICE_INTERFACE_GUID;
    let guid = wdk_sys::GUID {
        Data1: g.data1,
        Data2: g.data2,
        Data3: g.data3,
        Data4: g.data4,
    };
    // SAFETY: documented arguments; no reference string.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const guid,
            core::ptr::null()
        )
    };
    if status != STATUS_SUCCESS {
        return status;
    }
    let mut queue_config = WDF_IO_QUEUE_CONFIG {
        Size: core::mem::size_of::<WDF_IO_QUEUE_CONFIG>() as ULONG,
        PowerManaged: _WDF_TRI_STATE::WdfUseDefault,
        DefaultQueue: 1,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDeviceControl: Some(io_device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    let mut queue: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: documented arguments.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    if status != STATUS_SUCCESS {
        return status;
    }
    // The inverted call: GET_PENDING waits here until a connection is deferred to user mode.
    let mut manual = WDF_IO_QUEUE_CONFIG {
        Size: core::mem::size_of::<WDF_IO_QUEUE_CONFIG>() as ULONG,
        PowerManaged: _WDF_TRI_STATE::WdfUseDefault,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    let mut parked: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: documented arguments.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut manual,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut parked
        )
    };
    if status == STATUS_SUCCESS {
        PENDING_QUEUE.store(parked.cast(), Ordering::Release);
    }
    status
}

/// The request's buffers: a copy of the input (METHOD_BUFFERED shares one system buffer between
/// input and output) and the output. IRQL: <= DISPATCH_LEVEL.
unsafe fn buffers<'a>(
    request: WDFREQUEST,
    input_len: usize,
    output_len: usize,
) -> Result<(alloc::vec::Vec<u8>, &'a mut [u8]), NTSTATUS> {
    let mut input: *mut c_void = core::ptr::null_mut();
    let mut output: *mut c_void = core::ptr::null_mut();
    let mut length = 0usize;
    if input_len > 0 {
        // SAFETY: documented arguments.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                input_len,
                &raw mut input,
                &raw mut length
            )
        };
        if status != STATUS_SUCCESS {
            return Err(status);
        }
    }
    if output_len > 0 {
        // SAFETY: documented arguments.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                output_len,
                &raw mut output,
                &raw mut length
            )
        };
        if status != STATUS_SUCCESS {
            return Err(status);
        }
    }
    let input_copy = if input.is_null() {
        alloc::vec::Vec::new()
    } else {
        // SAFETY: WDF retrieved `input_len` readable bytes.
        unsafe { core::slice::from_raw_parts(input.cast::<u8>(), input_len) }.to_vec()
    };
    let output_slice: &mut [u8] = if output.is_null() {
        &mut []
    } else {
        // SAFETY: WDF retrieved `output_len` writable bytes, valid until the request completes.
        unsafe { core::slice::from_raw_parts_mut(output.cast::<u8>(), output_len) }
    };
    Ok((input_copy, output_slice))
}

fn complete(request: WDFREQUEST, status: NTSTATUS, information: usize) {
    // SAFETY: completing a request we own with the bytes written.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status,
            information as u64
        )
    };
}

/// GET_PENDING's answer now, if there is one: `None` means park the request.
fn try_pending(
    request: WDFREQUEST,
    input_len: usize,
    output_len: usize,
) -> Option<(NTSTATUS, usize)> {
    let Some(engine) = engine() else {
        return Some((wsk::NtStatus::CANCELLED.0, 0));
    };
    // SAFETY: a request delivered to us with these lengths.
    let (input, output) = match unsafe { buffers(request, input_len, output_len) } {
        Ok(buffers) => buffers,
        Err(status) => return Some((status, 0)),
    };
    match control::try_get_pending(engine, &input, output) {
        Ok(Some(written)) => Some((STATUS_SUCCESS, written)),
        Ok(None) => None,
        Err(status) => Some((status.0, 0)),
    }
}

/// EvtIoDeviceControl: METHOD_BUFFERED buffers to the portable dispatcher; GET_PENDING, the
/// inverted call, is parked in the manual queue when nothing is pending. Runs at PASSIVE_LEVEL
/// (a root-enumerated device's default queue, no synchronisation scope).
unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_len: usize,
    input_len: usize,
    code: ULONG,
) {
    if code == ioctl::IOCTL_GET_PENDING {
        match try_pending(request, input_len, output_len) {
            Some((status, written)) => complete(request, status, written),
            None => {
                let parked = PENDING_QUEUE.load(Ordering::Acquire).cast();
                // SAFETY: forwarding a request we own to our own manual queue; the framework
                // cancels it (STATUS_CANCELLED) if the application cancels or the device goes.
                let status = unsafe {
                    call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, request, parked)
                };
                if status != STATUS_SUCCESS {
                    complete(request, status, 0);
                }
            }
        }
        return;
    }
    // SAFETY: a request delivered to us with these lengths.
    let (input, output) = match unsafe { buffers(request, input_len, output_len) } {
        Ok(buffers) => buffers,
        Err(status) => return complete(request, status, 0),
    };
    let (status, information) = match engine() {
        Some(engine) => control::dispatch(engine, code, &input, output),
        None => (wsk::NtStatus::DEVICE_NOT_READY, 0),
    };
    complete(request, status.0, information);
}

/// The inverted-call pump: when the driver defers a connection to user mode, completes the parked
/// GET_PENDING requests that can now be answered (each parked request is looked at once per
/// wake-up, the others go back to the queue). IRQL: PASSIVE_LEVEL (system thread).
unsafe fn pump(_context: *mut c_void) {
    while !PUMP_STOP.load(Ordering::Acquire) {
        let Some(engine) = engine() else { return };
        let _ = engine.wait_pending_ready(core::time::Duration::from_millis(200));
        let queue: WDFQUEUE = PENDING_QUEUE.load(Ordering::Acquire).cast();
        if queue.is_null() {
            continue;
        }
        let mut parked: ULONG = 0;
        // SAFETY: documented arguments; only the count of queued requests is asked for.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueGetState,
                queue,
                &raw mut parked,
                core::ptr::null_mut()
            )
        };
        for _ in 0..parked {
            let mut request: WDFREQUEST = WDF_NO_HANDLE.cast();
            // SAFETY: documented arguments.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoQueueRetrieveNextRequest,
                    queue,
                    &raw mut request
                )
            };
            if status != STATUS_SUCCESS {
                break;
            }
            let mut params = wdk_sys::WDF_REQUEST_PARAMETERS {
                Size: core::mem::size_of::<wdk_sys::WDF_REQUEST_PARAMETERS>() as u16,
                ..Default::default()
            };
            // SAFETY: documented arguments.
            unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestGetParameters, request, &raw mut params)
            };
            // SAFETY: a device-control request: the DeviceIoControl member of the union applies.
            let (output_len, input_len) = unsafe {
                (
                    params.Parameters.DeviceIoControl.OutputBufferLength,
                    params.Parameters.DeviceIoControl.InputBufferLength,
                )
            };
            match try_pending(request, input_len as usize, output_len as usize) {
                Some((status, written)) => complete(request, status, written),
                None => {
                    // SAFETY: a request retrieved from this manual queue goes back to it.
                    let status =
                        unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, request) };
                    if status != STATUS_SUCCESS {
                        complete(request, status, 0);
                    }
                }
            }
        }
    }
}
