//! Windows only: DriverEntry, the root-enumerated KMDF device (admin-only SDDL,
//! FILE_DEVICE_SECURE_OPEN, a device interface), a parallel queue whose EvtIoDeviceControl hands
//! the buffers to the portable dispatcher (`control.rs`), and teardown that stops every listener
//! when the device goes away and unloads the engine with the driver.
//!
//! WRITTEN, NOT BUILT: names follow wdk-sys 0.5 and the KMDF echo sample of
//! Windows-rust-driver-samples; nobody has compiled or run this on Windows yet.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING,
    PWDFDEVICE_INIT, STATUS_SUCCESS, ULONG, UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_PNPPOWER_EVENT_CALLBACKS, WDFDEVICE, WDFDRIVER,
    WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::control;
use crate::engine::Engine;
use crate::kernel::{PoolBox, tags};

#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(not(test))]
extern crate wdk_panic;

/// The loaded engine (DriverEntry to EvtDriverUnload).
static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(core::ptr::null_mut());

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
            STATUS_SUCCESS
        }
        Err(status) => status.0,
    }
}

/// EvtDriverUnload: every device is gone; unload the engine (stops listeners, deregisters).
/// IRQL: PASSIVE_LEVEL.
unsafe extern "C" fn driver_unload(_driver: WDFDRIVER) {
    let ptr = ENGINE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: the pointer came from `into_raw` in DriverEntry and is taken back once.
    if let Some(engine) = unsafe { PoolBox::from_raw(ptr, tags::DRIVER) } {
        Engine::unload(engine);
    }
}

/// EvtDeviceSelfManagedIoCleanup: the device is going away (disable/uninstall): stop every
/// listener, closing every connection, without waiting for any peer. IRQL: PASSIVE_LEVEL.
unsafe extern "C" fn device_cleanup(_device: WDFDEVICE) {
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
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    }
}

/// EvtIoDeviceControl: METHOD_BUFFERED buffers to the portable dispatcher. The queue's callbacks
/// run at PASSIVE_LEVEL (a root-enumerated device's default queue, no synchronisation scope).
unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_len: usize,
    input_len: usize,
    code: ULONG,
) {
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
            // SAFETY: completing the request we own.
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
            return;
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
            // SAFETY: completing the request we own.
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
            return;
        }
    }
    // METHOD_BUFFERED: input and output share one system buffer. Copy the input out first so the
    // dispatcher may write the output freely.
    let input_copy: alloc::vec::Vec<u8> = if input.is_null() {
        alloc::vec::Vec::new()
    } else {
        // SAFETY: WDF retrieved `input_len` readable bytes.
        unsafe { core::slice::from_raw_parts(input.cast::<u8>(), input_len) }.to_vec()
    };
    let output_slice: &mut [u8] = if output.is_null() {
        &mut []
    } else {
        // SAFETY: WDF retrieved `output_len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(output.cast::<u8>(), output_len) }
    };
    let (status, information) = match engine() {
        Some(engine) => control::dispatch(engine, code, &input_copy, output_slice),
        None => (wsk::NtStatus::DEVICE_NOT_READY, 0),
    };
    // SAFETY: completing the request we own with the bytes written.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status.0,
            information as u64
        )
    };
}
