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

use crate::kernel::{self, PoolSlice, tags};
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

/// Slots a lookup in [`SourceCounts`] examines at most: the window that starts at the key's home
/// slot. A source whose window is full cannot be counted (see [`SourceCounts::count`]). At most
/// 64 (a window is read as one word of occupancy bits).
pub const MAX_PROBE: usize = 32;
const _: () = assert!(MAX_PROBE <= 64);

/// Active connections per source address: a preallocated open-addressing map, so counting on the
/// accept path never allocates. Sized at twice the table capacity (rounded up to a power of two),
/// so it is at most half full.
///
/// It runs at DISPATCH_LEVEL under the listener's spin lock, where peers choose the keys, so
/// (issue 11, finding 6) every operation is bounded by construction: a key lives within
/// [`MAX_PROBE`] slots of its home, and a lookup examines that window and nothing else (no
/// probe chain, no shifting on removal: a removed entry just empties its slot). Homes come from
/// SipHash-1-3 keyed with a per-listener random key, so sources cannot be chosen to share a
/// window without knowing the key.
pub struct SourceCounts {
    slots: PoolSlice<(u128, u32)>,
    /// One bit per slot, set while the slot holds a source (count > 0): a lookup reads its
    /// window's bits and compares keys only where a source is.
    occupied: PoolSlice<u64>,
    mask: usize,
    key: (u64, u64),
}

