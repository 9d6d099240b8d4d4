//! TEST-ONLY (feature `wine-test`): a WDM entry for the Wine lane, in place of the KMDF one,
//! because Wine has no KMDF. Never shipped; the INF and `cargo make` build the KMDF driver.
//!
//! DriverEntry creates `\Device\WskAcceptTest` with the symbolic link `\DosDevices\WskAcceptTest`
//! (user mode: `\\.\WskAcceptTest`) and sends IRP_MJ_DEVICE_CONTROL to the same portable
//! dispatcher (`control.rs`) the KMDF queue uses, with the same bounded input copy. GET_PENDING
//! waits inside the dispatcher (up to its `timeout_ms`), as on the host: there is no inverted
//! call on this build. The engine, the WSK calls and the kernel facade are the shipped ones.
//! IRQL: Wine runs everything at PASSIVE_LEVEL.

use core::sync::atomic::{AtomicPtr, Ordering};

use wdk_sys::ntddk::{
    DbgPrint, IoCreateDevice, IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
    IofCompleteRequest,
};
use wdk_sys::{
    DEVICE_OBJECT, DRIVER_OBJECT, IRP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
    NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT, STATUS_SUCCESS, UNICODE_STRING,
};
use wsk::NtStatus;

use crate::control;
use crate::engine::Engine;
use crate::kernel::{PoolBox, PoolSlice, outstanding, tags};

#[cfg(not(test))]
extern crate wdk_panic;

/// The loaded engine, from DriverEntry to DriverUnload.
///
/// # Invariants
/// Non-null only between DriverEntry's store and DriverUnload's swap; from `PoolBox::into_raw`.
static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(core::ptr::null_mut());
/// The test device, deleted in DriverUnload.
static DEVICE: AtomicPtr<DEVICE_OBJECT> = AtomicPtr::new(core::ptr::null_mut());

/// UTF-16 of an ASCII string, at compile time.
const fn utf16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    let mut wide = [0u16; N];
    let mut i = 0;
    while i < N {
        wide[i] = ascii[i] as u16;
        i += 1;
    }
    wide
}

static DEVICE_NAME: [u16; 21] = utf16(b"\\Device\\WskAcceptTest");
static LINK_NAME: [u16; 25] = utf16(b"\\DosDevices\\WskAcceptTest");

/// A UNICODE_STRING over static UTF-16 (a few dozen units).
fn unicode(text: &'static [u16]) -> UNICODE_STRING {
    let bytes = u16::try_from(text.len() * 2).unwrap_or(u16::MAX);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: text.as_ptr().cast_mut(),
    }
}

/// DriverEntry of the Wine test build. IRQL: PASSIVE_LEVEL.
#[unsafe(export_name = "DriverEntry")]
extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    driver.DriverUnload = Some(driver_unload);
    driver.MajorFunction[IRP_MJ_CREATE as usize] = Some(create_close);
    driver.MajorFunction[IRP_MJ_CLOSE as usize] = Some(create_close);
    driver.MajorFunction[IRP_MJ_DEVICE_CONTROL as usize] = Some(device_control);
    let mut name = unicode(&DEVICE_NAME);
    let mut device: PDEVICE_OBJECT = core::ptr::null_mut();
    // SAFETY: IoCreateDevice's documented contract in DriverEntry: our driver object, a valid
    // name, the project's device type, an out-pointer to a local.
    let status = unsafe {
        IoCreateDevice(
            driver,
            0,
            &raw mut name,
            ioctl::FILE_DEVICE_WSKACCEPT,
            0,
            0,
            &raw mut device,
        )
    };
    if !NtStatus(status).is_success() {
        return status;
    }
    let mut link = unicode(&LINK_NAME);
    // SAFETY: two valid UNICODE_STRINGs; the device exists.
    let status = unsafe { IoCreateSymbolicLink(&raw mut link, &raw mut name) };
    if !NtStatus(status).is_success() {
        // SAFETY: the device just created, deleted once.
        unsafe { IoDeleteDevice(device) };
        return status;
    }
    match Engine::load() {
        Ok(engine) => {
            ENGINE.store(engine.into_raw(), Ordering::Release);
            DEVICE.store(device, Ordering::Release);
            // SAFETY: DbgPrint with a NUL-terminated format and no arguments.
            unsafe { DbgPrint(c"wskaccept-test: loaded\n".as_ptr()) };
            STATUS_SUCCESS
        }
        Err(status) => {
            delete_device(device);
            status.0
        }
    }
}

/// Deletes the symbolic link and the device. IRQL: PASSIVE_LEVEL.
fn delete_device(device: PDEVICE_OBJECT) {
    let mut link = unicode(&LINK_NAME);
    // SAFETY: the link DriverEntry created; a failure leaves nothing to undo.
    let _deleted = unsafe { IoDeleteSymbolicLink(&raw mut link) };
    // SAFETY: the device DriverEntry created, deleted once.
    unsafe { IoDeleteDevice(device) };
}

