//! Admission and hand-over: policy, capacity and insertion of a just-accepted socket (both
//! paths), and the hand-over of event-accepted sockets to the worker once their WskAcceptEvent
//! is known to have returned.

use core::net::SocketAddr;
use core::sync::atomic::Ordering;

use wsk::{NtStatus, WSK_EVENT_ACCEPT};

use super::worker_only::Worker;
use super::{Counters, Listener, Mode, NO_SLOT, Phase, Service, Shared};
use crate::conn::NOT_AT_DISPATCH;
use crate::kernel;
use crate::net::ConnSocket;
use crate::policy::{SourceSlot, Verdict};
use crate::table::{AcceptPath, ConnId, ConnInfo, work};
use crate::trace::Refusal;

// A table entry's owner tag is `u32::MAX` from insert until admission sets it: an entry admission
// did not count reads as `SourceSlot::NONE`, which its release skips.
const _: () = assert!(SourceSlot::NONE.to_raw() == u32::MAX);

/// What proves that accept callbacks returned, for [`Listener::hand_over`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Returned {
    /// Every callback has: the listening socket's close completed, or a disable of the accept
    /// event answered STATUS_SUCCESS (no callback running, WSK-FACTS §5).
    All,
    /// An accept callback runs now on this processor at DISPATCH_LEVEL, or the listener's
    /// hand-over DPC for this processor runs (`handover_dpc.rs`). A callback that ran there at
    /// DISPATCH_LEVEL and reached its last statement has returned: code at DISPATCH_LEVEL runs
    /// to its end on its processor before anything else at that level starts there. Nothing is
    /// proven about other processors, whose callbacks may still run (Windows does not say that
    /// one listener's accept callbacks come one at a time), nor about a callback called below
    /// DISPATCH_LEVEL, which may be preempted after its last statement.
    OnProcessor(u16),
}

