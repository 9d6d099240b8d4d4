//! Service `echo` against real clients: every byte comes back in order (500 concurrent
//! connections, random lengths and write sizes, every mode, IPv4, IPv6 and dual-stack), with no
//! pool, IRP or MDL allocated once the listener started; a peer that never reads stalls only its
//! own connection; half-close and reset with data in flight; stop with 1,000 connections
//! mid-transfer.

// Figures for people (rates, sizes) and a byte pattern: the casts are meant.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use hostkernel::accounting::{self, Allocations};
use hostkernel::schedule::Schedule;
use wskaccept::engine::{ConnRecord, Engine};
use wskaccept::listener::{ListenerInfo, Mode, Service};

const MIB: usize = 1 << 20;

fn start_echo(
    engine: &Engine,
    address: &str,
    mode: Mode,
    capacity: u32,
    buffer: u32,
) -> ListenerInfo {
    let mut config = config(address, mode);
    config.dual_stack = address.starts_with("[::]");
    config.capacity = capacity;
    config.service = Service::Echo;
    config.buffer = buffer;
    engine.start_listener(config).expect("listener start")
}

/// The byte at `position` of connection `seed`'s stream (cheap to check without storing it).
fn byte_at(seed: u64, position: usize) -> u8 {
    let x = (position as u64).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let x = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 32) as u8
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(f)
        .expect("spawn")
}

/// One client: writes `length` bytes of its stream in random-sized writes while a second thread
/// reads them back and checks every byte; after the last write it half-closes, and the echo
/// must end with the driver's FIN right after the last byte. Returns the bytes checked.
fn echo_client(address: SocketAddr, seed: u64, length: usize) -> JoinHandle<usize> {
    spawn(move || {
        let mut stream = TcpStream::connect(address).expect("connect");
        let mut reader = stream.try_clone().unwrap();
        let check = spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut got = 0;
            loop {
                let n = reader.read(&mut buffer).expect("read echo");
                if n == 0 {
                    return got;
                }
                for (i, &b) in buffer[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        byte_at(seed, got + i),
                        "connection {seed}: byte {}",
                        got + i
                    );
                }
                got += n;
                assert!(got <= length, "connection {seed}: more bytes than sent");
            }
        });
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut sent = 0;
        while sent < length {
            let n = rng.usize(1..=64 * 1024).min(length - sent);
            chunk.clear();
            chunk.extend((sent..sent + n).map(|p| byte_at(seed, p)));
            stream.write_all(&chunk).expect("write");
            sent += n;
        }
        stream.shutdown(Shutdown::Write).unwrap();
        let got = check.join().expect("reader");
        assert_eq!(got, length, "connection {seed}: echo ended early");
        got
    })
}

/// Log-uniform from 1 B to 1 MiB (every order of magnitude is as likely), with the two ends
/// always present.
fn lengths(count: usize, seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lengths: Vec<usize> = (0..count)
        .map(|_| (2f64.powf(rng.f64() * 20.0) as usize).clamp(1, MIB))
        .collect();
    lengths[0] = 1;
    lengths[1] = MIB;
    lengths
}

fn traffic_allocations(before: Allocations) -> u64 {
    let after = accounting::allocations();
    (after.pool - before.pool) + (after.irps - before.irps) + (after.mdls - before.mdls)
}

