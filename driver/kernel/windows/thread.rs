//! System threads: PsCreateSystemThread with a kernel handle, joined by waiting on it.

use core::ffi::c_void;
use core::ptr::NonNull;

use wdk_sys::ntddk::{PsCreateSystemThread, ZwClose, ZwWaitForSingleObject};
use wdk_sys::{HANDLE, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES, PVOID, STATUS_SUCCESS, SYNCHRONIZE};
use wsk::NtStatus;

use super::{NonPaged, size_of_ulong};

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

/// `sizeof(OBJECT_ATTRIBUTES)` as its ULONG Length field takes it (48 bytes on x64).
const OBJECT_ATTRIBUTES_LENGTH: u32 = size_of_ulong::<OBJECT_ATTRIBUTES>();

/// A system thread, held by a kernel handle so that it can be waited for.
///
/// # Invariants
/// `handle` is the kernel handle (OBJ_KERNEL_HANDLE) PsCreateSystemThread returned for the
/// thread; [`SystemThread::join`] waits on it and closes it once.
#[derive(Debug)]
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
        // INVARIANT: `handle` is the kernel handle (OBJ_KERNEL_HANDLE in `attributes`)
        // PsCreateSystemThread returned; nothing has waited on or closed it yet.
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
