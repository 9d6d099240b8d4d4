//! Windows backend: the facade's names over wdk-sys and netio.sys. No logic: each item maps onto
//! one or two kernel calls.
//!
//! Built by the Windows lane (`scripts/windows-lane/run.sh`): type-checked, linted and linked for
//! x86_64-pc-windows-msvc against a substitute WDK (mingw-w64 kernel headers + KMDF 1.33 public
//! headers). Not run on Windows by the authors (README, Verification status). x86_64 only:
//! [`current_irql`] reads CR8, which is how wdm.h's inline KeGetCurrentIrql works on x64.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the Windows backend supports x86_64 only: KeGetCurrentIrql is read from CR8");

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::time::Duration;

use wdk_sys::ntddk::{
    ExFreePoolWithTag, IoAllocateIrp, IoAllocateMdl, IoFreeIrp, IoFreeMdl, IoReuseIrp,
    KeAcquireSpinLockRaiseToDpc, KeClearEvent, KeInitializeEvent, KeReleaseSpinLock, KeSetEvent,
    KeWaitForSingleObject, MmBuildMdlForNonPagedPool, PsCreateSystemThread, ZwClose,
    ZwWaitForSingleObject,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _MODE, HANDLE, KEVENT, KIRQL, KSPIN_LOCK, LARGE_INTEGER,
    OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES, PIO_COMPLETION_ROUTINE, PVOID, STATUS_SUCCESS,
    SYNCHRONIZE,
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

/// KernelMode as the KPROCESSOR_MODE (a CCHAR) the wait and reference calls take: wdm.h's MODE
/// enum is an int in bindgen's output, and its KernelMode is 0.
const KERNEL_MODE: i8 = 0;
const _: () = assert!(_MODE::KernelMode == 0);

/// ExAllocatePool2's POOL_FLAG_NON_PAGED (wdm.h; wdk-sys defines the POOL_FLAG_* values itself).
#[cfg(not(feature = "wine-test"))]
const POOL_FLAG_NON_PAGED: wdk_sys::POOL_FLAGS = 0x0000_0000_0000_0040;
/// Pool tag of the backend's own small blocks (KEVENTs, thread start blocks): "WskK".
const BACKEND_TAG: u32 = u32::from_le_bytes(*b"WskK");

// SL_INVOKE_ON_* (wdm.h).
const SL_INVOKE_ON_CANCEL: u8 = 0x20;
const SL_INVOKE_ON_SUCCESS: u8 = 0x40;
const SL_INVOKE_ON_ERROR: u8 = 0x80;

#[link(name = "cng")]
unsafe extern "system" {
    /// BCryptGenRandom (bcrypt.h; kernel mode: cng.sys, linked through cng.lib). With a NULL
    /// algorithm and BCRYPT_USE_SYSTEM_PREFERRED_RNG: PASSIVE_LEVEL.
    fn BCryptGenRandom(
        algorithm: *mut c_void,
        buffer: *mut u8,
        length: u32,
        flags: u32,
    ) -> NtStatus;
}

/// BCRYPT_USE_SYSTEM_PREFERRED_RNG (bcrypt.h).
const BCRYPT_USE_SYSTEM_PREFERRED_RNG: u32 = 0x0000_0002;

/// Random bytes from the system-preferred generator (BCryptGenRandom with a NULL algorithm and
/// BCRYPT_USE_SYSTEM_PREFERRED_RNG). IRQL: PASSIVE_LEVEL.
///
/// # Errors
/// What BCryptGenRandom returns; STATUS_INVALID_PARAMETER for a buffer of 4 GiB or more.
pub fn random_bytes(buffer: &mut [u8]) -> Result<(), NtStatus> {
    let length = u32::try_from(buffer.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    // SAFETY: `buffer` is a valid writable region of `length` bytes; a NULL algorithm handle
    // with BCRYPT_USE_SYSTEM_PREFERRED_RNG is the documented kernel-mode use at PASSIVE_LEVEL.
    let status = unsafe {
        BCryptGenRandom(
            core::ptr::null_mut(),
            buffer.as_mut_ptr(),
            length,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(status)
    }
}

#[link(name = "netio")]
unsafe extern "system" {
    /// WskRegister (netio.sys). PASSIVE_LEVEL.
    pub fn WskRegister(
        client_npi: *const WSK_CLIENT_NPI,
        registration: *mut WSK_REGISTRATION,
    ) -> NtStatus;
    /// WskCaptureProviderNPI (netio.sys). PASSIVE_LEVEL, or <= DISPATCH_LEVEL with
    /// WSK_NO_WAIT.
    pub fn WskCaptureProviderNPI(
        registration: *mut WSK_REGISTRATION,
        wait_timeout: u32,
        provider_npi: *mut WSK_PROVIDER_NPI,
    ) -> NtStatus;
    /// WskReleaseProviderNPI (netio.sys). <= DISPATCH_LEVEL.
    pub fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION);
    /// WskDeregister (netio.sys). PASSIVE_LEVEL.
    pub fn WskDeregister(registration: *mut WSK_REGISTRATION);
}

/// The address of NPI_WSK_INTERFACE_ID. IRQL: any.
///
/// The driver's own copy of the constant (wsk.h's value, `wsk::NPI_WSK_INTERFACE_ID`), as the
/// real netio.lib provides it too: as a static object linked into each client (disassembly of
/// WDK-built WSK drivers shows it in-image), not as a netio.sys export. Each client having its own
/// copy, providers compare NPI ids by value.
#[must_use]
pub fn npi_wsk_interface_id() -> *const GUID {
    &raw const wsk::NPI_WSK_INTERFACE_ID
}

/// KeGetCurrentIrql: on x64 an inline read of CR8 (wdm.h), not an export. IRQL: any.
#[must_use]
pub fn current_irql() -> Irql {
    let cr8: u64;
    // SAFETY: reading CR8 is allowed at CPL 0 (the driver runs in kernel mode), touches no
    // memory and changes no state; it is exactly what wdm.h's KeGetCurrentIrql does on x64.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags));
    }
    // CR8 holds the IRQL in its low 4 bits (the TPR); the rest reads as zero.
    (cr8 & 0xF) as Irql
}

/// A KSPIN_LOCK protecting a `T`; acquiring raises to DISPATCH_LEVEL.
///
/// # Invariants
/// `value` is reached only through a [`SpinGuard`], and the KSPIN_LOCK admits one guard at a
/// time. The lock lives wherever its owner lives: every owner in this driver is in nonpaged pool
/// or a static, as a spin lock must be.
pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: by the type's invariant one holder at a time reaches the value, so sharing the lock
// shares `T` only as moving it between threads would (`T: Send`).
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: a KSPIN_LOCK is a plain word with no thread affinity; moving the lock moves `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// KeInitializeSpinLock (a zeroed KSPIN_LOCK). IRQL: any.
    pub const fn new(value: T) -> Self {
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// KeAcquireSpinLockRaiseToDpc. IRQL: <= DISPATCH_LEVEL; the guard holds DISPATCH_LEVEL.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: `self.lock` is an initialised KSPIN_LOCK (zero, KeInitializeSpinLock's value)
        // in nonpaged memory (the type's invariant); the caller is at <= DISPATCH_LEVEL.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinGuard {
            lock: self,
            old_irql,
        }
    }
}

/// A held spin lock.
///
/// # Invariants
/// The guard's KSPIN_LOCK is held, acquired by this guard at `old_irql`.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    old_irql: KIRQL,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock (its invariant), so no other reference to the value
        // exists outside this guard.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock (its invariant) and is borrowed uniquely, so this is
        // the only reference to the value.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard's invariant: this guard acquired the lock at `old_irql`, and
        // releases it once, here.
        unsafe { KeReleaseSpinLock(self.lock.lock.get(), self.old_irql) };
    }
}

/// One `T` in nonpaged pool, allocated fallibly (the backend's own small blocks).
///
/// # Invariants
/// `ptr` came from ExAllocatePool2(NON_PAGED, size_of::<T>(), BACKEND_TAG), holds an initialised
/// `T`, and is freed once, by [`NonPaged::free`] or by whoever took it with `into_raw`.
struct NonPaged<T>(NonNull<T>);

impl<T> NonPaged<T> {
    /// IRQL: <= DISPATCH_LEVEL.
    fn new(value: T) -> Result<Self, NtStatus> {
        let ptr = pool_allocate(BACKEND_TAG, size_of::<T>(), align_of::<T>()).cast::<T>();
        let ptr = NonNull::new(ptr).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: a fresh, suitably sized and aligned (pool_allocate checked `align_of::<T>()`)
        // block that nothing else references.
        unsafe { ptr.as_ptr().write(value) };
        Ok(Self(ptr))
    }

    /// Drops the `T` and frees the block. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `ptr` came from [`NonPaged::new`] and no reference to the `T` outlives this call.
    unsafe fn free(ptr: NonNull<T>) {
        // SAFETY: the caller's guarantee: an initialised `T` that nothing uses any more.
        unsafe { ptr.as_ptr().drop_in_place() };
        // SAFETY: allocated by `new` with BACKEND_TAG (the type's invariant), freed once here.
        unsafe { pool_free(ptr.as_ptr().cast(), BACKEND_TAG) };
    }
}

/// A KEVENT in nonpaged pool (a KEVENT must not move after KeInitializeEvent).
///
/// # Invariants
/// The block holds a KEVENT initialised by KeInitializeEvent; it is freed on drop, after which
/// no waiter can exist (waiters borrow the event).
pub struct Event(NonNull<UnsafeCell<KEVENT>>);

// SAFETY: KEVENTs are made to be signalled and waited on from any thread (KeSetEvent and
// KeWaitForSingleObject synchronise internally on the dispatcher lock).
unsafe impl Sync for Event {}
// SAFETY: a KEVENT has no thread affinity; ownership of the pool block moves with the value.
unsafe impl Send for Event {}

impl Event {
    fn with(kind: wdk_sys::EVENT_TYPE, signaled: bool) -> Result<Self, NtStatus> {
        // SAFETY: KEVENT is a plain C struct for which all-zero bytes is a valid value; it is
        // initialised by KeInitializeEvent below before any other use.
        let zeroed = unsafe { core::mem::zeroed::<KEVENT>() };
        let block = NonPaged::new(UnsafeCell::new(zeroed))?;
        let event = Self(block.0);
        // SAFETY: the KEVENT is in its final, nonpaged place and not yet shared.
        unsafe { KeInitializeEvent(event.raw(), kind, u8::from(signaled)) };
        Ok(event)
    }

    fn raw(&self) -> *mut KEVENT {
        // SAFETY: the block is live for as long as `self` (the type's invariant).
        unsafe { self.0.as_ref().get() }
    }

    /// KeInitializeEvent(NotificationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no nonpaged pool is left for the KEVENT.
    pub fn notification(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::NotificationEvent, signaled)
    }

    /// KeInitializeEvent(SynchronizationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no nonpaged pool is left for the KEVENT.
    pub fn synchronization(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::SynchronizationEvent, signaled)
    }

    /// KeSetEvent(Increment 0, Wait FALSE). IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        // SAFETY: an initialised KEVENT (the type's invariant); Wait FALSE allows DISPATCH_LEVEL.
        // The previous state it returns is of no use here.
        let _previous = unsafe { KeSetEvent(self.raw(), 0, 0) };
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        // SAFETY: an initialised KEVENT (the type's invariant).
        unsafe { KeClearEvent(self.raw()) };
    }

    /// KeWaitForSingleObject(Executive, KernelMode, not alertable). IRQL: PASSIVE_LEVEL (or
    /// <= DISPATCH_LEVEL with a zero timeout). True when signalled, false on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        // Relative timeouts are negative, in 100 ns units.
        let mut relative = timeout.map(|t| LARGE_INTEGER {
            QuadPart: -i64::try_from(t.as_nanos() / 100).unwrap_or(i64::MAX),
        });
        let timeout_ptr = relative
            .as_mut()
            .map_or(core::ptr::null_mut(), core::ptr::from_mut);
        // SAFETY: an initialised KEVENT (the type's invariant) in nonpaged memory; a KernelMode,
        // non-alertable wait, so the only outcomes are STATUS_SUCCESS and STATUS_TIMEOUT.
        let status = unsafe {
            KeWaitForSingleObject(
                self.raw().cast(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                0,
                timeout_ptr,
            )
        };
        status == STATUS_SUCCESS
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the block came from NonPaged::new; `&mut self` proves no waiter borrows it.
        unsafe { NonPaged::free(self.0) };
    }
}

/// What the new thread runs: handed to the trampoline through PsCreateSystemThread's context.
struct ThreadStart {
    routine: unsafe fn(*mut c_void),
    context: *mut c_void,
}

/// The system thread's start routine (PKSTART_ROUTINE). IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `start` is the `ThreadStart` block `SystemThread::spawn` allocated, handed over once.
unsafe extern "C" fn thread_trampoline(start: PVOID) {
    let Some(block) = NonNull::new(start.cast::<ThreadStart>()) else {
        return;
    };
    // SAFETY: the caller's guarantee: a live ThreadStart that this thread now owns.
    let ThreadStart { routine, context } = unsafe { block.as_ptr().read() };
    // SAFETY: the block's contents were moved out above (ThreadStart has no drop glue), and it
    // was allocated by NonPaged::new; nothing else references it.
    unsafe { NonPaged::free(block) };
    // SAFETY: `spawn`'s caller guaranteed `context` for `routine` until it returns.
    unsafe { routine(context) };
}

/// `sizeof(T)` as the ULONG size fields of kernel and WDF structures take it.
///
/// # Panics
/// At compile time, where it is evaluated in a constant, for a type of 4 GiB or more.
#[must_use]
pub const fn size_of_ulong<T>() -> u32 {
    assert!(size_of::<T>() <= u32::MAX as usize);
    #[allow(
        clippy::cast_possible_truncation,
        reason = "bounded by the assertion above"
    )]
    let size = size_of::<T>() as u32;
    size
}

/// `sizeof(OBJECT_ATTRIBUTES)` as its ULONG Length field takes it (48 bytes on x64).
const OBJECT_ATTRIBUTES_LENGTH: u32 = size_of_ulong::<OBJECT_ATTRIBUTES>();

/// A system thread, held by a kernel handle so that it can be waited for.
///
/// # Invariants
/// `handle` is the kernel handle (OBJ_KERNEL_HANDLE) PsCreateSystemThread returned for the
/// thread; [`SystemThread::join`] waits on it and closes it once.
pub struct SystemThread {
    handle: HANDLE,
}

// SAFETY: a kernel handle is valid in every process context, so it may be waited on and closed
// from any thread.
unsafe impl Send for SystemThread {}

impl SystemThread {
    /// PsCreateSystemThread with a kernel handle. IRQL: PASSIVE_LEVEL.
    ///
    /// The handle is kept (rather than exchanged for an object reference) so that once the
    /// thread exists nothing can fail: a running thread is always joinable.
    ///
    /// # Safety
    /// `context` must stay valid for `routine` until the routine returns.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the start block cannot be allocated, or what
    /// PsCreateSystemThread returns.
    pub unsafe fn spawn(
        routine: unsafe fn(*mut c_void),
        context: *mut c_void,
    ) -> Result<Self, NtStatus> {
        let start = NonPaged::new(ThreadStart { routine, context })?.0;
        // InitializeObjectAttributes(&attributes, NULL, OBJ_KERNEL_HANDLE, NULL, NULL): a kernel
        // handle whatever process context the caller runs in (DriverEntry runs in the System
        // process, but a caller from an IOCTL or a PnP callback need not).
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: OBJECT_ATTRIBUTES_LENGTH,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: core::ptr::null_mut(),
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: core::ptr::null_mut(),
            SecurityQualityOfService: core::ptr::null_mut(),
        };
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: PsCreateSystemThread's documented contract at PASSIVE_LEVEL: out-handle and
        // attributes are valid locals, no process (System) and no client id; the trampoline
        // takes the start block over.
        let status = unsafe {
            PsCreateSystemThread(
                &raw mut handle,
                SYNCHRONIZE,
                &raw mut attributes,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                Some(thread_trampoline),
                start.as_ptr().cast(),
            )
        };
        if !NtStatus(status).is_success() {
            // SAFETY: the thread did not start, so the block is still ours and unreferenced.
            unsafe { NonPaged::free(start) };
            return Err(NtStatus(status));
        }
        Ok(Self { handle })
    }

    /// Waits for the thread to end and closes its handle. IRQL: PASSIVE_LEVEL.
    pub fn join(self) {
        // SAFETY: the thread's kernel handle (the type's invariant), which has SYNCHRONIZE
        // access; a non-alertable wait with no timeout, so it returns when the thread ends.
        let waited = unsafe { ZwWaitForSingleObject(self.handle, 0, core::ptr::null_mut()) };
        debug_assert!(
            waited == STATUS_SUCCESS,
            "ZwWaitForSingleObject: {waited:#x}"
        );
        // SAFETY: the kernel handle is ours and closed once, here (`self` is consumed).
        let closed = unsafe { ZwClose(self.handle) };
        // Closing a valid kernel handle we own cannot fail; if it ever did, the handle leaks and
        // nothing else is affected, so the status is only checked in debug builds.
        debug_assert!(NtStatus(closed).is_success(), "ZwClose: {closed:#x}");
    }
}

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

/// Wine test build: counts of what the driver holds (pool blocks, IRPs, MDLs), so that the test
/// entry can report at unload whether anything was left outstanding. Not in the shipped build.
#[cfg(feature = "wine-test")]
pub mod outstanding {
    use core::sync::atomic::{AtomicIsize, Ordering};

    /// Pool blocks allocated and not freed.
    pub static POOL: AtomicIsize = AtomicIsize::new(0);
    /// IRPs allocated and not freed.
    pub static IRPS: AtomicIsize = AtomicIsize::new(0);
    /// MDLs allocated and not freed.
    pub static MDLS: AtomicIsize = AtomicIsize::new(0);

    /// Counts one allocation (`true`) or free (`false`) when `counted`. IRQL: any.
    pub fn count(counter: &AtomicIsize, allocated: bool) {
        counter.fetch_add(if allocated { 1 } else { -1 }, Ordering::Relaxed);
    }
}

/// Counts an allocation or free for the Wine test build's unload report; nothing otherwise.
#[inline]
#[allow(unused_variables, reason = "only the Wine test build counts")]
fn count(which: Counted, allocated: bool) {
    #[cfg(feature = "wine-test")]
    outstanding::count(
        match which {
            Counted::Pool => &outstanding::POOL,
            Counted::Irp => &outstanding::IRPS,
            Counted::Mdl => &outstanding::MDLS,
        },
        allocated,
    );
}

/// What [`count`] counts.
#[derive(Clone, Copy)]
#[allow(dead_code, reason = "only the Wine test build reads it")]
enum Counted {
    Pool,
    Irp,
    Mdl,
}
