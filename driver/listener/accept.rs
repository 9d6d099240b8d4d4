//! The IRP accept path: `depth` accept IRPs allocated at listener start, each with nonpaged
//! address buffers that live until its completion (WSK-FACTS §3).

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use wsk::{DEVICE_OBJECT, IRP, NtStatus, SOCKADDR, SOCKADDR_STORAGE, WSK_SOCKET};

use super::worker_only::Worker;
use super::{Listener, Shared};
use crate::net::{ConnSocket, DriverIrp, ListenSocket};
use crate::table::AcceptPath;

/// Accept-slot states (changed under the listener's spin lock).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing submitted; the worker arms it while the listener runs.
    Idle = 0,
    /// A WskAccept is pending.
    Accepting = 1,
    /// A just-accepted socket was refused; the worker must close it (abortively).
    RejectPending = 2,
    /// The refused socket's WskCloseSocket is pending.
    ClosingRejected = 3,
}

/// A [`State`] in an `AtomicU8` (its discriminant): the same loads and stores, with the same
/// orderings, as the `u8` it replaces.
///
/// # Invariants
/// The byte always holds the discriminant of a [`State`]: only [`AtomicState::new`] and
/// [`AtomicState::store`] write it, and both take a `State`.
#[derive(Debug)]
pub struct AtomicState(AtomicU8);

impl AtomicState {
    /// A cell holding `state`.
    #[must_use]
    pub const fn new(state: State) -> Self {
        Self(AtomicU8::new(state as u8))
    }

    /// Atomic load. IRQL: any.
    #[must_use]
    pub fn load(&self, order: Ordering) -> State {
        match self.0.load(order) {
            0 => State::Idle,
            1 => State::Accepting,
            2 => State::RejectPending,
            // 3, the only other value the invariant allows.
            _ => State::ClosingRejected,
        }
    }

    /// Atomic store. IRQL: any.
    pub fn store(&self, state: State, order: Ordering) {
        self.0.store(state as u8, order);
    }
}

/// One accept IRP and its buffers.
///
/// # Invariants
/// Pinned in a `PoolSlice`; `listener` is set before the IRP is first submitted and
/// outlives every completion; `local`/`remote` are written by the provider only while ACCEPTING.
pub struct AcceptSlot {
    /// The IRP.
    pub irp: DriverIrp,
    /// State (see [`State`]).
    pub state: AtomicState,
    /// A refused socket waiting to be closed.
    pub rejected: AtomicPtr<WSK_SOCKET>,
    local: UnsafeCell<SOCKADDR_STORAGE>,
    remote: UnsafeCell<SOCKADDR_STORAGE>,
    listener: AtomicPtr<Listener>,
    /// The slot's bit in `Shared::accepts_waiting` (1 << its index among the listener's slots).
    bit: u64,
}

// SAFETY: the address buffers are written by the provider only while the IRP is pending and read
// by the completion routine afterwards (the IRP hand-off orders them); the rest is atomic.
unsafe impl Sync for AcceptSlot {}
// SAFETY: the slot holds no thread-affine data; its buffers follow the IRP hand-off (see Sync) and
// the rest is atomic.
unsafe impl Send for AcceptSlot {}

impl AcceptSlot {
    /// Allocates the IRP of the listener's accept slot `index` (below `MAX_DEPTH`). IRQL: <=
    /// DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES; STATUS_INVALID_PARAMETER for an index of 64 or more.
    pub fn new(index: usize) -> Result<Self, NtStatus> {
        let bit = u32::try_from(index)
            .ok()
            .and_then(|index| 1u64.checked_shl(index))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        Ok(Self {
            bit,
            irp: DriverIrp::allocate()?,
            state: AtomicState::new(State::Idle),
            rejected: AtomicPtr::new(core::ptr::null_mut()),
            local: UnsafeCell::new(SOCKADDR_STORAGE::zeroed()),
            remote: UnsafeCell::new(SOCKADDR_STORAGE::zeroed()),
            listener: AtomicPtr::new(core::ptr::null_mut()),
        })
    }

    /// Binds the slot to its listener (before first use). IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `self` is pinned for the rest of its life and `listener` points at the listener that owns
    /// it, which outlives every completion of this slot's IRP (what `accept_done` dereferences);
    /// called before the IRP is first submitted.
    pub unsafe fn attach(&self, listener: *const Listener) {
        self.listener.store(listener.cast_mut(), Ordering::Release);
    }

