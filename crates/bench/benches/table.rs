//! Criterion micro-benchmarks of the connection table: insert+remove, and lookup, at 1%, 50% and
//! 99% full, at capacity 1,024 and 65,536 (the cost must not grow with capacity).
#![cfg(unix)]

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, table);
criterion_main!(benches);
