//! The emulated WSK provider: netio.sys's part of WSK, over real OS sockets.
//!
//! One event-loop thread (mio over epoll) serves every socket, whatever their number. It runs
//! deferred IRP completions and every event callback, at DISPATCH_LEVEL with
//! WSK_FLAG_AT_DISPATCH_LEVEL. All provider state sits behind one mutex that is never held while
//! driver code runs, so callbacks may call WSK again (WSK-FACTS §5).
//!
//! Because callbacks and deferred completions only run on that thread, a close that is finished
//! there has, by construction, waited for every running callback of its socket (WSK-FACTS §7).

mod connection;
mod listen;
mod registration;
mod socket;
mod translate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use wsk::{IRP, NtStatus, WSK_SOCKET};

use crate::irp::{self, IrpRef};
use crate::schedule;
use crate::verifier::{Rule, violation};

pub use connection::set_peers_vanished;
pub use listen::set_accept_event_preemption;
pub use registration::{
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI, capture_calls,
    set_provider_no_interface, set_provider_ready,
};
pub use socket::fail_next_listen_local_address;

use connection::Connection;
use listen::Listening;

const WAKER: Token = Token(0);

/// The name of the provider's event-loop thread.
pub const THREAD_NAME: &str = "hostkernel-wsk";

/// What kind of socket an entry is.
pub(crate) enum Kind {
    Listen(Box<Listening>),
    Connection(Box<Connection>),
}

/// One socket the provider handed out.
///
/// Invariant: `key` is the address of a leaked `Box<WSK_SOCKET>`. Once the socket's close
/// completes (or an accept event declines it), its `Dispatch` is overwritten with [`POISON`],
/// a table whose every entry is a violation, and its key goes into a bounded quarantine; the
/// oldest quarantined socket is then forgotten and its WSK_SOCKET freed. So a use after close is
/// caught (through the poisoned table, or as an unknown socket) without tombstones piling up.
pub(crate) struct Sock {
    pub(crate) registration: u64,
    pub(crate) kind: Kind,
    /// SocketContext the client gave (WskSocket, WskAccept or the accept event's out-parameter).
    pub(crate) context: *mut c_void,
    /// The client's dispatch for this socket's category (listen or connection), may be NULL.
    pub(crate) client_dispatch: *const c_void,
    /// WSK_EVENT_* bits enabled.
    pub(crate) events: u32,
    /// Calls on this socket inside the provider right now.
    pub(crate) calls_in_progress: u32,
    /// Event callbacks of this socket running on the provider thread right now.
    pub(crate) callbacks_running: u32,
    /// While the WskAcceptEvent that hands this socket over runs: the thread running it. Until it
    /// returns, closing the socket, or calling on it from any other thread, is a violation.
    pub(crate) accept_event_thread: Option<std::thread::ThreadId>,
}

// SAFETY: the raw pointers a socket holds (client context and dispatch, the driver's address and
// MDL buffers of pending IRPs) belong to the driver, which guarantees they stay valid and usable
// from the provider's thread until the socket is closed or the IRP completes.
unsafe impl Send for Sock {}

/// A socket slot: alive, or a tombstone kept (while quarantined) so use-after-close is
/// recognised.
pub(crate) enum Slot {
    Live(Sock),
    Closed { registration: u64 },
}

/// Work for the event-loop thread.
pub(crate) type Deferred = Box<dyn FnOnce() + Send>;

pub(crate) struct State {
    pub(crate) sockets: HashMap<usize, Slot>,
    pub(crate) registrations: HashMap<u64, registration::Registration>,
    pub(crate) deferred: VecDeque<Deferred>,
    pub(crate) registry: Option<mio::Registry>,
    pub(crate) waker: Option<Arc<Waker>>,
    pub(crate) loop_thread: Option<JoinHandle<()>>,
    pub(crate) stopping: bool,
    pub(crate) provider_ready: bool,
    pub(crate) next_registration: u64,
    pub(crate) inspect_serial: u32,
    pub(crate) inspections: HashMap<usize, listen::Inspection>,
    /// Connections whose graceful disconnect waits for the peer to acknowledge the FIN: looked at
    /// again every few milliseconds (no readiness event announces an ACK).
    pub(crate) fin_waiters: HashSet<usize>,
    /// Work held back until its time ([`set_close_delay`]).
    pub(crate) timers: Vec<(Instant, Deferred)>,
    /// How long every WskCloseSocket takes to finish (fault mode; zero normally).
    pub(crate) close_delay: Duration,
    /// Closed sockets, oldest first, whose poisoned WSK_SOCKET is kept (at most [`QUARANTINE`]).
    pub(crate) quarantine: VecDeque<usize>,
}

