//! The provider's shared state: every socket it handed out ([`Sock`], [`Slot`]) and the
//! registrations, behind one mutex ([`STATE`]) held for table bookkeeping only; each socket's own
//! state (its OS socket and queues) behind the socket's own lock ([`Shared`], [`lock`]), where its
//! system calls run. No provider lock is held while driver code runs. And the helpers every entry
//! point uses: the entry check ([`CallGuard`], [`check_wsk_entry`]), IRP completion ([`finish`]),
//! finding a socket's own state ([`listening_of`], [`connection_of`]), recording and retiring
//! sockets ([`insert`], [`forget`], [`retire`]), and counting running client callbacks
//! ([`listen_dispatch`], [`callback_done`]). Posting work to the event loop is `work`'s.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use wsk::{IRP, NtStatus, WSK_CLIENT_LISTEN_DISPATCH, WSK_SOCKET};

use super::connection::Connection;
use super::listening::{Inspection, Listening};
use super::poison::POISON;
use super::work::{Work, post_work};
use crate::accounting::COUNTERS;
use crate::irp::{self, IrpRef};
use crate::schedule;
use crate::verifier::{Rule, in_completion_routine, violation};

/// A socket's own state (a listening socket's or a connection's), behind its own lock: the
/// socket's system calls (accept, read, write, shutdown, close, epoll_ctl) run under this lock
/// only, never under [`STATE`], so one socket's I/O does not stop calls on the others.
pub(crate) type Shared<T> = Arc<Mutex<T>>;

/// Locks a socket's own state.
///
/// Lock order, everywhere: [`STATE`] (if taken) first, then at most one socket's object lock,
/// then `work::LOOP` (a leaf). Nothing takes [`STATE`] while it holds an object lock, and nothing
/// holds two object locks at once, so no cycle can form. No lock is held while driver code runs
/// (completion routines, event callbacks): every caller releases its guards first.
pub(crate) fn lock<T>(object: &Mutex<T>) -> MutexGuard<'_, T> {
    object.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What kind of socket an entry is, with its own state behind its own lock.
pub(crate) enum Kind {
    Listen(Shared<Listening>),
    Connection(Shared<Connection>),
}

impl Kind {
    /// A listening socket's entry.
    pub(crate) fn listen(listening: Listening) -> Self {
        Self::Listen(Arc::new(Mutex::new(listening)))
    }

    /// A connection socket's entry.
    pub(crate) fn connection(connection: Connection) -> Self {
        Self::Connection(Arc::new(Mutex::new(connection)))
    }
}

/// One socket the provider handed out, recorded in [`State::sockets`] under its key.
///
/// # Invariants
/// - Its key is the address of a leaked `Box<WSK_SOCKET>` ([`insert`]). Once the socket's close
///   completes (or an accept event declines it), its `Dispatch` is overwritten with [`POISON`],
///   a table whose every entry is a violation, and its key goes into a bounded quarantine
///   ([`retire`]); the oldest quarantined socket is then forgotten and its WSK_SOCKET freed. So a
///   use after close is caught (through the poisoned table, or as an unknown socket) without
///   tombstones piling up.
/// - `client_dispatch` is NULL or the client dispatch of the socket's category
///   (WSK_CLIENT_LISTEN_DISPATCH for `Kind::Listen`, WSK_CLIENT_CONNECTION_DISPATCH for
///   `Kind::Connection`) the driver gave WskSocket, WskAccept or its WskAcceptEvent, which the
///   driver keeps resident, with `context`, while the socket lives (PFN_WSK_SOCKET,
///   PFN_WSK_ACCEPT, PFN_WSK_ACCEPT_EVENT).
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

/// A client registration.
pub(crate) struct Registration {
    pub(crate) captured: u32,
    pub(crate) sockets: u32,
}

