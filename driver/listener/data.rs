//! The data path of an accepted connection (services `discard` and `echo`): what the worker posts
//! on the slot's data IRP, and that IRP's completion routines.
//!
//! One call at a time per connection, on the slot's one data IRP and preallocated buffer
//! (`crate::conn::SlotIo`), so the path allocates nothing:
//! - `discard`: receive into the buffer, count, drop, receive again.
//! - `echo`: receive `n` bytes, then send those `n` bytes from the same buffer; only when the send
//!   has completed (every byte in the transport) is the next receive posted. A peer that does not
//!   read keeps its send pending: its connection stalls and costs nothing more, the others go on.
//!   A send completed with fewer bytes than asked is continued from where it stopped.
//! - A receive of 0 bytes is the peer's FIN. Nothing is left to echo then (a receive is posted
//!   only once the previous data was sent), so the graceful close follows: WskDisconnect, then
//!   WskCloseSocket (`slots.rs`).
//! - A failed receive or send means the peer reset the connection (or it broke): abortive close
//!   at once.
//!
//! Stop closes every connection whatever call is in flight: the close cancels it (WSK-FACTS §7).
//! Bytes are counted per connection (the table entry, under the lock) and per listener.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use wsk::{DEVICE_OBJECT, IRP, NtStatus, PfnIoCompletionRoutine};

use super::slots::{SlotAction, slot_irp_completed, slot_of};
use super::{Counters, Listener, Phase, Service, Shared, SlotIo};
use crate::net::ConnSocketRef;
use crate::table::work;

impl Listener {
    /// The slot's next data call for work `bits` (RECEIVE or SEND), if one is due: the data IRP
    /// is idle, no graceful disconnect has started and the peer has not closed. Under the lock;
    /// the slot is Active and handed over. IRQL: DISPATCH_LEVEL (under the lock).
    pub(super) fn decide_data(
        &self,
        shared: &mut Shared,
        io: &SlotIo,
        index: u32,
        bits: u8,
    ) -> Option<SlotAction> {
        // Stopping: no more data calls. The worker's slot-work loop runs as long as completions
        // keep asking for work, and with data flowing they always do (a send completed inline
        // asks for the next receive, and so on): without this, a stop would wait for the peers to
        // pause before the worker got back to its stop step.
        let entry = shared.table.entry(index)?;
        if io.data.is_busy()
            || io.ctl.is_busy()
            || entry.disconnected
            || entry.peer_closed
            || shared.phase == Phase::Stopping
        {
            return None;
        }
        let generation = entry.generation();
        let socket = entry.socket()?.by_ref();
        let service = self.config.service;
        let action = if bits & work::SEND != 0 && service == Service::Echo {
            let left = io.echo_len.load(Ordering::Relaxed) > io.echo_sent.load(Ordering::Relaxed);
            if !left {
                return None;
            }
            SlotAction::Send(index, socket)
        } else if bits & work::RECEIVE != 0 && service.reads() {
            SlotAction::Receive(index, socket)
        } else {
            return None;
        };
        io.data_generation.store(generation, Ordering::Release);
        shared.rundown.submitted();
        Some(action)
    }

    /// Posts the data call decided by [`Listener::decide_data`]: a receive into the whole
    /// buffer, or a send of what is left to echo. Worker only (IRQL: PASSIVE_LEVEL).
    pub(super) fn perform_data(
        &self,
        index: u32,
        socket: ConnSocketRef,
        send: bool,
    ) -> Option<Result<(), NtStatus>> {
        let io = self.io.get(index as usize)?;
        let (offset, length) = if send {
            // Written by the receive's or the last send's completion under the lock, which the
            // decision took after it.
            let done = io.echo_sent.load(Ordering::Relaxed);
            (
                done,
                io.echo_len.load(Ordering::Relaxed).saturating_sub(done),
            )
        } else {
            (0, io.capacity())
        };
        let routine: PfnIoCompletionRoutine = if send { send_done } else { receive_done };
        // SAFETY: worker only, and the data IRP is idle: the decision found it idle under the lock
        // and only the worker submits it.
        let buffer = unsafe { io.data_buffer(offset, length) };
        // SAFETY: the slot's IRP, buffer, MDL and context are pinned for the listener's life; the
        // buffer is not written until this call completes (the next receive is posted only after
        // it); only the worker closes the socket, so it is alive for this call.
        Some(unsafe { socket.transfer(send, &io.data, buffer, routine, io.context()) })
    }
}

