//! Listener and driver counters. Updated with relaxed atomics from completion routines and
//! callbacks (DISPATCH_LEVEL, no locks needed); read by the control path.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

// The list of counters is `ioctl::for_each_counter!` (one source of truth for the driver, the
// wire and wskctl); this macro makes the driver's live and snapshot structs from it.
macro_rules! driver_counters {
    ($($(#[$doc:meta])* $name:ident: $group:ident, $label:literal;)*) => {
        /// Live counters of one listener.
        #[derive(Debug, Default)]
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

            /// The counters as the contract carries them.
            #[must_use]
            pub fn to_wire(&self) -> ioctl::WireCounters {
                ioctl::WireCounters { $($name: self.$name,)* ..ioctl::WireCounters::default() }
            }
        }
    };
}

ioctl::for_each_counter!(driver_counters);

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Driver-wide figures that are not sums of per-listener counters.
#[derive(Debug)]
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
        // A new peak is rare: a load, not a read-modify-write (a CAS loop on x86), per connection.
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// One fewer. IRQL: <= DISPATCH_LEVEL.
    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}
