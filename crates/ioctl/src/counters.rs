//! The counters: ONE list, in wire order, from which everything else is generated — the
//! driver's live counters and snapshots (`driver/listener/stats.rs`), the wire struct
//! [`WireCounters`], the JSON names and the grouped rendering in `wskctl`. Adding a counter is one
//! line here (and, since it changes the wire layout, a [`VERSION`](crate::VERSION) bump).
//!
//! Each entry is `name: Group, "label";` — `name` is the field and JSON key, `Group` the
//! [`CounterGroup`] `wskctl stats` shows it under, `label` its name within the group.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Calls `$callback! { $( $(#[doc])* name: Group, "label"; )* }` with every counter, in wire
/// order (grouped, in the order `wskctl stats` shows them).
#[macro_export]
macro_rules! for_each_counter {
    ($callback:ident) => {
        $callback! {
            /// Connections accepted through WskAccept IRPs.
            accepted_irp: Accepted, "irp";
            /// Connections accepted through WskAcceptEvent.
            accepted_event: Accepted, "event";
            /// Requests the policy let in at inspection (at once or after user mode accepted
            /// them); they are also counted by the path that delivered them.
            accepted_conditional: Accepted, "conditional";
            /// Connections refused because the table was full.
            rejected_full: Refused, "full";
            /// Refused by a deny rule, a reject default, or (outside conditional mode) a defer
            /// default.
            rejected_policy: Refused, "policy";
            /// Refused by the per-source limit.
            rejected_source_limit: Refused, "source limit";
            /// Refused because the pending queue was full.
            rejected_pending_full: Refused, "pending full";
            /// Refused because the listener was stopping or restarting (also requests still
            /// deferred then).
            rejected_not_running: Refused, "not running";
            /// Requests deferred to user mode (WskInspectPend).
            inspect_pended: Conditional, "deferred";
            /// Deferred requests the peer gave up on (WskAbortEvent).
            withdrawn: Conditional, "withdrawn";
            /// Deferred requests the driver rejected because user mode did not decide in time.
            decision_timeouts: Conditional, "timed out";
            /// Connections closed and removed from the table.
            closed: Closed, "total";
            /// Of those, closed because the peer closed or reset.
            peer_closed: Closed, "by peer";
            /// Of the peer's closes, those by a graceful close (FIN).
            peer_fin: Closed, "by peer FIN";
            /// Of the peer's closes, those by a reset (or a receive or send that failed).
            peer_reset: Closed, "by peer reset";
            /// Of those, closed on a user's request.
            user_closed: Closed, "by user";
            /// Accept IRPs that completed with an error other than STATUS_CANCELLED.
            accept_errors: Errors, "accept";
            /// Times the listening socket was recreated (NULL AcceptSocket, broken listener).
            listener_restarts: Errors, "listener restarts";
            /// Bytes received from peers (every service that reads: discard and echo).
            bytes_in: Data, "bytes in";
            /// Bytes sent to peers (the echo service's echoes).
            bytes_out: Data, "bytes out";
            /// Of the bytes received, those the discard service read and dropped.
            bytes_discarded: Data, "bytes discarded";
            /// Connections the echo service sent at least one byte back on.
            echoed: Data, "connections echoed";
        }
    };
}

/// Where `wskctl stats` shows a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterGroup {
    /// Connections accepted, by path.
    Accepted,
    /// Connections refused, by reason.
    Refused,
    /// Conditional-accept outcomes.
    Conditional,
    /// Connections closed, by who.
    Closed,
    /// Errors and recoveries.
    Errors,
    /// Bytes moved.
    Data,
}

impl CounterGroup {
    /// Every group, in display order.
    pub const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Refused,
        Self::Conditional,
        Self::Closed,
        Self::Errors,
        Self::Data,
    ];

    /// The group's heading.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Conditional => "conditional",
            Self::Closed => "closed",
            Self::Errors => "errors",
            Self::Data => "data",
        }
    }
}

/// One counter's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterInfo {
    /// Field and JSON key.
    pub name: &'static str,
    /// Where it is shown.
    pub group: CounterGroup,
    /// Its name within the group.
    pub label: &'static str,
}

/// Room for counters in [`WireCounters`] (the rest is reserved, zero).
pub const WIRE_COUNTER_SLOTS: usize = 32;

macro_rules! wire_counters {
    ($($(#[$doc:meta])* $name:ident: $group:ident, $label:literal;)*) => {
        /// How many counters there are.
        pub const COUNTER_COUNT: usize = [$(stringify!($name)),*].len();

        /// Every counter's names, in wire order (the order of [`WireCounters::values`]).
        pub const COUNTERS: [CounterInfo; COUNTER_COUNT] = [$(CounterInfo {
            name: stringify!($name),
            group: CounterGroup::$group,
            label: $label,
        }),*];

        /// Counters on the wire: [`COUNTERS`] in order, then reserved room.
        #[repr(C)]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout,
            Immutable,
        )]
        pub struct WireCounters {
            $($(#[$doc])* pub $name: u64,)*
            /// Zero (room for later counters).
            pub reserved: [u64; WIRE_COUNTER_SLOTS - COUNTER_COUNT],
        }

        impl WireCounters {
            /// The values, in the order of [`COUNTERS`].
            #[must_use]
            pub const fn values(&self) -> [u64; COUNTER_COUNT] {
                [$(self.$name),*]
            }
        }
    };
}

// In a module of its own so that the lint allowance below covers only this: zerocopy's derives,
// expanded inside a macro, emit helper types the missing_debug_implementations lint then sees as
// ours (WireCounters itself derives Debug).
#[allow(missing_debug_implementations)]
mod generated {
    use super::{
        CounterGroup, CounterInfo, FromBytes, Immutable, IntoBytes, KnownLayout, WIRE_COUNTER_SLOTS,
    };
    for_each_counter!(wire_counters);
}
pub use generated::{COUNTER_COUNT, COUNTERS, WireCounters};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_groups_are_contiguous_in_display_order() {
        for (i, a) in COUNTERS.iter().enumerate() {
            assert!(
                COUNTERS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
        // Wire order is display order: a group's counters are contiguous, groups in ALL's order.
        let mut next = 0;
        for (i, counter) in COUNTERS.iter().enumerate() {
            if i == 0 || COUNTERS[i - 1].group != counter.group {
                assert_eq!(counter.group, CounterGroup::ALL[next], "{}", counter.name);
                next += 1;
            }
        }
        assert_eq!(next, CounterGroup::ALL.len());
    }
}