    /// The completion context.
    #[must_use]
    pub fn context(&self) -> *mut c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }

    /// Address out-parameters for WskAccept.
    #[must_use]
    pub fn address_buffers(&self) -> (*mut SOCKADDR, *mut SOCKADDR) {
        (self.local.get().cast(), self.remote.get().cast())
    }

    fn addresses(&self, fallback: SocketAddr) -> (SocketAddr, SocketAddr) {
        // SAFETY: the accept completed, so the provider is done writing them.
        let local = unsafe { &*self.local.get() };
        // SAFETY: the accept completed, so the provider is done writing the remote address buffer.
        let remote = unsafe { &*self.remote.get() };
        (
            local.to_socket_addr().unwrap_or(fallback),
            remote.to_socket_addr().unwrap_or(fallback),
        )
    }
}

/// Whether a pass has something to do with an accept slot in `state` (`arm`: it may arm idle
/// IRPs).
fn wanted(state: State, arm: bool) -> bool {
    match state {
        State::Idle => arm,
        State::RejectPending => true,
        State::Accepting | State::ClosingRejected => false,
    }
}

/// Completion of a WskAccept (or of the close of a refused socket). IRQL: <= DISPATCH_LEVEL.
/// Hands the accepted socket to the table through the policy; never calls WSK, never blocks,
/// never allocates; asks the worker to re-arm.
///
/// # Safety
/// Called by the I/O manager as the completion routine of an accept slot's IRP: `context` is the
/// slot's `AcceptSlot` (its `context()`) given with that IRP, which stays alive until this routine
/// has run.
pub(crate) unsafe extern "system" fn accept_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: accept IRPs are submitted with their pinned AcceptSlot as context.
    let slot = unsafe { &*context.cast::<AcceptSlot>() };
    // SAFETY: set by `attach` before the first submission; outlives the completion.
    let listener = unsafe { &*slot.listener.load(Ordering::Acquire) };
    let was = slot.state.load(Ordering::Acquire);
    // SAFETY: this is the slot IRP's completion routine.
    let (status, information) = unsafe { slot.irp.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    slot.state.store(State::Idle, Ordering::Release);
    shared.accepts_waiting |= slot.bit;
    if was == State::Accepting {
        if status.is_success() && information != 0 {
            // WSK-FACTS §3: on success Information holds the accepted PWSK_SOCKET.
            let raw = information as *mut WSK_SOCKET;
            // SAFETY: the provider handed this socket to us; nobody else owns it.
            let accepted = unsafe { ConnSocket::from_accepted(raw) };
            if let Some(socket) = accepted {
                let (local, remote) = slot.addresses(shared.bound);
                match listener.admit(&mut shared, socket, local, remote, AcceptPath::Irp) {
                    Ok(_) => super::Counters::bump(&listener.counters.accepted_irp),
                    Err(refused) => {
                        slot.rejected.store(refused.into_raw(), Ordering::Release);
                        slot.state.store(State::RejectPending, Ordering::Release);
                    }
                }
            }
        } else if status != NtStatus::CANCELLED {
            super::Counters::bump(&listener.counters.accept_errors);
            crate::trace::emit(crate::trace::Event::AcceptFailed {
                listener: listener.id(),
                status,
            });
            if status == NtStatus::CONNECTION_ABORTED {
                // The listening socket stopped working: recreate it (worker).
                Listener::request_restart_locked(&mut shared);
            }
        }
    }
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}

/// The accept IRPs one hold of the lock claimed ([`Listener::claim_accepts`]): bit i is slot i.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Claims {
    /// Idle -> Accepting: to arm.
    to_arm: u64,
    /// RejectPending -> ClosingRejected: the refused socket to close.
    to_close: u64,
}

impl Listener {
    /// Arms every idle accept IRP (when `arm`) and closes every refused socket, in one worker pass:
    /// one hold of the spin lock claims them all ([`Listener::claim_accepts`]), then the calls are
    /// made outside it ([`Listener::submit_accepts`]). Worker only.
    pub(super) fn service_accepts(&self, worker: &mut Worker<'_>, arm: bool) {
        let socket = self.socket.get(worker).as_ref();
        let arm = arm && socket.is_some();
        // Most passes find every accept IRP pending: a look at the states, without the lock, says
        // so. A state this misses (changed just after) is followed by the kick of its change,
        // which queues another pass; a state it sees is claimed under the lock below, as before.
        if !self
            .accepts
            .iter()
            .any(|slot| wanted(slot.state.load(Ordering::Acquire), arm))
        {
            return;
        }
        let claims = self.claim_accepts(&mut self.shared.lock(), arm);
        self.submit_accepts(socket, claims);
    }

