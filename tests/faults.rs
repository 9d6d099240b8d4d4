//! Failures: a listening socket that breaks is recreated; allocation and WSK failures at listener
//! start give a clear error, leak nothing, and leave the other listeners serving; a provider that
//! is not there yet gives STATUS_DEVICE_NOT_READY in bounded time.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use hostkernel::schedule::{self, Fault, Schedule};
use wsk::NtStatus;
use wskaccept::listener::{Mode, Phase, Service};

#[test]
fn a_null_accept_socket_recreates_the_listener_on_the_same_address() {
    for mode in [Mode::Event, Mode::Irp, Mode::Both] {
        let engine = load(Schedule::from_seed(9));
        let info = start(&engine, "127.0.0.1:0", mode, 64, Service::Hold);
        schedule::fail_nth(Fault::ListenerFailure, 1);
        // The first connection breaks the listening socket (it is reset).
        let mut first = TcpStream::connect(info.address).unwrap();
        assert_eq!(seen(&mut first, Duration::from_secs(2)), Seen::Reset);
        wait_until("restart", Duration::from_secs(5), || {
            engine
                .listener_info(info.id)
                .unwrap()
                .counters
                .listener_restarts
                == 1
        });
        let after = engine.listener_info(info.id).unwrap();
        assert_eq!(after.phase, Phase::Running);
        assert_eq!(after.address, info.address, "same address");
        let _again = connect_all(info.address, 10);
        wait_until("serving again", Duration::from_secs(5), || {
            engine.stats().active == 10
        });
        unload(engine);
    }
}

fn other_listener_still_serves(
    engine: &wskaccept::engine::Engine,
    address: std::net::SocketAddr,
    expect: u32,
) -> TcpStream {
    let client = TcpStream::connect(address).unwrap();
    wait_until("the other listener serves", Duration::from_secs(5), || {
        engine.stats().active == expect
    });
    client
}

#[test]
fn failures_at_listener_start_are_clear_errors_and_leak_nothing() {
    let cases = [
        (Fault::PoolAllocation, 1, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::PoolAllocation, 3, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::IrpAllocation, 1, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::IrpAllocation, 40, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::WskSocket, 1, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::WskControlSocket, 1, NtStatus::INSUFFICIENT_RESOURCES),
        (Fault::WskBind, 1, NtStatus::INSUFFICIENT_RESOURCES),
    ];
    let engine = load(Schedule::from_seed(2));
    let serving = start(&engine, "127.0.0.1:0", Mode::Both, 16, Service::Hold);
    let mut expected_active = 0;
    let mut clients = Vec::new();
    for (fault, nth, status) in cases {
        schedule::fail_nth(fault, nth);
        let result = engine.start_listener(common::config("127.0.0.1:0", Mode::Both));
        assert_eq!(
            result.map(|i| i.id).unwrap_err(),
            status,
            "{fault:?} #{nth}"
        );
        assert_eq!(schedule::fired(fault), 1, "{fault:?} fired");
        schedule::configure(Schedule::from_seed(2));
        assert_eq!(engine.stats().listeners, 1);
        expected_active += 1;
        clients.push(other_listener_still_serves(
            &engine,
            serving.address,
            expected_active,
        ));
    }
    unload(engine);
}

#[test]
fn a_port_in_use_is_address_already_associated() {
    let engine = load(Schedule::from_seed(1));
    let first = start(&engine, "127.0.0.1:0", Mode::Irp, 8, Service::Hold);
    let again = engine.start_listener(common::config(&first.address.to_string(), Mode::Event));
    assert_eq!(
        again.map(|i| i.id).unwrap_err(),
        NtStatus::ADDRESS_ALREADY_ASSOCIATED
    );
    let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = engine.start_listener(common::config(
        &outside.local_addr().unwrap().to_string(),
        Mode::Event,
    ));
    assert_eq!(
        taken.map(|i| i.id).unwrap_err(),
        NtStatus::ADDRESS_ALREADY_ASSOCIATED
    );
    unload(engine);
}

#[test]
fn too_many_listeners_is_quota_exceeded_and_bad_configs_are_invalid() {
    let engine = load(Schedule::from_seed(1));
    for _ in 0..wskaccept::engine::MAX_LISTENERS {
        start(&engine, "127.0.0.1:0", Mode::Event, 4, Service::Hold);
    }
    let over = engine.start_listener(common::config("127.0.0.1:0", Mode::Event));
    assert_eq!(over.map(|i| i.id).unwrap_err(), NtStatus::QUOTA_EXCEEDED);
    let mut bad = common::config("127.0.0.1:0", Mode::Irp);
    bad.depth = 65;
    assert_eq!(
        engine.start_listener(bad).map(|i| i.id).unwrap_err(),
        NtStatus::INVALID_PARAMETER
    );
    bad.depth = 1;
    bad.capacity = 65_537;
    assert_eq!(
        engine.start_listener(bad).map(|i| i.id).unwrap_err(),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(engine.stop_listener(0xFFFF_FF0F), Err(NtStatus::NOT_FOUND));
    unload(engine);
}

#[test]
fn no_provider_yet_is_device_not_ready_in_bounded_time_and_load_does_not_block() {
    hostkernel::provider::set_provider_ready(false);
    let started = Instant::now();
    let engine = load(Schedule::from_seed(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "driver load must not wait for the provider"
    );
    let result = engine.start_listener(common::config("127.0.0.1:0", Mode::Event));
    assert_eq!(
        result.map(|i| i.id).unwrap_err(),
        NtStatus::DEVICE_NOT_READY
    );
    let waited = started.elapsed();
    assert!(
        waited < wskaccept::engine::NPI_WAIT + Duration::from_secs(2),
        "{waited:?}"
    );
    hostkernel::provider::set_provider_ready(true);
    let info = start(&engine, "127.0.0.1:0", Mode::Event, 4, Service::Hold);
    let _client = TcpStream::connect(info.address).unwrap();
    wait_until("served", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    unload(engine);
}

#[test]
fn connection_resets_right_after_accept_are_cleaned_up() {
    let engine = load(Schedule::from_seed(6));
    let info = start(&engine, "127.0.0.1:0", Mode::Both, 32, Service::Hold);
    for _ in 0..5 {
        schedule::fail_nth(Fault::ConnectionReset, 1);
        let _client = TcpStream::connect(info.address).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until("reset connections removed", Duration::from_secs(5), || {
        let s = engine.stats();
        s.active == 0 && s.counters.peer_closed == 5
    });
    unload(engine);
}
