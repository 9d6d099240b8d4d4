//! IRPs, pool, MDLs and the interrupt time: the allocations the driver makes and the clock.

use core::ffi::c_void;

use wdk_sys::PIO_COMPLETION_ROUTINE;
use wdk_sys::ntddk::{
    ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl, IoFreeIrp, IoFreeMdl, IoReuseIrp,
    MmBuildMdlForNonPagedPool,
};
use wsk::{IRP, MDL, NtStatus, PfnIoCompletionRoutine};

#[cfg(not(feature = "wine-test"))]
use super::POOL_FLAG_NON_PAGED;
use super::{Counted, SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_ERROR, SL_INVOKE_ON_SUCCESS, count};

/// IoAllocateIrp(stack_size, FALSE); NULL on failure. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn irp_allocate(stack_size: i8) -> *mut IRP {
    // SAFETY: IoAllocateIrp takes any stack size and ChargeQuota FALSE at <= DISPATCH_LEVEL.
    let irp: *mut IRP = unsafe { IoAllocateIrp(stack_size, 0) }.cast();
    if !irp.is_null() {
        count(Counted::Irp, true);
    }
    irp
}

/// IoFreeIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` came from [`irp_allocate`], is not pending and is freed once.
pub unsafe fn irp_free(irp: *mut IRP) {
    count(Counted::Irp, false);
    // SAFETY: the caller's guarantee is IoFreeIrp's precondition.
    unsafe { IoFreeIrp(irp.cast()) }
}

/// IoReuseIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` came from [`irp_allocate`] and is not pending.
pub unsafe fn irp_reuse(irp: *mut IRP, status: NtStatus) {
    // SAFETY: the caller's guarantee is IoReuseIrp's precondition.
    unsafe { IoReuseIrp(irp.cast(), status.0) }
}

/// IoSetCompletionRoutine(irp, routine, context, TRUE, TRUE, TRUE), written out because it is an
/// inline function of wdm.h (WSK-FACTS §8): the next stack location is CurrentStackLocation - 1.
/// IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` came from [`irp_allocate`] with at least one stack location, is fresh or reused, and is
/// not pending; `context` stays valid for `routine` until it runs.
pub unsafe fn irp_set_completion(
    irp: *mut IRP,
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
) {
    let irp = irp.cast::<wdk_sys::IRP>();
    // SAFETY: both types are one nullable function pointer with the x64 Windows ABI ("C" and
    // "system" are the same there); the parameters are the same objects under other names
    // (wsk::IRP/DEVICE_OBJECT are opaque stand-ins) and NtStatus is repr(transparent) over i32.
    let routine: PIO_COMPLETION_ROUTINE = unsafe {
        core::mem::transmute::<Option<PfnIoCompletionRoutine>, PIO_COMPLETION_ROUTINE>(Some(
            routine,
        ))
    };
    // SAFETY: the caller's guarantee: a live IRP that nothing else uses while it is not pending.
    let tail = unsafe { &(*irp).Tail };
    // SAFETY: Overlay is the member of the Tail union in use for a driver-allocated IRP that has
    // not been queued (Apc and CompletionKey overlay it only for other packet kinds).
    let overlay = unsafe { &tail.Overlay };
    // SAFETY: the anonymous union member holding CurrentStackLocation is the one a driver-
    // allocated IRP uses (the other overlays a packet type no IRP of ours has).
    let current = unsafe {
        overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    };
    // SAFETY: a fresh or reused IRP's CurrentStackLocation is one past its last location, so the
    // location before it (the one the provider will use) is inside the IRP (stack size >= 1).
    let next = unsafe { current.sub(1) };
    // SAFETY: `next` is a valid IO_STACK_LOCATION of this IRP, which the caller does not share
    // while it is not pending, so this is the only reference to it.
    let next = unsafe { &mut *next };
    next.CompletionRoutine = routine;
    next.Context = context;
    next.Control = SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL;
}

/// Irp->IoStatus. IRQL: any.
///
/// # Safety
/// `irp` is a live IRP that has completed (its IoStatus is final).
#[must_use]
pub unsafe fn irp_status(irp: *mut IRP) -> (NtStatus, usize) {
    let irp = irp.cast::<wdk_sys::IRP>();
    // SAFETY: the caller's guarantee: a live, completed IRP; Status is the member of IoStatus's
    // union that completion writes.
    let io_status = unsafe { &(*irp).IoStatus };
    // SAFETY: Status is the member of IoStatus's union that IRP completion writes.
    let status = unsafe { io_status.__bindgen_anon_1.Status };
    let information = io_status.Information;
    // ULONG_PTR is pointer-sized: the conversion is exact on every Windows target.
    let information = usize::try_from(information).unwrap_or(usize::MAX);
    (NtStatus(status), information)
}

