//! Windows only: DriverEntry, the root-enumerated KMDF device (admin-only SDDL,
//! FILE_DEVICE_SECURE_OPEN, a device interface), a parallel queue whose EvtIoDeviceControl hands
//! the buffers to the portable dispatcher (`control.rs`), and teardown that stops every listener
//! when the device goes away and unloads the engine with the driver.
//!
//! - [`wdf_init`]: the KMDF headers' WDF_*_INIT helpers, written out faithfully.
//! - [`requests`]: EvtIoDeviceControl and the request buffers.
//! - [`parked`]: GET_PENDING as an inverted call (a manual queue and the thread that answers it).
//!
//! Built by the Windows lane (type-check, clippy, link against a substitute WDK); not run on
//! Windows by the authors (README, Verification status).

mod parked;
mod requests;
mod wdf_init;

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, DRIVER_OBJECT, NTSTATUS,
    PCUNICODE_STRING, PWDFDEVICE_INIT, STATUS_SUCCESS, ULONG, UNICODE_STRING, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER, WDFQUEUE, call_unsafe_wdf_function_binding,
};
use wsk::NtStatus;

use crate::engine::Engine;
use crate::kernel::{PoolBox, tags};

#[cfg(not(test))]
extern crate wdk_panic;

/// The loaded engine, from DriverEntry to EvtDriverUnload.
///
/// # Invariants
/// Non-null only between the store at the end of DriverEntry and the swap in EvtDriverUnload;
/// the pointer came from `PoolBox::into_raw` and is taken back once.
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
/// The SDDL's length in bytes, as UNICODE_STRING counts it.
#[allow(clippy::cast_possible_truncation, reason = "27 UTF-16 units: 54 bytes")]
const SDDL_BYTES: u16 = (SDDL.len() * 2) as u16;

/// FILE_DEVICE_SECURE_OPEN (wdm.h).
const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;

