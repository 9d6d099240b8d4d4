//! Conditional accept and the policy, end to end against real clients: rules by IPv4 and IPv6
//! prefix in every mode, the per-source limit, defer decided by user mode through the IOCTLs,
//! a peer that gives up while deferred, the decision timeout, a full pending queue, and stop and
//! unload with requests pending.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use wsk::NtStatus;
use wskaccept::engine::Engine;
use wskaccept::listener::{ListenerConfig, ListenerInfo, Mode, Service};
use wskaccept::pending::PENDING_CAPACITY;
use wskaccept::policy::{Action, Policy, Prefix, Rule};

fn rule(allow: bool, text: &str) -> Rule {
    let (address, length) = text.split_once('/').unwrap();
    Rule {
        allow,
        prefix: Prefix::new(address.parse().unwrap(), length.parse().unwrap()).unwrap(),
    }
}

fn start_with(
    engine: &Engine,
    address: &str,
    mode: Mode,
    policy: &Policy,
    timeout_ms: u32,
) -> ListenerInfo {
    let mut config = ListenerConfig::new(address.parse().unwrap());
    config.mode = mode;
    config.capacity = 256;
    config.decision_timeout_ms = timeout_ms;
    config.dual_stack = address.starts_with("[::]");
    engine.start_listener_with_policy(config, *policy).unwrap()
}

/// A client whose source address is `source` (loopback addresses other than 127.0.0.1 must be
/// bound explicitly).
fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(source.parse().unwrap(), 0).into())
        .unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    socket.into()
}

/// A conditional listener on loopback whose policy defers every connection to user mode.
fn deferring(engine: &Engine, decision_timeout_ms: u32) -> ListenerInfo {
    start_with(
        engine,
        "127.0.0.1:0",
        Mode::Conditional,
        &Policy::new(&[], Action::Defer, 0).unwrap(),
        decision_timeout_ms,
    )
}

fn counters(engine: &Engine) -> wskaccept::listener::CounterSnapshot {
    engine.stats().counters
}

const MODES: [Mode; 4] = [Mode::Irp, Mode::Event, Mode::Both, Mode::Conditional];

#[test]
fn allow_and_deny_by_ipv4_prefix_in_every_mode() {
    for mode in MODES {
        let engine = load(Schedule::from_seed(41));
        // 127.0.0.2 is allowed, the rest of 127/8 denied.
        let policy = Policy::new(
            &[rule(true, "127.0.0.2/32"), rule(false, "127.0.0.0/8")],
            Action::Accept,
            0,
        )
        .unwrap();
        let info = start_with(&engine, "0.0.0.0:0", mode, &policy, 5_000);
        let port = info.address.port();
        let mut allowed = connect_from("127.0.0.2", port);
        let mut denied = connect_from("127.0.0.1", port);
        wait_until("decided", Duration::from_secs(5), || {
            let c = counters(&engine);
            c.rejected_policy == 1 && engine.stats().active == 1
        });
        assert_eq!(
            seen(&mut denied, Duration::from_secs(2)),
            Seen::Reset,
            "{mode:?}: denied peers are reset"
        );
        assert_eq!(
            seen(&mut allowed, Duration::from_millis(100)),
            Seen::Held,
            "{mode:?}"
        );
        if mode == Mode::Conditional {
            assert_eq!(
                counters(&engine).accepted_conditional,
                1,
                "decided at inspection"
            );
        }
        unload(engine);
    }
}

#[test]
fn allow_and_deny_by_ipv6_prefix_on_a_dual_stack_listener() {
    for mode in MODES {
        let engine = load(Schedule::from_seed(42));
        // IPv6 loopback allowed; IPv4 peers (seen as ::ffff:a.b.c.d) denied by an IPv4 rule.
        let policy = Policy::new(
            &[rule(true, "::1/128"), rule(false, "0.0.0.0/0")],
            Action::Reject,
            0,
        )
        .unwrap();
        let info = start_with(&engine, "[::]:0", mode, &policy, 5_000);
        let port = info.address.port();
        let mut v6 = TcpStream::connect(SocketAddr::from((
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            port,
        )))
        .unwrap();
        let mut v4 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        wait_until("decided", Duration::from_secs(5), || {
            counters(&engine).rejected_policy == 1 && engine.stats().active == 1
        });
        assert_eq!(
            seen(&mut v4, Duration::from_secs(2)),
            Seen::Reset,
            "{mode:?}"
        );
        assert_eq!(
            seen(&mut v6, Duration::from_millis(100)),
            Seen::Held,
            "{mode:?}"
        );
        unload(engine);
    }
}

