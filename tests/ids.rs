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
