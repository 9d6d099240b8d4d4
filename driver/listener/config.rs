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

/// How a listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// WskAccept with caller-allocated IRPs only.
    Irp,
    /// WskAcceptEvent only.
    Event,
    /// Both armed: either path may deliver any connection (WSK-FACTS §4).
    Both,
    /// SO_CONDITIONAL_ACCEPT with inspection (not available yet: STATUS_NOT_SUPPORTED).
    Conditional,
}

impl Mode {
    /// Whether accept IRPs are queued.
    #[must_use]
    pub fn uses_irps(self) -> bool {
        matches!(self, Self::Irp | Self::Both)
    }

    /// Whether WskAcceptEvent is enabled.
    #[must_use]
    pub fn uses_events(self) -> bool {
        matches!(self, Self::Event | Self::Both)
    }
}

/// What happens to an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Keep it open until the peer closes, a user closes it, or the listener stops.
    Hold,
    /// Close it gracefully at once (the accept-rate workload).
    Close,
}

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
}

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
            service: Service::Hold,
        }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for an out-of-range depth or capacity or a dual-stack IPv4
    /// address; STATUS_NOT_SUPPORTED for the conditional mode (not available yet).
    pub fn validate(&self) -> Result<(), NtStatus> {
        if !(1..=MAX_DEPTH).contains(&self.depth) || !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.dual_stack && self.address.is_ipv4() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.mode == Mode::Conditional {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        Ok(())
    }
}
