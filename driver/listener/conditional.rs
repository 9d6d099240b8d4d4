//! Conditional accept on a listener (WSK-FACTS §6): the policy answers WskInspectEvent at once
//! (accept or reject) or defers to user mode; deferred requests wait in the pending queue until
//! DECIDE, the peer's withdrawal (WskAbortEvent), or the decision timeout. Decisions are sent with
//! WskInspectComplete by the worker, one at a time, on the listener's decision IRP.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::Ordering;

use wsk::{DEVICE_OBJECT, IRP, NtStatus, WSK_INSPECT_ACTION, WSK_INSPECT_ID};

use super::worker_only::Worker;
use super::{Counters, Listener, Mode, Phase};
use crate::kernel;
use crate::pending::{Outcome, PendingId, PendingInfo};
use crate::policy::{Policy, RejectReason, SourceSlot, Verdict};
use crate::table::SlotState;
use crate::trace::{self, Refusal};

/// Table slots [`Listener::set_policy`] counts per hold of the spin lock when it turns source
/// counting on (one SipHash-1-3 and a window read each: a few thousand instructions a hold).
const SOURCE_COUNT_CHUNK: u32 = 32;

/// Completion of WskInspectComplete. IRQL: <= DISPATCH_LEVEL; no WSK, no blocking, no allocation.
///
/// # Safety
/// Called by the I/O manager as the completion routine of the listener's decision IRP: `context` is
/// the listener given with that IRP, which stays alive until this routine has run.
unsafe extern "system" fn decision_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: submitted with the listener as context; it outlives its IRPs.
    let listener = unsafe { &*context.cast::<Listener>() };
    let index = listener.decision_index.load(Ordering::Acquire);
    // SAFETY: this is the decision IRP's completion routine.
    let (status, _) = unsafe { listener.decision.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    let outcome = shared.pending.complete(index);
    listener.count_decision(outcome, status.is_success());
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}

impl Listener {
    /// Counts how a request whose decision was sent (`sent`: WskInspectComplete succeeded) ended:
    /// once, under what actually happened. IRQL: <= DISPATCH_LEVEL.
    fn count_decision(&self, outcome: Option<Outcome>, sent: bool) {
        let counter = match outcome {
            Some(Outcome::Accepted) if sent => &self.counters.accepted_conditional,
            // Not sent (the listening socket went, and the provider reset the peer with it).
            Some(Outcome::Accepted) => &self.counters.rejected_not_running,
            Some(Outcome::Rejected) => &self.counters.rejected_policy,
            Some(Outcome::Withdrawn) => &self.counters.withdrawn,
            // Counted at the timeout, or already ended.
            Some(Outcome::TimedOut) | None => return,
        };
        Counters::bump(counter);
        if matches!(outcome, Some(Outcome::Rejected)) {
            self.trace_refused(Refusal::Policy, None);
        } else if matches!(outcome, Some(Outcome::Accepted)) && !sent {
            self.trace_refused(Refusal::NotRunning, None);
        }
    }

    /// Counts a refusal by its reason, and traces it. IRQL: <= DISPATCH_LEVEL.
    pub(crate) fn count_rejection(&self, reason: RejectReason, remote: SocketAddr) {
        let (counter, refusal) = match reason {
            RejectReason::Full => (&self.counters.rejected_full, Refusal::Full),
            RejectReason::NotRunning => (&self.counters.rejected_not_running, Refusal::NotRunning),
            RejectReason::Policy => (&self.counters.rejected_policy, Refusal::Policy),
            RejectReason::SourceLimit => {
                (&self.counters.rejected_source_limit, Refusal::SourceLimit)
            }
        };
        Counters::bump(counter);
        self.trace_refused(refusal, Some(remote));
    }

    /// Traces a refusal (the counter is the caller's). IRQL: <= DISPATCH_LEVEL.
    pub(crate) fn trace_refused(&self, reason: Refusal, remote: Option<SocketAddr>) {
        trace::emit(trace::Event::Refused {
            listener: self.id(),
            reason,
            remote,
        });
    }

    /// WskInspectEvent's decision. IRQL: DISPATCH_LEVEL (callback); no WSK, no allocation.
    pub(crate) fn inspect(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        id: &WSK_INSPECT_ID,
    ) -> WSK_INSPECT_ACTION {
        let mut shared = self.shared.lock();
        if shared.phase != Phase::Running {
            Counters::bump(&self.counters.rejected_not_running);
            self.trace_refused(Refusal::NotRunning, Some(remote));
            return WSK_INSPECT_ACTION::REJECT;
        }
        // Sources are counted only while a limit may need them (see `set_policy`).
        let from_source = if shared.counting_sources {
            shared.sources.count(remote.ip())
        } else {
            0
        };
        match shared
            .policy
            .evaluate(&remote, shared.table.occupancy(), from_source, true, false)
        {
            Verdict::Accept => {
                Counters::bump(&self.counters.accepted_conditional);
                WSK_INSPECT_ACTION::ACCEPT
            }
            Verdict::Reject(reason) => {
                self.count_rejection(reason, remote);
                WSK_INSPECT_ACTION::REJECT
            }
            Verdict::Defer => {
                let pended = shared
                    .pending
                    .push(*id, remote, local, kernel::interrupt_time());
                if pended.is_err() {
                    // A full queue never blocks: the request is refused and counted.
                    Counters::bump(&self.counters.rejected_pending_full);
                    self.trace_refused(Refusal::PendingFull, Some(remote));
                    return WSK_INSPECT_ACTION::REJECT;
                }
                Counters::bump(&self.counters.inspect_pended);
                // SAFETY: `global` points at the engine's figures, which outlive listeners.
                unsafe { (*self.global).deferred() };
                // Keep the timeout ticking for this request.
                self.kick_locked(&shared);
                WSK_INSPECT_ACTION::PEND
            }
        }
    }