#[test]
fn the_per_source_limit_holds_in_every_mode() {
    for mode in MODES {
        let engine = load(Schedule::from_seed(43));
        let info = start_with(
            &engine,
            "127.0.0.1:0",
            mode,
            &Policy::new(&[], Action::Accept, 3).unwrap(),
            5_000,
        );
        let _clients = connect_all(info.address, 5);
        wait_until("decided", Duration::from_secs(5), || {
            counters(&engine).rejected_source_limit == 2 && engine.stats().active == 3
        });
        unload(engine);
    }
}

#[test]
fn defer_then_accept_and_defer_then_reject_decided_by_user_mode() {
    let engine = load(Schedule::from_seed(44));
    let info = deferring(&engine, 10_000);
    let mut first = TcpStream::connect(info.address).unwrap();
    let (listener, pending) = engine.get_pending(None, Duration::from_secs(5)).unwrap();
    assert_eq!(listener, info.id);
    assert_eq!(pending.remote, first.local_addr().unwrap());
    assert_eq!(engine.stats().active, 0, "not accepted before the decision");
    engine.decide(pending.id, true).unwrap();
    wait_until("accepted", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    assert_eq!(seen(&mut first, Duration::from_millis(100)), Seen::Held);
    assert_eq!(
        engine.decide(pending.id, true),
        Err(NtStatus::NOT_FOUND),
        "already decided"
    );

    let mut second = TcpStream::connect(info.address).unwrap();
    let (_, pending) = engine
        .get_pending(Some(info.id), Duration::from_secs(5))
        .unwrap();
    engine.decide(pending.id, false).unwrap();
    assert_eq!(seen(&mut second, Duration::from_secs(2)), Seen::Reset);
    let c = counters(&engine);
    assert_eq!((c.inspect_pended, c.accepted_conditional), (2, 1));
    assert_eq!(
        engine.get_pending(None, Duration::ZERO).map(|p| p.0),
        Err(NtStatus::TIMEOUT),
        "nothing pending"
    );
    unload(engine);
}

#[test]
fn a_peer_that_gives_up_while_deferred_is_withdrawn() {
    let engine = load(Schedule::from_seed(45));
    let info = deferring(&engine, 10_000);
    let quitter = TcpStream::connect(info.address).unwrap();
    wait_until("pended", Duration::from_secs(5), || {
        counters(&engine).inspect_pended == 1
    });
    let (_, pending) = engine.get_pending(None, Duration::from_secs(5)).unwrap();
    drop(quitter);
    wait_until("withdrawn", Duration::from_secs(5), || {
        counters(&engine).withdrawn == 1
    });
    assert_eq!(
        engine.decide(pending.id, true),
        Err(NtStatus::NOT_FOUND),
        "a withdrawn request is not found"
    );
    unload(engine);
}

#[test]
fn an_undecided_request_times_out_and_is_rejected() {
    let engine = load(Schedule::from_seed(46));
    let info = deferring(&engine, 300);
    let mut waiting = TcpStream::connect(info.address).unwrap();
    let (_, pending) = engine.get_pending(None, Duration::from_secs(5)).unwrap();
    wait_until("timed out", Duration::from_secs(3), || {
        counters(&engine).decision_timeouts == 1
    });
    assert_eq!(seen(&mut waiting, Duration::from_secs(2)), Seen::Reset);
    assert_eq!(engine.decide(pending.id, true), Err(NtStatus::NOT_FOUND));
    unload(engine);
}

#[test]
fn a_full_pending_queue_rejects_and_counts_never_blocks() {
    let engine = load(Schedule::from_seed(47));
    let info = deferring(&engine, 30_000);
    let _clients = connect_all(info.address, PENDING_CAPACITY + 5);
    wait_until("queue full", Duration::from_secs(10), || {
        let c = counters(&engine);
        c.inspect_pended == PENDING_CAPACITY as u64 && c.rejected_pending_full == 5
    });
    unload(engine);
}

#[test]
fn stop_and_unload_with_requests_pending_cancel_the_waiting_call_and_leak_nothing() {
    let engine = load(Schedule::from_seed(48));
    let defer_all = Policy::new(&[], Action::Defer, 0).unwrap();
    let a = start_with(
        &engine,
        "127.0.0.1:0",
        Mode::Conditional,
        &defer_all,
        30_000,
    );
    let b = start_with(
        &engine,
        "127.0.0.1:0",
        Mode::Conditional,
        &defer_all,
        30_000,
    );
    let _pending_a = connect_all(a.address, 3);
    let _pending_b = connect_all(b.address, 3);
    wait_until("pended", Duration::from_secs(5), || {
        counters(&engine).inspect_pended == 6
    });
    // Drain what is pending so the next GET_PENDING on `a` has to wait.
    while engine.get_pending(Some(a.id), Duration::ZERO).is_ok() {}
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            engine
                .get_pending(Some(a.id), Duration::from_secs(30))
                .map(|p| p.0)
        });
        std::thread::sleep(Duration::from_millis(200));
        engine.stop_listener(a.id).unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            Err(NtStatus::CANCELLED),
            "the listener stopped"
        );
        let waiter = scope.spawn(|| {
            while engine.get_pending(None, Duration::ZERO).is_ok() {}
            engine
                .get_pending(None, Duration::from_secs(30))
                .map(|p| p.0)
        });
        std::thread::sleep(Duration::from_millis(200));
        engine.cancel_waits();
        assert_eq!(
            waiter.join().unwrap(),
            Err(NtStatus::CANCELLED),
            "unload cancels"
        );
    });
    unload(engine);
}