/// ExAllocatePool2(POOL_FLAG_NON_PAGED): zeroed, nonpaged, NULL on failure. Pool alignment is 16
/// bytes on x64; a larger alignment is refused (NULL). IRQL: <= DISPATCH_LEVEL.
///
/// ExAllocatePool2 needs Windows 10 version 2004 (build 19041); the INF's floor says so.
#[cfg(not(feature = "wine-test"))]
#[must_use]
pub fn pool_allocate(tag: u32, size: usize, align: usize) -> *mut u8 {
    if align > 16 {
        return core::ptr::null_mut();
    }
    // SAFETY: ExAllocatePool2 with a nonpaged flag is callable at <= DISPATCH_LEVEL with any
    // size and tag, and returns NULL on failure (no POOL_FLAG_RAISE_ON_FAILURE).
    unsafe { wdk_sys::ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, size as u64, tag) }.cast()
}

/// Wine test build: ExAllocatePoolWithTag(NonPagedPoolNx) and zeroing, because Wine's
/// ntoskrnl does not export ExAllocatePool2 (calling it crashes). IRQL: <= DISPATCH_LEVEL.
#[cfg(feature = "wine-test")]
#[must_use]
pub fn pool_allocate(tag: u32, size: usize, align: usize) -> *mut u8 {
    if align > 16 {
        return core::ptr::null_mut();
    }
    // SAFETY: ExAllocatePoolWithTag with a nonpaged pool type at <= DISPATCH_LEVEL; NULL on
    // failure.
    let block: *mut u8 =
        unsafe { wine::ExAllocatePoolWithTag(wdk_sys::_POOL_TYPE::NonPagedPoolNx, size, tag) }
            .cast();
    if !block.is_null() {
        count(Counted::Pool, true);
        // SAFETY: a fresh block of `size` bytes; ExAllocatePool2 returns zeroed memory, so the
        // callers rely on zeroes.
        unsafe { block.write_bytes(0, size) };
    }
    block
}

/// ExFreePoolWithTag. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `ptr` came from [`pool_allocate`] with the same `tag` and is freed once.
pub unsafe fn pool_free(ptr: *mut u8, tag: u32) {
    count(Counted::Pool, false);
    // SAFETY: the caller's guarantee is ExFreePoolWithTag's precondition.
    unsafe { ExFreePoolWithTag(ptr.cast(), tag) }
}

/// IoAllocateMdl + MmBuildMdlForNonPagedPool; NULL on failure. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `address..address + length` is nonpaged pool that outlives the MDL.
#[must_use]
pub unsafe fn mdl_allocate(address: *mut u8, length: u32) -> *mut MDL {
    // SAFETY: IoAllocateMdl at <= DISPATCH_LEVEL, not secondary, no quota, no IRP.
    let mdl = unsafe { IoAllocateMdl(address.cast(), length, 0, 0, core::ptr::null_mut()) };
    if !mdl.is_null() {
        count(Counted::Mdl, true);
        // SAFETY: the caller's guarantee: the MDL describes nonpaged pool, which is what
        // MmBuildMdlForNonPagedPool requires.
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
    }
    mdl.cast()
}

/// IoFreeMdl. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `mdl` came from [`mdl_allocate`], no IRP uses it any more, and it is freed once.
pub unsafe fn mdl_free(mdl: *mut MDL) {
    count(Counted::Mdl, false);
    // SAFETY: the caller's guarantee is IoFreeMdl's precondition.
    unsafe { IoFreeMdl(mdl.cast()) }
}

/// KeQueryInterruptTimePrecise, in 100 ns units. IRQL: any.
#[cfg(not(feature = "wine-test"))]
#[must_use]
pub fn interrupt_time() -> u64 {
    let mut qpc = 0u64;
    // SAFETY: KeQueryInterruptTimePrecise writes the QPC timestamp to a valid local.
    unsafe { wdk_sys::ntddk::KeQueryInterruptTimePrecise(&raw mut qpc) }
}

/// Wine test build: KeQueryInterruptTime, in 100 ns units, because Wine's ntoskrnl does not export
/// KeQueryInterruptTimePrecise (calling it crashes). IRQL: any.
#[cfg(feature = "wine-test")]
#[must_use]
pub fn interrupt_time() -> u64 {
    // SAFETY: KeQueryInterruptTime takes nothing and reads the interrupt time.
    unsafe { wine::KeQueryInterruptTime() }
}

/// Wine test build: the two documented DDIs it uses instead of ExAllocatePool2 and
/// KeQueryInterruptTimePrecise. The mingw headers declare neither for x64 (KeQueryInterruptTime
/// is an inline there), so wdk-sys binds neither.
#[cfg(feature = "wine-test")]
mod wine {
    #[link(name = "ntoskrnl")]
    unsafe extern "system" {
        /// ExAllocatePoolWithTag (wdm.h). <= DISPATCH_LEVEL for nonpaged pool.
        pub fn ExAllocatePoolWithTag(
            pool_type: wdk_sys::POOL_TYPE,
            size: usize,
            tag: u32,
        ) -> *mut core::ffi::c_void;
        /// KeQueryInterruptTime (wdm.h). Any IRQL.
        pub fn KeQueryInterruptTime() -> u64;
    }
}
