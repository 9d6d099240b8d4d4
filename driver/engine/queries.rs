//! The engine's control-plane API: listener and driver figures, the connection listing, closes,
//! policies, and deferred requests (GET_PENDING / DECIDE). Every method runs at PASSIVE_LEVEL
//! under the control lock.

use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::NtStatus;

use super::{ConnRecord, DriverStats, Engine, LIST_CHUNK, MAX_LISTENERS};
use crate::listener::ListenerInfo;
use crate::pending::{PendingId, PendingInfo};
use crate::policy::Policy;
use crate::table::{ConnId, Table};

impl Engine {
    /// Every running listener. IRQL: PASSIVE_LEVEL.
    pub fn listeners_info(&self, mut each: impl FnMut(ListenerInfo)) {
        let guard = self.lock();
        for listener in self.listeners(&guard).slots.iter().flatten() {
            each(listener.info());
        }
    }

    /// One listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn listener_info(&self, id: u32) -> Result<ListenerInfo, NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => Ok(listener.info()),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Driver-wide figures. IRQL: PASSIVE_LEVEL.
    #[must_use]
    pub fn stats(&self) -> DriverStats {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        let mut stats = DriverStats {
            counters: listeners.retired,
            ..DriverStats::default()
        };
        for listener in listeners.slots.iter().flatten() {
            let info = listener.info();
            stats.listeners += 1;
            stats.accept_irps_pending += info.accept_irps_pending;
            stats.counters.add(&info.counters);
        }
        stats.active = self.global.active.load(Ordering::Relaxed);
        stats.peak = self.global.peak.load(Ordering::Relaxed);
        stats
    }

    /// Lists Active connections, paged: starts at `cursor` (0 first), fills `out`, returns how
    /// many were written and the cursor to continue with (`None` at the end). `listener` limits
    /// the list to one listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown listener.
    pub fn list_connections(
        &self,
        listener: Option<u32>,
        cursor: u64,
        out: &mut [Option<ConnRecord>],
    ) -> Result<(usize, Option<u64>), NtStatus> {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        if let Some(id) = listener {
            match listeners.slots.get(Self::slot_of(id)) {
                Some(Some(l)) if l.id() == id => {}
                _ => return Err(NtStatus::NOT_FOUND),
            }
        }
        // Cursor: listener slot in the high 32 bits, table index in the low 32.
        let mut slot = usize::try_from(cursor >> 32).unwrap_or(MAX_LISTENERS);
        #[allow(clippy::cast_possible_truncation)]
        let mut index = cursor as u32;
        let mut written = 0;
        while slot < MAX_LISTENERS {
            if let Some(l) = listeners.slots[slot]
                .as_ref()
                .filter(|l| listener.is_none_or(|id| id == l.id()))
            {
                let listener_id = l.id();
                let capacity = l.with_table(Table::capacity);
                // A chunk of slots per lock hold: the spin lock is never held for a whole table.
                while index < capacity {
                    let chunk_end = index.saturating_add(LIST_CHUNK).min(capacity);
                    let full = l.with_table(|table| {
                        for (i, entry) in
                            table.active_from(index).take_while(|(i, _)| *i < chunk_end)
                        {
                            if written == out.len() {
                                index = i;
                                return true;
                            }
                            if let Some(id) = table.id_of(i) {
                                out[written] = Some(ConnRecord {
                                    id,
                                    listener: listener_id,
                                    info: *entry.info(),
                                    bytes_in: entry.bytes_in,
                                    bytes_out: entry.bytes_out,
                                });
                                written += 1;
                            }
                        }
                        false
                    });
                    if full {
                        return Ok((written, Some(((slot as u64) << 32) | u64::from(index))));
                    }
                    index = chunk_end;
                }
            }
            slot += 1;
            index = 0;
        }
        Ok((written, None))
    }