fn key(peer: IpAddr) -> u128 {
    match peer {
        // IPv4 and its IPv4-mapped IPv6 form are one source.
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// SipHash with `c` compression and `d` finalisation rounds of a 16-byte message (two
/// little-endian words), keyed with `(k0, k1)`.
fn siphash(k0: u64, k1: u64, m0: u64, m1: u64, c: usize, d: usize) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    // The two message words, then the final block: the length (16) in the top byte.
    for m in [m0, m1, 16u64 << 56] {
        v[3] ^= m;
        for _ in 0..c {
            round(&mut v);
        }
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..d {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Where a key is, or where it would go.
enum Probe {
    /// The key's slot.
    Found(usize),
    /// The first empty slot of the key's window.
    Vacant(usize),
    /// The window is full and the key is not in it.
    Untracked,
}

impl SourceCounts {
    /// A map for `capacity` connections, keyed with fresh random bytes from the kernel.
    /// IRQL: PASSIVE_LEVEL (BCryptGenRandom).
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES, or what the kernel's random generator returns.
    pub fn with_capacity(capacity: u32) -> Result<Self, NtStatus> {
        let mut key = [0u8; 16];
        kernel::random_bytes(&mut key)?;
        Self::with_key(capacity, key)
    }

    /// A map for `capacity` connections with a given hash key (tests and benchmarks; the driver
    /// uses [`SourceCounts::with_capacity`]). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn with_key(capacity: u32, key: [u8; 16]) -> Result<Self, NtStatus> {
        let size = (capacity as usize * 2).next_power_of_two().max(2);
        let word = |half: usize| {
            let mut bytes = [0u8; 8];
            for (to, from) in bytes.iter_mut().zip(key.iter().skip(half * 8)) {
                *to = *from;
            }
            u64::from_le_bytes(bytes)
        };
        Ok(Self {
            slots: PoolSlice::try_new(tags::TABLE, size, |_| Ok((0, 0)))?,
            occupied: PoolSlice::try_new(tags::TABLE, size.div_ceil(64), |_| Ok(0))?,
            mask: size - 1,
            key: (word(0), word(1)),
        })
    }

    /// Slots in a window: [`MAX_PROBE`], or the whole map when it is smaller.
    fn window_len(&self) -> usize {
        MAX_PROBE.min(self.slots.len())
    }

    /// The occupancy bits of the window at `home`: bit k is slot `(home + k) & mask`.
    fn window(&self, home: usize) -> u64 {
        let len = self.window_len();
        let (mut bits, mut k) = (0u64, 0);
        // A few words at most: the window may wrap around the end of the map.
        while k < len {
            let index = (home + k) & self.mask;
            let shift = index % 64;
            // Within this word, within the window, and not past the end of the map.
            let take = (64 - shift).min(len - k).min(self.slots.len() - index);
            let word = self.occupied[index / 64] >> shift;
            let low = if take == 64 {
                u64::MAX
            } else {
                (1u64 << take) - 1
            };
            bits |= (word & low) << k;
            k += take;
        }
        bits
    }

    fn set_occupied(&mut self, index: usize, occupied: bool) {
        let bit = 1u64 << (index % 64);
        if occupied {
            self.occupied[index / 64] |= bit;
        } else {
            self.occupied[index / 64] &= !bit;
        }
    }

    /// Looks in the key's window, and only there: at most [`MAX_PROBE`] slots, keys compared
    /// only where the occupancy bits say a source is.
    fn probe(&self, key: u128) -> Probe {
        let home = self.home(key);
        let bits = self.window(home);
        let mut held = bits;
        while held != 0 {
            let index = (home + held.trailing_zeros() as usize) & self.mask;
            if self.slots[index].0 == key {
                return Probe::Found(index);
            }
            held &= held - 1;
        }
        let len = self.window_len();
        let all = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        let free = !bits & all;
        if free == 0 {
            Probe::Untracked
        } else {
            Probe::Vacant((home + free.trailing_zeros() as usize) & self.mask)
        }
    }

    /// Active connections from `peer` now; `u32::MAX` when `peer` cannot be counted because its
    /// window is full (with a keyed hash at most half full, not something a peer can arrange),
    /// so that a per-source limit refuses it rather than let it in uncounted.
    #[must_use]
    pub fn count(&self, peer: IpAddr) -> u32 {
        match self.probe(key(peer)) {
            Probe::Found(index) => self.slots[index].1,
            Probe::Vacant(_) => 0,
            Probe::Untracked => u32::MAX,
        }
    }

    /// One more connection from `peer` (nothing, for a peer that cannot be counted).
    pub fn add(&mut self, peer: IpAddr) {
        let key = key(peer);
        match self.probe(key) {
            Probe::Found(index) => {
                self.slots[index].1 = self.slots[index].1.saturating_add(1);
            }
            Probe::Vacant(index) => {
                self.slots[index] = (key, 1);
                self.set_occupied(index, true);
            }
            Probe::Untracked => {}
        }
    }

    /// One fewer connection from `peer`; an entry that reaches zero empties its slot.
    pub fn remove(&mut self, peer: IpAddr) {
        if let Probe::Found(index) = self.probe(key(peer)) {
            self.slots[index].1 -= 1;
            if self.slots[index].1 == 0 {
                self.slots[index] = (0, 0);
                self.set_occupied(index, false);
            }
        }
    }

    /// How many slots a lookup of `peer` examines (tests of the bound).
    #[cfg(test)]
    fn probes(&self, peer: IpAddr) -> usize {
        let home = self.home(key(peer));
        match self.probe(key(peer)) {
            Probe::Found(index) => ((index.wrapping_sub(home)) & self.mask) + 1,
            Probe::Vacant(_) | Probe::Untracked => self.window_len(),
        }
    }

    /// The key's home slot: SipHash-1-3 of the address under the map's key.
    fn home(&self, key: u128) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the low and high halves of the address"
        )]
        let (low, high) = (key as u64, (key >> 64) as u64);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "masked to the table size, which is a usize"
        )]
        let home = siphash(self.key.0, self.key.1, low, high, 1, 3) as usize & self.mask;
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
        assert!(worst <= MAX_PROBE, "a probe examined {worst} slots");
        for source in colliding_sources(10_000) {
            assert_eq!(counts.count(source), 1, "every chosen source is counted");
        }
    }

    #[test]
    fn the_home_hash_is_siphash() {
        // SipHash-2-4 of the same 16 bytes, by the standard library's implementation, checks
        // the rounds and the final block; the map uses the 1-3 variant of the same code.
        #[allow(deprecated, reason = "the reference SipHash-2-4 implementation")]
        let reference = |k0: u64, k1: u64, message: &[u8; 16]| {
            use std::hash::Hasher;
            let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
            hasher.write(message);
            hasher.finish()
        };
        for (k0, k1, m) in [(0u64, 0u64, 0u128), (1, 2, 3), (u64::MAX, 7, u128::MAX)] {
            #[allow(clippy::cast_possible_truncation, reason = "the two halves")]
            let (low, high) = (m as u64, (m >> 64) as u64);
            assert_eq!(
                siphash(k0, k1, low, high, 2, 4),
                reference(k0, k1, &m.to_le_bytes())
            );
        }
    }

    #[test]
    fn a_full_window_refuses_to_count_rather_than_probe_further() {
        // Sources that share one home under a known key (found by search, as an attacker who
        // knew the key would): the first MAX_PROBE are counted, the rest are untracked (count
        // u32::MAX, so a per-source limit refuses them), and no lookup leaves the window.
        let mut counts = SourceCounts::with_key(1_024, [7; 16]).unwrap();
        let target = counts.home(key(IpAddr::from([10, 0, 0, 0])));
        let same_home: Vec<IpAddr> = (0u32..)
            .map(|i| IpAddr::from((0x2001_0db8_u128 << 96 | u128::from(i)).to_be_bytes()))
            .filter(|peer| counts.home(key(*peer)) == target)
            .take(MAX_PROBE + 8)
            .collect();
        for peer in &same_home {
            counts.add(*peer);
            assert!(counts.probes(*peer) <= MAX_PROBE);
        }
        for peer in &same_home[..MAX_PROBE] {
            assert_eq!(counts.count(*peer), 1);
        }
        for peer in &same_home[MAX_PROBE..] {
            assert_eq!(counts.count(*peer), u32::MAX, "untracked");
            counts.remove(*peer);
        }
        let policy = Policy::new(&[], Action::Accept, 4).unwrap();
        let room = Occupancy {
            in_use: 0,
            peak: 0,
            capacity: 1_024,
        };
        let untracked = SocketAddr::new(same_home[MAX_PROBE], 1);
        assert_eq!(
            policy.evaluate(&untracked, room, counts.count(untracked.ip()), false, false),
            Verdict::Reject(RejectReason::SourceLimit)
        );
        // A slot in the window frees up: the next source there is counted again.
        counts.remove(same_home[0]);
        assert_eq!(counts.count(same_home[0]), 0);
        counts.add(same_home[MAX_PROBE]);
        assert_eq!(counts.count(same_home[MAX_PROBE]), 1);
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