/// DriverUnload: unload the engine (stops listeners, deregisters), then delete the device.
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager once, as DriverUnload.
unsafe extern "C" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    let ptr = ENGINE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: ENGINE's invariant: from `into_raw`, taken back once here.
    if let Some(engine) = unsafe { PoolBox::from_raw(ptr, tags::DRIVER) } {
        Engine::unload(engine);
    }
    let device = DEVICE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !device.is_null() {
        delete_device(device);
    }
    let load = |counter: &core::sync::atomic::AtomicIsize| {
        i32::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i32::MAX)
    };
    // SAFETY: DbgPrint with a NUL-terminated format whose three %d match three i32 arguments.
    unsafe {
        DbgPrint(
            c"wskaccept-test: unload: outstanding pool %d irps %d mdls %d\n".as_ptr(),
            load(&outstanding::POOL),
            load(&outstanding::IRPS),
            load(&outstanding::MDLS),
        );
    }
}

/// Completes an IRP with a status and a byte count. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` is an IRP dispatched to this driver and not yet completed.
unsafe fn complete(irp: *mut IRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller's guarantee: a live IRP this driver owns until it completes it here.
    let io_status = unsafe { &mut (*irp).IoStatus };
    io_status.__bindgen_anon_1.Status = status;
    io_status.Information = information as u64;
    // SAFETY: the IRP is ours and is completed once, here, with its IoStatus set.
    unsafe { IofCompleteRequest(irp, 0) };
    status
}

/// IRP_MJ_CREATE and IRP_MJ_CLOSE: always succeed. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager as a dispatch routine: `irp` is a live IRP this driver must complete.
unsafe extern "C" fn create_close(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager dispatched this IRP to us and we have not completed it.
    unsafe { complete(irp, STATUS_SUCCESS, 0) }
}

/// IRP_MJ_DEVICE_CONTROL: METHOD_BUFFERED buffers to the portable dispatcher. IRQL:
/// PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager as a dispatch routine: `irp` is a live METHOD_BUFFERED IRP this driver
/// must complete.
unsafe extern "C" fn device_control(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager dispatched this IRP to us; it is valid until we complete it.
    let irp_ref = unsafe { &*irp };
    // SAFETY: Overlay is the member of the Tail union a dispatched IRP uses.
    let overlay = unsafe { &irp_ref.Tail.Overlay };
    // SAFETY: the anonymous member holding CurrentStackLocation is the one in use (the other
    // overlays a packet type).
    let stack = unsafe {
        overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    };
    // SAFETY: a dispatched IRP's current stack location is valid until completion.
    let parameters = unsafe { &(*stack).Parameters };
    // SAFETY: IRP_MJ_DEVICE_CONTROL: DeviceIoControl is the member of Parameters in use.
    let io = unsafe { &parameters.DeviceIoControl };
    let (code, input_len, output_len) = (
        io.IoControlCode,
        io.InputBufferLength as usize,
        io.OutputBufferLength as usize,
    );
    // SAFETY: METHOD_BUFFERED: the AssociatedIrp union holds the SystemBuffer.
    let buffer = unsafe { irp_ref.AssociatedIrp.SystemBuffer }.cast::<u8>();
    // SAFETY: METHOD_BUFFERED: `buffer` is the dispatched IRP's SystemBuffer, sized for both
    // lengths, and the IRP completes only after this call.
    let (status, information) = unsafe { dispatch(code, buffer, input_len, output_len) };
    // SAFETY: the IRP dispatched to us, not yet completed.
    unsafe { complete(irp, status.0, information) }
}

/// The dispatcher over a METHOD_BUFFERED system buffer: the input is copied (bounded, fallible)
/// before the output is written over it. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `buffer` is NULL or the SystemBuffer of a METHOD_BUFFERED IRP being dispatched: valid for
/// reads of `input_len` bytes and writes of `output_len` bytes until the IRP completes (after
/// this call).
unsafe fn dispatch(
    code: u32,
    buffer: *mut u8,
    input_len: usize,
    output_len: usize,
) -> (NtStatus, usize) {
    if code & 3 != 0 {
        // Not METHOD_BUFFERED: the system buffer is not the output buffer. Every code of the
        // contract is METHOD_BUFFERED (crates/ioctl).
        return (NtStatus::INVALID_DEVICE_REQUEST, 0);
    }
    if input_len > ioctl::MAX_INPUT {
        return (NtStatus::INVALID_PARAMETER, 0);
    }
    let input = if buffer.is_null() || input_len == 0 {
        PoolSlice::try_new(tags::CALL, 0, |_| Ok(0u8))
    } else {
        // SAFETY: METHOD_BUFFERED: the system buffer holds `input_len` input bytes, valid until
        // the IRP completes (after this function).
        let source = unsafe { core::slice::from_raw_parts(buffer, input_len) };
        PoolSlice::try_new(tags::CALL, input_len, |i| Ok(source[i]))
    };
    let Ok(input) = input else {
        return (NtStatus::INSUFFICIENT_RESOURCES, 0);
    };
    let output: &mut [u8] = if buffer.is_null() || output_len == 0 {
        &mut []
    } else {
        // SAFETY: METHOD_BUFFERED: the system buffer has room for `output_len` bytes; the input
        // was copied out above, so this is the only live view of it.
        unsafe { core::slice::from_raw_parts_mut(buffer, output_len) }
    };
    let engine = ENGINE.load(Ordering::Acquire);
    if engine.is_null() {
        return (NtStatus::DEVICE_NOT_READY, 0);
    }
    // SAFETY: ENGINE's invariant: live until DriverUnload, which runs after every IRP.
    control::dispatch(unsafe { &*engine }, code, &input, output)
}
