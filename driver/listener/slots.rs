//! Per-slot connection work: what the worker does for each table slot (the data path's receive
//! and send, `data.rs`; graceful disconnect; close) and the slot IRPs' completion routines, which
//! update the slot under the listener's spin lock and kick the worker. The slot's IO block itself
//! is `crate::conn::SlotIo`.
//!
//! Completion routines run at DISPATCH_LEVEL: they take the IRP back, update the slot under the
//! listener's spin lock, and queue work; they never call WSK, never block, never allocate.

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::sync::atomic::Ordering;

use wsk::{DEVICE_OBJECT, IRP, NtStatus};

use super::{Counters, Listener, Phase, Shared, SlotIo};
use crate::net::{ConnSocket, ConnSocketRef};
use crate::policy::SourceSlot;
use crate::table::{SlotState, work};

/// Slots whose work the worker decides per hold of the spin lock (see `run_slot_work`).
const SLOT_WORK_CHUNK: usize = 16;

/// A pass's decided slot operations, one chunk at a time ([`no_actions`]).
pub(super) type SlotActions = ManuallyDrop<[Option<SlotAction>; SLOT_WORK_CHUNK]>;

/// An empty [`SlotActions`], filled once per pass: every round leaves each action it used taken
/// (None) again, so at the end every element is None and dropping the array would do nothing but
/// look at all of them (its drop glue): `ManuallyDrop` skips that look. Never dropping is safe;
/// an action left in it (none is) would be leaked, not lost track of unsafely.
pub(super) fn no_actions() -> SlotActions {
    ManuallyDrop::new(core::array::from_fn(|_| None))
}

pub(super) enum SlotAction {
    Receive(u32, ConnSocketRef),
    Send(u32, ConnSocketRef),
    Disconnect(u32, ConnSocketRef),
    Close(u32, ConnSocket),
}

impl Listener {
    /// Frees a Closing slot once its close completed and both its IRPs are back.
    /// IRQL: DISPATCH_LEVEL (under the lock).
    #[inline]
    pub(crate) fn try_release(&self, shared: &mut Shared, index: u32) {
        let (Some(io), Some(entry)) = (self.io.get(index as usize), shared.table.entry(index))
        else {
            return;
        };
        let ready = entry.state() == SlotState::Closing && entry.close_done;
        if ready && !io.data.is_busy() && !io.ctl.is_busy() && !io.close.is_busy() {
            // One look at the entry for everything the release needs.
            let (peer_closed, peer_reset) = (entry.peer_closed, entry.peer_reset);
            let slot = SourceSlot::from_raw(entry.owner_tag());
            // Only a counted connection needs its address (see `counting_sources`).
            let source = (slot != SourceSlot::NONE).then(|| entry.info().remote.ip());
            if shared.table.release(index) {
                // The slot admission counted it at: no hash (see `SourceSlot`).
                if let Some(source) = source {
                    shared.sources.release(slot, source);
                }
                Counters::bump(&self.counters.closed);
                if peer_closed {
                    Counters::bump(&self.counters.peer_closed);
                    Counters::bump(if peer_reset {
                        &self.counters.peer_reset
                    } else {
                        &self.counters.peer_fin
                    });
                }
                // SAFETY: `global` points at the engine's figures, which the engine frees only
                // after every listener is gone.
                unsafe { (*self.global).closed() };
            }
        }
    }

    /// Performs queued slot work: receives, disconnects, closes. Worker only.
    ///
    /// Each hold of the spin lock takes up to [`SLOT_WORK_CHUNK`] slots off the work list and
    /// decides their operations (small bounded work at DISPATCH_LEVEL), then the WSK calls are made
    /// with the lock released; this repeats while a hold fills its chunk (a hold that took fewer
    /// emptied the list), so one pass does all the work queued before it, however much. Work asked
    /// for after a hold (by a completion, possibly inline in one of the calls below) is not looked
    /// for again here: every `request` is followed by a kick under the same lock hold, and the
    /// kick queues the next pass (the queue clears an item's flag before running it), which takes
    /// it; a further hold here would cost a lock hold per pass and save no pass. A slot appears at
    /// most once per chunk: only `request` puts it back on the list, and nothing requests work
    /// while the worker holds the lock; its next decision comes after its operation of this chunk
    /// was performed.
    pub(super) fn run_slot_work(&self) {
        let mut actions = no_actions();
        self.slot_work_rounds(&mut actions, None);
    }

