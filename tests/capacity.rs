//! A full table refuses on both paths, counts every refusal, and loses nothing: every connection a
//! client completed is accepted, refused-and-counted, or still in the backlog.

mod common;

use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wskaccept::listener::{Mode, Service};

fn hundred_of_hundred_fifty(mode: Mode) {
    for seed in SEEDS {
        let engine = load(Schedule::from_seed(seed));
        let info = start(&engine, "127.0.0.1:0", mode, 100, Service::Hold);
        let mut clients = connect_all(info.address, 150);
        wait_until("every connection decided", Duration::from_secs(20), || {
            let c = engine.stats().counters;
            c.accepted_irp + c.accepted_event + c.rejected_full == 150
        });
        let stats = engine.stats();
        assert_eq!(stats.active, 100, "seed {seed}");
        assert_eq!(stats.counters.rejected_full, 50, "seed {seed}");
        let seen = seen_all(&mut clients, Duration::from_millis(200));
        let held = seen.iter().filter(|s| **s == Seen::Held).count();
        let reset = seen.iter().filter(|s| **s == Seen::Reset).count();
        assert!(
            !seen.contains(&Seen::Closed),
            "a refused connection must be reset, not closed"
        );
        assert_eq!(
            (held, reset),
            (100, 50),
            "seed {seed}: what the clients saw"
        );
        unload(engine);
    }
}

#[test]
fn irp_path_full_table_aborts_the_accepted_socket_and_counts_it() {
    hundred_of_hundred_fifty(Mode::Irp);
}

#[test]
fn event_path_full_table_rejects_and_counts_it() {
    hundred_of_hundred_fifty(Mode::Event);
}

#[test]
fn both_paths_full_table_counts_every_refusal() {
    hundred_of_hundred_fifty(Mode::Both);
}

#[test]
fn connections_nobody_accepts_stay_in_the_backlog_and_are_not_lost() {
    // IRP mode with the worker unable to re-arm (only one IRP, then refusals are impossible):
    // the invariant is checked at every moment: accepted + rejected <= completed.
    let engine = load(Schedule::from_seed(3));
    let info = start(&engine, "127.0.0.1:0", Mode::Irp, 10, Service::Hold);
    let _clients = connect_all(info.address, 30);
    for _ in 0..50 {
        let c = engine.stats().counters;
        assert!(c.accepted_irp + c.rejected_full <= 30);
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_until("all decided", Duration::from_secs(10), || {
        let c = engine.stats().counters;
        c.accepted_irp + c.rejected_full == 30
    });
    assert_eq!(engine.stats().active, 10);
    unload(engine);
}

const EXPECTED_BYTES_PER_ENTRY: usize = 288;

#[test]
fn memory_per_entry_is_what_the_docs_state() {
    eprintln!("bytes per entry: {}", wskaccept::listener::BYTES_PER_ENTRY);
    // The README states this figure; if the structures change, the docs must change with them.
    assert_eq!(
        wskaccept::listener::BYTES_PER_ENTRY,
        EXPECTED_BYTES_PER_ENTRY,
        "update README's bytes-per-entry figure"
    );
}
