//! Stop: the rundown step the worker runs (close the listening socket, sweep every connection
//! with an abortive close, wait for every IRP), and `stop` / `free_when_stopped`, which wait for
//! it and free the listener. Nothing waits for a peer.

use core::sync::atomic::Ordering;
use core::time::Duration;

use super::admission::Returned;
use super::worker_only::Worker;
use super::{CounterSnapshot, Listener, Phase};
use crate::kernel::PoolBox;
use crate::table::{SlotState, work};

impl Listener {
    /// One step of the rundown. Worker only.
    pub(super) fn stop_step(&self, worker: &mut Worker<'_>) {
        self.close_listening_socket(worker);
        let sweep = {
            let mut shared = self.shared.lock();
            // Only once the listening socket's close has completed: it waited for every running
            // accept callback (WSK-FACTS §7), so every accepted socket can be handed over and
            // closed — never one whose WskAcceptEvent has not returned.
            let first = !shared.swept && !shared.listen_close_pending;
            if first {
                shared.swept = true;
                // The provider forgets pended inspections with the listening socket (and resets
                // their peers).
                let refused = shared.pending.clear();
                self.counters
                    .rejected_not_running
                    .fetch_add(u64::from(refused), Ordering::Relaxed);
                self.hand_over(&mut shared, Returned::All);
            }
            first.then(|| shared.table.capacity())
        };
        if let Some(capacity) = sweep {
            // Ask every Active slot for an abortive close, a chunk per lock hold so that the
            // spin lock is never held for a whole 65,536-slot table.
            const CHUNK: u32 = 256;
            for start in (0..capacity).step_by(CHUNK as usize) {
                let mut shared = self.shared.lock();
                for index in start..capacity.min(start + CHUNK) {
                    if shared
                        .table
                        .entry(index)
                        .is_some_and(|e| e.state() == SlotState::Active)
                    {
                        shared.table.request(index, work::ABORT);
                    }
                }
            }
        }
        self.run_slot_work();
        self.service_accepts(worker, false);
        let mut shared = self.shared.lock();
        let quiet = !shared.listen_close_pending
            && shared.table.occupancy().in_use == 0
            && self.accepts_idle();
        if shared.rundown.try_finish(quiet) {
            shared.phase = Phase::Stopped;
            self.stopped.set();
        }
    }

    /// Stops the listener and frees it: bounded time whatever the peers do (every socket is
    /// closed at once, and a close never waits for a peer). Returns its final counters.
    /// IRQL: PASSIVE_LEVEL.
    ///
    /// `flush` must wait until everything queued on the work queue has run.
    ///
    /// # Errors
    /// When the rundown has not finished within `timeout` (a provider slow to complete a close),
    /// the listener comes back (its counters so far in `info()`): it must not be freed while an IRP
    /// can still reach it, and nothing its completions use (the work queue) may go before it. The
    /// caller parks it and frees it with [`Listener::free_when_stopped`].
    pub fn stop(
        this: PoolBox<Self>,
        flush: impl Fn(),
        timeout: Duration,
    ) -> Result<CounterSnapshot, PoolBox<Self>> {
        this.begin_stop();
        if !this.stopped.wait(Some(timeout)) {
            return Err(this);
        }
        Ok(Self::free_when_stopped(this, flush))
    }

    /// Starts the rundown without waiting for it (a second call changes nothing): the worker
    /// closes the listening socket and every connection. The listener keeps answering queries
    /// (phase Stopping, its connections and IRPs counting down) until it is freed.
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn begin_stop(&self) {
        let mut shared = self.shared.lock();
        if matches!(shared.phase, Phase::Stopping | Phase::Stopped) {
            return;
        }
        shared.phase = Phase::Stopping;
        shared.rundown.request_stop();
        self.kick_locked(&shared);
    }

    /// Waits up to `timeout` for the rundown [`Listener::begin_stop`] started; whether it
    /// finished. IRQL: PASSIVE_LEVEL (or <= DISPATCH_LEVEL with a zero timeout).
    #[must_use]
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        self.stopped.wait(Some(timeout))
    }

    /// Whether a stopping listener's rundown has finished (every IRP back). IRQL: <=
    /// DISPATCH_LEVEL.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.stopped.wait(Some(Duration::ZERO))
    }

    /// Waits — without a limit: every IRP of a stopping listener is a close or is cancelled by
    /// one, and WSK completes every close (WSK-FACTS §7) — until the rundown has finished, then
    /// flushes the work queue and frees the listener. Returns its final counters.
    /// IRQL: PASSIVE_LEVEL.
    pub fn free_when_stopped(this: PoolBox<Self>, flush: impl Fn()) -> CounterSnapshot {
        this.stopped.wait(None);
        // No callback can queue a hand-over DPC any more (the listening socket's close waited
        // for them); one still queued kicks the worker when it runs, so the DPCs are flushed
        // before the work queue (Listener invariant).
        crate::kernel::flush_queued_dpcs();
        // The worker run that set `stopped` (and any kick before it) must be over before the
        // work item's memory goes.
        flush();
        let snapshot = this.counters.snapshot();
        drop(this);
        snapshot
    }
}
