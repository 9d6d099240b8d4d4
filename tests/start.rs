//! Finding 2: a listener start goes live only after its last failure point. A start that fails at
//! WskGetLocalAddress (its last WSK call) while clients are already connecting admitted nothing:
//! no socket, IRP or work item of the failed listener survives it.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wsk::NtStatus;
use wskaccept::listener::{Mode, Service};

fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

#[test]
fn a_start_failing_at_its_last_step_admitted_nothing_and_leaks_nothing() {
    for mode in [Mode::Event, Mode::Both, Mode::Conditional] {
        for seed in SEEDS {
            let engine = load(Schedule::from_seed(seed));
            let serving = start(&engine, "127.0.0.1:0", Mode::Irp, 4, Service::Hold);
            let address = free_port();
            hostkernel::provider::fail_next_listen_local_address(Duration::from_millis(300));
            let done = Arc::new(AtomicBool::new(false));
            let connector = {
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut clients = Vec::new();
                    while !done.load(Ordering::SeqCst) {
                        if let Ok(client) =
                            TcpStream::connect_timeout(&address, Duration::from_millis(50))
                        {
                            clients.push(client);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    clients
                })
            };
            let mut config = common::config(&address.to_string(), mode);
            config.service = Service::Hold;
            let result = engine.start_listener(config);
            done.store(true, Ordering::SeqCst);
            let clients = connector.join().unwrap();
            assert_eq!(
                result.map(|i| i.id).unwrap_err(),
                NtStatus::INSUFFICIENT_RESOURCES,
                "{mode:?} seed {seed}"
            );
            std::thread::sleep(Duration::from_millis(100));
            let outstanding = hostkernel::accounting::outstanding();
            // Only the serving listener's socket may be left: anything else the failed start
            // admitted would hang WskDeregister at unload, so stop here rather than there.
            if outstanding.sockets != 1 || engine.stats().active != 0 {
                let active = engine.stats().active;
                std::mem::forget(engine);
                panic!(
                    "{mode:?} seed {seed}: the failed start left {active} connections admitted \
                     ({} clients had connected); {outstanding}",
                    clients.len()
                );
            }
            assert_eq!(engine.stats().listeners, 1);
            engine.stop_listener(serving.id).unwrap();
            unload(engine);
            drop(clients);
        }
    }
}