pub(crate) struct State {
    pub(crate) sockets: FxHashMap<usize, Slot>,
    pub(crate) registrations: FxHashMap<u64, Registration>,
    pub(crate) loop_thread: Option<JoinHandle<()>>,
    pub(crate) provider_ready: bool,
    pub(crate) next_registration: u64,
    pub(crate) inspect_serial: u32,
    pub(crate) inspections: FxHashMap<usize, Inspection>,
    /// How long every WskCloseSocket takes to finish (fault mode; zero normally).
    pub(crate) close_delay: Duration,
    /// Closed sockets, oldest first, whose poisoned WSK_SOCKET is kept (at most [`QUARANTINE`]).
    pub(crate) quarantine: VecDeque<usize>,
    /// Threads waiting on [`CHANGED`] (WskDeregister, WskCaptureProviderNPI): only then does a
    /// change notify it (a notify with no waiter would still be a system call per close).
    pub(crate) changed_waiters: u32,
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
        (*(key as *mut WSK_SOCKET)).Dispatch = (&raw const POISON).cast();
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
        sockets: FxHashMap::default(),
        registrations: FxHashMap::default(),
        loop_thread: None,
        provider_ready: true,
        next_registration: 1,
        inspect_serial: 1,
        inspections: FxHashMap::default(),
        close_delay: Duration::ZERO,
        quarantine: VecDeque::new(),
        changed_waiters: 0,
    })
});

/// Signalled whenever a socket finishes closing, an NPI is released or readiness changes
/// ([`changed`]); waited on under STATE with [`wait_changed`].
static CHANGED: Condvar = Condvar::new();

/// Tells the threads waiting on [`CHANGED`], if any (called with STATE held, so a waiter counted
/// in `changed_waiters` is blocked on the condition variable or will re-check under the lock).
pub(crate) fn changed(state: &State) {
    if state.changed_waiters > 0 {
        CHANGED.notify_all();
    }
}

/// Waits on [`CHANGED`] with STATE held, at most `timeout` (forever with None).
pub(crate) fn wait_changed(
    mut state: MutexGuard<'static, State>,
    timeout: Option<Duration>,
) -> MutexGuard<'static, State> {
    state.changed_waiters += 1;
    let mut state = match timeout {
        None => CHANGED.wait(state).unwrap_or_else(PoisonError::into_inner),
        Some(timeout) => {
            CHANGED
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
    };
    state.changed_waiters -= 1;
    state
}

pub(crate) fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
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
    complete_inline_or_later(schedule::complete_inline(), irp, status, information)
}

/// Completes the IRP of a call the provider finished during the call (a WskAccept with a
/// connection waiting, a FIN acknowledged at once, a close with nothing outstanding): inline as a
/// rule, on the provider thread when the schedule says so (`Schedule::finished_inline_percent`).
/// Returns what the call returns.
pub(crate) fn finish_finished(irp: IrpRef, status: NtStatus, information: usize) -> NtStatus {
    complete_inline_or_later(
        schedule::complete_finished_inline(),
        irp,
        status,
        information,
    )
}

fn complete_inline_or_later(
    inline: bool,
    irp: IrpRef,
    status: NtStatus,
    information: usize,
) -> NtStatus {
    if inline {
        irp::complete(irp, status, information);
        status
    } else {
        post_work(Work::Complete(irp, status, information));
        NtStatus::PENDING
    }
}

/// A provider entry on a socket: checks the socket and counts the call as in progress.
pub(crate) struct CallGuard {
    key: usize,
}

