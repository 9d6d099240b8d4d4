//! Shared helpers for the end-to-end tests: load the driver into the host kernel under a seeded
//! schedule, connect real TCP clients, wait for conditions, unload and check nothing leaked.
#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    missing_docs
)]

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hostkernel::schedule::{self, Schedule};
use wskaccept::engine::Engine;
use wskaccept::kernel::PoolBox;
use wskaccept::listener::{ListenerConfig, ListenerInfo, Mode, Service};

/// Seeds each end-to-end scenario runs under (inline/deferred mixes; odd seeds inject races).
pub const SEEDS: [u64; 3] = [11, 12, 13];

pub fn load(schedule: Schedule) -> PoolBox<Engine> {
    let _ = hostkernel::rlimit::raise_nofile_to_hard_limit();
    eprintln!(
        "-- schedule {schedule:?} (replay with HOSTKERNEL_SEED={})",
        schedule.seed
    );
    schedule::configure(schedule);
    Engine::load().expect("driver load")
}

/// Unloads and asserts the host kernel has nothing outstanding.
pub fn unload(engine: PoolBox<Engine>) {
    Engine::unload(engine);
    let outstanding = hostkernel::accounting::outstanding();
    assert!(outstanding.is_clean(), "{outstanding}");
}

pub fn config(address: &str, mode: Mode) -> ListenerConfig {
    let mut config = ListenerConfig::new(address.parse().unwrap());
    config.mode = mode;
    config
}

pub fn start(
    engine: &Engine,
    address: &str,
    mode: Mode,
    capacity: u32,
    service: Service,
) -> ListenerInfo {
    let mut config = config(address, mode);
    config.capacity = capacity;
    config.service = service;
    engine.start_listener(config).expect("listener start")
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

pub fn connect_all(address: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect()
}

/// What a client sees on its connection: held open (no data, no close), reset, or closed (EOF).
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Held,
    Reset,
    Closed,
}

/// What every client sees, after giving resets `settle` to arrive (checked without waiting per
/// client).
pub fn seen_all(clients: &mut [TcpStream], settle: Duration) -> Vec<Seen> {
    std::thread::sleep(settle);
    clients
        .iter_mut()
        .map(|c| {
            c.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let seen = match c.read(&mut byte) {
                Ok(0) => Seen::Closed,
                Ok(_) => panic!("the driver never sends data"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Seen::Held,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => Seen::Reset,
                Err(e) => panic!("unexpected read error {e}"),
            };
            c.set_nonblocking(false).unwrap();
            seen
        })
        .collect()
}

pub fn seen(stream: &mut TcpStream, wait: Duration) -> Seen {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Seen::Closed,
        Ok(_) => panic!("the driver never sends data"),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
            Seen::Held
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Seen::Reset,
        Err(e) => panic!("unexpected read error {e}"),
    }
}

pub mod scenario;

/// This process's resident set size in KiB (VmRSS in /proc/self/status).
pub fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