    /// [`Listener::run_slot_work`]'s rounds. `first`: a chunk the caller already took in a hold of
    /// its own ([`Listener::take_slot_work`], its actions in `actions`), performed as the first
    /// round. Worker only.
    pub(super) fn slot_work_rounds(&self, actions: &mut SlotActions, mut first: Option<usize>) {
        loop {
            let popped = match first.take() {
                Some(popped) => popped,
                None => self.take_slot_work(&mut self.shared.lock(), actions),
            };
            if popped == 0 {
                break;
            }
            for action in actions.iter_mut().take(popped) {
                if let Some(action) = action.take() {
                    self.perform(action);
                }
            }
            if popped < SLOT_WORK_CHUNK {
                // The list was empty at the end of the hold; what was asked for since, the pass
                // its kick queued takes.
                break;
            }
        }
    }

    /// One round's hold: takes up to [`SLOT_WORK_CHUNK`] slots off the work list and decides
    /// their operations into `actions`; how many it took. IRQL: DISPATCH_LEVEL (under the lock).
    #[inline]
    pub(super) fn take_slot_work(&self, shared: &mut Shared, actions: &mut SlotActions) -> usize {
        let mut popped = 0;
        for action in actions.iter_mut() {
            let Some((index, bits)) = shared.table.pop_work() else {
                break;
            };
            *action = self.decide_slot_work(shared, index, bits);
            popped += 1;
        }
        popped
    }

    fn decide_slot_work(&self, shared: &mut Shared, index: u32, bits: u8) -> Option<SlotAction> {
        let io = self.io.get(index as usize)?;
        let entry = shared.table.entry(index)?;
        if entry.state() != SlotState::Active {
            return None;
        }
        if io.awaiting.load(Ordering::Relaxed) {
            // Not handed over yet: keep the work for the hand-over.
            io.stashed.fetch_or(bits, Ordering::Relaxed);
            return None;
        }
        let generation = entry.generation();
        if bits & (work::CLOSE | work::ABORT) != 0 {
            let graceful =
                bits & work::ABORT == 0 && !entry.disconnected && shared.phase != Phase::Stopping;
            if graceful {
                if io.ctl.is_busy() {
                    // A disconnect is in flight; its completion asks for the close.
                    return None;
                }
                let socket = entry.socket()?.by_ref();
                io.ctl_generation.store(generation, Ordering::Release);
                shared.rundown.submitted();
                return Some(SlotAction::Disconnect(index, socket));
            }
            // Abortive, after the disconnect, or stopping: close now, whatever disconnect or
            // receive is in flight. Close cancels them (WSK-FACTS §7), so it never waits for a
            // peer, and it has its own IRP, so a disconnect never holds it up.
            let socket = shared.table.begin_close(index)?;
            io.close_generation.store(generation, Ordering::Release);
            shared.rundown.submitted();
            return Some(SlotAction::Close(index, socket));
        }
        if bits & (work::RECEIVE | work::SEND) != 0 {
            return self.decide_data(shared, io, index, bits);
        }
        None
    }

    fn perform(&self, action: SlotAction) {
        let submitted = match action {
            SlotAction::Receive(index, socket) => self.perform_data(index, socket, false),
            SlotAction::Send(index, socket) => self.perform_data(index, socket, true),
            SlotAction::Disconnect(index, socket) => self.io.get(index as usize).map(|io| {
                // SAFETY: the slot's control IRP and context are pinned for the listener's life;
                // only the worker closes the socket, so it is alive for this call.
                unsafe { socket.disconnect(&io.ctl, false, disconnect_done, io.context()) }
            }),
            SlotAction::Close(index, socket) => self.io.get(index as usize).map(|io| {
                // SAFETY: the slot's close IRP and context are pinned for the listener's life; the
                // socket was taken out of the table, so this is its one
                // close, and no other call on it is in progress (worker only).
                unsafe { socket.close(&io.close, close_done, io.context()) }.map_err(
                    |(socket, status)| {
                        // Unreachable (the IRP was idle under the lock); keep the socket parked
                        // rather than lose it.
                        let _ = socket.into_raw();
                        status
                    },
                )
            }),
        };
        if !matches!(submitted, Some(Ok(()))) {
            self.shared.lock().rundown.completed();
        }
    }
}