#[test]
fn a_policy_replaced_at_run_time_applies_to_the_next_connection() {
    let engine = load(Schedule::from_seed(49));
    let info = start_with(
        &engine,
        "127.0.0.1:0",
        Mode::Both,
        &Policy::default(),
        5_000,
    );
    let _first = TcpStream::connect(info.address).unwrap();
    wait_until("accepted", Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    let deny_all = Policy::new(&[rule(false, "0.0.0.0/0")], Action::Accept, 0).unwrap();
    engine.set_policy(info.id, deny_all).unwrap();
    assert_eq!(engine.policy(info.id).unwrap(), deny_all);
    let mut second = TcpStream::connect(info.address).unwrap();
    assert_eq!(seen(&mut second, Duration::from_secs(2)), Seen::Reset);
    assert_eq!(engine.stats().active, 1, "existing connections stay");
    // Outside conditional mode, defer means reject.
    engine
        .set_policy(info.id, Policy::new(&[], Action::Defer, 0).unwrap())
        .unwrap();
    let mut third = TcpStream::connect(info.address).unwrap();
    assert_eq!(seen(&mut third, Duration::from_secs(2)), Seen::Reset);
    assert_eq!(counters(&engine).rejected_policy, 2);
    unload(engine);
}

#[test]
fn service_close_in_conditional_mode_still_closes_gracefully() {
    let engine = load(Schedule::from_seed(50));
    let mut config = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.mode = Mode::Conditional;
    config.service = Service::Close;
    let info = engine.start_listener(config).unwrap();
    let mut client = TcpStream::connect(info.address).unwrap();
    assert_eq!(seen(&mut client, Duration::from_secs(5)), Seen::Closed);
    unload(engine);
}

#[test]
fn the_inverted_call_can_be_answered_without_waiting() {
    use ioctl::{ALL_LISTENERS, GetPending, PendingRecord, VERSION};
    use wskaccept::control::try_get_pending;
    use zerocopy::IntoBytes;
    let engine = load(Schedule::from_seed(51));
    let info = deferring(&engine, 10_000);
    let request = GetPending {
        version: VERSION,
        listener: ALL_LISTENERS,
        timeout_ms: 60_000,
        reserved: 0,
    };
    let mut out = [0u8; 128];
    // Nothing deferred: park the request (no waiting here, whatever the timeout).
    let started = std::time::Instant::now();
    assert_eq!(
        try_get_pending(&engine, request.as_bytes(), &mut out),
        Ok(None)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        try_get_pending(&engine, &request.as_bytes()[..8], &mut out),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        try_get_pending(&engine, request.as_bytes(), &mut out[..8]),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    let client = TcpStream::connect(info.address).unwrap();
    wait_until("pended", Duration::from_secs(5), || {
        counters(&engine).inspect_pended == 1
    });
    let written = try_get_pending(&engine, request.as_bytes(), &mut out)
        .unwrap()
        .expect("a request is deferred");
    let record: PendingRecord = ioctl::read(&out[..written]).unwrap();
    assert_eq!(
        record.remote.to_socket_addr().unwrap(),
        client.local_addr().unwrap()
    );
    assert_eq!(record.listener, info.id);
    unload(engine);
}

/// Every connection a client completed, in one counter of its listener: accepted (by either
/// path) or refused for one reason.
fn accounted(c: &wskaccept::listener::CounterSnapshot) -> u64 {
    c.accepted_irp
        + c.accepted_event
        + c.rejected_full
        + c.rejected_not_running
        + c.rejected_policy
        + c.rejected_source_limit
        + c.rejected_pending_full
        + c.withdrawn
        + c.decision_timeouts
}

/// Finding 9: decisions made through DECIDE are counted — rejects as `rejected_policy` — and a
/// decision that arrives after the peer withdrew or the request timed out is counted once, under
/// what actually happened. Under a random decider (accept, reject, or no answer until the
/// timeout) and peers that give up at random moments, the invariant holds per listener:
/// connections completed = accepted + every refusal counter.
#[test]
fn every_connection_ends_in_exactly_one_counter_under_a_random_decider() {
    const CLIENTS: usize = 300;
    for seed in [61_u64, 62] {
        let engine = load(Schedule::from_seed(seed));
        let info = start_with(
            &engine,
            "127.0.0.1:0",
            Mode::Conditional,
            &Policy::new(&[], Action::Defer, 0).unwrap(),
            300,
        );
        let mut rng = fastrand::Rng::with_seed(seed);
        let decider_seed = rng.u64(..);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut rng = fastrand::Rng::with_seed(decider_seed);
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let Ok((_, pending)) =
                        engine.get_pending(Some(info.id), Duration::from_millis(20))
                    else {
                        continue;
                    };
                    std::thread::sleep(Duration::from_micros(rng.u64(0..2_000)));
                    match rng.u8(0..10) {
                        // Leave it to the decision timeout.
                        0 => {}
                        n => {
                            let _ = engine.decide(pending.id, n % 2 == 0);
                        }
                    }
                }
            });
            let mut kept = Vec::new();
            let mut quitters = Vec::new();
            for _ in 0..CLIENTS {
                let client = TcpStream::connect(info.address).unwrap();
                match rng.u8(0..4) {
                    // Gives up at once (withdrawn, or accepted and closed).
                    0 => drop(client),
                    // Gives up a little later, perhaps after the decision.
                    1 => quitters.push((client, rng.u64(0..5))),
                    _ => kept.push(client),
                }
                std::thread::sleep(Duration::from_millis(1));
                quitters.retain_mut(|(_, left)| {
                    *left = left.saturating_sub(1);
                    *left > 0
                });
            }
            drop(quitters);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_until("every connection counted", Duration::from_secs(10), || {
                    accounted(&engine.listener_info(info.id).unwrap().counters) >= CLIENTS as u64
                });
            }));
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let c = engine.listener_info(info.id).unwrap().counters;
            eprintln!("seed {seed}: {c:?}");
            assert!(
                outcome.is_ok(),
                "seed {seed}: {} of {CLIENTS} connections counted: {c:?}",
                accounted(&c)
            );
            assert_eq!(
                accounted(&c),
                CLIENTS as u64,
                "seed {seed}: counted twice: {c:?}"
            );
            drop(kept);
        });
        unload(engine);
    }
}

