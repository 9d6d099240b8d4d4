//! What happens to accepted connections: peer closes are noticed within a second, users close by
//! id, ids are never reused with the same generation, and service `close` closes gracefully.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wskaccept::engine::ConnRecord;
use wskaccept::listener::{Mode, Service};
use wskaccept::table::ConnId;

fn ids(engine: &wskaccept::engine::Engine) -> Vec<ConnId> {
    let mut out: Vec<Option<ConnRecord>> = vec![None; 256];
    let (n, _) = engine.list_connections(None, 0, &mut out).unwrap();
    out[..n].iter().flatten().map(|r| r.id).collect()
}

#[test]
fn a_peer_close_is_noticed_and_removed_within_one_second() {
    for mode in [Mode::Irp, Mode::Event, Mode::Both] {
        for seed in SEEDS {
            let engine = load(Schedule::from_seed(seed));
            let info = start(&engine, "127.0.0.1:0", mode, 64, Service::Hold);
            let mut clients = connect_all(info.address, 20);
            wait_until("accepted", Duration::from_secs(10), || {
                engine.stats().active == 20
            });
            // Half close gracefully, a quarter reset, and one sends data first.
            clients[0]
                .write_all(b"some bytes the hold service discards")
                .unwrap();
            let resets: Vec<_> = clients.drain(10..15).map(socket2::Socket::from).collect();
            for s in &resets {
                s.set_linger(Some(Duration::ZERO)).unwrap();
            }
            drop(resets);
            clients.truncate(5);
            let took = wait_until("peer closes removed", Duration::from_secs(1), || {
                engine.stats().active == 5
            });
            eprintln!("mode {mode:?} seed {seed}: 15 peer closes removed in {took:?}");
            let counters = engine.stats().counters;
            assert_eq!(counters.peer_closed, 15);
            assert_eq!(counters.closed, 15);
            unload(engine);
        }
    }
}

#[test]
fn close_by_id_graceful_and_abortive_and_stale_ids_are_refused() {
    let engine = load(Schedule::from_seed(8));
    let info = start(&engine, "127.0.0.1:0", Mode::Both, 4, Service::Hold);
    let mut clients = connect_all(info.address, 2);
    wait_until("accepted", Duration::from_secs(5), || {
        engine.stats().active == 2
    });
    let before = ids(&engine);
    let (graceful, abortive) = (before[0], before[1]);
    engine.close_connection(graceful, false).unwrap();
    engine.close_connection(abortive, true).unwrap();
    wait_until("closed", Duration::from_secs(2), || {
        engine.stats().active == 0
    });
    let seen: HashSet<_> = clients
        .iter_mut()
        .map(|c| format!("{:?}", seen(c, Duration::from_secs(1))))
        .collect();
    assert_eq!(
        seen,
        HashSet::from(["Closed".to_owned(), "Reset".to_owned()]),
        "one FIN, one RST"
    );
    assert_eq!(
        engine.close_connection(graceful, false),
        Err(wsk::NtStatus::NOT_FOUND),
        "stale id"
    );
    assert_eq!(
        engine.close_connection(ConnId(0xDEAD_BEEF), false),
        Err(wsk::NtStatus::NOT_FOUND)
    );
    // Slots come back with a new generation: no id repeats.
    let _more = connect_all(info.address, 2);
    wait_until("accepted again", Duration::from_secs(5), || {
        engine.stats().active == 2
    });
    let after = ids(&engine);
    for id in &after {
        assert!(
            !before.contains(id),
            "id {id:?} reused with the same generation"
        );
    }
    assert_eq!(engine.stats().counters.user_closed, 2);
    unload(engine);
}

#[test]
fn service_close_closes_gracefully_at_once() {
    for mode in [Mode::Irp, Mode::Event] {
        let engine = load(Schedule::from_seed(4));
        let info = start(&engine, "127.0.0.1:0", mode, 64, Service::Close);
        for mut client in connect_all(info.address, 50) {
            assert_eq!(
                seen(&mut client, Duration::from_secs(5)),
                Seen::Closed,
                "FIN, not RST"
            );
        }
        wait_until("all closed", Duration::from_secs(5), || {
            engine.stats().counters.closed == 50
        });
        assert_eq!(engine.stats().counters.rejected_full, 0);
        assert_eq!(engine.stats().active, 0);
        unload(engine);
    }
}
