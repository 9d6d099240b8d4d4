//! Finding 10: the host kernel must not grow with the connections the driver accepted and closed
//! (a `wskctl host` serving 10,000 connections/s ran for hours). Closed sockets are freed after a
//! bounded quarantine, so resident memory stays flat across accept/close cycles.

mod common;

use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wskaccept::listener::{Mode, Service};

/// Connections per batch, and batches: warm-up first (the quarantine fills, tables reach their
/// working size), then the measured cycles.
const BATCH: usize = 250;
const WARM_UP_CYCLES: usize = 25_000;
const MEASURED_CYCLES: usize = 100_000;

/// `count` accept/close cycles in batches: the clients connect, the driver accepts them, the
/// clients reset them, the driver notices and closes them.
fn cycles(engine: &wskaccept::engine::Engine, id: u32, count: usize) {
    let address = engine.listener_info(id).unwrap().address;
    for _ in 0..count / BATCH {
        let before = engine.listener_info(id).unwrap().counters;
        let clients = connect_all(address, BATCH);
        let target = before.accepted_irp + before.accepted_event + BATCH as u64;
        wait_until("batch accepted", Duration::from_secs(30), || {
            let c = engine.listener_info(id).unwrap().counters;
            c.accepted_irp + c.accepted_event == target
        });
        for client in clients {
            socket2::Socket::from(client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        wait_until("batch closed", Duration::from_secs(30), || {
            engine.listener_info(id).unwrap().counters.closed == target
        });
    }
}

#[test]
fn resident_memory_stays_flat_across_a_hundred_thousand_accept_close_cycles() {
    let engine = load(Schedule::from_seed(51));
    let info = start(&engine, "127.0.0.1:0", Mode::Both, 1_024, Service::Hold);
    cycles(&engine, info.id, WARM_UP_CYCLES);
    let warm = rss_kb();
    cycles(&engine, info.id, MEASURED_CYCLES);
    let after = rss_kb();
    let growth = after.saturating_sub(warm);
    eprintln!(
        "RSS after {WARM_UP_CYCLES} warm-up cycles: {warm} kB; after {MEASURED_CYCLES} more: \
         {after} kB (+{growth} kB)"
    );
    assert!(
        growth * 100 <= warm * 5,
        "resident memory grew by {growth} kB ({} %) across {MEASURED_CYCLES} accept/close cycles",
        growth * 100 / warm
    );
    unload(engine);
}
