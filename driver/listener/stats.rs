//! Listener and driver counters. Updated with relaxed atomics from completion routines and
//! callbacks (DISPATCH_LEVEL, no locks needed); read by the control path.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one listener.
        #[derive(Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A copy of counters at one moment (or a sum of several).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl Counters {
            /// Reads every counter.
            #[must_use]
            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CounterSnapshot {
            /// Adds `other` into `self`.
            pub fn add(&mut self, other: &CounterSnapshot) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Connections accepted through WskAccept IRPs.
    accepted_irp,
    /// Connections accepted through WskAcceptEvent.
    accepted_event,
    /// Connections refused because the table was full.
    rejected_full,
    /// Connections refused because the listener was stopping or restarting.
    rejected_not_running,
    /// Connections closed and removed from the table.
    closed,
    /// Of those, closed because the peer closed or reset.
    peer_closed,
    /// Of those, closed on a user's request.
    user_closed,
    /// Times the listening socket was recreated (NULL AcceptSocket, broken listener).
    listener_restarts,
    /// Accept IRPs that completed with an error other than STATUS_CANCELLED.
    accept_errors,
    /// Bytes peers sent that the hold service read and discarded.
    bytes_discarded,
    /// Requests the policy let in at inspection (at once or after user mode accepted them).
    accepted_conditional,
    /// Requests deferred to user mode (WskInspectPend).
    inspect_pended,
    /// Deferred requests the peer gave up on (WskAbortEvent).
    withdrawn,
    /// Deferred requests the driver rejected because user mode did not decide in time.
    decision_timeouts,
    /// Refused by a deny rule, a reject default, or (outside conditional mode) a defer default.
    rejected_policy,
    /// Refused by the per-source limit.
    rejected_source_limit,
    /// Refused because the pending queue was full.
    rejected_pending_full,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Driver-wide figures that are not sums of per-listener counters.
pub struct Global {
    /// Set whenever a request is deferred to user mode (GET_PENDING waits on it).
    pub pending_ready: crate::kernel::Event,
    /// How many requests were ever deferred: every look at the pending queue clears
    /// `pending_ready`, so a waiter that looks several times (the Windows GET_PENDING pump, one
    /// look per parked request) compares this count across its looks to know whether a deferral
    /// arrived in between.
    pub deferrals: AtomicU64,
    /// Set by an accept callback as its last statement when it leaves a socket to hand over
    /// (the engine's ticker hands it over a little later).
    pub handover_ready: crate::kernel::Event,
    /// Connections in all tables now.
    pub active: AtomicU32,
    /// Highest `active` seen.
    pub peak: AtomicU32,
}

impl Global {
    /// Zeroed figures.
    ///
    /// # Errors
    /// When the event cannot be created.
    pub fn new() -> Result<Self, wsk::NtStatus> {
        Ok(Self {
            pending_ready: crate::kernel::Event::notification(false)?,
            deferrals: AtomicU64::new(0),
            handover_ready: crate::kernel::Event::synchronization(false)?,
            active: AtomicU32::new(0),
            peak: AtomicU32::new(0),
        })
    }

    /// A request was deferred to user mode: count it, then wake GET_PENDING. IRQL:
    /// <= DISPATCH_LEVEL.
    pub fn deferred(&self) {
        self.deferrals.fetch_add(1, Ordering::Release);
        self.pending_ready.set();
    }

    /// One more connection. IRQL: <= DISPATCH_LEVEL.
    pub fn opened(&self) {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// One fewer. IRQL: <= DISPATCH_LEVEL.
    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}
