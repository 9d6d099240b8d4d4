//! How many WSK calls the driver has made, in total and per function: the benchmarks' "WSK calls
//! per accepted connection" (each one is an IRP through netio on Windows). Every provider entry
//! point counts itself on entry (`provider::state::check_wsk_entry`); counting only, no rule.

use std::sync::atomic::{AtomicU64, Ordering};

/// The functions counted by name; anything else is counted in `other`.
const NAMES: [&str; 14] = [
    "WskSocket",
    "WskControlClient",
    "WskBind",
    "WskAccept",
    "WskInspectComplete",
    "WskControlSocket",
    "WskCloseSocket",
    "WskSend",
    "WskReceive",
    "WskDisconnect",
    "WskConnect",
    "WskRelease",
    "WskGetLocalAddress",
    "WskGetRemoteAddress",
];

static COUNTS: [AtomicU64; NAMES.len() + 1] = [const { AtomicU64::new(0) }; NAMES.len() + 1];

/// Counts one call of `function`. IRQL: any.
pub(crate) fn count(function: &str) {
    let index = NAMES
        .iter()
        .position(|n| *n == function)
        .unwrap_or(NAMES.len());
    COUNTS[index].fetch_add(1, Ordering::Relaxed);
}

/// Cumulative WSK call counts since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WskCalls {
    counts: [u64; NAMES.len() + 1],
}

impl WskCalls {
    /// Every call.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Calls of `function` (e.g. "WskDisconnect"); 0 for a name not counted separately.
    #[must_use]
    pub fn of(&self, function: &str) -> u64 {
        NAMES
            .iter()
            .position(|n| *n == function)
            .map_or(0, |i| self.counts[i])
    }

    /// The calls made since `earlier`, per function (only those made), and in total.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Vec<(&'static str, u64)> {
        NAMES
            .iter()
            .copied()
            .chain(["other"])
            .zip(self.counts.iter().zip(earlier.counts.iter()))
            .map(|(name, (now, then))| (name, now.saturating_sub(*then)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// The counts so far.
#[must_use]
pub fn snapshot() -> WskCalls {
    WskCalls {
        counts: core::array::from_fn(|i| COUNTS[i].load(Ordering::Relaxed)),
    }
}
