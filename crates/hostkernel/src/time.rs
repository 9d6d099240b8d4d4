//! KeQueryInterruptTime: a monotonic clock in 100-nanosecond units since the host kernel started.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// KeQueryInterruptTime, in 100 ns units. IRQL: any.
#[must_use]
pub fn interrupt_time() -> u64 {
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos() / 100).unwrap_or(u64::MAX)
}