impl Listener {
    /// Policy, capacity and insertion for a just-accepted socket, on either path.
    /// IRQL: DISPATCH_LEVEL (under the lock). Gives the socket back when refused.
    #[allow(
        clippy::inline_always,
        reason = "one copy per accept path: the call's register saves were ~18 instructions per \
                  connection (callgrind), the two callers are the only ones"
    )]
    #[inline(always)]
    pub(crate) fn admit(
        &self,
        shared: &mut Shared,
        socket: ConnSocket,
        local: SocketAddr,
        remote: SocketAddr,
        path: AcceptPath,
    ) -> Result<ConnId, ConnSocket> {
        // Starting: only reachable once the accept event is on, after the last failure point.
        if !matches!(shared.phase, Phase::Running | Phase::Starting) {
            Counters::bump(&self.counters.rejected_not_running);
            self.trace_refused(Refusal::NotRunning, Some(remote));
            return Err(socket);
        }
        // In conditional mode the inspection already applied the rules (and user mode may have
        // accepted a deferred request); capacity and the per-source limit are checked again here.
        let settled = self.config.mode == Mode::Conditional;
        // Sources are counted only while a limit may need them (`counting_sources`): a listener
        // that never had a per-source limit pays no hash here and no release later.
        let (from_source, spot) = if shared.counting_sources {
            let (count, spot) = shared.sources.locate(remote.ip());
            (count, Some(spot))
        } else {
            (0, None)
        };
        let verdict = shared.policy.evaluate(
            &remote,
            shared.table.occupancy(),
            from_source,
            false,
            settled,
        );
        if let Verdict::Reject(reason) = verdict {
            self.count_rejection(reason, remote);
            return Err(socket);
        }
        let info = ConnInfo {
            remote,
            local,
            path,
            accepted_at: kernel::interrupt_time(),
        };
        match shared.table.insert(socket, info) {
            Ok(id) => {
                // The map did not change since `locate`: the lock is held throughout. The entry
                // keeps the slot that counts it, so its release needs no hash (`try_release`);
                // uncounted, it keeps the table's `SourceSlot::NONE` from insert.
                if let Some(spot) = spot {
                    let source = shared.sources.add_at(&spot);
                    if let Some(entry) = shared.table.entry_mut(id.index()) {
                        entry.set_owner_tag(source.to_raw());
                    }
                }
                // SAFETY: `global` points at the engine's counters, which outlive listeners.
                unsafe { (*self.global).opened() };
                // Service `close` costs the fewest WSK calls the documented semantics allow for a
                // graceful close: WskDisconnect, then WskCloseSocket once it completed (plus the
                // WskAccept that brought the socket, on the IRP path: 3; 2 on the event path).
                // WskCloseSocket alone aborts a connection not fully disconnected (WSK-FACTS §7:
                // the client would see a reset, not EOF), and it cancels pending IRPs, so issued
                // before the disconnect completed it would abort it too. No receive, no event
                // enable: nothing is read from the peer.
                let first = match self.config.service {
                    Service::Discard | Service::Echo => work::RECEIVE,
                    Service::Close => work::CLOSE,
                };
                match (path, self.io.get(id.index() as usize)) {
                    // WskAcceptEvent has not returned: the provider has not recorded the socket
                    // as accepted, so the worker may not touch it yet (see `hand_over`).
                    (AcceptPath::Event, Some(io)) => {
                        io.returned.store(false, Ordering::Release);
                        io.stashed.store(first, Ordering::Relaxed);
                        io.awaiting.store(true, Ordering::Relaxed);
                        io.next_handover.store(shared.handovers, Ordering::Relaxed);
                        shared.handovers = id.index();
                    }
                    _ => shared.table.request(id.index(), first),
                }
                Ok(id)
            }
            Err(full) => {
                Counters::bump(&self.counters.rejected_full);
                self.trace_refused(Refusal::Full, Some(remote));
                Err(full.0)
            }
        }
    }

    /// Records the processor the accept callback handing over the socket of `id` runs on
    /// ([`NOT_AT_DISPATCH`] when it was not called at DISPATCH_LEVEL), and counts the socket
    /// among those only the waited disable can hand over when no hand-over DPC covers it. IRQL:
    /// DISPATCH_LEVEL (callback, under the lock that admitted the socket).
    pub(crate) fn note_indication(&self, shared: &mut Shared, id: ConnId, processor: u16) {
        if let Some(io) = self.io.get(id.index() as usize) {
            io.indicated_on.store(processor, Ordering::Relaxed);
            if !self.dpc_covers(processor) {
                shared.uncovered += 1;
            }
        }
    }

    /// The accept callback that handed the socket of `id` over on processor `here` (as given to
    /// [`Listener::note_indication`]) is about to return: its last statements. Queues `here`'s
    /// hand-over DPC, or, for a socket no DPC covers, wakes the ticker (which asks the worker for
    /// the waited disable). IRQL: DISPATCH_LEVEL (callback); no lock.
    pub(crate) fn accept_event_returning(&self, id: ConnId, here: u16) {
        if let Some(io) = self.io.get(id.index() as usize) {
            io.returned.store(true, Ordering::Release);
        }
        if self.dpc_covers(here) && self.queue_handover_dpc(id.index(), here) {
            return;
        }
        // SAFETY: `global` points at the engine's figures, which outlive listeners.
        unsafe { (*self.global).handover_ready.set() };
    }

    /// Hands sockets accepted by WskAcceptEvent over to the worker: their stashed work goes on
    /// the work list. Only where their callbacks are known to have returned ([`Returned`]): the
    /// completed close of the listening socket (close waits for running callbacks, WSK-FACTS §7),
    /// a waited disable of the accept event (see `hand_over_quiesced`, which the engine's ticker
    /// asks for once the callback's last statement signalled it), or, for the callbacks that ran
    /// at DISPATCH_LEVEL on one processor, that processor's hand-over DPC or the entry of a later
    /// callback on that same processor. IRQL: DISPATCH_LEVEL (under the lock).
    pub(crate) fn hand_over(&self, shared: &mut Shared, proof: Returned) {
        let mut link = NO_SLOT;
        let mut index = shared.handovers;
        while index != NO_SLOT {
            let Some(io) = self.io.get(index as usize) else {
                break;
            };
            let next = io.next_handover.load(Ordering::Relaxed);
            let returned = match proof {
                Returned::All => true,
                Returned::OnProcessor(here) => {
                    here != NOT_AT_DISPATCH
                        && io.returned.load(Ordering::Acquire)
                        && io.indicated_on.load(Ordering::Relaxed) == here
                }
            };
            if returned {
                if !self.dpc_covers(io.indicated_on.load(Ordering::Relaxed)) {
                    shared.uncovered = shared.uncovered.saturating_sub(1);
                }
                io.next_handover.store(NO_SLOT, Ordering::Relaxed);
                io.awaiting.store(false, Ordering::Relaxed);
                let bits = io.stashed.swap(0, Ordering::Relaxed);
                shared.table.request(index, bits);
                match self.io.get(link as usize) {
                    Some(previous) => previous.next_handover.store(next, Ordering::Relaxed),
                    None => shared.handovers = next,
                }
            } else {
                link = index;
            }
            index = next;
        }
    }

    /// Whether sockets wait to be handed over that no hand-over DPC covers (the ticker has the
    /// worker hand them over). IRQL: <= DISPATCH_LEVEL.
    #[must_use]
    pub fn has_handovers(&self) -> bool {
        self.shared.lock().uncovered > 0
    }

    /// Hands over sockets whose accept callbacks have returned, when no later callback did: the
    /// worker disables the accept event with an IRP and waits for it, which completes once no
    /// accept callback runs (at once, or when the running one returned: WSK-FACTS §5), hands
    /// everything over, and enables the event again (connections arriving meanwhile wait in the
    /// backlog, or go to accept IRPs). No guessed delay: the disable's completion is the proof.
    /// Worker only.
    pub(super) fn hand_over_quiesced(&self, worker: &mut Worker<'_>) {
        if !self.config.mode.uses_events() || !self.has_handovers() {
            return;
        }
        let Some(socket) = self.socket.get(worker).as_ref() else {
            // No listening socket: the restart or stop that closed it hands over.
            return;
        };
        if socket.disable_event_waited(WSK_EVENT_ACCEPT) == NtStatus::SUCCESS {
            self.hand_over(&mut self.shared.lock(), Returned::All);
        }
        // Otherwise the disable failed: a later callback or the next tick hands over.
        if !socket.set_events(WSK_EVENT_ACCEPT).is_success() {
            let mut shared = self.shared.lock();
            shared.last_error = NtStatus::INVALID_DEVICE_STATE;
            Self::request_restart_locked(&mut shared);
        }
    }

    /// The ticker: hand over what waits, then run the worker. IRQL: <= DISPATCH_LEVEL.
    pub fn tick_handovers(&self) {
        self.handover_tick.store(true, Ordering::Release);
        self.kick();
    }
}