/// Closed sockets kept poisoned before their WSK_SOCKET is freed: a stale pointer used within the
/// last this-many closes hits the poison table; an older one is most likely an unknown socket.
pub(crate) const QUARANTINE: usize = 8_192;

/// A closed socket is done: poison its WSK_SOCKET, quarantine it, and free the oldest ones beyond
/// the quarantine's bound. Its slot must already be a tombstone.
pub(crate) fn retire(state: &mut State, key: usize) {
    // SAFETY: `key` is the address of this socket's leaked Box<WSK_SOCKET> (Sock invariant), not
    // freed while its tombstone is in `sockets` (it is, until the quarantine lets it go below).
    unsafe {
        (*(key as *mut WSK_SOCKET)).Dispatch = (&raw const socket::POISON).cast();
    }
    state.quarantine.push_back(key);
    while state.quarantine.len() > QUARANTINE {
        let Some(oldest) = state.quarantine.pop_front() else {
            break;
        };
        if matches!(state.sockets.get(&oldest), Some(Slot::Closed { .. })) {
            state.sockets.remove(&oldest);
            // SAFETY: the leaked Box<WSK_SOCKET> of a closed socket (Sock invariant), forgotten
            // just now, so it is freed exactly once.
            drop(unsafe { Box::from_raw(oldest as *mut WSK_SOCKET) });
        }
    }
}

// SAFETY: the raw pointers inside (client contexts and dispatch tables) belong to the driver,
// which guarantees they stay valid and usable from the provider's thread while the socket lives.
unsafe impl Send for State {}

pub(crate) static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        sockets: HashMap::new(),
        registrations: HashMap::new(),
        deferred: VecDeque::new(),
        registry: None,
        waker: None,
        loop_thread: None,
        stopping: false,
        provider_ready: true,
        next_registration: 1,
        inspect_serial: 1,
        inspections: HashMap::new(),
        fin_waiters: HashSet::new(),
        timers: Vec::new(),
        close_delay: Duration::ZERO,
        quarantine: VecDeque::new(),
    })
});

/// Signalled whenever a socket finishes closing, an NPI is released or readiness changes.
pub(crate) static CHANGED: Condvar = Condvar::new();

pub(crate) fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Queues work for the event-loop thread and wakes it.
pub(crate) fn post(state: &mut State, work: Deferred) {
    state.deferred.push_back(work);
    if let Some(waker) = &state.waker {
        let _ = waker.wake();
    }
}

/// Queues work for the event-loop thread to run once `delay` has passed.
pub(crate) fn post_after(state: &mut State, delay: Duration, work: Deferred) {
    if delay.is_zero() {
        return post(state, work);
    }
    state.timers.push((Instant::now() + delay, work));
    if let Some(waker) = &state.waker {
        let _ = waker.wake();
    }
}

/// Fault mode: a slow provider. Every WskCloseSocket from now on finishes (cancels the socket's
/// pending IRPs, completes the close IRP) only after `delay`, so completions can arrive after a
/// driver's stop has given up waiting for them. Zero turns it off.
pub fn set_close_delay(delay: Duration) {
    state().close_delay = delay;
}

/// Completes `irp` inline (before the WSK call returns) or later on the provider thread, as the
/// schedule decides, and returns what the WSK call returns (WSK-FACTS §3).
pub(crate) fn finish(irp: IrpRef, status: NtStatus, information: usize) -> NtStatus {
    if schedule::complete_inline() {
        irp::complete(irp, status, information);
        status
    } else {
        post(
            &mut state(),
            Box::new(move || irp::complete(irp, status, information)),
        );
        NtStatus::PENDING
    }
}

/// Completes `irp` later on the provider thread (never inline).
pub(crate) fn complete_later(state: &mut State, irp: IrpRef, status: NtStatus, information: usize) {
    post(
        state,
        Box::new(move || irp::complete(irp, status, information)),
    );
}

/// A provider entry on a socket: checks the socket and counts the call as in progress.
pub(crate) struct CallGuard {
    key: usize,
}

