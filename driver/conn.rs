//! What happens to an accepted connection: the per-slot IRPs and their completion routines.
//!
//! Each table slot owns, from listener start, three IRPs and a small receive buffer with its MDL:
//! - `recv` keeps one WskReceive pending (service `hold`). It completes with data (read and
//!   discarded, then re-posted), with 0 bytes on a graceful peer close, or with an error on a
//!   reset — so a peer close is noticed without WskDisconnectEvent, which would have a race on
//!   IRP-accepted sockets (their events start disabled, WSK-FACTS §3, and a FIN that arrives before
//!   the enable is not documented to be indicated).
//! - `ctl` carries the graceful WskDisconnect; `close` carries the WskCloseSocket. They are two
//!   IRPs so that a close never waits behind a disconnect: a disconnect to a peer that never
//!   acknowledges our FIN stays pending until the close cancels it (WSK-FACTS §7), which is how
//!   stop closes every connection at once whatever disconnect is in flight.
//!
//! Completion routines run at DISPATCH_LEVEL: they take the IRP back, update the slot under the
//! listener's spin lock, and queue work; they never call WSK, never block, never allocate.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, Ordering};

use wsk::{DEVICE_OBJECT, IRP, MDL, NtStatus, WSK_BUF};

use crate::kernel;
use crate::listener::Listener;
use crate::net::DriverIrp;
use crate::table::{SlotState, work};

/// Bytes read per receive (peers' data is discarded by the hold service).
pub const RX_BYTES: usize = 64;

/// The IRPs and buffer of one slot.
///
/// Invariant: lives in a `PoolSlice` that never moves, so `buf` can point at `rx` through `mdl`
/// and the address can be a completion context; `listener` is set before any IRP is submitted and
/// outlives every completion (the listener is freed only after all its IRPs came back).
pub struct SlotIo {
    /// The receive IRP.
    pub recv: DriverIrp,
    /// The graceful disconnect IRP.
    pub ctl: DriverIrp,
    /// The close IRP.
    pub close: DriverIrp,
    /// Slot generation the pending receive was submitted for.
    pub recv_generation: AtomicU32,
    /// Slot generation the pending disconnect was submitted for.
    pub ctl_generation: AtomicU32,
    /// Slot generation the pending close was submitted for.
    pub close_generation: AtomicU32,
    /// The slot's socket came from WskAcceptEvent and is not handed over to the worker yet: it is
    /// on the listener's hand-over list, and work asked for it waits in `stashed`. Changed under
    /// the listener's spin lock.
    pub awaiting: AtomicBool,
    /// The accept callback that handed the socket over has finished (its last statement).
    pub returned: AtomicBool,
    /// Work (`work` bits) asked for while the slot was awaiting its hand-over.
    pub stashed: AtomicU8,
    /// Next slot on the hand-over list (`u32::MAX`: none). Under the listener's spin lock.
    pub next_handover: AtomicU32,
    index: u32,
    listener: AtomicPtr<Listener>,
    rx: UnsafeCell<[u8; RX_BYTES]>,
    mdl: AtomicPtr<MDL>,
    buf: UnsafeCell<WSK_BUF>,
}

// SAFETY: `rx` and `buf` are only written by the provider while the receive IRP is pending and
// read by nobody (data is discarded); everything else is atomic or immutable.
unsafe impl Sync for SlotIo {}
// SAFETY: the block holds no thread-affine data: the IRPs and MDL are kernel objects usable from any
// thread, and the buffers are written only by the provider (see Sync).
unsafe impl Send for SlotIo {}

impl SlotIo {
    /// Allocates the slot's IRPs. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn new(index: u32) -> Result<Self, NtStatus> {
        Ok(Self {
            recv: DriverIrp::allocate()?,
            ctl: DriverIrp::allocate()?,
            close: DriverIrp::allocate()?,
            recv_generation: AtomicU32::new(0),
            ctl_generation: AtomicU32::new(0),
            close_generation: AtomicU32::new(0),
            awaiting: AtomicBool::new(false),
            returned: AtomicBool::new(true),
            stashed: AtomicU8::new(0),
            next_handover: AtomicU32::new(u32::MAX),
            index,
            listener: AtomicPtr::new(core::ptr::null_mut()),
            rx: UnsafeCell::new([0; RX_BYTES]),
            mdl: AtomicPtr::new(core::ptr::null_mut()),
            buf: UnsafeCell::new(WSK_BUF {
                Mdl: core::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            }),
        })
    }

    /// Binds the slot to its listener and describes the (now pinned) buffer with an MDL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no MDL can be had.
    pub fn attach(&self, listener: *const Listener) -> Result<(), NtStatus> {
        self.listener.store(listener.cast_mut(), Ordering::Release);
        #[allow(clippy::cast_possible_truncation)]
        // SAFETY: `rx` is this slot's buffer, inside the listener's nonpaged block, which
        // outlives the MDL (freed with the slot in `Drop`).
        let mdl = unsafe { kernel::mdl_allocate(self.rx.get().cast(), RX_BYTES as u32) };
        if mdl.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        self.mdl.store(mdl, Ordering::Release);
        // SAFETY: called once at listener start, before any receive uses `buf`.
        unsafe {
            self.buf.get().write(WSK_BUF {
                Mdl: mdl,
                Offset: 0,
                Length: RX_BYTES,
            });
        };
        Ok(())
    }

    /// The WSK_BUF for WskReceive.
    #[must_use]
    pub fn buffer(&self) -> *mut WSK_BUF {
        self.buf.get()
    }

    /// This slot's context pointer for completion routines.
    #[must_use]
    pub fn context(&self) -> *mut c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }

    /// The slot index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for SlotIo {
    fn drop(&mut self) {
        let mdl = self.mdl.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !mdl.is_null() {
            // SAFETY: allocated in `attach`, no receive pending (the listener is stopped).
            unsafe { kernel::mdl_free(mdl) };
        }
    }
}

