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
//! What the worker does with these IRPs, and their completion routines, live with the listener
//! that owns the slot (`crate::listener`, `slots.rs`): this room imports nothing from it. The
//! block names its owner only as the type parameter `O`.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, Ordering};

use wsk::{MDL, NtStatus, WSK_BUF};

use crate::kernel;
use crate::net::DriverIrp;

/// Bytes read per receive (peers' data is discarded by the hold service).
pub const RX_BYTES: usize = 64;

/// The IRPs and buffer of one slot, owned by an `O` (the listener).
///
/// # Invariants
/// Lives in a `PoolSlice` that never moves, so `buf` can point at `rx` through `mdl` and the
/// address can be a completion context; `owner` is set by [`SlotIo::attach`] before any IRP is
/// submitted and outlives every completion (the listener is freed only after all its IRPs came
/// back). Constructed by [`SlotIo::new`] with a null owner and no MDL; `attach` completes it.
pub struct SlotIo<O> {
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
    owner: AtomicPtr<O>,
    rx: UnsafeCell<[u8; RX_BYTES]>,
    mdl: AtomicPtr<MDL>,
    buf: UnsafeCell<WSK_BUF>,
}

impl<O> core::fmt::Debug for SlotIo<O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlotIo")
            .field("index", &self.index)
            .field("recv", &self.recv)
            .field("ctl", &self.ctl)
            .field("close", &self.close)
            .finish_non_exhaustive()
    }
}

// SAFETY: `rx` and `buf` are only written by the provider while the receive IRP is pending and
// read by nobody (data is discarded); everything else is atomic or immutable.
unsafe impl<O> Sync for SlotIo<O> {}
// SAFETY: the block holds no thread-affine data: the IRPs and MDL are kernel objects usable from
// any thread, and the buffers are written only by the provider (see Sync).
unsafe impl<O> Send for SlotIo<O> {}

impl<O> SlotIo<O> {
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
            owner: AtomicPtr::new(core::ptr::null_mut()),
            rx: UnsafeCell::new([0; RX_BYTES]),
            mdl: AtomicPtr::new(core::ptr::null_mut()),
            buf: UnsafeCell::new(WSK_BUF {
                Mdl: core::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            }),
        })
    }

    /// Binds the slot to its owner and describes the (now pinned) buffer with an MDL. Called once,
    /// at listener start. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `self` is pinned (in its `PoolSlice`) for the rest of its life, and `owner` points at the
    /// owner, which outlives every completion of this slot's IRPs (it is what [`SlotIo::owner`]
    /// later hands to them); called before any IRP of the slot is submitted.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no MDL can be had.
    pub unsafe fn attach(&self, owner: *const O) -> Result<(), NtStatus> {
        self.owner.store(owner.cast_mut(), Ordering::Release);
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

    /// The owner given to [`SlotIo::attach`] (null before it). Dereferencing it is sound while a
    /// completion of this slot's IRPs runs (type invariant).
    #[must_use]
    pub fn owner(&self) -> *const O {
        self.owner.load(Ordering::Acquire)
    }

    /// The slot index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl<O> Drop for SlotIo<O> {
    fn drop(&mut self) {
        let mdl = self.mdl.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !mdl.is_null() {
            // SAFETY: allocated in `attach`, no receive pending (the listener is stopped).
            unsafe { kernel::mdl_free(mdl) };
        }
    }
}
