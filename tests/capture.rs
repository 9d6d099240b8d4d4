//! Finding 8: capturing the provider NPI never spins. When WskCaptureProviderNPI fails at once
//! (STATUS_NOINTERFACE), the driver backs off between attempts instead of burning a processor
//! until unload; it still captures once the provider comes, and unload is not held up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hostkernel::provider;
use hostkernel::schedule::Schedule;
use wskaccept::listener::{Mode, Service};

#[test]
fn a_capture_that_fails_at_once_backs_off_instead_of_spinning() {
    provider::set_provider_no_interface(true);
    let engine = load(Schedule::from_seed(1));
    let before = provider::capture_calls();
    std::thread::sleep(Duration::from_secs(1));
    let attempts = provider::capture_calls() - before;
    eprintln!("{attempts} capture attempts in one second of STATUS_NOINTERFACE");
    assert!(
        attempts <= 20,
        "{attempts} WskCaptureProviderNPI calls in one second: the worker spins"
    );
    assert_eq!(engine.provider_status(), wsk::NtStatus::NOINTERFACE);
    provider::set_provider_no_interface(false);
    let info = start(&engine, "127.0.0.1:0", Mode::Event, 4, Service::Hold);
    let _client = std::net::TcpStream::connect(info.address).unwrap();
    wait_until("served", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    unload(engine);
}

#[test]
fn unload_is_not_held_up_by_a_capture_that_keeps_failing() {
    provider::set_provider_no_interface(true);
    let engine = load(Schedule::from_seed(1));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    unload(engine);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "unload took {took:?}");
}