/// `count` clients echo their streams through a listener on `address`; checks the bytes, the
/// counters and that nothing was allocated during the traffic.
fn echo_run(address: &str, mode: Mode, buffer: u32, count: usize, seed: u64) {
    let engine = load(Schedule::from_seed(seed));
    let info = start_echo(&engine, address, mode, 1024, buffer);
    let target = match (info.address, address.starts_with("[::]")) {
        // A dual-stack listener: the clients come over IPv4.
        (SocketAddr::V6(v6), true) => SocketAddr::from(([127, 0, 0, 1], v6.port())),
        (SocketAddr::V6(v6), false) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port())),
        (v4, _) => SocketAddr::from(([127, 0, 0, 1], v4.port())),
    };
    let before = accounting::allocations();
    let lengths = lengths(count, seed);
    let total: usize = lengths.iter().sum();
    let started = Instant::now();
    let clients: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(i, &length)| echo_client(target, seed * 10_000 + i as u64, length))
        .collect();
    let echoed: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    let took = started.elapsed();
    assert_eq!(echoed, total);
    wait_until("every connection closed", Duration::from_secs(10), || {
        engine.listener_info(info.id).unwrap().counters.closed == count as u64
    });
    let allocated = traffic_allocations(before);
    let counters = engine.listener_info(info.id).unwrap().counters;
    eprintln!(
        "{mode:?} {address} buffer {buffer}: {count} connections echoed {} MB in {took:?} \
         ({:.0} MB/s each way); {allocated} allocations",
        total / 1_000_000,
        total as f64 / 1e6 / took.as_secs_f64()
    );
    assert_eq!(
        allocated, 0,
        "pool, IRP or MDL allocations during the traffic"
    );
    assert_eq!(counters.bytes_in, total as u64);
    assert_eq!(counters.bytes_out, total as u64);
    assert_eq!(counters.echoed, count as u64);
    assert_eq!(counters.peer_fin, count as u64);
    assert_eq!(
        (counters.peer_reset, counters.peer_closed),
        (0, count as u64)
    );
    assert_eq!(
        engine.stats().counters.bytes_out,
        total as u64,
        "driver-wide"
    );
    engine.stop_listener(info.id).unwrap();
    unload(engine);
}

#[test]
fn five_hundred_connections_echo_byte_exact_in_irp_mode() {
    echo_run("127.0.0.1:0", Mode::Irp, 512, 500, 31);
}

#[test]
fn five_hundred_connections_echo_byte_exact_in_event_mode() {
    echo_run("127.0.0.1:0", Mode::Event, 4096, 500, 32);
}

#[test]
fn five_hundred_connections_echo_byte_exact_in_both_mode_over_ipv6() {
    echo_run("[::1]:0", Mode::Both, 65_536, 500, 33);
}

#[test]
fn five_hundred_connections_echo_byte_exact_in_conditional_mode_dual_stack() {
    echo_run("[::]:0", Mode::Conditional, 4096, 500, 34);
}

/// The same with the host's second processor: accept callbacks and completions, and different
/// connections' receive and send completions, run on two threads at once, as on Windows.
#[test]
fn five_hundred_connections_echo_byte_exact_with_completions_on_two_processors() {
    hostkernel::provider::set_second_processor(true);
    let before = hostkernel::provider::second_processor_jobs();
    echo_run("127.0.0.1:0", Mode::Both, 4096, 500, 35);
    let ran = hostkernel::provider::second_processor_jobs() - before;
    hostkernel::provider::set_second_processor(false);
    eprintln!("the second processor ran {ran} callbacks, completions and connection services");
    assert!(ran > 0, "the second processor took part");
}

fn records(engine: &Engine) -> Vec<ConnRecord> {
    let mut out: Vec<Option<ConnRecord>> = vec![None; 64];
    let (n, _) = engine.list_connections(None, 0, &mut out).unwrap();
    out[..n].iter().flatten().copied().collect()
}

/// Ping-pong clients: each writes 16 KiB and reads it back, over and over (with `pause` between
/// rounds), until `stop`; counts the bytes echoed in `moved`.
fn ping_pong(
    address: SocketAddr,
    pause: Duration,
    stop: Arc<AtomicBool>,
    moved: Arc<AtomicU64>,
) -> JoinHandle<()> {
    spawn(move || {
        let Ok(mut stream) = TcpStream::connect(address) else {
            return;
        };
        let out = vec![7u8; 16 * 1024];
        let mut back = vec![0u8; 16 * 1024];
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(&out).is_err() || stream.read_exact(&mut back).is_err() {
                return;
            }
            moved.fetch_add(out.len() as u64, Ordering::Relaxed);
            std::thread::sleep(pause);
        }
    })
}