/// Finding 4: a listener restart drops the requests deferred on its old listening socket (the
/// provider forgot them and reset their peers), as stop does: DECIDE answers STATUS_NOT_FOUND
/// for them, nothing is completed on the new socket, and a listener whose restart failed has
/// nothing left pending for the ticker to keep kicking.
#[test]
fn a_listener_restart_drops_deferred_requests_and_decide_answers_not_found() {
    use hostkernel::schedule::{self, Fault};
    for reopen_fails in [false, true] {
        let engine = load(Schedule::from_seed(63));
        let info = deferring(&engine, 30_000);
        let mut deferred = TcpStream::connect(info.address).unwrap();
        let (_, pending) = engine
            .get_pending(Some(info.id), Duration::from_secs(5))
            .unwrap();
        // The next connection is accepted at inspection, and its delivery breaks the listening
        // socket (a NULL AcceptSocket): the listener restarts.
        engine
            .set_policy(info.id, Policy::new(&[], Action::Accept, 0).unwrap())
            .unwrap();
        schedule::fail_nth(Fault::ListenerFailure, 1);
        if reopen_fails {
            schedule::fail_nth(Fault::WskSocket, 1);
        }
        let _breaker = TcpStream::connect(info.address).unwrap();
        wait_until("restart done", Duration::from_secs(5), || {
            let now = engine.listener_info(info.id).unwrap();
            if reopen_fails {
                now.phase == wskaccept::listener::Phase::Failed
            } else {
                now.counters.listener_restarts == 1
            }
        });
        assert_eq!(
            engine.decide(pending.id, true),
            Err(NtStatus::NOT_FOUND),
            "reopen fails: {reopen_fails}: a request of the old listening socket"
        );
        assert_eq!(seen(&mut deferred, Duration::from_secs(2)), Seen::Reset);
        let c = engine.listener_info(info.id).unwrap().counters;
        assert_eq!(c.rejected_not_running, 1, "counted once, as refused: {c:?}");
        unload(engine);
    }
}

