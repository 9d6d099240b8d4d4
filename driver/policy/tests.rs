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
