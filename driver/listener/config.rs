//! What a listener is asked to be.

use core::net::SocketAddr;

use wsk::NtStatus;

/// Default accept-IRP depth (WSK-FACTS §3: deeper queues are unverified on Windows).
pub const DEFAULT_DEPTH: u16 = 1;
/// Most accept IRPs per listener.
pub const MAX_DEPTH: u16 = 64;
/// Default table capacity.
pub const DEFAULT_CAPACITY: u32 = 1024;
/// Largest table capacity.
pub const MAX_CAPACITY: u32 = 65_536;
// Every table index fits the id's index field.
const _: () = assert!(MAX_CAPACITY as u64 <= 1 << crate::ids::INDEX_BITS);

/// Default bytes of each connection's data buffer.
pub const DEFAULT_BUFFER: u32 = ioctl::DEFAULT_BUFFER;
/// Smallest data buffer.
pub const MIN_BUFFER: u32 = ioctl::MIN_BUFFER;
/// Largest data buffer.
pub const MAX_BUFFER: u32 = ioctl::MAX_BUFFER;

// One definition each for the contract and the driver: the wire enums are the configuration types.
pub use ioctl::{Mode, Service};

/// A listener's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks an ephemeral port.
    pub address: SocketAddr,
    /// For an IPv6 address: also accept IPv4 (IPV6_V6ONLY off).
    pub dual_stack: bool,
    /// Accept mode.
    pub mode: Mode,
    /// Accept IRPs queued at once (1..=64).
    pub depth: u16,
    /// Table capacity (1..=65,536).
    pub capacity: u32,
    /// What to do with accepted connections.
    pub service: Service,
    /// Bytes of each connection's data buffer (512..=65,536), allocated for every slot at start.
    pub buffer: u32,
    /// How long a request deferred to user mode may wait for a decision (conditional mode).
    pub decision_timeout_ms: u32,
}

/// Default decision timeout.
pub const DEFAULT_DECISION_TIMEOUT_MS: u32 = 5_000;

impl ListenerConfig {
    /// A configuration with the defaults for `address`.
    #[must_use]
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            dual_stack: false,
            mode: Mode::Both,
            depth: DEFAULT_DEPTH,
            capacity: DEFAULT_CAPACITY,
            service: Service::Discard,
            buffer: DEFAULT_BUFFER,
            decision_timeout_ms: DEFAULT_DECISION_TIMEOUT_MS,
        }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for an out-of-range depth, capacity or decision timeout, or a
    /// dual-stack IPv4 address; STATUS_INVALID_BUFFER_SIZE for an out-of-range buffer, or one
    /// that makes capacity × buffer exceed [`ioctl::MAX_BUFFER_MEMORY`].
    pub fn validate(&self) -> Result<(), NtStatus> {
        if !(1..=MAX_DEPTH).contains(&self.depth) || !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // After the capacity check, so that an out-of-range capacity is named as such.
        if !(MIN_BUFFER..=MAX_BUFFER).contains(&self.buffer)
            || u64::from(self.capacity) * u64::from(self.buffer) > ioctl::MAX_BUFFER_MEMORY
        {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        if self.dual_stack && self.address.is_ipv4() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.decision_timeout_ms == 0 || self.decision_timeout_ms > 600_000 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(())
    }
}