/// Bytes per second the `moved` counter advances: the best of three 200 ms windows (other work
/// on a shared machine only ever slows a window down).
fn rate(moved: &AtomicU64) -> f64 {
    let window = Duration::from_millis(200);
    (0..3)
        .map(|_| {
            let before = moved.load(Ordering::Relaxed);
            std::thread::sleep(window);
            (moved.load(Ordering::Relaxed) - before) as f64 / window.as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[test]
fn a_peer_that_never_reads_stalls_only_its_own_connection() {
    let engine = load(Schedule::from_seed(41));
    let info = start_echo(&engine, "127.0.0.1:0", Mode::Both, 64, 4096);
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let others: Vec<_> = (0..8)
        .map(|_| ping_pong(info.address, Duration::ZERO, stop.clone(), moved.clone()))
        .collect();
    wait_until("the others flow", Duration::from_secs(5), || {
        moved.load(Ordering::Relaxed) > 0
    });
    let baseline = rate(&moved);
    // The stalled peer: sends until nothing more goes in, never reads.
    let staller = TcpStream::connect(info.address).unwrap();
    staller.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut pushed = 0usize;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(300) {
        match (&staller).write(&chunk) {
            Ok(n) => {
                pushed += n;
                quiet_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("staller write: {e}"),
        }
    }
    let before = accounting::allocations();
    let rss_before = rss_kb();
    let stalled_at = |engine: &Engine| {
        let local = staller.local_addr().unwrap();
        records(engine)
            .into_iter()
            .find(|r| r.info.remote == local)
            .expect("staller listed")
    };
    // Its pipeline (the staller's send buffer, the driver's receive and send, the staller's
    // receive buffer) fills at the pace of a loaded machine: wait until its counters hold still.
    wait_until(
        "the staller's connection stalls",
        Duration::from_secs(20),
        || {
            let a = stalled_at(&engine);
            std::thread::sleep(Duration::from_millis(300));
            let b = stalled_at(&engine);
            (a.bytes_in, a.bytes_out) == (b.bytes_in, b.bytes_out)
        },
    );
    let first = stalled_at(&engine);
    let during = rate(&moved);
    let second = stalled_at(&engine);
    let rss_after = rss_kb();
    eprintln!(
        "staller pushed {pushed} bytes, driver read {} and echoed {}; others: {:.1} MB/s before, \
         {:.1} MB/s while it stalls; RSS {rss_before} -> {rss_after} kB",
        second.bytes_in,
        second.bytes_out,
        baseline / 1e6,
        during / 1e6
    );
    assert_eq!(
        (first.bytes_in, first.bytes_out),
        (second.bytes_in, second.bytes_out),
        "the stalled connection does not move"
    );
    assert!(
        second.bytes_in - second.bytes_out <= 4096,
        "at most one buffer held"
    );
    assert!(
        pushed as u64 > second.bytes_in,
        "the rest waits in the transport, not the driver"
    );
    assert!(
        during >= baseline * 0.5,
        "the others slowed from {baseline:.0} to {during:.0} B/s"
    );
    assert_eq!(traffic_allocations(before), 0, "the stall allocated");
    assert!(
        rss_after <= rss_before + 4096,
        "RSS grew {rss_before} -> {rss_after} kB"
    );
    let started = Instant::now();
    engine.stop_listener(info.id).unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in others {
        t.join().unwrap();
    }
    eprintln!("stop with the stalled peer took {took:?}");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    drop(staller);
    unload(engine);
}

#[test]
fn half_close_with_data_in_flight_echoes_everything_then_closes_gracefully() {
    for (mode, seed) in [(Mode::Irp, 51), (Mode::Event, 52)] {
        let engine = load(Schedule::from_seed(seed));
        let info = start_echo(&engine, "127.0.0.1:0", mode, 64, 1024);
        // The whole stream is written and the FIN sent before any echo is read: the driver has
        // data in flight when the FIN arrives.
        let clients: Vec<_> = (0..16)
            .map(|i| {
                let address = info.address;
                spawn(move || {
                    let seed = 900 + i;
                    let length = 3 * MIB / 2 + i as usize;
                    let mut stream = TcpStream::connect(address).unwrap();
                    let mut reader = stream.try_clone().unwrap();
                    let check = spawn(move || {
                        std::thread::sleep(Duration::from_millis(50));
                        let mut all = Vec::new();
                        reader.read_to_end(&mut all).expect("read to FIN");
                        all
                    });
                    let data: Vec<u8> = (0..length).map(|p| byte_at(seed, p)).collect();
                    stream.write_all(&data).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    assert!(
                        check.join().unwrap() == data,
                        "connection {seed}: echo differs"
                    );
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client");
        }
        wait_until("closed", Duration::from_secs(5), || {
            engine.listener_info(info.id).unwrap().counters.closed == 16
        });
        let counters = engine.listener_info(info.id).unwrap().counters;
        assert_eq!((counters.peer_fin, counters.peer_reset), (16, 0));
        assert_eq!(counters.bytes_in, counters.bytes_out);
        unload(engine);
    }
}

#[test]
fn reset_with_data_in_flight_closes_at_once() {
    for (mode, seed) in [(Mode::Both, 61), (Mode::Irp, 62)] {
        let engine = load(Schedule::from_seed(seed));
        let info = start_echo(&engine, "127.0.0.1:0", mode, 64, 4096);
        let mut clients = Vec::new();
        for _ in 0..20 {
            let stream = TcpStream::connect(info.address).unwrap();
            stream.set_nonblocking(true).unwrap();
            // Enough that the driver's echo is still in flight (nobody reads it).
            let chunk = vec![3u8; 256 * 1024];
            let _ = (&stream).write(&chunk);
            clients.push(stream);
        }
        wait_until("data flowing on all", Duration::from_secs(5), || {
            let records = records(&engine);
            records.len() == 20 && records.iter().all(|r| r.bytes_out > 0)
        });
        for client in clients {
            let socket = socket2::Socket::from(client);
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
        let took = wait_until("reset connections closed", Duration::from_secs(2), || {
            engine.listener_info(info.id).unwrap().counters.closed == 20
        });
        let counters = engine.listener_info(info.id).unwrap().counters;
        eprintln!("{mode:?}: 20 resets with data in flight closed in {took:?}");
        assert_eq!((counters.peer_reset, counters.peer_fin), (20, 0));
        assert!(counters.bytes_out > 0 && counters.bytes_in >= counters.bytes_out);
        unload(engine);
    }
}

#[test]
fn stop_with_a_thousand_connections_mid_transfer_finishes_in_under_two_seconds() {
    let engine = load(Schedule::from_seed(71));
    let info = start_echo(&engine, "127.0.0.1:0", Mode::Both, 1024, 4096);
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    // Each client keeps a 16 KiB round trip going every ~20 ms: data is in flight on every
    // connection, without 1,000 threads spinning the two cores the tests have.
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            ping_pong(
                info.address,
                Duration::from_millis(20),
                stop.clone(),
                moved.clone(),
            )
        })
        .collect();
    wait_until("1,000 connections echoing", Duration::from_secs(30), || {
        let counters = engine.listener_info(info.id).unwrap().counters;
        counters.echoed == 1000
    });
    let started = Instant::now();
    let counters = engine.stop_listener(info.id).unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "stop with 1,000 connections mid-transfer ({} MB echoed) took {took:?}",
        counters.bytes_out / 1_000_000
    );
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert_eq!(counters.closed, 1000);
    for c in clients {
        c.join().unwrap();
    }
    // Nothing outstanding: no IRP, socket, MDL or pool block (checked by unload).
    unload(engine);
}

#[test]
fn a_new_connection_is_accepted_while_others_echo_at_full_speed() {
    for (mode, seed) in [(Mode::Irp, 71), (Mode::Irp, 81), (Mode::Both, 83)] {
        let engine = load(Schedule::from_seed(seed));
        let info = start_echo(&engine, "127.0.0.1:0", mode, 64, 4096);
        let stop = Arc::new(AtomicBool::new(false));
        let moved = Arc::new(AtomicU64::new(0));
        let busy: Vec<_> = (0..16)
            .map(|_| ping_pong(info.address, Duration::ZERO, stop.clone(), moved.clone()))
            .collect();
        wait_until("16 echoing", Duration::from_secs(5), || {
            engine.listener_info(info.id).unwrap().counters.echoed == 16
        });
        let accepted = |engine: &Engine| {
            let c = engine.listener_info(info.id).unwrap().counters;
            c.accepted_irp + c.accepted_event
        };
        // One after the other: the first may find an accept IRP already armed, the next ones
        // need the worker to re-arm it while the others keep it busy.
        let mut late = Vec::new();
        for _ in 0..3 {
            let before = accepted(&engine);
            late.push(TcpStream::connect(info.address).unwrap());
            let took = wait_until(
                "the late connection accepted",
                Duration::from_secs(1),
                || accepted(&engine) > before,
            );
            eprintln!("{mode:?} seed {seed}: accepted under echo load in {took:?}");
        }
        stop.store(true, Ordering::Relaxed);
        engine.stop_listener(info.id).unwrap();
        for t in busy {
            t.join().unwrap();
        }
        unload(engine);
    }
}
