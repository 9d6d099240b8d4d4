//! What happens to an accepted connection: the per-slot IRPs, data buffer and completion routines.
//!
//! Each table slot owns, from listener start, three IRPs and a data buffer of the listener's
//! `buffer` size with its MDL — nothing is allocated per connection or per byte:
//! - `data` carries the data path, one call at a time: a WskReceive into the buffer, then (service
//!   `echo`) a WskSend of what it brought, then the next WskReceive only once that send completed
//!   — so at most one receive or one send is in flight per connection, and a peer that does not
//!   read stalls its own connection only (the send stays pending until the transport took every
//!   byte). Service `discard` keeps a receive pending and drops what it reads. The receive also
//!   notices the peer's close (0 bytes: FIN; an error: reset) without WskDisconnectEvent, which
//!   would have a race on IRP-accepted sockets (their events start disabled, WSK-FACTS §3, and a
//!   FIN that arrives before the enable is not documented to be indicated).
//! - `ctl` carries the graceful WskDisconnect; `close` carries the WskCloseSocket. They are two
//!   IRPs so that a close never waits behind a disconnect: a disconnect to a peer that never
//!   acknowledges our FIN stays pending until the close cancels it (WSK-FACTS §7), which is how
//!   stop closes every connection at once whatever disconnect, receive or send is in flight.
//!
//! What the worker does with these IRPs, and their completion routines, live with the listener
//! that owns the slot (`crate::listener`, `slots.rs` and `data.rs`): this room imports nothing
//! from it. The block names its owner only as the type parameter `O`.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, Ordering};

use wsk::{MDL, NtStatus, WSK_BUF};

use crate::kernel::{self, PoolSlice, tags};
use crate::net::DriverIrp;

/// [`SlotIo::indicated_on`] of a socket whose accept callback was not called at DISPATCH_LEVEL
/// (or that did not come through the accept event, or ran on a processor numbered this high,
/// beyond any Windows system): no processor proves its return.
pub const NOT_AT_DISPATCH: u16 = u16::MAX;

/// The IRPs and buffer of one slot, owned by an `O` (the listener).
///
/// # Invariants
/// Lives in a `PoolSlice` that never moves, so its address can be a completion context; `rx` is
/// a pool block that never moves either, described by `mdl`; `buf` (the WSK_BUF the data calls
/// name) and `rx`'s bytes are written by the worker only while `data` is idle, and by the
/// provider only while a receive on `data` is pending; nobody reads `rx` through a Rust
/// reference (the bytes go from the provider's receive to the provider's send through the MDL).
/// `owner` is set by [`SlotIo::attach`] before any IRP is submitted and outlives every completion
/// (the listener is freed only after all its IRPs came back). Constructed by [`SlotIo::new`]
/// with a null owner and no MDL; `attach` completes it.
pub struct SlotIo<O> {
    /// The data IRP: a receive or a send, one at a time.
    pub data: DriverIrp,
    /// The graceful disconnect IRP.
    pub ctl: DriverIrp,
    /// The close IRP.
    pub close: DriverIrp,
    /// Slot generation the pending receive or send was submitted for.
    pub data_generation: AtomicU32,
    /// Bytes the last receive brought that the echo service sends back.
    pub echo_len: AtomicU32,
    /// Of those, bytes already sent.
    pub echo_sent: AtomicU32,
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
    /// The processor that callback ran on, if it was called at DISPATCH_LEVEL
    /// ([`NOT_AT_DISPATCH`] otherwise): a later callback's entry on that processor proves it
    /// returned. Under the listener's spin lock.
    pub indicated_on: AtomicU16,
    /// Work (`work` bits) asked for while the slot was awaiting its hand-over.
    pub stashed: AtomicU8,
    /// Next slot on the hand-over list (`u32::MAX`: none). Under the listener's spin lock.
    pub next_handover: AtomicU32,
    index: u32,
    owner: AtomicPtr<O>,
    rx: PoolSlice<u8>,
    mdl: AtomicPtr<MDL>,
    buf: UnsafeCell<WSK_BUF>,
}

impl<O> core::fmt::Debug for SlotIo<O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlotIo")
            .field("index", &self.index)
            .field("data", &self.data)
            .field("ctl", &self.ctl)
            .field("close", &self.close)
            .finish_non_exhaustive()
    }
}

// SAFETY: `rx` and `buf` are written only by the worker while `data` is idle or by the provider
// while a receive is pending (type invariant), so writes never race; everything else is atomic or
// immutable.
unsafe impl<O> Sync for SlotIo<O> {}
// SAFETY: the block holds no thread-affine data: the IRPs and MDL are kernel objects usable from
// any thread, and the buffers are owned pool blocks (see Sync).
unsafe impl<O> Send for SlotIo<O> {}

impl<O> SlotIo<O> {
    /// Allocates the slot's IRPs and its `buffer`-byte data buffer. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn new(index: u32, buffer: u32) -> Result<Self, NtStatus> {
        Ok(Self {
            data: DriverIrp::allocate()?,
            ctl: DriverIrp::allocate()?,
            close: DriverIrp::allocate()?,
            data_generation: AtomicU32::new(0),
            echo_len: AtomicU32::new(0),
            echo_sent: AtomicU32::new(0),
            ctl_generation: AtomicU32::new(0),
            close_generation: AtomicU32::new(0),
            awaiting: AtomicBool::new(false),
            returned: AtomicBool::new(true),
            indicated_on: AtomicU16::new(NOT_AT_DISPATCH),
            stashed: AtomicU8::new(0),
            next_handover: AtomicU32::new(u32::MAX),
            index,
            owner: AtomicPtr::new(core::ptr::null_mut()),
            rx: PoolSlice::zeroed(tags::BUFFER, buffer as usize)?,
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
        let length = u32::try_from(self.rx.len()).map_err(|_| NtStatus::INVALID_BUFFER_SIZE)?;
        // SAFETY: `rx` is this slot's nonpaged buffer of `length` bytes, which never moves and
        // outlives the MDL (both freed with the slot, the MDL first, in `Drop`).
        let mdl = unsafe { kernel::mdl_allocate(self.rx.as_mut_ptr(), length) };
        if mdl.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        self.mdl.store(mdl, Ordering::Release);
        // SAFETY: called once at listener start, before any call uses `buf`.
        unsafe {
            self.buf.get().write(WSK_BUF {
                Mdl: mdl,
                Offset: 0,
                Length: self.rx.len(),
            });
        };
        Ok(())
    }

    /// The data buffer's size in bytes.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.rx.len()).unwrap_or(u32::MAX)
    }

    /// Points the data calls' WSK_BUF at `length` bytes of the buffer from `offset` (the whole
    /// buffer for a receive; what is left to echo for a send) and returns it. IRQL:
    /// <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// Only the worker, while `data` is idle (no call reads `buf` now).
    #[must_use]
    pub unsafe fn data_buffer(&self, offset: u32, length: u32) -> *mut WSK_BUF {
        let offset = offset.min(self.capacity());
        let length = length.min(self.capacity() - offset);
        // SAFETY: the caller's promise: `data` is idle, so no provider reads `buf` and no other
        // thread writes it (type invariant).
        unsafe {
            self.buf.get().write(WSK_BUF {
                Mdl: self.mdl.load(Ordering::Acquire),
                Offset: offset,
                Length: length as usize,
            });
        };
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
            // SAFETY: allocated in `attach`, no receive or send pending (the listener is stopped);
            // the buffer it describes is freed after it (the `rx` field drops later).
            unsafe { kernel::mdl_free(mdl) };
        }
    }
}