/// The peer is gone: by a reset (`reset`) or a FIN. Under the lock. IRQL: <= DISPATCH_LEVEL.
fn peer_gone(shared: &mut Shared, index: u32, reset: bool) {
    if let Some(entry) = shared.table.entry_mut(index) {
        entry.peer_closed = true;
        entry.peer_reset = reset;
    }
    // A FIN: the graceful close (nothing is left to echo); a reset: abortive, at once.
    shared
        .table
        .request(index, if reset { work::ABORT } else { work::CLOSE });
}

/// The common start of the data IRP's completion routines: the slot's IO block, its listener,
/// the slot generation the IRP was submitted for, and the IRP's IoStatus (the IRP is taken
/// back: it is idle from here on). IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// Called only from the completion routine of a slot's data IRP, with the `context` given with
/// that IRP (the slot's `SlotIo::context()`), before anything else touches the IRP.
unsafe fn data_completed<'a>(
    context: *mut c_void,
) -> (&'a SlotIo, &'a Listener, u32, NtStatus, usize) {
    // SAFETY: slot IRPs are submitted with their SlotIo's `context()` (see `perform_data`), the
    // caller's promise.
    let (io, listener) = unsafe { slot_of(context) };
    let generation = io.data_generation.load(Ordering::Acquire);
    // SAFETY: called from the data IRP's completion routine (# Safety).
    let (status, information) = unsafe { io.data.take_back() };
    (io, listener, generation, status, information)
}
/// Completion of the slot's WskReceive. IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no
/// allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's data IRP carrying a receive:
/// `context` is the slot's `SlotIo` (its `context()`) given with that IRP, which stays alive
/// until this routine has run.
pub(crate) unsafe extern "system" fn receive_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: this is the completion routine of a slot's data IRP, with its context (# Safety).
    let (io, listener, generation, status, information) = unsafe { data_completed(context) };
    slot_irp_completed(io, listener, generation, |shared, index| {
        if !status.is_success() {
            return peer_gone(shared, index, true);
        }
        // Never more than the buffer, whatever a provider reports.
        let received = u32::try_from(information)
            .unwrap_or(u32::MAX)
            .min(io.capacity());
        if received == 0 {
            return peer_gone(shared, index, false);
        }
        let counters = &listener.counters;
        counters
            .bytes_in
            .fetch_add(u64::from(received), Ordering::Relaxed);
        if let Some(entry) = shared.table.entry_mut(index) {
            entry.bytes_in += u64::from(received);
        }
        if listener.config.service == Service::Echo {
            io.echo_len.store(received, Ordering::Relaxed);
            io.echo_sent.store(0, Ordering::Relaxed);
            shared.table.request(index, work::SEND);
        } else {
            counters
                .bytes_discarded
                .fetch_add(u64::from(received), Ordering::Relaxed);
            shared.table.request(index, work::RECEIVE);
        }
    })
}

/// Completion of the slot's WskSend (echo). IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no
/// allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of a slot's data IRP carrying a send:
/// `context` is the slot's `SlotIo` (its `context()`) given with that IRP, which stays alive
/// until this routine has run.
pub(crate) unsafe extern "system" fn send_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: this is the completion routine of a slot's data IRP, with its context (# Safety).
    let (io, listener, generation, status, information) = unsafe { data_completed(context) };
    slot_irp_completed(io, listener, generation, |shared, index| {
        let (length, sent) = (
            io.echo_len.load(Ordering::Relaxed),
            io.echo_sent.load(Ordering::Relaxed),
        );
        let left = length.saturating_sub(sent);
        let wrote = u32::try_from(information).unwrap_or(u32::MAX).min(left);
        if !status.is_success() || wrote == 0 {
            // The connection is broken (a send that moves nothing would never finish).
            return peer_gone(shared, index, true);
        }
        let counters = &listener.counters;
        counters
            .bytes_out
            .fetch_add(u64::from(wrote), Ordering::Relaxed);
        if let Some(entry) = shared.table.entry_mut(index) {
            if entry.bytes_out == 0 {
                Counters::bump(&counters.echoed);
            }
            entry.bytes_out += u64::from(wrote);
        }
        io.echo_sent.store(sent + wrote, Ordering::Relaxed);
        let next = if wrote < left {
            work::SEND
        } else {
            work::RECEIVE
        };
        shared.table.request(index, next);
    })
}