fn slot_of<'a>(context: *mut c_void) -> (&'a SlotIo, &'a Listener) {
    // SAFETY: every slot IRP is submitted with its SlotIo as context (SlotIo invariant: pinned,
    // outlives the completion).
    let io = unsafe { &*context.cast::<SlotIo>() };
    // SAFETY: set by `attach` before any submission; the listener outlives its IRPs.
    let listener = unsafe { &*io.listener.load(Ordering::Acquire) };
    (io, listener)
}

/// Completion of the slot's WskReceive. IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no
/// allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's receive IRP: `context` is the slot's `SlotIo` (its `context()`) given
/// with that IRP, which stays alive until this routine has run.
pub(crate) unsafe extern "system" fn receive_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    let (io, listener) = slot_of(context);
    let generation = io.recv_generation.load(Ordering::Acquire);
    // SAFETY: this is the receive IRP's completion routine.
    let (status, information) = unsafe { io.recv.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let index = io.index;
    let current = shared
        .table
        .entry(index)
        .map(|e| (e.state(), e.generation()));
    match current {
        Some((SlotState::Active, g)) if g == generation => {
            if status.is_success() && information > 0 {
                listener
                    .counters
                    .bytes_discarded
                    .fetch_add(information as u64, Ordering::Relaxed);
                shared.table.request(index, work::RECEIVE);
            } else {
                // 0 bytes: graceful close; an error: reset. Either way the peer is gone.
                if let Some(entry) = shared.table.entry_mut(index) {
                    entry.peer_closed = true;
                }
                shared.table.request(index, work::CLOSE);
            }
        }
        Some((SlotState::Closing, g)) if g == generation => {
            listener.try_release(&mut shared, index);
        }
        _ => {}
    }
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}

/// Completion of the slot's graceful WskDisconnect. IRQL: <= DISPATCH_LEVEL; no WSK, no
/// blocking, no allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's disconnect IRP: `context` is the slot's `SlotIo` (its `context()`) given
/// with that IRP, which stays alive until this routine has run.
pub(crate) unsafe extern "system" fn disconnect_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    let (io, listener) = slot_of(context);
    let generation = io.ctl_generation.load(Ordering::Acquire);
    // SAFETY: this is the ctl IRP's completion routine.
    let _ = unsafe { io.ctl.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let index = io.index;
    let current = shared
        .table
        .entry(index)
        .map(|e| (e.state(), e.generation()));
    match current {
        Some((SlotState::Active, g)) if g == generation => {
            // Success or not, the next step is the close (a failed disconnect means the
            // connection is already gone; close aborts whatever is left).
            if let Some(entry) = shared.table.entry_mut(index) {
                entry.disconnected = true;
            }
            shared.table.request(index, work::CLOSE);
        }
        // The close did not wait for us (it cancelled this disconnect): the slot may go now.
        Some((SlotState::Closing, g)) if g == generation => {
            listener.try_release(&mut shared, index);
        }
        _ => {}
    }
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}

/// Completion of the slot's WskCloseSocket. IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no
/// allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's close IRP: `context` is the slot's `SlotIo` (its `context()`) given
/// with that IRP, which stays alive until this routine has run.
pub(crate) unsafe extern "system" fn close_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    let (io, listener) = slot_of(context);
    let generation = io.close_generation.load(Ordering::Acquire);
    // SAFETY: this is the close IRP's completion routine.
    let _ = unsafe { io.close.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let index = io.index;
    if shared
        .table
        .entry(index)
        .is_some_and(|e| e.state() == SlotState::Closing && e.generation() == generation)
    {
        if let Some(entry) = shared.table.entry_mut(index) {
            entry.close_done = true;
        }
        listener.try_release(&mut shared, index);
    }
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}
