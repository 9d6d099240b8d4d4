//! WSK call failures at every step of listener start (issue 11, host item 3): WskSocket, every
//! WskControlSocket (options before bind, and the one that enables the accept event, after bind),
//! WskBind and WskGetLocalAddress (after events are enabled) fail in turn, alone, in every mode.
//! Each start fails with the provider's status, leaks nothing, leaves no listener behind, and the
//! listener already running keeps serving; the same start then succeeds.
//!
//! No client connects to the port being started here: a connection admitted during the window
//! between enabling events and a later failure is finding 2 of issue 11 (start goes live before
//! its last failure point), tested where that fix lives.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use hostkernel::schedule::{self, Fault, Schedule};
use wsk::NtStatus;
use wskaccept::listener::{Mode, Service};

#[test]
fn every_wsk_call_of_listener_start_can_fail_in_every_mode() {
    let engine = load(Schedule::from_seed(3));
    // The serving listener accepts through IRPs only: an event-accepted connection is handed
    // over to the worker by a WskControlSocket on the serving socket about a millisecond later
    // (finding 7), which could take the fault armed for the next start (it did, 1 run in 10).
    let serving = start(&engine, "127.0.0.1:0", Mode::Irp, 64, Service::Hold);
    let mut clients = Vec::new();
    let mut failures = 0;
    for mode in [Mode::Irp, Mode::Event, Mode::Both, Mode::Conditional] {
        for fault in [
            Fault::WskSocket,
            Fault::WskControlSocket,
            Fault::WskBind,
            Fault::WskGetLocalAddress,
        ] {
            for nth in 1.. {
                schedule::configure(Schedule::from_seed(3));
                schedule::fail_nth(fault, nth);
                let result = engine.start_listener(config("127.0.0.1:0", mode));
                if schedule::fired(fault) == 0 {
                    // Past the last call of this kind: the start went through.
                    let info = result.expect("a start without faults");
                    engine.stop_listener(info.id).unwrap();
                    break;
                }
                failures += 1;
                assert_eq!(
                    result.map(|i| i.id).unwrap_err(),
                    NtStatus::INSUFFICIENT_RESOURCES,
                    "{mode:?}: {fault:?} #{nth}"
                );
                assert_eq!(engine.stats().listeners, 1, "only the serving listener");
            }
        }
        // The running listener was never disturbed.
        clients.push(TcpStream::connect(serving.address).unwrap());
        let expected = u32::try_from(clients.len()).unwrap();
        wait_until("still serving", Duration::from_secs(5), || {
            engine.stats().active == expected
        });
    }
    eprintln!("{failures} listener starts failed, one WSK call each");
    assert!(failures >= 4 * 4, "every kind of call failed in every mode");
    unload(engine);
}

#[test]
fn a_failed_listener_start_closes_its_socket_even_when_no_irp_can_be_had_for_the_close() {
    // WskCloseSocket needs an IRP, and a close must never be skipped: a socket left open makes
    // WskDeregister wait forever at unload (WSK-FACTS §7). Each WSK step of start fails while
    // one IRP allocation of that start fails too — including the one a close would make.
    let engine = load(Schedule::from_seed(4));
    let mut leaked = None;
    'sweep: for (fault, nth) in [
        (Fault::WskControlSocket, 1),
        (Fault::WskBind, 1),
        (Fault::WskControlSocket, 2),
        (Fault::WskGetLocalAddress, 1),
    ] {
        for irp in 1.. {
            schedule::configure(Schedule::from_seed(4));
            schedule::fail_nth(fault, nth);
            schedule::fail_nth(Fault::IrpAllocation, irp);
            let mut small = config("127.0.0.1:0", Mode::Event);
            small.capacity = 2;
            let result = engine.start_listener(small);
            if std::env::var_os("TRACE").is_some() {
                eprintln!(
                    "{fault:?} #{nth} irp #{irp}: {:?} fired {} sockets {}",
                    result.as_ref().map(|i| i.id),
                    schedule::fired(Fault::IrpAllocation),
                    hostkernel::accounting::outstanding().sockets
                );
            }
            if schedule::fired(Fault::IrpAllocation) == 0 {
                assert!(result.is_err(), "{fault:?} #{nth} fired");
                break;
            }
            if let Ok(info) = result {
                engine.stop_listener(info.id).unwrap();
            }
            // The provider counts a socket closed just after it completes the close IRP: give
            // it a moment; a socket left open stays counted.
            let open = || hostkernel::accounting::outstanding().sockets;
            let since = std::time::Instant::now();
            while open() != 0 && since.elapsed() < Duration::from_millis(500) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let sockets = open();
            if sockets != 0 {
                leaked = Some((fault, nth, irp, sockets));
                break 'sweep;
            }
        }
    }
    if let Some((fault, nth, irp, sockets)) = leaked {
        // Unloading would wait forever in WskDeregister: report instead.
        std::mem::forget(engine);
        panic!("{fault:?} #{nth} with IRP allocation #{irp} failing left {sockets} socket(s) open");
    }
    unload(engine);
}