/// A per-source limit set on a listener that had none counts the connections already open: the
/// driver counts sources only while a limit can need them (none of this on the accept path of a
/// listener that never had a limit), so setting one first counts what the table holds.
#[test]
fn a_per_source_limit_set_later_counts_the_connections_already_open() {
    for mode in MODES {
        let engine = load(Schedule::from_seed(47));
        let info = start_with(&engine, "127.0.0.1:0", mode, &Policy::default(), 5_000);
        let port = info.address.port();
        let mut first: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.1", port)).collect();
        let _other = connect_from("127.0.0.2", port);
        wait_until("four accepted", Duration::from_secs(5), || {
            engine.stats().active == 4
        });
        engine
            .set_policy(info.id, Policy::new(&[], Action::Accept, 3).unwrap())
            .unwrap();
        let _over: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.1", port)).collect();
        let _second = connect_from("127.0.0.2", port);
        wait_until(
            "two refused, one more accepted",
            Duration::from_secs(5),
            || counters(&engine).rejected_source_limit == 2 && engine.stats().active == 5,
        );
        // A connection counted when the limit was set gives its count back when it goes.
        drop(first.pop());
        wait_until("one closed", Duration::from_secs(5), || {
            engine.stats().active == 4
        });
        let _again = connect_from("127.0.0.1", port);
        wait_until("room again for 127.0.0.1", Duration::from_secs(5), || {
            engine.stats().active == 5
        });
        assert_eq!(counters(&engine).rejected_source_limit, 2, "{mode:?}");
        unload(engine);
    }
}
