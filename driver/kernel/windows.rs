//! Windows backend: the facade's names over wdk-sys and netio.sys. No logic: each item maps onto
//! one or two kernel calls. Spin locks and events are in `windows/sync.rs`, system threads in
//! `windows/thread.rs`, IRPs, pool, MDLs and time in `windows/memory.rs`.
//!
//! Built by the Windows lane (`scripts/windows-lane/run.sh`): type-checked, linted and linked for
//! x86_64-pc-windows-msvc against a substitute WDK (mingw-w64 kernel headers + KMDF 1.33 public
//! headers). Not run on Windows by the authors (README, Verification status). x86_64 only:
//! [`current_irql`] reads CR8, which is how wdm.h's inline KeGetCurrentIrql works on x64.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the Windows backend supports x86_64 only: KeGetCurrentIrql is read from CR8");

mod dpc;
mod memory;
mod sync;
mod thread;

use core::ffi::c_void;
use core::ptr::NonNull;

use wdk_sys::_MODE;
use wsk::{GUID, NtStatus, WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION};

pub use dpc::{Dpc, flush_queued_dpcs};
pub use memory::{
    interrupt_time, irp_allocate, irp_free, irp_reuse, irp_set_completion, irp_status,
    mdl_allocate, mdl_free, pool_allocate, pool_free,
};
pub use sync::{Event, SpinGuard, SpinLock};
pub use thread::SystemThread;

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

/// KeGetCurrentProcessorNumberEx(NULL): the system-wide index of the current processor. IRQL:
/// any (stable at DISPATCH_LEVEL, where the thread cannot move).
#[must_use]
pub fn current_processor() -> u32 {
    // SAFETY: KeGetCurrentProcessorNumberEx accepts a NULL ProcNumber (OPTIONAL in wdm.h) and
    // only reads the current processor's number.
    unsafe { wdk_sys::ntddk::KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }
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
        // INVARIANT: from ExAllocatePool2 under BACKEND_TAG (pool_allocate), holding `value`;
        // not freed yet.
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
