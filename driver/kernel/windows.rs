//! Windows backend: the facade's names over wdk-sys and netio.sys. No logic: each item maps onto
//! one or two kernel calls.
//!
//! WRITTEN, NOT BUILT: nobody has compiled this file on Windows yet (the project's machines run
//! Linux and wdk-sys cannot build there). Names and signatures follow wdk-sys 0.5 (bindgen over
//! the WDK headers, enums as module constants) and the WDK documentation; the IRP field path for
//! the current stack location follows bindgen's naming of wdm.h's anonymous unions.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use alloc::boxed::Box;
use wdk_sys::ntddk::{
    ExAllocatePool2, ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl, IoFreeIrp, IoFreeMdl,
    IoReuseIrp, KeAcquireSpinLockRaiseToDpc, KeClearEvent, KeInitializeEvent,
    KeQueryInterruptTimePrecise, KeReleaseSpinLock, KeSetEvent, KeWaitForSingleObject,
    MmBuildMdlForNonPagedPool, ObReferenceObjectByHandle, ObfDereferenceObject,
    PsCreateSystemThread, ZwClose,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _MODE, HANDLE, KEVENT, KIRQL, KSPIN_LOCK, LARGE_INTEGER,
    PIO_COMPLETION_ROUTINE, POOL_FLAG_NON_PAGED, PVOID, STATUS_SUCCESS, SYNCHRONIZE,
};
use wsk::{
    GUID, IRP, MDL, NtStatus, PfnIoCompletionRoutine, WSK_CLIENT_NPI, WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
};

/// An IRQL.
pub type Irql = u8;
/// PASSIVE_LEVEL.
pub const PASSIVE_LEVEL: Irql = 0;
/// DISPATCH_LEVEL.
pub const DISPATCH_LEVEL: Irql = 2;

// SL_INVOKE_ON_* (wdm.h).
const SL_INVOKE_ON_CANCEL: u8 = 0x20;
const SL_INVOKE_ON_SUCCESS: u8 = 0x40;
const SL_INVOKE_ON_ERROR: u8 = 0x80;

#[link(name = "netio")]
unsafe extern "system" {
    /// WskRegister (netio.sys). PASSIVE_LEVEL.
    pub fn WskRegister(
        client_npi: *const WSK_CLIENT_NPI,
        registration: *mut WSK_REGISTRATION,
    ) -> NtStatus;
    /// WskCaptureProviderNPI (netio.sys).
    pub fn WskCaptureProviderNPI(
        registration: *mut WSK_REGISTRATION,
        wait_timeout: u32,
        provider_npi: *mut WSK_PROVIDER_NPI,
    ) -> NtStatus;
    /// WskReleaseProviderNPI (netio.sys).
    pub fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION);
    /// WskDeregister (netio.sys). PASSIVE_LEVEL.
    pub fn WskDeregister(registration: *mut WSK_REGISTRATION);
    /// NPI_WSK_INTERFACE_ID (netio.lib).
    static NPI_WSK_INTERFACE_ID: GUID;
}

/// The address of netio's NPI_WSK_INTERFACE_ID.
#[must_use]
pub fn npi_wsk_interface_id() -> *const GUID {
    // SAFETY: taking the address of an extern static reads nothing.
    unsafe { &raw const NPI_WSK_INTERFACE_ID }
}

/// KeGetCurrentIrql: on x64 an inline read of CR8 (wdm.h), not an export.
#[must_use]
pub fn current_irql() -> Irql {
    let cr8: u64;
    // SAFETY: reading CR8 is allowed in kernel mode and has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags))
    };
    #[allow(clippy::cast_possible_truncation)]
    let irql = cr8 as Irql;
    irql
}

/// A KSPIN_LOCK protecting a `T`; acquiring raises to DISPATCH_LEVEL.
///
/// Invariant: `value` is reached only through a guard; the KSPIN_LOCK serialises guards.
pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the spin lock hands out the value to one holder at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// KeInitializeSpinLock (a zeroed KSPIN_LOCK).
    pub const fn new(value: T) -> Self {
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// KeAcquireSpinLockRaiseToDpc. IRQL: <= DISPATCH_LEVEL; returns at DISPATCH_LEVEL.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: a valid, initialised KSPIN_LOCK in nonpaged memory (the owner is in pool).
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinGuard {
            lock: self,
            old_irql,
        }
    }
}

/// A held spin lock.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    old_irql: KIRQL,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held by this guard.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held by this guard, uniquely borrowed.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: acquired by this guard with this old IRQL.
        unsafe { KeReleaseSpinLock(self.lock.lock.get(), self.old_irql) };
    }
}

/// A KEVENT in nonpaged pool (boxed: a KEVENT must not move after KeInitializeEvent).
pub struct Event(Box<UnsafeCell<KEVENT>>);

