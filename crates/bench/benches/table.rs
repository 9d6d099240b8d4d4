//! Criterion micro-benchmarks of the connection table: insert+remove, and lookup, at 1%, 50% and
//! 99% full, at capacity 1,024 and 65,536 (the cost must not grow with capacity); and the
//! per-source map's share of an accept (count, add, and the remove at close) with 10,000 sources
//! already held, chosen to collide in an unkeyed hash or drawn at random (issue 11, finding 6).
#![cfg(unix)]

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wskaccept::policy::SourceCounts;
use wskaccept::table::{AcceptPath, ConnInfo, Table};

fn info() -> ConnInfo {
    let addr = SocketAddr::from(([127, 0, 0, 1], 7007));
    ConnInfo {
        remote: addr,
        local: addr,
        path: AcceptPath::Irp,
        accepted_at: 0,
    }
}

fn filled(capacity: u32, percent: u32) -> (Table<u32>, Vec<wskaccept::table::ConnId>) {
    let mut table =
        Table::with_capacity(0, capacity, SocketAddr::from(([0, 0, 0, 0], 0))).expect("table");
    let n = (u64::from(capacity) * u64::from(percent) / 100).max(1);
    let ids = (0..n)
        .map(|i| {
            table
                .insert(u32::try_from(i).unwrap_or(0), info())
                .expect("room")
        })
        .collect();
    (table, ids)
}

fn table(c: &mut Criterion) {
    let mut group = c.benchmark_group("table");
    for capacity in [1_024u32, 65_536] {
        for percent in [1u32, 50, 99] {
            let label = format!("cap{capacity}/{percent}%");
            let (mut table, ids) = filled(capacity, percent);
            group.bench_function(BenchmarkId::new("insert+remove", &label), |b| {
                b.iter(|| {
                    let id = table.insert(black_box(7), info()).expect("room");
                    let _ = table.begin_close(id.index());
                    black_box(table.release(id.index()));
                });
            });
            let probe = ids[ids.len() / 2];
            group.bench_function(BenchmarkId::new("lookup", &label), |b| {
                b.iter(|| black_box(table.get(black_box(probe)).is_some()));
            });
        }
    }
    group.finish();
}

/// IPv6 sources whose halves XOR to one value: one home slot in an unkeyed fold-and-multiply
/// hash.
fn colliding(n: u64) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            let high = 0x2001_0db8_0000_0000u64 | i;
            let low = high ^ 0x5555_5555_5555_5555;
            IpAddr::from((u128::from(high) << 64 | u128::from(low)).to_be_bytes())
        })
        .collect()
}

fn random(n: u64) -> Vec<IpAddr> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..n)
        .map(|_| IpAddr::from(rng.u128(..).to_be_bytes()))
        .collect()
}

fn sources(c: &mut Criterion) {
    let mut group = c.benchmark_group("sources");
    group.measurement_time(Duration::from_secs(3));
    for (label, set) in [("colliding", colliding(10_001)), ("random", random(10_001))] {
        // A listener of capacity 65,536 holding 10,000 connections, one per source.
        let mut counts = SourceCounts::with_capacity(65_536).expect("map");
        for source in &set[..10_000] {
            counts.add(*source);
        }
        let next = set[10_000];
        group.bench_function(BenchmarkId::new("accept+close, 10k held", label), |b| {
            b.iter(|| {
                black_box(counts.count(black_box(next)));
                counts.add(next);
                counts.remove(next);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, table, sources);
criterion_main!(benches);