    /// Claims every idle accept IRP (when `arm`: the caller has a listening socket to arm it on)
    /// and every refused socket waiting to be closed: at most `MAX_DEPTH` = 64 state changes,
    /// small bounded work. IRQL: DISPATCH_LEVEL (under the lock; worker only).
    pub(super) fn claim_accepts(&self, shared: &mut Shared, arm: bool) -> Claims {
        const _: () = assert!(
            super::MAX_DEPTH as u32 <= u64::BITS,
            "one bit per accept slot"
        );
        debug_assert!(
            self.accepts
                .iter()
                .all(|slot| (shared.accepts_waiting & slot.bit != 0)
                    == (slot.state.load(Ordering::Acquire) != State::Accepting)),
            "accepts_waiting is the set of slots not Accepting"
        );
        let mut claims = Claims::default();
        // Only the slots whose IRP is not pending: most passes look at none.
        let mut waiting = shared.accepts_waiting;
        while waiting != 0 {
            let i = waiting.trailing_zeros() as usize;
            waiting &= waiting - 1;
            let Some(slot) = self.accepts.get(i) else {
                break;
            };
            match slot.state.load(Ordering::Acquire) {
                State::Idle if arm => {
                    slot.state.store(State::Accepting, Ordering::Release);
                    shared.accepts_waiting &= !slot.bit;
                    claims.to_arm |= slot.bit;
                }
                State::RejectPending => {
                    slot.state.store(State::ClosingRejected, Ordering::Release);
                    claims.to_close |= slot.bit;
                }
                _ => continue,
            }
            shared.rundown.submitted();
        }
        claims
    }

    /// The calls for what [`Listener::claim_accepts`] claimed: WskAccept on `socket` for each IRP
    /// to arm, WskCloseSocket for each refused socket; a call that fails gives its IRP back.
    /// Worker only (`socket` is the worker-only listening socket; `None` only if none was
    /// claimed to arm).
    #[inline]
    pub(super) fn submit_accepts(&self, socket: Option<&ListenSocket>, claims: Claims) {
        // Inlined: most passes claimed nothing (every IRP pending) and pay no call.
        if claims.to_arm | claims.to_close != 0 {
            self.submit_claimed(socket, claims);
        }
    }

    /// [`Listener::submit_accepts`] of a non-empty claim. Worker only.
    #[inline(never)]
    fn submit_claimed(&self, socket: Option<&ListenSocket>, claims: Claims) {
        let Claims { to_arm, to_close } = claims;
        let mut claimed = to_arm | to_close;
        while claimed != 0 {
            let i = claimed.trailing_zeros() as usize;
            claimed &= claimed - 1;
            let Some(slot) = self.accepts.get(i) else {
                break;
            };
            let submitted = if to_close & slot.bit != 0 {
                let raw = slot.rejected.swap(core::ptr::null_mut(), Ordering::AcqRel);
                // SAFETY: the refused socket was parked by the completion routine; we own it.
                match unsafe { ConnSocket::from_accepted(raw) } {
                    // WSK-FACTS §7: closing a connection that is not disconnected aborts it.
                    Some(refused) => {
                        // SAFETY: pinned slot context; this socket's only call.
                        unsafe { refused.close(&slot.irp, accept_done, slot.context()) }.map_err(
                            |(s, e)| {
                                let _ = s.into_raw();
                                e
                            },
                        )
                    }
                    None => Err(NtStatus::INVALID_PARAMETER),
                }
            } else {
                match socket {
                    Some(socket) => {
                        let (local, remote) = slot.address_buffers();
                        // SAFETY: pinned slot buffers and context; worker-only calls on the
                        // socket.
                        unsafe {
                            socket.accept(&slot.irp, accept_done, slot.context(), local, remote)
                        }
                    }
                    None => Err(NtStatus::INVALID_DEVICE_STATE),
                }
            };
            if submitted.is_err() {
                let mut shared = self.shared.lock();
                shared.rundown.completed();
                slot.state.store(State::Idle, Ordering::Release);
                shared.accepts_waiting |= slot.bit;
            }
        }
    }

    pub(super) fn accepts_idle(&self) -> bool {
        self.accepts
            .iter()
            .all(|a| a.state.load(Ordering::Acquire) == State::Idle)
    }
}