// SAFETY: KEVENTs are made to be signalled and waited on from any thread.
unsafe impl Sync for Event {}
// SAFETY: as above.
unsafe impl Send for Event {}

impl Event {
    fn with(kind: wdk_sys::EVENT_TYPE, signaled: bool) -> Result<Self, NtStatus> {
        // SAFETY: KEVENT is plain data; zeroed is a valid pre-initialisation state.
        let event = Box::new(UnsafeCell::new(unsafe { core::mem::zeroed::<KEVENT>() }));
        // SAFETY: the event is in its final (boxed, nonpaged) place.
        unsafe { KeInitializeEvent(event.get(), kind, u8::from(signaled)) };
        Ok(Self(event))
    }

    /// KeInitializeEvent(NotificationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// None today (allocation failure aborts through wdk-alloc).
    pub fn notification(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::NotificationEvent, signaled)
    }

    /// KeInitializeEvent(SynchronizationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// As above.
    pub fn synchronization(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::SynchronizationEvent, signaled)
    }

    /// KeSetEvent(Increment 0, Wait FALSE). IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        // SAFETY: an initialised event.
        unsafe { KeSetEvent(self.0.get(), 0, 0) };
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        // SAFETY: an initialised event.
        unsafe { KeClearEvent(self.0.get()) };
    }

    /// KeWaitForSingleObject(Executive, KernelMode, not alertable). IRQL: PASSIVE_LEVEL (or
    /// <= DISPATCH_LEVEL with a zero timeout). True when signalled.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        // Relative timeouts are negative, in 100 ns units.
        let mut relative = timeout.map(|t| LARGE_INTEGER {
            QuadPart: -i64::try_from(t.as_nanos() / 100).unwrap_or(i64::MAX),
        });
        let timeout_ptr = relative
            .as_mut()
            .map_or(core::ptr::null_mut(), core::ptr::from_mut);
        // SAFETY: an initialised event; KernelMode wait on nonpaged memory.
        let status = unsafe {
            KeWaitForSingleObject(
                self.0.get().cast(),
                _KWAIT_REASON::Executive,
                _MODE::KernelMode as i8,
                0,
                timeout_ptr,
            )
        };
        status == STATUS_SUCCESS
    }
}

struct ThreadStart {
    routine: unsafe fn(*mut c_void),
    context: *mut c_void,
}

unsafe extern "C" fn thread_trampoline(start: PVOID) {
    // SAFETY: `spawn` passes a leaked Box<ThreadStart>, taken back exactly once here.
    let start = unsafe { Box::from_raw(start.cast::<ThreadStart>()) };
    // SAFETY: the spawner guaranteed the context for the routine.
    unsafe { (start.routine)(start.context) };
}

/// A system thread, referenced so that it can be waited for.
pub struct SystemThread {
    object: PVOID,
}

// SAFETY: a referenced thread object may be waited on and dereferenced from any thread.
unsafe impl Send for SystemThread {}

impl SystemThread {
    /// PsCreateSystemThread + ObReferenceObjectByHandle. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `context` must stay valid until the routine returns.
    ///
    /// # Errors
    /// What PsCreateSystemThread or ObReferenceObjectByHandle return.
    pub unsafe fn spawn(
        routine: unsafe fn(*mut c_void),
        context: *mut c_void,
    ) -> Result<Self, NtStatus> {
        let start = Box::into_raw(Box::new(ThreadStart { routine, context }));
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: documented arguments; the trampoline takes the start block back.
        let status = unsafe {
            PsCreateSystemThread(
                &raw mut handle,
                SYNCHRONIZE,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                Some(thread_trampoline),
                start.cast(),
            )
        };
        if status != STATUS_SUCCESS {
            // SAFETY: the thread did not start, so the block is still ours.
            drop(unsafe { Box::from_raw(start) });
            return Err(NtStatus(status));
        }
        let mut object: PVOID = core::ptr::null_mut();
        // SAFETY: a valid thread handle; PsThreadType is the thread object type.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                *wdk_sys::PsThreadType,
                _MODE::KernelMode as i8,
                &raw mut object,
                core::ptr::null_mut(),
            )
        };
        // SAFETY: the handle is ours to close; the reference (if any) keeps the object.
        unsafe { ZwClose(handle) };
        if status == STATUS_SUCCESS {
            Ok(Self { object })
        } else {
            Err(NtStatus(status))
        }
    }

    /// Waits for the thread to end and drops the reference. IRQL: PASSIVE_LEVEL.
    pub fn join(self) {
        // SAFETY: a referenced thread object is a dispatcher object.
        unsafe {
            KeWaitForSingleObject(
                self.object,
                _KWAIT_REASON::Executive,
                _MODE::KernelMode as i8,
                0,
                core::ptr::null_mut(),
            )
        };
        // SAFETY: the reference taken in `spawn`.
        unsafe { ObfDereferenceObject(self.object) };
    }
}

