//! The ids user mode holds — connection ids ([`crate::table::ConnId`]) and pending-request ids
//! ([`crate::pending::PendingId`]) — are packed here and only here.
//!
//! Layout of the 64 bits (the widths come from `ioctl::ids`, which user mode shares): bits 0–15
//! the slot index (in the connection table or the pending queue), bits 16–19 the listener slot
//! (which listener to ask), bits 20–63 a 44-bit **serial** drawn from one driver-wide counter
//! when the connection or request is created. Serials are
//! never reused: an id names one connection or request of one listener instance for the life of
//! the driver, so a stale id — kept from a stopped listener whose slot a new listener took, or
//! from a table slot reused any number of times — never reaches a later one (issue 11,
//! finding 5). 2^44 serials last 55 years at 10,000 connections/s; when the counter is spent,
//! new connections and requests are refused (as a full table / full queue), never given an old
//! id.

use core::sync::atomic::{AtomicU64, Ordering};

/// Bits of the slot index.
pub const INDEX_BITS: u32 = ioctl::ids::INDEX_BITS;
/// Bits of the listener slot.
pub const LISTENER_BITS: u32 = ioctl::ids::LISTENER_BITS;
/// Bits of the serial.
pub const SERIAL_BITS: u32 = 64 - INDEX_BITS - LISTENER_BITS;
/// The last serial the driver gives out.
pub const LAST_SERIAL: u64 = (1 << SERIAL_BITS) - 1;

const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const LISTENER_MASK: u64 = (1 << LISTENER_BITS) - 1;

// Every index and listener slot the driver can produce fits its field: asserted where each limit
// is defined (`listener::MAX_CAPACITY`, `pending::PENDING_CAPACITY`, `engine::MAX_LISTENERS`), so
// this lowest room imports none of them.

/// The serial last given out (0: none yet). Driver-wide: one counter for every listener.
static LAST_GIVEN: AtomicU64 = AtomicU64::new(0);

/// A fresh serial (1 ..= [`LAST_SERIAL`]), or `None` once every serial has been given out.
/// Lock-free; IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn next_serial() -> Option<u64> {
    LAST_GIVEN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            (last < LAST_SERIAL).then_some(last + 1)
        })
        .ok()
        .map(|last| last + 1)
}

/// Moves the serial counter forward so that the next serial is `last + 1` (never backward).
/// For tests that force the counter to its end; IRQL: <= DISPATCH_LEVEL.
#[doc(hidden)]
pub fn skip_serials_to(last: u64) {
    LAST_GIVEN.fetch_max(last.min(LAST_SERIAL), Ordering::Relaxed);
}

/// Packs an id. `index` and `listener` must fit their fields (checked at compile time for every
/// value the driver produces); `serial` is at most [`LAST_SERIAL`].
#[must_use]
pub const fn pack(listener: u8, serial: u64, index: u32) -> u64 {
    (serial << (INDEX_BITS + LISTENER_BITS))
        | ((listener as u64 & LISTENER_MASK) << INDEX_BITS)
        | (index as u64 & INDEX_MASK)
}

/// The listener slot of an id.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the field is LISTENER_BITS wide"
)]
pub const fn listener(id: u64) -> u8 {
    ((id >> INDEX_BITS) & LISTENER_MASK) as u8
}

/// The serial of an id.
#[must_use]
pub const fn serial(id: u64) -> u64 {
    id >> (INDEX_BITS + LISTENER_BITS)
}

/// The slot index of an id.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the field is INDEX_BITS wide"
)]
pub const fn index(id: u64) -> u32 {
    (id & INDEX_MASK) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_at_the_edges_of_every_field() {
        for (listener_slot, serial_value, slot) in [
            (0u8, 1u64, 0u32),
            (15, LAST_SERIAL, 65_535),
            (7, 1 << 24, 63),
        ] {
            let id = pack(listener_slot, serial_value, slot);
            assert_eq!(
                (listener(id), serial(id), index(id)),
                (listener_slot, serial_value, slot)
            );
        }
        assert_ne!(pack(0, 1, 0), 0, "no id is 0");
    }
}
