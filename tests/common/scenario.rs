//! One driver life driven through the IOCTL dispatcher, for fault sweeps and the seeded campaign:
//! load, start a listener (IOCTL), real clients connect, query / stats / list / close / a stale
//! decide (IOCTLs), optionally a listener restart (its listening socket breaks), stop (IOCTL),
//! unload. Under injected faults any step may fail, but only with a clear status; the driver must
//! never crash, never break a verifier rule (the host kernel stops the process), and leak
//! nothing.
#![allow(dead_code, clippy::missing_panics_doc, missing_docs)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hostkernel::schedule;
use ioctl::*;
use wsk::NtStatus;
use wskaccept::control::dispatch;
use wskaccept::engine::Engine;
use wskaccept::kernel::PoolBox;
use wskaccept::listener::Phase;
use zerocopy::IntoBytes;

/// What one run asks of the driver.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Wire mode (`ioctl::mode`).
    pub mode: Mode,
    /// Table capacity.
    pub capacity: u32,
    /// Accept IRPs.
    pub depth: u32,
    /// Clients that connect.
    pub clients: usize,
    /// Break the listening socket once, so the listener restarts.
    pub restart: bool,
    /// Close one connection by id (abortively or not).
    pub close_one: Option<bool>,
    /// Conditional mode: defer every connection to user mode (SET_POLICY), then GET_PENDING and
    /// DECIDE (accept, reject) what comes; undecided requests time out after 100 ms.
    pub defer: bool,
}

/// What a run saw (for the campaign's figures).
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// The driver loaded.
    pub loaded: bool,
    /// The listener started.
    pub started: bool,
    /// Listeners started (0 or 1 per run; summed over runs).
    pub starts: u32,
    /// IOCTLs answered with a failure status (all of them allowed ones).
    pub ioctl_failures: u32,
    /// Connections the driver accepted.
    pub accepted: u64,
    /// Deferred requests handed over by GET_PENDING and decided.
    pub decided: u32,
    /// Listener restarts that completed.
    pub restarts: u64,
}

/// Statuses a fault may legitimately surface as.
fn allowed(status: NtStatus) -> bool {
    [
        NtStatus::SUCCESS,
        NtStatus::INSUFFICIENT_RESOURCES,
        NtStatus::NOT_FOUND,
        NtStatus::DEVICE_NOT_READY,
    ]
    .contains(&status)
}

pub fn call(engine: &Engine, code: u32, input: &[u8], output_len: usize) -> (NtStatus, Vec<u8>) {
    let mut output = vec![0u8; output_len];
    let (status, written) = dispatch(engine, code, input, &mut output);
    assert!(written <= output_len);
    if !status.is_success() {
        assert_eq!(written, 0, "a failure writes nothing");
    }
    output.truncate(written);
    (status, output)
}

fn checked(engine: &Engine, seen: &mut Seen, code: u32, input: &[u8], out: usize) -> Vec<u8> {
    let (status, bytes) = call(engine, code, input, out);
    if std::env::var_os("CAMPAIGN_TRACE").is_some() {
        use schedule::Fault::*;
        let fired: Vec<_> = [
            PoolAllocation,
            IrpAllocation,
            MdlAllocation,
            WskSocket,
            WskBind,
            WskControlSocket,
            WskGetLocalAddress,
            WskAccept,
            ConnectionReset,
            ListenerFailure,
        ]
        .into_iter()
        .map(|f| (f, schedule::fired(f)))
        .filter(|(_, n)| *n > 0)
        .collect();
        eprintln!(
            "  IOCTL 0x{code:X}: {status:?}; listeners {} active {}; sockets {}; fired {fired:?}",
            engine.stats().listeners,
            engine.stats().active,
            hostkernel::accounting::outstanding().sockets
        );
    }
    assert!(allowed(status), "IOCTL 0x{code:X} answered {status:?}");
    if !status.is_success() {
        seen.ioctl_failures += 1;
    }
    bytes
}

/// Loads the driver; under allocation faults the load itself may fail, cleanly.
pub fn try_load() -> Option<PoolBox<Engine>> {
    let _ = hostkernel::rlimit::raise_nofile_to_hard_limit();
    match Engine::load() {
        Ok(engine) => Some(engine),
        Err(status) => {
            assert_eq!(status, NtStatus::INSUFFICIENT_RESOURCES, "load failed");
            None
        }
    }
}

