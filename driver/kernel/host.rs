//! Host backend: the host kernel (`crates/hostkernel`) under the facade's names.

use core::ffi::c_void;

pub use hostkernel::event::{Event as HostEvent, EventKind};
pub use hostkernel::irql::{DISPATCH_LEVEL, Kirql as Irql, PASSIVE_LEVEL};
pub use hostkernel::provider::{
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI,
};
pub use hostkernel::spinlock::{SpinGuard, SpinLock};
pub use hostkernel::time::interrupt_time;
use wsk::{IRP, MDL, NtStatus, PfnIoCompletionRoutine};

/// KeGetCurrentIrql.
#[must_use]
pub fn current_irql() -> Irql {
    hostkernel::irql::current()
}

/// KeGetCurrentProcessorNumberEx(NULL): the host kernel numbers each thread as a processor.
/// IRQL: any (stable at DISPATCH_LEVEL).
#[must_use]
pub fn current_processor() -> u32 {
    hostkernel::processor::current()
}

/// A KEVENT. Notification events stay signaled; synchronization events wake one waiter.
///
/// The Windows backend allocates each KEVENT in nonpaged pool, which can fail; so does the host:
/// every event holds a pool block (tag `WskE`), which the schedule can refuse and the accounting
/// counts.
pub struct Event {
    event: HostEvent,
    _storage: super::PoolBox<u8>,
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event").finish_non_exhaustive()
    }
}

impl Event {
    /// KeInitializeEvent(NotificationEvent) on pool memory. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the pool has no room.
    pub fn notification(signaled: bool) -> Result<Self, NtStatus> {
        let storage = super::PoolBox::new(super::tags::EVENT, 0u8)?;
        Ok(Self {
            event: HostEvent::new(EventKind::Notification, signaled),
            _storage: storage,
        })
    }

    /// KeInitializeEvent(SynchronizationEvent) on pool memory. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the pool has no room.
    pub fn synchronization(signaled: bool) -> Result<Self, NtStatus> {
        let storage = super::PoolBox::new(super::tags::EVENT, 0u8)?;
        Ok(Self {
            event: HostEvent::new(EventKind::Synchronization, signaled),
            _storage: storage,
        })
    }

    /// KeSetEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        self.event.set();
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        self.event.clear();
    }

    /// KeWaitForSingleObject; `None` waits forever. True when signaled. IRQL: PASSIVE_LEVEL
    /// (or <= DISPATCH_LEVEL with a zero timeout).
    pub fn wait(&self, timeout: Option<core::time::Duration>) -> bool {
        self.event.wait(timeout)
    }
}

/// A system thread (PsCreateSystemThread). Like the Windows backend's start block, its start
/// holds a pool block (tag `WskE`) that the schedule can refuse.
pub struct SystemThread {
    thread: hostkernel::thread::SystemThread,
    _start: super::PoolBox<u8>,
}

impl core::fmt::Debug for SystemThread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SystemThread").finish_non_exhaustive()
    }
}

impl SystemThread {
    /// Starts `routine(context)` on a new system thread. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `context` must stay valid until the routine returns (the caller joins first).
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no thread can be created.
    pub unsafe fn spawn(
        routine: unsafe fn(*mut c_void),
        context: *mut c_void,
    ) -> Result<Self, NtStatus> {
        let start = super::PoolBox::new(super::tags::EVENT, 0u8)?;
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { hostkernel::thread::SystemThread::spawn("wskaccept-worker", routine, context) }
            .map(|thread| Self {
                thread,
                _start: start,
            })
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
    }

    /// Waits for the thread to return. IRQL: PASSIVE_LEVEL.
    pub fn join(self) {
        self.thread.join();
    }
}

/// IoAllocateIrp(stack_size, FALSE); NULL on failure. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn irp_allocate(stack_size: i8) -> *mut IRP {
    hostkernel::irp::io_allocate_irp(stack_size)
}

/// IoFreeIrp. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` is from [`irp_allocate`], not pending, and not used again.
pub unsafe fn irp_free(irp: *mut IRP) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::irp::io_free_irp(irp) }
}

/// IoReuseIrp(irp, status). IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` is from [`irp_allocate`] and not pending.
pub unsafe fn irp_reuse(irp: *mut IRP, status: NtStatus) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::irp::io_reuse_irp(irp, status) }
}

/// IoSetCompletionRoutine(irp, routine, context, TRUE, TRUE, TRUE): WSK IRPs always invoke their
/// routine on success, error and cancel (WSK-FACTS §3). IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` is from [`irp_allocate`] and not pending; `routine` may run with `context` on any thread
/// at DISPATCH_LEVEL until it completes.
pub unsafe fn irp_set_completion(
    irp: *mut IRP,
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::irp::io_set_completion_routine(irp, routine, context, true, true, true) }
}

/// Irp->IoStatus as (Status, Information). IRQL: any.
///
/// # Safety
/// `irp` is from [`irp_allocate`] and not pending (its completion routine may read it).
#[must_use]
pub unsafe fn irp_status(irp: *mut IRP) -> (NtStatus, usize) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::irp::io_status(irp) }
}

/// ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag): zeroed, or NULL. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn pool_allocate(tag: u32, size: usize, align: usize) -> *mut u8 {
    hostkernel::pool::allocate(tag, size, align)
}

/// ExFreePoolWithTag. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `ptr` came from [`pool_allocate`] with `tag` and is not used again.
pub unsafe fn pool_free(ptr: *mut u8, tag: u32) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::pool::free(ptr, tag) }
}

/// IoAllocateMdl + MmBuildMdlForNonPagedPool over nonpaged memory. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `address..address + length` is nonpaged pool that outlives the MDL (on Windows,
/// MmBuildMdlForNonPagedPool reads the range's page mappings).
#[must_use]
pub unsafe fn mdl_allocate(address: *mut u8, length: u32) -> *mut MDL {
    hostkernel::mdl::allocate(address, length)
}

/// IoFreeMdl.
///
/// # Safety
/// `mdl` came from [`mdl_allocate`] and is not used again.
pub unsafe fn mdl_free(mdl: *mut MDL) {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { hostkernel::mdl::free(mdl) }
}

/// The address of NPI_WSK_INTERFACE_ID.
#[must_use]
pub fn npi_wsk_interface_id() -> *const wsk::GUID {
    &raw const wsk::NPI_WSK_INTERFACE_ID
}

/// Random bytes from the kernel's system-preferred generator (BCryptGenRandom with a NULL
/// algorithm and BCRYPT_USE_SYSTEM_PREFERRED_RNG). IRQL: PASSIVE_LEVEL.
///
/// # Errors
/// What BCryptGenRandom returns.
pub fn random_bytes(buffer: &mut [u8]) -> Result<(), NtStatus> {
    let status = hostkernel::random::gen_random(buffer);
    if status.is_success() {
        Ok(())
    } else {
        Err(status)
    }
}
