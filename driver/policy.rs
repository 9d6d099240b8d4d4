//! The condition function in the kernel: one policy per listener, evaluated for every incoming
//! connection on every path — at inspection (conditional mode) or at accept (the other modes).
//!
//! Ordered allow/deny rules on the remote address (IPv4 and IPv6 prefixes; an IPv4 rule also
//! matches IPv4-mapped IPv6 peers of a dual-stack listener), first match wins; what no rule
//! settles gets the default action: accept, reject, or defer to user mode. Then the listener's
//! capacity and a per-source limit. Evaluation is allocation-free and bounded ([`MAX_RULES`]);
//! it runs at DISPATCH_LEVEL under the listener's spin lock.
//!
//! Outside the conditional mode "defer" cannot wait for anyone: it means reject (counted as
//! `rejected_policy`).

use core::net::{IpAddr, SocketAddr};

use wsk::NtStatus;

use crate::table::Occupancy;

/// Most rules per policy.
pub const MAX_RULES: usize = 64;

/// What the condition function answers (the contract's type).
pub use ioctl::Action;

/// An address prefix, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address.
    pub address: IpAddr,
    /// Prefix length in bits (0–32 for IPv4, 0–128 for IPv6).
    pub length: u8,
}

impl Prefix {
    /// A checked prefix.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for a length longer than the address, or host bits set.
    pub fn new(address: IpAddr, length: u8) -> Result<Self, NtStatus> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if u32::from(length) > bits {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let prefix = Self { address, length };
        // Host bits must be zero: 10.0.0.1/8 is a mistake, not a network.
        if !prefix.matches(address) || mask(address, length) != address {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(prefix)
    }

    /// Whether `peer` is inside the prefix.
    #[must_use]
    pub fn matches(&self, peer: IpAddr) -> bool {
        let peer = match (self.address, peer) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            _ => peer,
        };
        match (self.address, peer) {
            (IpAddr::V4(a), IpAddr::V4(p)) => bits_match(&a.octets(), &p.octets(), self.length),
            (IpAddr::V6(a), IpAddr::V6(p)) => bits_match(&a.octets(), &p.octets(), self.length),
            _ => false,
        }
    }
}

fn bits_match(a: &[u8], b: &[u8], length: u8) -> bool {
    let full = usize::from(length / 8);
    let rest = length % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) & (0xFF << (8 - rest)) == 0
}

fn mask(address: IpAddr, length: u8) -> IpAddr {
    fn masked<const N: usize>(mut octets: [u8; N], length: u8) -> [u8; N] {
        for (i, byte) in octets.iter_mut().enumerate() {
            let start = u8::try_from(i * 8).unwrap_or(u8::MAX);
            if start >= length {
                *byte = 0;
            } else if length - start < 8 {
                *byte &= 0xFF << (8 - (length - start));
            }
        }
        octets
    }
    match address {
        IpAddr::V4(v4) => IpAddr::from(masked(v4.octets(), length)),
        IpAddr::V6(v6) => IpAddr::from(masked(v6.octets(), length)),
    }
}

/// One rule: allow or deny a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny (false).
    pub allow: bool,
    /// The prefix.
    pub prefix: Prefix,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// A deny rule, a default of reject, or (outside conditional mode) defer.
    Policy,
    /// The per-source limit.
    SourceLimit,
    /// The table is full.
    Full,
    /// The listener is stopping or restarting.
    NotRunning,
}

/// The decision on one incoming connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Take it.
    Accept,
    /// Ask user mode.
    Defer,
    /// Refuse it: the event path answers STATUS_REQUEST_NOT_ACCEPTED, the IRP path closes the
    /// accepted socket abortively, inspection answers WskInspectReject.
    Reject(RejectReason),
}

/// A listener's policy (fixed size: replacing it never allocates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    rules: [Option<Rule>; MAX_RULES],
    count: usize,
    /// What rules do not settle.
    pub default: Action,
    /// At most this many active connections from one address (0: no limit).
    pub per_source: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rules: [None; MAX_RULES],
            count: 0,
            default: Action::Accept,
            per_source: 0,
        }
    }
}

impl Policy {
    /// A policy from its parts.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for more than [`MAX_RULES`] rules.
    pub fn new(rules: &[Rule], default: Action, per_source: u32) -> Result<Self, NtStatus> {
        if rules.len() > MAX_RULES {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut policy = Self {
            default,
            per_source,
            count: rules.len(),
            ..Self::default()
        };
        for (slot, rule) in policy.rules.iter_mut().zip(rules) {
            *slot = Some(*rule);
        }
        Ok(policy)
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().take(self.count).flatten()
    }

    /// What the rules and the default say about `peer` (first match wins).
    #[must_use]
    pub fn classify(&self, peer: IpAddr) -> Action {
        if self.count == 0 {
            // No rules (the usual policy): the default, without walking the empty rule array.
            return self.default;
        }
        for rule in self.rules() {
            if rule.prefix.matches(peer) {
                return if rule.allow {
                    Action::Accept
                } else {
                    Action::Reject
                };
            }
        }
        self.default
    }

    /// The full decision: rules (unless `rules_settled`, for a connection an inspection already
    /// let in), then capacity and the per-source limit. `deferrable`: the listener can ask user
    /// mode (conditional mode); otherwise defer means reject.
    #[must_use]
    pub fn evaluate(
        &self,
        remote: &SocketAddr,
        occupancy: Occupancy,
        from_source: u32,
        deferrable: bool,
        rules_settled: bool,
    ) -> Verdict {
        if !rules_settled {
            match self.classify(remote.ip()) {
                Action::Accept => {}
                Action::Defer if deferrable => return Verdict::Defer,
                // Outside conditional mode nobody can be asked: defer means reject.
                Action::Reject | Action::Defer => return Verdict::Reject(RejectReason::Policy),
            }
        }
        if occupancy.in_use >= occupancy.capacity {
            return Verdict::Reject(RejectReason::Full);
        }
        if self.per_source != 0 && from_source >= self.per_source {
            return Verdict::Reject(RejectReason::SourceLimit);
        }
        Verdict::Accept
    }
}

mod sources;
pub use sources::{MAX_PROBE, SourceCounts, SourceSlot};

#[cfg(test)]
mod tests;
