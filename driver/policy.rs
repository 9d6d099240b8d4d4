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

use crate::kernel::{PoolSlice, tags};
use crate::table::Occupancy;

/// Most rules per policy.
pub const MAX_RULES: usize = 64;

/// What to do with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Take it.
    Accept,
    /// Refuse it.
    Reject,
    /// Ask user mode (conditional mode); reject elsewhere.
    Defer,
}

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

/// Active connections per source address: a preallocated open-addressing map, so counting on the
/// accept path never allocates. Sized at twice the table capacity (rounded up to a power of two),
/// so it never fills.
pub struct SourceCounts {
    slots: PoolSlice<(u128, u32)>,
    mask: usize,
}

fn key(peer: IpAddr) -> u128 {
    match peer {
        // IPv4 and its IPv4-mapped IPv6 form are one source.
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

impl SourceCounts {
    /// A map for `capacity` connections. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn with_capacity(capacity: u32) -> Result<Self, NtStatus> {
        let size = (capacity as usize * 2).next_power_of_two().max(2);
        Ok(Self {
            slots: PoolSlice::try_new(tags::TABLE, size, |_| Ok((0, 0)))?,
            mask: size - 1,
        })
    }

    fn find(&self, key: u128) -> usize {
        // Linear probing from the key's home slot.
        let mut index = self.home(key);
        while self.slots[index].1 != 0 && self.slots[index].0 != key {
            index = (index + 1) & self.mask;
        }
        index
    }

    /// How many slots a lookup of `peer` examines (tests of the probe bound).
    #[cfg(test)]
    fn probes(&self, peer: IpAddr) -> usize {
        let key = key(peer);
        let mut index = self.home(key);
        let mut examined = 1;
        while self.slots[index].1 != 0 && self.slots[index].0 != key {
            index = (index + 1) & self.mask;
            examined += 1;
        }
        examined
    }

    /// Active connections from `peer` now.
    #[must_use]
    pub fn count(&self, peer: IpAddr) -> u32 {
        self.slots[self.find(key(peer))].1
    }

    /// One more connection from `peer`.
    pub fn add(&mut self, peer: IpAddr) {
        let key = key(peer);
        let index = self.find(key);
        self.slots[index] = (key, self.slots[index].1 + 1);
    }

    /// One fewer connection from `peer`; an entry that reaches zero is removed by shifting its
    /// probe chain back (no tombstones).
    pub fn remove(&mut self, peer: IpAddr) {
        let mut hole = self.find(key(peer));
        if self.slots[hole].1 == 0 {
            return;
        }
        self.slots[hole].1 -= 1;
        if self.slots[hole].1 != 0 {
            return;
        }
        let mut next = (hole + 1) & self.mask;
        while self.slots[next].1 != 0 {
            let origin = self.home(self.slots[next].0);
            // Move `next` into the hole if its origin is not in (hole, next].
            let between = if hole <= next {
                origin > hole && origin <= next
            } else {
                origin > hole || origin <= next
            };
            if !between {
                self.slots[hole] = self.slots[next];
                self.slots[next] = (0, 0);
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.slots[hole] = (0, 0);
    }

    /// Fibonacci hashing of the folded key.
    fn home(&self, key: u128) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "folding 128 bits to 64, then keeping the top 32"
        )]
        let folded = (key as u64) ^ ((key >> 64) as u64);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the top 32 bits of the product"
        )]
        let home = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask;
        home
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn p(text: &str) -> Prefix {
        let (a, l) = text.split_once('/').unwrap();
        Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    #[test]
    fn prefixes_match_v4_v6_and_v4_mapped_peers() {
        assert!(p("10.0.0.0/8").matches("10.1.2.3".parse().unwrap()));
        assert!(!p("10.0.0.0/8").matches("11.0.0.1".parse().unwrap()));
        assert!(
            p("10.0.0.0/8").matches("::ffff:10.9.9.9".parse().unwrap()),
            "dual-stack peers"
        );
        assert!(p("::1/128").matches("::1".parse().unwrap()));
        assert!(!p("::1/128").matches("127.0.0.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").matches("192.0.2.1".parse().unwrap()));
        assert!(p("2001:db8::/33").matches("2001:db8:7fff::1".parse().unwrap()));
        assert!(!p("2001:db8::/33").matches("2001:db8:8000::1".parse().unwrap()));
        assert_eq!(
            Prefix::new("10.0.0.1".parse().unwrap(), 8),
            Err(NtStatus::INVALID_PARAMETER),
            "host bits"
        );
        assert_eq!(
            Prefix::new("10.0.0.0".parse().unwrap(), 33),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn first_match_wins_then_default_then_limits() {
        let rules = [
            Rule {
                allow: true,
                prefix: p("127.0.0.0/8"),
            },
            Rule {
                allow: false,
                prefix: p("0.0.0.0/0"),
            },
        ];
        let policy = Policy::new(&rules, Action::Defer, 2).unwrap();
        let room = Occupancy {
            in_use: 0,
            peak: 0,
            capacity: 10,
        };
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(
            policy.evaluate(&local, room, 0, true, false),
            Verdict::Accept
        );
        assert_eq!(
            policy.evaluate(&far, room, 0, true, false),
            Verdict::Reject(RejectReason::Policy)
        );
        assert_eq!(
            policy.evaluate(&v6, room, 0, true, false),
            Verdict::Defer,
            "no rule matches ::1"
        );
        assert_eq!(
            policy.evaluate(&v6, room, 0, false, false),
            Verdict::Reject(RejectReason::Policy),
            "defer = reject"
        );
        assert_eq!(
            policy.evaluate(&local, room, 2, true, false),
            Verdict::Reject(RejectReason::SourceLimit)
        );
        let full = Occupancy { in_use: 10, ..room };
        assert_eq!(
            policy.evaluate(&local, full, 0, true, false),
            Verdict::Reject(RejectReason::Full)
        );
        assert_eq!(
            policy.evaluate(&far, room, 0, true, true),
            Verdict::Accept,
            "settled by inspection"
        );
        assert!(Policy::new(&[rules[0]; MAX_RULES + 1], Action::Accept, 0).is_err());
    }

    /// 10,000 IPv6 sources chosen so that the map's hash cannot tell them apart unless it is
    /// keyed: the two halves of each address XOR to the same value.
    pub(crate) fn colliding_sources(n: u64) -> impl Iterator<Item = IpAddr> {
        (0..n).map(|i| {
            let high = 0x2001_0db8_0000_0000u64 | i;
            let low = high ^ 0x5555_5555_5555_5555;
            IpAddr::from(((u128::from(high)) << 64 | u128::from(low)).to_be_bytes())
        })
    }

    #[test]
    fn chosen_colliding_sources_cost_a_bounded_probe_each() {
        // Finding 6 of issue 11: at DISPATCH_LEVEL, under the listener's spin lock, a source that
        // an attacker chose must not make an accept probe more than a small bounded window.
        let mut counts = SourceCounts::with_capacity(65_536).unwrap();
        let mut worst = 0;
        for source in colliding_sources(10_000) {
            worst = worst.max(counts.probes(source));
            counts.add(source);
        }
        assert!(worst <= 32, "a probe examined {worst} slots");
    }

    proptest! {
        /// The per-source map agrees with a HashMap through any sequence of adds and removes.
        #[test]
        fn source_counts_match_a_model(ops in prop::collection::vec((0u8..12, any::<bool>()), 1..300)) {
            let mut counts = SourceCounts::with_capacity(16).unwrap();
            let mut model: HashMap<u8, u32> = HashMap::new();
            for (peer, add) in ops {
                let ip = IpAddr::from([10, 0, 0, peer]);
                let current = model.get(&peer).copied().unwrap_or(0);
                if add && model.values().sum::<u32>() < 32 {
                    counts.add(ip);
                    model.insert(peer, current + 1);
                } else if !add && current > 0 {
                    counts.remove(ip);
                    model.insert(peer, current - 1);
                }
                for p in 0u8..12 {
                    prop_assert_eq!(counts.count(IpAddr::from([10, 0, 0, p])), model.get(&p).copied().unwrap_or(0));
                }
            }
        }
    }
}
