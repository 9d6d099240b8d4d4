//! The WDF_*_INIT helpers of the KMDF headers, written out: they are `FORCEINLINE` C functions,
//! so wdk-sys binds none of them, and `..Default::default()` (all zeroes) is *not* what they do.
//! Each function says which header helper it mirrors, and the `const` assertions at the bottom
//! pin the fields whose zero value would be wrong (the Windows lane compiles them).
//!
//! The defect this prevents: a default parallel queue built from zeroes has
//! `Settings.Parallel.NumberOfPresentedRequests == 0`, which KMDF reads as "present no request
//! at a time": every IOCTL is queued and none is ever delivered. WDF_IO_QUEUE_CONFIG_INIT and
//! WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE (wdfio.h) set it to `(ULONG)-1`, meaning no limit.

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE,
    PFN_WDF_DRIVER_DEVICE_ADD, ULONG, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_IO_QUEUE_DISPATCH_TYPE, WDF_OBJECT_ATTRIBUTES, WDF_PNPPOWER_EVENT_CALLBACKS,
    WDF_REQUEST_PARAMETERS,
};

/// `WDF_STRUCTURE_SIZE(T)`: `sizeof(T)` as a ULONG.
pub use crate::kernel::size_of_ulong;

/// WDF_DRIVER_CONFIG_INIT (wdfdriver.h): zero, Size, EvtDriverDeviceAdd.
pub const fn driver_config(device_add: PFN_WDF_DRIVER_DEVICE_ADD) -> WDF_DRIVER_CONFIG {
    WDF_DRIVER_CONFIG {
        Size: size_of_ulong::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: device_add,
        EvtDriverUnload: None,
        DriverInitFlags: 0,
        DriverPoolTag: 0,
    }
}

/// WDF_OBJECT_ATTRIBUTES_INIT (wdfobject.h): zero, Size, ExecutionLevel and SynchronizationScope
/// InheritFromParent (their zero value is "Invalid").
pub const fn object_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: size_of_ulong::<WDF_OBJECT_ATTRIBUTES>(),
        EvtCleanupCallback: None,
        EvtDestroyCallback: None,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: core::ptr::null_mut(),
        ContextSizeOverride: 0,
        ContextTypeInfo: core::ptr::null(),
    }
}

/// The `RtlZeroMemory` every INIT helper starts with.
const fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` is implemented only for plain C structs of integers, raw pointers and
    // nullable function pointers, for which all-zero bytes is a valid value (NULL, None, 0).
    unsafe { core::mem::zeroed() }
}

/// Plain C structs for which all-zero bytes is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs (and unions) of integers, raw pointers and
/// `Option<fn>`: no references, no non-nullable function pointers, no enums with gaps.
unsafe trait Zeroable {}
// SAFETY: bindgen's WDF_PNPPOWER_EVENT_CALLBACKS is a ULONG and nullable callbacks.
unsafe impl Zeroable for WDF_PNPPOWER_EVENT_CALLBACKS {}
// SAFETY: bindgen's WDF_REQUEST_PARAMETERS is integers, an enum typed as c_int, and a union of
// integer and pointer members.
unsafe impl Zeroable for WDF_REQUEST_PARAMETERS {}
// SAFETY: bindgen's WDF_IO_QUEUE_CONFIG is integers, c_int-typed enums, nullable callbacks, a
// union of integers and a WDFDRIVER handle (a raw pointer).
unsafe impl Zeroable for WDF_IO_QUEUE_CONFIG {}

/// WDF_PNPPOWER_EVENT_CALLBACKS_INIT (wdfdevice.h): zero, Size.
pub const fn pnp_power_callbacks() -> WDF_PNPPOWER_EVENT_CALLBACKS {
    let mut callbacks: WDF_PNPPOWER_EVENT_CALLBACKS = zeroed();
    callbacks.Size = size_of_ulong::<WDF_PNPPOWER_EVENT_CALLBACKS>();
    callbacks
}

/// WDF_REQUEST_PARAMETERS_INIT (wdfrequest.h): zero, Size (a USHORT here; the struct is small).
pub const fn request_parameters() -> WDF_REQUEST_PARAMETERS {
    let mut parameters: WDF_REQUEST_PARAMETERS = zeroed();
    assert!(size_of::<WDF_REQUEST_PARAMETERS>() <= u16::MAX as usize);
    #[allow(
        clippy::cast_possible_truncation,
        reason = "bounded by the assertion above"
    )]
    let size = size_of::<WDF_REQUEST_PARAMETERS>() as u16;
    parameters.Size = size;
    parameters
}

/// WDF_IO_QUEUE_CONFIG_INIT (wdfio.h) and, with `default_queue`,
/// WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE: zero, Size, PowerManaged WdfUseDefault, DefaultQueue,
/// DispatchType, and for a parallel queue `Settings.Parallel.NumberOfPresentedRequests =
/// (ULONG)-1` (no limit on requests presented at once).
pub const fn io_queue_config(
    dispatch: WDF_IO_QUEUE_DISPATCH_TYPE,
    default_queue: bool,
) -> WDF_IO_QUEUE_CONFIG {
    let mut config: WDF_IO_QUEUE_CONFIG = zeroed();
    config.Size = size_of_ulong::<WDF_IO_QUEUE_CONFIG>();
    config.PowerManaged = _WDF_TRI_STATE::WdfUseDefault;
    config.DefaultQueue = default_queue as u8;
    config.DispatchType = dispatch;
    if dispatch == _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel {
        config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    }
    config
}

/// What a zero-filled struct would get wrong, checked when the lane compiles this file.
const _: () = {
    let attributes = object_attributes();
    assert!(attributes.ExecutionLevel == _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent);
    assert!(
        attributes.SynchronizationScope
            == _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent
    );
    assert!(attributes.Size as usize == size_of::<WDF_OBJECT_ATTRIBUTES>());
    assert!(driver_config(None).Size as usize == size_of::<WDF_DRIVER_CONFIG>());
    assert!(pnp_power_callbacks().Size as usize == size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>());
    assert!(request_parameters().Size as usize == size_of::<WDF_REQUEST_PARAMETERS>());

    let parallel = io_queue_config(
        _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        true,
    );
    assert!(parallel.DefaultQueue == 1);
    assert!(parallel.PowerManaged == _WDF_TRI_STATE::WdfUseDefault);
    // SAFETY: `Parallel` is the member io_queue_config wrote for a parallel queue.
    assert!(unsafe { parallel.Settings.Parallel.NumberOfPresentedRequests } == ULONG::MAX);
    let manual = io_queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual, false);
    assert!(manual.DefaultQueue == 0);
    assert!(manual.Size as usize == size_of::<WDF_IO_QUEUE_CONFIG>());
};
