//! Tests of the policy room.

use super::sources::{key, siphash};
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

/// A source by number, as IPv4 (`v4`) or as its IPv4-mapped IPv6 form: one source either way.
fn source(n: u8, v4: bool) -> IpAddr {
    let v4_addr = core::net::Ipv4Addr::new(10, 0, 0, n);
    if v4 {
        IpAddr::V4(v4_addr)
    } else {
        IpAddr::V6(v4_addr.to_ipv6_mapped())
    }
}

proptest! {
    /// A connection released by the slot admission remembered leaves the same counts as one
    /// released by key (the old way), through any sequence of accepts and closes, with each
    /// connection's address given as IPv4 or as IPv4-mapped IPv6 independently at accept and at
    /// close; and while a connection lives its slot stays its source's.
    #[test]
    fn release_by_slot_matches_release_by_key(
        ops in prop::collection::vec((0u8..12, any::<bool>(), any::<bool>(), any::<prop::sample::Index>()), 1..300),
    ) {
        let mut by_slot = SourceCounts::with_key(16, [3; 16]).unwrap();
        let mut by_key = SourceCounts::with_key(16, [3; 16]).unwrap();
        // The live connections: source number and remembered slot.
        let mut live: Vec<(u8, SourceSlot)> = Vec::new();
        for (peer, v4, add, pick) in ops {
            if add && live.len() < 32 {
                let (count, spot) = by_slot.locate(source(peer, v4));
                prop_assert_eq!(count, by_key.count(source(peer, !v4)));
                let slot = by_slot.add_at(&spot);
                prop_assert_ne!(slot, SourceSlot::NONE, "a map at most half full counts everyone");
                by_key.add(source(peer, !v4));
                live.push((peer, slot));
            } else if !live.is_empty() {
                let (peer, slot) = live.swap_remove(pick.index(live.len()));
                by_slot.release(slot, source(peer, v4));
                by_key.remove(source(peer, !v4));
            }
            for p in 0u8..12 {
                let expected = live.iter().filter(|(q, _)| *q == p).count();
                prop_assert_eq!(by_slot.count(source(p, true)), u32::try_from(expected).unwrap());
                prop_assert_eq!(by_slot.count(source(p, false)), by_key.count(source(p, true)));
            }
            for (p, slot) in &live {
                prop_assert_eq!(by_slot.slot_of(source(*p, true)), *slot);
            }
        }
    }
}

#[test]
fn an_uncounted_connection_takes_nothing_off_its_source_at_release() {
    // Sources sharing one home under a known key fill the window: the next is not counted. A
    // slot frees up and a second connection from that source is counted. The release of the
    // first (never counted) must leave the second's 1 alone: by key it would find the second's
    // slot and take it to 0, letting the source past its limit.
    let mut counts = SourceCounts::with_key(1_024, [7; 16]).unwrap();
    let target = counts.home(key(IpAddr::from([10, 0, 0, 0])));
    let same_home: Vec<IpAddr> = (0u32..)
        .map(|i| IpAddr::from((0x2001_0db8_u128 << 96 | u128::from(i)).to_be_bytes()))
        .filter(|peer| counts.home(key(*peer)) == target)
        .take(MAX_PROBE + 1)
        .collect();
    let slots: Vec<SourceSlot> = same_home.iter().map(|peer| counts.add(*peer)).collect();
    let late = same_home[MAX_PROBE];
    assert_eq!(slots[MAX_PROBE], SourceSlot::NONE, "the window was full");
    counts.release(slots[0], same_home[0]);
    assert_eq!(counts.count(same_home[0]), 0);
    let second = counts.add(late);
    assert_ne!(second, SourceSlot::NONE);
    assert_eq!(counts.count(late), 1);
    counts.release(slots[MAX_PROBE], late);
    assert_eq!(
        counts.count(late),
        1,
        "the uncounted connection released nothing"
    );
    counts.release(second, late);
    assert_eq!(counts.count(late), 0);
}

#[test]
fn a_slot_that_does_not_hold_the_source_is_left_alone() {
    let mut counts = SourceCounts::with_key(16, [1; 16]).unwrap();
    let (a, b) = (source(1, true), source(2, true));
    let slot_a = counts.add(a);
    let slot_b = counts.add(b);
    counts.release(slot_a, b);
    counts.release(SourceSlot::from_raw(u32::MAX - 1), a);
    counts.release(SourceSlot::NONE, a);
    assert_eq!((counts.count(a), counts.count(b)), (1, 1));
    counts.release(slot_a, a);
    counts.release(slot_a, a);
    assert_eq!(counts.count(a), 0, "an emptied slot is not taken below 0");
    counts.release(slot_b, source(2, false));
    assert_eq!(
        counts.count(b),
        0,
        "IPv4 and IPv4-mapped IPv6 are one source"
    );
}