/// Unloads and asserts nothing is outstanding.
pub fn unload_clean(engine: Option<PoolBox<Engine>>) {
    if let Some(engine) = engine {
        Engine::unload(engine);
    }
    let outstanding = hostkernel::accounting::outstanding();
    assert!(
        outstanding.is_clean(),
        "seed {}: {outstanding}",
        schedule::current_seed()
    );
}

/// Runs the plan on a loaded engine.
/// The connections a client completed that the driver has dealt with (accepted or refused).
fn settled(engine: &Engine) -> u64 {
    let c = engine.stats().counters;
    c.accepted_irp
        + c.accepted_event
        + c.rejected_full
        + c.rejected_not_running
        + c.rejected_policy
        + c.rejected_source_limit
}

/// Connects `n` clients and lets the driver take what it will (accept failures and resets are
/// part of the plan), for at most half a second.
/// `lost` connections are expected to vanish uncounted (the one that breaks the listener).
fn connect(
    engine: &Engine,
    address: SocketAddr,
    n: usize,
    lost: u64,
    wait: bool,
) -> Vec<TcpStream> {
    // A listener that failed to restart refuses connections: fine.
    let clients: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok())
        .collect();
    let wait = if wait { 500 } else { 0 };
    let deadline = Instant::now() + Duration::from_millis(wait);
    let expected = u64::try_from(clients.len()).unwrap().saturating_sub(lost);
    while Instant::now() < deadline && settled(engine) < expected {
        std::thread::sleep(Duration::from_millis(5));
    }
    clients
}

/// SET_POLICY: defer everything to user mode.
fn defer_all(engine: &Engine, seen: &mut Seen, listener: u32) {
    let policy = PolicyMessage {
        listener,
        default_action: Action::Defer,
        ..PolicyMessage::default()
    };
    checked(engine, seen, IOCTL_SET_POLICY, policy.as_bytes(), 0);
}

/// GET_PENDING (no wait) and DECIDE, alternately accept and reject, for up to `n` requests.
fn decide_pending(engine: &Engine, seen: &mut Seen, listener: u32, n: usize) {
    for i in 0..n {
        // Wait a little for the first request (the clients have only just connected).
        let get = GetPending {
            version: VERSION,
            listener,
            timeout_ms: if i == 0 { 200 } else { 20 },
            reserved: 0,
        };
        let record = checked(
            engine,
            seen,
            IOCTL_GET_PENDING,
            get.as_bytes(),
            size_of::<PendingRecord>(),
        );
        let Ok(pending) = ioctl::read::<PendingRecord>(&record) else {
            return;
        };
        let decide = Decide {
            version: VERSION,
            action: if i % 2 == 0 {
                Action::Accept
            } else {
                Action::Reject
            },
            id: pending.id,
            reserved: [0; 2],
        };
        // NOT_FOUND when the peer withdrew or the request timed out meanwhile.
        checked(engine, seen, IOCTL_DECIDE, decide.as_bytes(), 0);
        seen.decided += 1;
    }
}

/// QUERY_LISTENERS, QUERY_STATS, LIST_CONNECTIONS, maybe CLOSE_CONNECTION of the first one
/// listed, and a DECIDE for an id that was never given.
fn query_list_close(engine: &Engine, seen: &mut Seen, listener: u32, close: Option<bool>) {
    let query = QueryHeader {
        version: VERSION,
        reserved: 0,
    };
    checked(engine, seen, IOCTL_QUERY_LISTENERS, query.as_bytes(), 4096);
    let one = ListenerRequest {
        version: VERSION,
        listener,
        reserved: [0; 2],
    };
    checked(engine, seen, IOCTL_QUERY_STATS, one.as_bytes(), 512);
    let list = ListConnections {
        version: VERSION,
        listener: ALL_LISTENERS,
        cursor: 0,
        reserved: [0; 2],
    };
    let listed = checked(engine, seen, IOCTL_LIST_CONNECTIONS, list.as_bytes(), 4096);
    let count = ioctl::read::<ListHeader>(&listed).map_or(0, |h| h.count);
    if let Some(abortive) = close
        && count > 0
    {
        let first: ConnectionRecord = ioctl::read(&listed[size_of::<ListHeader>()..]).unwrap();
        let close = CloseConnection {
            version: VERSION,
            flags: if abortive { CLOSE_ABORTIVE } else { 0 },
            id: first.id,
            reserved: [0; 2],
        };
        checked(engine, seen, IOCTL_CLOSE_CONNECTION, close.as_bytes(), 0);
    }
    let stale = Decide {
        version: VERSION,
        action: Action::Accept,
        id: 1,
        reserved: [0; 2],
    };
    let (status, _) = call(engine, IOCTL_DECIDE, stale.as_bytes(), 0);
    assert_eq!(status, NtStatus::NOT_FOUND, "a made-up pending id");
}