    /// Closes one connection by id (graceful or abortive). IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown or stale id.
    pub fn close_connection(&self, id: ConnId, abortive: bool) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(usize::from(id.listener())) {
            Some(Some(listener)) => listener.close_connection(id, abortive),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Replaces a listener's policy. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn set_policy(&self, id: u32, policy: Policy) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => {
                listener.set_policy(policy);
                Ok(())
            }
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// A listener's policy. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn policy(&self, id: u32) -> Result<Policy, NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => Ok(listener.policy()),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// GET_PENDING, the inverted call: waits up to `timeout` for a request deferred to user mode
    /// (from one listener, or any) and hands it over. The control lock is not held while waiting.
    /// IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_TIMEOUT when none came; STATUS_CANCELLED when the listener stopped or the driver is
    /// unloading; STATUS_NOT_FOUND for an unknown listener.
    pub fn get_pending(
        &self,
        listener: Option<u32>,
        timeout: Duration,
    ) -> Result<(u32, PendingInfo), NtStatus> {
        let deadline = crate::kernel::interrupt_time()
            .saturating_add(u64::try_from(timeout.as_nanos() / 100).unwrap_or(u64::MAX));
        let mut first = true;
        loop {
            if self.unloading.load(Ordering::Acquire) || self.cancel_waits.load(Ordering::Acquire) {
                return Err(NtStatus::CANCELLED);
            }
            // Clear before looking: a request deferred after the look sets it again.
            self.global.pending_ready.clear();
            {
                let guard = self.lock();
                let listeners = self.listeners(&guard);
                let mut present = listener.is_none();
                for l in listeners
                    .slots
                    .iter()
                    .flatten()
                    .filter(|l| listener.is_none_or(|id| id == l.id()))
                {
                    present = true;
                    if let Some(info) = l.take_pending() {
                        return Ok((l.id(), info));
                    }
                }
                if !present {
                    return Err(if first {
                        NtStatus::NOT_FOUND
                    } else {
                        NtStatus::CANCELLED
                    });
                }
            }
            first = false;
            let now = crate::kernel::interrupt_time();
            if now >= deadline {
                return Err(NtStatus::TIMEOUT);
            }
            // In slices, so that cancellation is seen promptly.
            let slice = Duration::from_nanos((deadline - now).saturating_mul(100))
                .min(Duration::from_millis(100));
            self.global.pending_ready.wait(Some(slice));
        }
    }

    /// DECIDE: user mode's answer for a deferred request. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown, decided, timed-out or withdrawn request.
    pub fn decide(&self, id: PendingId, accept: bool) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(usize::from(id.listener())) {
            Some(Some(listener)) => listener.decide(id, accept),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Waits up to `timeout` (`None`: until signalled) for a request to be deferred to user mode,
    /// or for [`Engine::wake_pending_waiters`] (for the Windows inverted-call pump that completes
    /// parked GET_PENDING requests). True when signalled. IRQL: PASSIVE_LEVEL.
    pub fn wait_pending_ready(&self, timeout: Option<Duration>) -> bool {
        let signalled = self.global.pending_ready.wait(timeout);
        self.global.pending_ready.clear();
        signalled
    }

    /// How many requests were ever deferred to user mode: a waiter that looks at the pending
    /// queue more than once per wake-up compares it across its looks (each look clears the
    /// pending-ready signal). IRQL: any.
    #[must_use]
    pub fn deferrals(&self) -> u64 {
        self.global.deferrals.load(Ordering::Acquire)
    }

    /// Wakes whoever waits in [`Engine::wait_pending_ready`] without cancelling anything: after a
    /// GET_PENDING answered directly (its look cleared the signal another deferral may have set)
    /// and to stop the pump. IRQL: <= DISPATCH_LEVEL.
    pub fn wake_pending_waiters(&self) {
        self.global.pending_ready.set();
    }

    /// Makes every waiting and future GET_PENDING return STATUS_CANCELLED (before a host
    /// shutdown or unload). IRQL: <= DISPATCH_LEVEL.
    pub fn cancel_waits(&self) {
        self.cancel_waits.store(true, Ordering::Release);
        self.global.pending_ready.set();
    }

    /// The status of the last provider capture attempt (PENDING before the first).
    #[must_use]
    pub fn provider_status(&self) -> NtStatus {
        NtStatus(self.capture_status.load(Ordering::Acquire).cast_signed())
    }
}