impl CallGuard {
    /// Validates `socket` for `function` (live, of this provider) and marks a call in progress.
    pub(crate) fn enter(socket: *mut WSK_SOCKET, function: &'static str) -> Self {
        check_wsk_entry(function);
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

/// The own state of the live listening socket at `key`, if it is one (STATE held only for the
/// lookup).
pub(crate) fn listening_of(key: usize) -> Option<Shared<Listening>> {
    match live(&mut state(), key).map(|s| &s.kind) {
        Some(Kind::Listen(listening)) => Some(Arc::clone(listening)),
        _ => None,
    }
}

/// The own state of the live connection socket at `key`, if it is one (STATE held only for the
/// lookup).
pub(crate) fn connection_of(key: usize) -> Option<Shared<Connection>> {
    match live(&mut state(), key).map(|s| &s.kind) {
        Some(Kind::Connection(connection)) => Some(Arc::clone(connection)),
        _ => None,
    }
}

/// Takes an IRP for a call, checking the socket is alive first.
pub(crate) fn take_irp(irp: *mut IRP, function: &'static str) -> IrpRef {
    irp::take(irp, function)
}

/// The check every WSK entry point makes first (WSK-FACTS §3: never call WSK from a completion
/// routine; every WSK call is allowed at IRQL <= DISPATCH_LEVEL).
pub(crate) fn check_wsk_entry(function: &str) {
    crate::wsk_calls::count(function);
    if in_completion_routine() {
        violation(
            Rule::WskCallInCompletionRoutine,
            format_args!(
                "{function} called from inside an IRP completion routine; queue it to a worker"
            ),
        );
    }
    crate::irql::assert_at_most_dispatch(function);
}

/// Allocates the WSK_SOCKET a new socket is known by, and records the socket.
/// `dispatch` is the provider dispatch table of the socket's category (listen or connection).
pub(crate) fn insert(state: &mut State, sock: Sock, dispatch: *const c_void) -> usize {
    let key = Box::into_raw(Box::new(WSK_SOCKET { Dispatch: dispatch })) as usize;
    if let Some(reg) = state.registrations.get_mut(&sock.registration) {
        reg.sockets += 1;
    }
    state.sockets.insert(key, Slot::Live(sock));
    COUNTERS.sockets.fetch_add(1, Ordering::SeqCst);
    key
}

/// Forgets a socket the driver declined (a rejected accept event): the provider closes it, so it
/// is retired at once like a closed one (the driver saw its pointer and must not use it).
pub(crate) fn forget(state: &mut State, key: usize) -> Option<Sock> {
    let registration = match state.sockets.get(&key) {
        Some(Slot::Live(sock)) => sock.registration,
        _ => return None,
    };
    let Some(Slot::Live(sock)) = state.sockets.insert(key, Slot::Closed { registration }) else {
        return None;
    };
    if let Some(reg) = state.registrations.get_mut(&sock.registration) {
        reg.sockets -= 1;
    }
    COUNTERS.sockets.fetch_sub(1, Ordering::SeqCst);
    changed(state);
    retire(state, key);
    Some(sock)
}

/// The listening socket's client dispatch and context, for a callback about to run: counts the
/// callback as running until [`callback_done`]. None when `key` is no live listening socket or
/// it has no client dispatch.
pub(crate) fn listen_dispatch(
    key: usize,
) -> Option<(*mut c_void, &'static WSK_CLIENT_LISTEN_DISPATCH)> {
    let mut state = state();
    let sock = live(&mut state, key)?;
    sock.callbacks_running += 1;
    dispatch_of_counted(sock)
}

/// As [`listen_dispatch`], for a callback already counted as running when it was decided on
/// (accept events: `delivery`). When None, the count is given back.
pub(crate) fn counted_listen_dispatch(
    key: usize,
) -> Option<(*mut c_void, &'static WSK_CLIENT_LISTEN_DISPATCH)> {
    let mut state = state();
    let sock = live(&mut state, key)?;
    dispatch_of_counted(sock)
}

/// The client listen dispatch of a socket whose callback is counted as running; gives the count
/// back when there is none.
fn dispatch_of_counted(
    sock: &mut Sock,
) -> Option<(*mut c_void, &'static WSK_CLIENT_LISTEN_DISPATCH)> {
    if sock.client_dispatch.is_null() || !matches!(sock.kind, Kind::Listen(_)) {
        sock.callbacks_running -= 1;
        return None;
    }
    // SAFETY: a listening socket's non-NULL client dispatch (both checked above) is the
    // WSK_CLIENT_LISTEN_DISPATCH the driver passed to WskSocket, resident while the socket lives
    // (Sock invariants); the socket cannot finish closing while this (provider-thread) callback
    // runs.
    Some((sock.context, unsafe {
        &*sock.client_dispatch.cast::<WSK_CLIENT_LISTEN_DISPATCH>()
    }))
}

/// A client callback counted by [`listen_dispatch`] (or at its decision) returned.
pub(crate) fn callback_done(key: usize) {
    if let Some(sock) = live(&mut state(), key) {
        sock.callbacks_running -= 1;
    }
}