/// The engine, while the driver is loaded. IRQL: any.
fn engine<'a>() -> Option<&'a Engine> {
    let ptr = ENGINE.load(Ordering::Acquire);
    // SAFETY: ENGINE's invariant: a non-null pointer is the live engine, freed only in
    // EvtDriverUnload, which KMDF calls after every device (and so every queue callback and the
    // GET_PENDING pump, joined in device cleanup) is gone.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Whether an NTSTATUS is a success or informational code (NT_SUCCESS).
const fn nt_success(status: NTSTATUS) -> bool {
    status >= 0
}

/// DriverEntry. IRQL: PASSIVE_LEVEL.
///
/// Loading the engine (WskRegister; the provider NPI is captured later, on the worker:
/// WSK-FACTS §7) is the last step that can fail, so a failure leaves nothing loaded: KMDF calls
/// no unload routine when DriverEntry fails.
#[unsafe(export_name = "DriverEntry")]
extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = wdf_init::driver_config(Some(device_add));
    config.EvtDriverUnload = Some(driver_unload);
    // SAFETY: WdfDriverCreate's documented contract in DriverEntry at PASSIVE_LEVEL: the driver
    // object and registry path the I/O manager passed, an initialised config, no attributes and
    // no handle wanted.
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
    if !nt_success(status) {
        return status;
    }
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
///
/// # Safety
/// Called by the framework once, as EvtDriverUnload, after every device is gone.
unsafe extern "C" fn driver_unload(_driver: WDFDRIVER) {
    let ptr = ENGINE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: ENGINE's invariant: the pointer came from `into_raw` in DriverEntry and is taken
    // back once, here; no device (so no user of `engine()`) is left.
    if let Some(engine) = unsafe { PoolBox::from_raw(ptr, tags::DRIVER) } {
        Engine::unload(engine);
    }
}

/// EvtDeviceSelfManagedIoInit: the device started; start the GET_PENDING pump.
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the framework as the device's EvtDeviceSelfManagedIoInit.
unsafe extern "C" fn device_io_init(_device: WDFDEVICE) -> NTSTATUS {
    match parked::start_pump() {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.0,
    }
}

/// EvtDeviceSelfManagedIoCleanup: the device is going away (disable/uninstall). Stop and join
/// the GET_PENDING pump before the framework deletes the queue it serves, then stop every
/// listener, closing every connection without waiting for any peer. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the framework as the device's EvtDeviceSelfManagedIoCleanup, once per device.
unsafe extern "C" fn device_cleanup(_device: WDFDEVICE) {
    parked::stop_pump();
    parked::set_queue(WDF_NO_HANDLE.cast());
    if let Some(engine) = engine() {
        engine.stop_all();
    }
    DEVICE_EXISTS.store(false, Ordering::Release);
}

/// Whether a device exists: the GET_PENDING queue and pump are per driver, so a second
/// `Root\WskAccept` devnode is refused rather than allowed to share them.
static DEVICE_EXISTS: AtomicBool = AtomicBool::new(false);

/// EvtDriverDeviceAdd: the root-enumerated device, its interface and queues. IRQL:
/// PASSIVE_LEVEL.
///
/// # Safety
/// Called by the framework as EvtDriverDeviceAdd: `init` is the framework's WDFDEVICE_INIT for
/// this device, valid until WdfDeviceCreate consumes it.
unsafe extern "C" fn device_add(_driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    if DEVICE_EXISTS.swap(true, Ordering::AcqRel) {
        return wdk_sys::STATUS_DEVICE_ALREADY_ATTACHED;
    }
    // SAFETY: KMDF passes a valid WDFDEVICE_INIT that stays ours until WdfDeviceCreate.
    match unsafe { create_device(init) } {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => {
            DEVICE_EXISTS.store(false, Ordering::Release);
            status.0
        }
    }
}

/// Fails with the status when it is not NT_SUCCESS.
fn check(status: NTSTATUS) -> Result<(), NtStatus> {
    if nt_success(status) {
        Ok(())
    } else {
        Err(NtStatus(status))
    }
}

/// The device, its interface, the default queue and the GET_PENDING manual queue.
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `init` is the WDFDEVICE_INIT KMDF passed to EvtDriverDeviceAdd.
unsafe fn create_device(mut init: PWDFDEVICE_INIT) -> Result<(), NtStatus> {
    let mut sddl = UNICODE_STRING {
        Length: SDDL_BYTES,
        MaximumLength: SDDL_BYTES,
        Buffer: SDDL.as_ptr().cast_mut(),
    };
    // SAFETY: a valid WDFDEVICE_INIT (the caller's guarantee) and a UNICODE_STRING over static
    // UTF-16 that KMDF only reads.
    check(unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceInitAssignSDDLString, init, &raw mut sddl)
    })?;
    // SAFETY: a valid WDFDEVICE_INIT; FILE_DEVICE_SECURE_OPEN ORed into the characteristics.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetCharacteristics,
            init,
            FILE_DEVICE_SECURE_OPEN,
            1
        );
    }
    // SAFETY: a valid WDFDEVICE_INIT and the project's device type.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetDeviceType,
            init,
            ioctl::FILE_DEVICE_WSKACCEPT
        );
    }
    let mut pnp = wdf_init::pnp_power_callbacks();
    pnp.EvtDeviceSelfManagedIoInit = Some(device_io_init);
    pnp.EvtDeviceSelfManagedIoCleanup = Some(device_cleanup);
    // SAFETY: a valid WDFDEVICE_INIT and an initialised callbacks struct KMDF copies.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            init,
            &raw mut pnp
        );
    }
    // Every request carries the small context the GET_PENDING pump keeps its deadline in.
    let mut request_attributes = parked::request_attributes();
    // SAFETY: a valid WDFDEVICE_INIT and initialised attributes naming a static context type.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetRequestAttributes,
            init,
            &raw mut request_attributes
        );
    }
    // The IOCTL handler waits (listener start and stop wait for the provider and the worker), so
    // the device's callbacks, and its queues' by inheritance, must run at PASSIVE_LEVEL.
    let mut device_attributes = wdf_init::object_attributes();
    device_attributes.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    let mut device: WDFDEVICE = WDF_NO_HANDLE.cast();
    // SAFETY: the WDFDEVICE_INIT (consumed here), initialised attributes, an out-handle local.
    check(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut init,
            &raw mut device_attributes,
            &raw mut device
        )
    })?;
    let g = ioctl::DEVICE_INTERFACE_GUID;
    let guid = wdk_sys::GUID {
        Data1: g.data1,
        Data2: g.data2,
        Data3: g.data3,
        Data4: g.data4,
    };
    // SAFETY: the device just created, the interface GUID (KMDF copies it), no reference string.
    check(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const guid,
            core::ptr::null()
        )
    })?;
    let mut queue_config = wdf_init::io_queue_config(
        _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        true,
    );
    queue_config.EvtIoDeviceControl = Some(requests::io_device_control);
    // A root-enumerated software device: its queues need no power management, and a
    // power-managed queue would hold IOCTLs (and parked GET_PENDING requests) across Dx.
    queue_config.PowerManaged = _WDF_TRI_STATE::WdfFalse;
    let mut queue: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: the device, an initialised config, default attributes, an out-handle local.
    check(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    })?;
    // The inverted call: GET_PENDING waits here until a connection is deferred to user mode.
    let mut manual =
        wdf_init::io_queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual, false);
    manual.PowerManaged = _WDF_TRI_STATE::WdfFalse;
    let mut parked_queue: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: the device, an initialised config, default attributes, an out-handle local.
    check(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut manual,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut parked_queue
        )
    })?;
    parked::set_queue(parked_queue);
    Ok(())
}