/// IoAllocateIrp(stack_size, FALSE). IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn irp_allocate(stack_size: i8) -> *mut IRP {
    // SAFETY: documented arguments.
    unsafe { IoAllocateIrp(stack_size, 0) }.cast()
}

/// IoFreeIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// As the host backend's.
pub unsafe fn irp_free(irp: *mut IRP) {
    // SAFETY: the caller's guarantee.
    unsafe { IoFreeIrp(irp.cast()) }
}

/// IoReuseIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// As the host backend's.
pub unsafe fn irp_reuse(irp: *mut IRP, status: NtStatus) {
    // SAFETY: the caller's guarantee.
    unsafe { IoReuseIrp(irp.cast(), status.0) }
}

/// IoSetCompletionRoutine(irp, routine, context, TRUE, TRUE, TRUE), written out because it is an
/// inline function of wdm.h (WSK-FACTS §8): the next stack location is CurrentStackLocation - 1.
/// IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// As the host backend's; the IRP has at least one stack location (IoAllocateIrp(1, FALSE)).
pub unsafe fn irp_set_completion(
    irp: *mut IRP,
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
) {
    let irp = irp.cast::<wdk_sys::IRP>();
    // SAFETY: the IRP is live and not pending (caller); x64/ARM64 "C" and "system" are the same
    // ABI, NtStatus is repr(transparent) over i32, and the pointer types are the same objects.
    let routine: PIO_COMPLETION_ROUTINE = unsafe {
        core::mem::transmute::<Option<PfnIoCompletionRoutine>, PIO_COMPLETION_ROUTINE>(Some(
            routine,
        ))
    };
    // SAFETY: a fresh or reused IRP's CurrentStackLocation points one past its last location, so
    // the next location (the one the provider will use) is the one before it.
    let next = unsafe {
        (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
            .sub(1)
    };
    // SAFETY: `next` is inside the IRP's stack (stack size >= 1).
    unsafe { (*next).CompletionRoutine = routine };
    // SAFETY: as above.
    unsafe { (*next).Context = context };
    // SAFETY: as above.
    unsafe { (*next).Control = SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL };
}

/// Irp->IoStatus. IRQL: any.
///
/// # Safety
/// As the host backend's.
#[must_use]
pub unsafe fn irp_status(irp: *mut IRP) -> (NtStatus, usize) {
    let irp = irp.cast::<wdk_sys::IRP>();
    // SAFETY: a live, completed IRP.
    let status = unsafe { (*irp).IoStatus.__bindgen_anon_1.Status };
    // SAFETY: as above.
    let information = unsafe { (*irp).IoStatus.Information };
    (NtStatus(status), information as usize)
}

/// ExAllocatePool2(POOL_FLAG_NON_PAGED). IRQL: <= DISPATCH_LEVEL. ExAllocatePool2 returns
/// zeroed memory; alignment up to 16 is what pool gives (larger is refused).
#[must_use]
pub fn pool_allocate(tag: u32, size: usize, align: usize) -> *mut u8 {
    if align > 16 {
        return core::ptr::null_mut();
    }
    // SAFETY: documented arguments.
    unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size as u64, tag) }.cast()
}

/// ExFreePoolWithTag. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// As the host backend's.
pub unsafe fn pool_free(ptr: *mut u8, tag: u32) {
    // SAFETY: the caller's guarantee.
    unsafe { ExFreePoolWithTag(ptr.cast(), tag) }
}

/// IoAllocateMdl + MmBuildMdlForNonPagedPool. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn mdl_allocate(address: *mut u8, length: u32) -> *mut MDL {
    // SAFETY: documented arguments; no IRP association.
    let mdl = unsafe { IoAllocateMdl(address.cast(), length, 0, 0, core::ptr::null_mut()) };
    if !mdl.is_null() {
        // SAFETY: the buffer is nonpaged pool (all driver memory is).
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
    }
    mdl.cast()
}

/// IoFreeMdl.
///
/// # Safety
/// As the host backend's.
pub unsafe fn mdl_free(mdl: *mut MDL) {
    // SAFETY: the caller's guarantee.
    unsafe { IoFreeMdl(mdl.cast()) }
}

/// KeQueryInterruptTimePrecise, in 100 ns units. IRQL: any.
#[must_use]
pub fn interrupt_time() -> u64 {
    let mut qpc = 0u64;
    // SAFETY: writes the QPC timestamp to a local.
    unsafe { KeQueryInterruptTimePrecise(&raw mut qpc) }
}