/// The slot and listener a slot IRP's completion context names.
///
/// # Safety
/// `context` is the `context()` of a listener's `SlotIo` whose IRP is completing: by the
/// `SlotIo` invariant the block is pinned and its owner (set by `attach` before any submission)
/// outlives every completion, so both references live for the completion routine.
pub(super) unsafe fn slot_of<'a>(context: *mut c_void) -> (&'a SlotIo, &'a Listener) {
    // SAFETY: the caller's promise: `context` points at a live, pinned SlotIo.
    let io = unsafe { &*context.cast::<SlotIo>() };
    // SAFETY: the SlotIo invariant: `owner` was set by `attach` before any submission and the
    // listener outlives its IRPs' completions.
    let listener = unsafe { &*io.owner() };
    (io, listener)
}

/// What the receive and disconnect completions share, after they took their IRP back: under the
/// listener's lock, the IRP is counted back in the rundown; if the slot still holds the
/// connection the IRP was submitted for (same generation) and it is Active, `on_active` sets its
/// next step; if it is Closing (its close did not wait for this IRP), the slot may go now; an IRP
/// of an earlier connection of the slot changes nothing more. IRQL: <= DISPATCH_LEVEL; no WSK,
/// no blocking, no allocation.
pub(super) fn slot_irp_completed(
    io: &SlotIo,
    listener: &Listener,
    generation: u32,
    on_active: impl FnOnce(&mut Shared, u32),
) -> NtStatus {
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let index = io.index();
    let current = shared
        .table
        .entry(index)
        .map(|e| (e.state(), e.generation()));
    match current {
        Some((SlotState::Active, g)) if g == generation => on_active(&mut shared, index),
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
/// Called by the I/O manager as the completion routine of a slot's disconnect IRP: `context` is the
/// slot's `SlotIo` (its `context()`) given with that IRP, which stays alive until this routine has
/// run.
pub(crate) unsafe extern "system" fn disconnect_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: slot IRPs are submitted with their SlotIo's `context()` (see `perform`).
    let (io, listener) = unsafe { slot_of(context) };
    let generation = io.ctl_generation.load(Ordering::Acquire);
    // SAFETY: this is the ctl IRP's completion routine.
    let _ = unsafe { io.ctl.take_back() };
    // Success or not, the next step is the close (a failed disconnect means the connection is
    // already gone; close aborts whatever is left). A close that did not wait for this
    // disconnect (it cancelled it) finds the slot Closing: the slot may go now.
    slot_irp_completed(io, listener, generation, |shared, index| {
        if let Some(entry) = shared.table.entry_mut(index) {
            entry.disconnected = true;
        }
        shared.table.request(index, work::CLOSE);
    })
}

/// Completion of the slot's WskCloseSocket. IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no
/// allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's close IRP: `context` is the
/// slot's `SlotIo` (its `context()`) given with that IRP, which stays alive until this routine has
/// run.
pub(crate) unsafe extern "system" fn close_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: slot IRPs are submitted with their SlotIo's `context()` (see `perform`).
    let (io, listener) = unsafe { slot_of(context) };
    let generation = io.close_generation.load(Ordering::Acquire);
    // SAFETY: this is the close IRP's completion routine.
    let _ = unsafe { io.close.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let index = io.index();
    // One look at the entry: the close is this occupant's (same generation, Closing).
    if let Some(entry) = shared
        .table
        .entry_mut(index)
        .filter(|e| e.state() == SlotState::Closing && e.generation() == generation)
    {
        entry.close_done = true;
        listener.try_release(&mut shared, index);
    }
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}
