//! The one place every accept decision goes through, on both paths. For now: capacity only (the
//! rules, per-source limits and deferral to user mode arrive with conditional accept).

use core::net::SocketAddr;

use crate::table::Occupancy;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The listener's table is full (`rejected_full`).
    Full,
    /// The listener is stopping or restarting.
    NotRunning,
}

/// The decision on one incoming connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Take it into the table.
    Accept,
    /// Refuse it: the event path answers STATUS_REQUEST_NOT_ACCEPTED, the IRP path closes the
    /// accepted socket abortively.
    Reject(RejectReason),
}

/// A listener's accept policy. IRQL: evaluated at DISPATCH_LEVEL, allocation-free, bounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy;

impl Policy {
    /// Decides on a connection from `remote` given the table's occupancy.
    #[must_use]
    pub fn evaluate(&self, _remote: &SocketAddr, occupancy: Occupancy) -> Verdict {
        if occupancy.in_use >= occupancy.capacity {
            Verdict::Reject(RejectReason::Full)
        } else {
            Verdict::Accept
        }
    }
}