    /// WskAbortEvent: the peer withdrew a deferred request. IRQL: DISPATCH_LEVEL (callback).
    pub(crate) fn abort(&self, id: &WSK_INSPECT_ID) {
        let mut shared = self.shared.lock();
        if shared.pending.abort(id) {
            Counters::bump(&self.counters.withdrawn);
        }
    }

    /// Hands the oldest undelivered request to user mode (GET_PENDING). IRQL: <= DISPATCH_LEVEL.
    pub fn take_pending(&self) -> Option<PendingInfo> {
        self.shared.lock().pending.deliver()
    }

    /// User mode's decision on a deferred request. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown, already decided, timed-out or withdrawn request.
    pub fn decide(&self, id: PendingId, accept: bool) -> Result<(), NtStatus> {
        let mut shared = self.shared.lock();
        if !shared.pending.decide(id, accept) {
            return Err(NtStatus::NOT_FOUND);
        }
        self.kick_locked(&shared);
        Ok(())
    }

    /// Replaces the policy; it applies to the next connection. IRQL: PASSIVE_LEVEL.
    ///
    /// Sources are counted only once a policy with a per-source limit was in force (a listener
    /// that never had one pays for no hash per connection): a limit set on a listener that did
    /// not count them yet first turns counting on (admission counts every connection from then
    /// on) and counts the connections its table already holds, in holds of the lock of at most
    /// [`SOURCE_COUNT_CHUNK`] slots, before the limit takes effect; counting then stays on.
    /// Every policy with a limit walks the table this way (a connection counted already is
    /// skipped), so the limit never takes effect before its own walk ended, whoever else sets a
    /// policy meanwhile.
    pub fn set_policy(&self, policy: Policy) {
        if policy.per_source != 0 {
            self.count_sources_held();
        }
        self.shared.lock().policy = policy;
    }

    /// Turns source counting on and counts every connection in the table that is not counted.
    /// IRQL: PASSIVE_LEVEL (the lock is dropped between chunks).
    fn count_sources_held(&self) {
        let capacity = {
            let mut shared = self.shared.lock();
            shared.counting_sources = true;
            shared.table.capacity()
        };
        let mut start = 0;
        while start < capacity {
            let end = start.saturating_add(SOURCE_COUNT_CHUNK).min(capacity);
            let mut guard = self.shared.lock();
            let shared = &mut *guard;
            for index in start..end {
                let peer = match shared.table.entry(index) {
                    // In use and not counted (admitted before counting was on, or its window was
                    // full then): count it now.
                    Some(entry)
                        if entry.state() != SlotState::Free
                            && entry.owner_tag() == SourceSlot::NONE.to_raw() =>
                    {
                        entry.info().remote.ip()
                    }
                    _ => continue,
                };
                let slot = shared.sources.add(peer);
                if let Some(entry) = shared.table.entry_mut(index) {
                    entry.set_owner_tag(slot.to_raw());
                }
            }
            drop(guard);
            start = end;
        }
    }

    /// The policy in force. IRQL: <= DISPATCH_LEVEL.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.shared.lock().policy
    }

    /// Whether deferred requests are waiting (the engine's ticker keeps their timeouts running).
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.shared.lock().pending.is_empty()
    }

    /// Times out overdue requests and sends the next decision (mode `conditional`; nothing in
    /// the other modes). Worker only.
    #[inline]
    pub(super) fn service_decisions(&self, worker: &mut Worker<'_>) {
        // Checked here, inlined into every worker pass, so the other modes' passes do not pay
        // for the call.
        if self.config.mode == Mode::Conditional {
            self.service_pending_decisions(worker);
        }
    }

    /// [`Listener::service_decisions`] of a conditional listener. Worker only.
    #[inline(never)]
    fn service_pending_decisions(&self, worker: &mut Worker<'_>) {
        let timeout = u64::from(self.config.decision_timeout_ms) * 10_000;
        let outgoing = {
            let mut shared = self.shared.lock();
            let expired = shared.pending.expire(kernel::interrupt_time(), timeout);
            self.counters
                .decision_timeouts
                .fetch_add(u64::from(expired), Ordering::Relaxed);
            if self.decision.is_busy() {
                // One decision at a time; its completion kicks us for the next.
                return;
            }
            let Some(outgoing) = shared.pending.next_outgoing() else {
                return;
            };
            shared.rundown.submitted();
            outgoing
        };
        let Some(socket) = self.socket.get(worker).as_ref() else {
            self.undo_decision(outgoing.index);
            return;
        };
        // SAFETY: the decision IRP is idle (checked above; only the worker submits it), so nobody
        // reads this ID now; the provider reads it during the call below.
        unsafe { self.decision_id.get().write(outgoing.inspect) };
        self.decision_index.store(outgoing.index, Ordering::Release);
        let action = if outgoing.accept {
            WSK_INSPECT_ACTION::ACCEPT
        } else {
            WSK_INSPECT_ACTION::REJECT
        };
        let context = core::ptr::from_ref(self).cast_mut().cast();
        // SAFETY: the listener outlives its IRPs; the ID lives in the listener until completion.
        let submitted = unsafe {
            socket.inspect_complete(
                &self.decision,
                decision_done,
                context,
                self.decision_id.get(),
                action,
            )
        };
        if submitted.is_err() {
            self.undo_decision(outgoing.index);
        }
    }

    fn undo_decision(&self, index: usize) {
        let mut shared = self.shared.lock();
        shared.rundown.completed();
        let outcome = shared.pending.complete(index);
        self.count_decision(outcome, false);
    }
}