/// Runs the plan on a loaded engine.
pub fn run(engine: &Engine, plan: Plan) -> Seen {
    let mut seen = Seen {
        loaded: true,
        ..Seen::default()
    };
    let start = StartListener {
        version: VERSION,
        flags: 0,
        address: "127.0.0.1:0".parse::<SocketAddr>().unwrap().into(),
        mode: plan.mode,
        depth: plan.depth,
        capacity: plan.capacity,
        service: Service::Hold,
        decision_timeout_ms: if plan.defer { 100 } else { 0 },
        buffer: 0,
        reserved: [0; 2],
    };
    let record = checked(
        engine,
        &mut seen,
        IOCTL_START_LISTENER,
        start.as_bytes(),
        size_of::<ListenerRecord>(),
    );
    if record.is_empty() {
        // Start failed cleanly: nothing may be left running.
        assert_eq!(
            engine.stats().listeners,
            0,
            "a failed start left a listener"
        );
        return seen;
    }
    seen.started = true;
    seen.starts = 1;
    let listener: ListenerRecord = ioctl::read(&record).unwrap();
    if plan.restart {
        schedule::fail_nth(schedule::Fault::ListenerFailure, 1);
    }
    let defer = plan.defer && plan.mode == Mode::Conditional;
    if defer {
        defer_all(engine, &mut seen, listener.id);
    }
    let clients = connect(
        engine,
        listener.address.to_socket_addr().unwrap(),
        if plan.restart {
            plan.clients.max(1)
        } else {
            plan.clients
        },
        u64::from(plan.restart),
        // A restart loses the connections queued on the broken socket: the wait below is for
        // the restart itself.
        !defer && !plan.restart,
    );
    if defer {
        decide_pending(engine, &mut seen, listener.id, plan.clients);
    }
    if plan.restart {
        // Let the listening socket break and the restart finish (or fail) before the IOCTLs
        // and the stop.
        let deadline = Instant::now() + Duration::from_secs(2);
        let restarting = || {
            schedule::fired(schedule::Fault::ListenerFailure) == 0
                || engine
                    .listener_info(listener.id)
                    .is_ok_and(|i| i.counters.listener_restarts == 0 && i.phase != Phase::Failed)
        };
        while Instant::now() < deadline && restarting() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if std::env::var_os("CAMPAIGN_TRACE").is_some() {
        eprintln!(
            "  after connect: listener failure fired {}, {:?}",
            schedule::fired(schedule::Fault::ListenerFailure),
            engine
                .listener_info(listener.id)
                .map(|i| (i.phase, i.counters.listener_restarts))
        );
    }
    query_list_close(engine, &mut seen, listener.id, plan.close_one);
    if let Ok(info) = engine.listener_info(listener.id) {
        seen.accepted = info.counters.accepted_irp + info.counters.accepted_event;
        seen.restarts = info.counters.listener_restarts;
    }
    let one = ListenerRequest {
        version: VERSION,
        listener: listener.id,
        reserved: [0; 2],
    };
    checked(engine, &mut seen, IOCTL_STOP_LISTENER, one.as_bytes(), 512);
    assert_eq!(engine.stats().listeners, 0);
    drop(clients);
    seen
}

/// Stops the process with a report when a step takes longer than `limit` (a hang shows where it
/// is instead of as a test timeout). Disarmed when dropped.
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    pub fn arm(what: String, limit: Duration) -> Self {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "STUCK for {limit:?}: {what} (seed {}); {}",
                schedule::current_seed(),
                hostkernel::accounting::outstanding()
            );
            std::process::abort();
        });
        Self(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
