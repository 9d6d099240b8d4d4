//! The connection records the table hands out: ids, the accepting path, what is recorded at
//! accept, and occupancy figures.

use core::net::SocketAddr;

use crate::ids;

/// A connection id: listener slot, serial (never 0, never reused) and slot index, packed by
/// [`crate::ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Builds an id.
    #[must_use]
    pub const fn new(listener: u8, serial: u64, index: u32) -> Self {
        Self(ids::pack(listener, serial, index))
    }

    /// The listener slot.
    #[must_use]
    pub const fn listener(self) -> u8 {
        ids::listener(self.0)
    }

    /// The connection's serial.
    #[must_use]
    pub const fn serial(self) -> u64 {
        ids::serial(self.0)
    }

    /// The slot index.
    #[must_use]
    pub const fn index(self) -> u32 {
        ids::index(self.0)
    }
}

/// How the connection was accepted (the contract's type).
pub use ioctl::AcceptPath;

/// What a slot records about its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Peer address.
    pub remote: SocketAddr,
    /// Local address.
    pub local: SocketAddr,
    /// The accepting path.
    pub path: AcceptPath,
    /// KeQueryInterruptTime at accept, 100 ns units.
    pub accepted_at: u64,
}

/// Occupancy figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Slots Active or Closing.
    pub in_use: u32,
    /// Highest `in_use` seen.
    pub peak: u32,
    /// Slots in all.
    pub capacity: u32,
}