impl CallGuard {
    /// Validates `socket` for `function` (live, of this provider) and marks a call in progress.
    pub(crate) fn enter(socket: *mut WSK_SOCKET, function: &'static str) -> Self {
        crate::verifier::check_wsk_entry(function);
        let key = socket as usize;
        let mut state = state();
        match state.sockets.get_mut(&key) {
            Some(Slot::Live(sock))
                if sock
                    .accept_event_thread
                    .is_some_and(|t| t != std::thread::current().id()) =>
            {
                drop(state);
                violation(
                    Rule::SocketUsedBeforeAcceptEventReturned,
                    format_args!(
                        "{function} on socket {socket:p} from another thread while the \
                         WskAcceptEvent that hands it over has not returned"
                    ),
                );
            }
            Some(Slot::Live(sock)) => sock.calls_in_progress += 1,
            Some(Slot::Closed { .. }) => {
                drop(state);
                violation(
                    Rule::SocketUsedAfterClose,
                    format_args!("{function} on socket {socket:p} after WskCloseSocket"),
                );
            }
            None => {
                drop(state);
                violation(
                    Rule::InvalidSocket,
                    format_args!("{function}: {socket:p} is not a WSK socket"),
                );
            }
        }
        Self { key }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(Slot::Live(sock)) = state().sockets.get_mut(&self.key) {
            sock.calls_in_progress -= 1;
        }
    }
}

/// The live socket at `key`, if any.
pub(crate) fn live(state: &mut State, key: usize) -> Option<&mut Sock> {
    match state.sockets.get_mut(&key) {
        Some(Slot::Live(sock)) => Some(sock),
        _ => None,
    }
}

/// Starts the event-loop thread if it is not running.
pub(crate) fn ensure_loop(state: &mut State) {
    if state.loop_thread.is_some() {
        return;
    }
    let poll = Poll::new().expect("hostkernel: cannot create the provider's epoll instance");
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).expect("hostkernel: cannot create waker"));
    state.registry = Some(
        poll.registry()
            .try_clone()
            .expect("hostkernel: cannot clone registry"),
    );
    state.waker = Some(waker);
    state.stopping = false;
    let handle = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || run_loop(poll))
        .expect("hostkernel: cannot start the provider thread");
    state.loop_thread = Some(handle);
}

/// Stops the event-loop thread (after the last deregistration).
pub(crate) fn stop_loop() {
    let handle = {
        let mut state = state();
        state.stopping = true;
        if let Some(waker) = &state.waker {
            let _ = waker.wake();
        }
        state.loop_thread.take()
    };
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        std::process::abort();
    }
    let mut state = state();
    state.registry = None;
    state.waker = None;
}

fn run_loop(mut poll: Poll) {
    let mut events = Events::with_capacity(1024);
    loop {
        let timeout = {
            let state = state();
            let base = if state.fin_waiters.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(2)
            };
            let now = Instant::now();
            state
                .timers
                .iter()
                .map(|(due, _)| due.saturating_duration_since(now))
                .fold(base, Duration::min)
        };
        if let Err(error) = poll.poll(&mut events, Some(timeout)) {
            assert!(
                error.kind() == std::io::ErrorKind::Interrupted,
                "hostkernel: epoll failed: {error}"
            );
        }
        for event in &events {
            if event.token() != WAKER {
                service(event.token().0);
            }
        }
        let fin_waiters = std::mem::take(&mut state().fin_waiters);
        for key in fin_waiters {
            connection::service(key);
        }
        let due: Vec<Deferred> = {
            let mut state = state();
            let now = Instant::now();
            let (due, later) = std::mem::take(&mut state.timers)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            state.timers = later;
            due.into_iter().map(|(_, work)| work).collect()
        };
        for work in due {
            work();
        }
        loop {
            let work = state().deferred.pop_front();
            match work {
                Some(work) => work(),
                None => break,
            }
        }
        let stopping = state().stopping;
        if stopping {
            return;
        }
    }
}

/// Serves whatever a readiness event on socket `key` means.
fn service(key: usize) {
    if key & listen::INSPECTION_TOKEN_BIT != 0 {
        listen::service_inspection(key);
        return;
    }
    let is_listener = matches!(
        state().sockets.get(&key),
        Some(Slot::Live(Sock {
            kind: Kind::Listen(_),
            ..
        }))
    );
    if is_listener {
        listen::service(key);
    } else {
        connection::service(key);
    }
}

/// The WSK_PROVIDER_DISPATCH the host hands out with the provider NPI.
pub(crate) static PROVIDER_DISPATCH: wsk::WSK_PROVIDER_DISPATCH = wsk::WSK_PROVIDER_DISPATCH {
    Version: wsk::WSK_VERSION_1_0,
    Reserved: 0,
    WskSocket: Some(socket::wsk_socket),
    WskSocketConnect: None,
    WskControlClient: Some(socket::wsk_control_client),
    WskGetAddressInfo: None,
    WskFreeAddressInfo: None,
    WskGetNameInfo: None,
};

/// Takes an IRP for a call, checking the socket is alive first.
pub(crate) fn take_irp(irp: *mut IRP, function: &'static str) -> IrpRef {
    irp::take(irp, function)
}
