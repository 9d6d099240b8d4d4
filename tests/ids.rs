//! Connection and pending-request ids (issue 11, finding 5): an id names the listener instance as
//! well as the slot, so an id kept from a stopped listener is refused by the next listener in the
//! same listener slot, for the life of the driver. (Wrap-around within one listener is forced in
//! the unit tests of `table.rs` and `pending.rs`.)

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wsk::NtStatus;
use wskaccept::engine::{ConnRecord, Engine};
use wskaccept::listener::{ListenerConfig, Mode, Service};
use wskaccept::policy::{Action, Policy};
use wskaccept::table::ConnId;

fn only_id(engine: &Engine) -> ConnId {
    let mut out: Vec<Option<ConnRecord>> = vec![None; 4];
    let (n, _) = engine.list_connections(None, 0, &mut out).unwrap();
    assert_eq!(n, 1, "one connection listed");
    out[0].unwrap().id
}

#[test]
fn a_connection_id_from_a_stopped_listener_never_reaches_the_next_listener_in_its_slot() {
    let engine = load(Schedule::from_seed(5));
    let first = start(&engine, "127.0.0.1:0", Mode::Irp, 4, Service::Hold);
    let _old_client = TcpStream::connect(first.address).unwrap();
    wait_until("accepted", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    let stale = only_id(&engine);
    engine.stop_listener(first.id).unwrap();

    let second = start(&engine, "127.0.0.1:0", Mode::Irp, 4, Service::Hold);
    assert_eq!(second.id & 0xFF, first.id & 0xFF, "the same listener slot");
    let mut client = TcpStream::connect(second.address).unwrap();
    wait_until("accepted", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    let current = only_id(&engine);
    assert_ne!(stale, current, "a new listener instance gives new ids");
    assert_eq!(
        engine.close_connection(stale, true),
        Err(NtStatus::NOT_FOUND),
        "the stale id is refused"
    );
    assert_eq!(
        seen(&mut client, Duration::from_millis(300)),
        Seen::Held,
        "the new connection is untouched"
    );
    assert_eq!(engine.stats().active, 1);
    engine.close_connection(current, true).unwrap();
    unload(engine);
}

#[test]
fn a_pending_id_from_a_stopped_listener_never_reaches_the_next_listener_in_its_slot() {
    let engine = load(Schedule::from_seed(6));
    let deferring = || {
        let mut config = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
        config.mode = Mode::Conditional;
        config.capacity = 8;
        config.decision_timeout_ms = 30_000;
        engine
            .start_listener_with_policy(config, Policy::new(&[], Action::Defer, 0).unwrap())
            .unwrap()
    };
    let first = deferring();
    let _old_client = TcpStream::connect(first.address).unwrap();
    let (_, stale) = engine.get_pending(None, Duration::from_secs(5)).unwrap();
    engine.stop_listener(first.id).unwrap();

    let second = deferring();
    assert_eq!(second.id & 0xFF, first.id & 0xFF, "the same listener slot");
    let _client = TcpStream::connect(second.address).unwrap();
    let (_, current) = engine.get_pending(None, Duration::from_secs(5)).unwrap();
    assert_ne!(
        stale.id, current.id,
        "a new listener instance gives new ids"
    );
    assert_eq!(
        engine.decide(stale.id, true),
        Err(NtStatus::NOT_FOUND),
        "the stale id is refused"
    );
    engine.decide(current.id, false).unwrap();
    unload(engine);
}

#[test]
fn at_the_end_of_the_serials_new_connections_are_refused_never_given_an_old_id() {
    use wskaccept::ids;
    let engine = load(Schedule::from_seed(7));
    let info = start(&engine, "127.0.0.1:0", Mode::Event, 8, Service::Hold);
    // Force the driver-wide counter to its end: two serials are left.
    ids::skip_serials_to(ids::LAST_SERIAL - 2);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let client = TcpStream::connect(info.address).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            client
        })
        .collect();
    wait_until("two accepted, one refused", Duration::from_secs(5), || {
        let stats = engine.stats();
        stats.active == 2 && stats.counters.rejected_full == 1
    });
    let mut out: Vec<Option<ConnRecord>> = vec![None; 4];
    let (n, _) = engine.list_connections(None, 0, &mut out).unwrap();
    let mut serials: Vec<u64> = out[..n].iter().flatten().map(|r| r.id.serial()).collect();
    serials.sort_unstable();
    assert_eq!(serials, [ids::LAST_SERIAL - 1, ids::LAST_SERIAL]);
    assert_eq!(ids::next_serial(), None, "spent, and it stays spent");
    drop(clients);
    unload(engine);
}
