//! Listening sockets: WskBind (which starts listening), WskAccept, WskInspectComplete, and the
//! delivery of incoming connections to accept IRPs or WskAcceptEvent (WSK-FACTS §3–§6).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::{Interest, Token};
use wsk::{
    IRP, NtStatus, SOCKADDR, SOCKADDR_STORAGE, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH, WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG, WSK_FLAG_AT_DISPATCH_LEVEL, WSK_INSPECT_ACTION, WSK_INSPECT_ID,
    WSK_SOCKET,
};

use super::connection::Connection;
use super::socket::{forget, insert};
use super::translate::{self, status_of};
use super::{CallGuard, Kind, Sock, State, finish, live, post, state, take_irp};
use crate::irp::{self, IrpRef};
use crate::irql;
use crate::schedule::{self, Fault};
use crate::verifier::{Rule, violation};

static ACCEPT_EVENT_PREEMPTION: AtomicBool = AtomicBool::new(false);

/// Fault mode: every WskAcceptEvent callback may be "preempted" — each spin lock it releases
/// holds its thread up for a millisecond while the driver's other threads run on, so a driver
/// that lets another thread use the handed-over socket before the callback returns is caught
/// (`socket-used-before-accept-event-returned`).
pub fn set_accept_event_preemption(on: bool) {
    ACCEPT_EVENT_PREEMPTION.store(on, Ordering::SeqCst);
}

/// Tokens of pended inspections carry this bit, so they never collide with socket keys.
pub(crate) const INSPECTION_TOKEN_BIT: usize = 1 << 63;

/// The listen dispatch table the host hands out.
pub(crate) static LISTEN_DISPATCH: wsk::WSK_PROVIDER_LISTEN_DISPATCH =
    wsk::WSK_PROVIDER_LISTEN_DISPATCH {
        Basic: wsk::WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(super::socket::wsk_control_socket),
            WskCloseSocket: Some(super::socket::wsk_close_socket),
        },
        WskBind: Some(wsk_bind),
        WskAccept: Some(wsk_accept),
        WskInspectComplete: Some(wsk_inspect_complete),
        WskGetLocalAddress: Some(super::socket::wsk_get_local_address),
    };

/// A connection the OS accepted that no client has taken yet (still "in the backlog").
pub(crate) struct Incoming {
    stream: std::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
}

/// A queued WskAccept.
struct AcceptRequest {
    irp: IrpRef,
    context: *mut c_void,
    dispatch: *const c_void,
    local_out: *mut SOCKADDR,
    remote_out: *mut SOCKADDR,
}

/// A conditional-accept request the client answered with WskInspectPend (WSK-FACTS §6).
pub(crate) struct Inspection {
    listen_key: usize,
    id: WSK_INSPECT_ID,
    stream: mio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
}

/// A listening socket's state.
pub(crate) struct Listening {
    family: u16,
    /// The OS socket until bind.
    unbound: Option<socket2::Socket>,
    listener: Option<mio::net::TcpListener>,
    exclusive: bool,
    conditional: bool,
    accept_irps: VecDeque<AcceptRequest>,
    ready: VecDeque<Incoming>,
    broken: bool,
}

fn reset(stream: &std::net::TcpStream) {
    // SO_LINGER {1, 0}: close sends RST (what the peer of a rejected connection sees).
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

impl Listening {
    pub(crate) fn new(family: u16) -> Result<Self, NtStatus> {
        let domain = translate::domain(family).ok_or(NtStatus::INVALID_PARAMETER)?;
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
                .map_err(|e| status_of(&e))?;
        // Linux's SO_REUSEADDR on a listener still refuses a second listener on the same port
        // (like SO_EXCLUSIVEADDRUSE) and only lets TIME_WAIT leftovers be ignored.
        socket.set_reuse_address(true).map_err(|e| status_of(&e))?;
        if family == wsk::AF_INET6 {
            // Windows' default for AF_INET6 sockets is IPV6_V6ONLY on; Linux's is off.
            socket.set_only_v6(true).map_err(|e| status_of(&e))?;
        }
        socket.set_nonblocking(true).map_err(|e| status_of(&e))?;
        Ok(Self {
            family,
            unbound: Some(socket),
            listener: None,
            exclusive: false,
            conditional: false,
            accept_irps: VecDeque::new(),
            ready: VecDeque::new(),
            broken: false,
        })
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.listener.is_some()
    }

    pub(crate) fn local_address(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Options set before bind: SO_EXCLUSIVEADDRUSE, SO_REUSEADDR, IPV6_V6ONLY,
    /// SO_CONDITIONAL_ACCEPT.
    pub(crate) fn set_option(&mut self, level: u32, code: u32, value: u32) -> NtStatus {
        let Some(socket) = &self.unbound else {
            return NtStatus::INVALID_DEVICE_STATE;
        };
        match (level, code) {
            (wsk::SOL_SOCKET, wsk::SO_EXCLUSIVEADDRUSE) => {
                self.exclusive = value != 0;
                NtStatus::SUCCESS
            }
            (wsk::SOL_SOCKET, wsk::SO_CONDITIONAL_ACCEPT) => {
                self.conditional = value != 0;
                NtStatus::SUCCESS
            }
            (wsk::IPPROTO_IPV6, wsk::IPV6_V6ONLY) if self.family == wsk::AF_INET6 => socket
                .set_only_v6(value != 0)
                .map_or_else(|e| status_of(&e), |()| NtStatus::SUCCESS),
            // Windows' SO_REUSEADDR would let another socket steal the port; the host does not
            // emulate that (nor any other option) and says so.
            _ => NtStatus::NOT_SUPPORTED,
        }
    }

    /// Cancels everything at close: returns the IRPs to complete with STATUS_CANCELLED; resets
    /// connections nobody took and pended inspections.
    pub(crate) fn shut_down(mut self, state: &mut State, key: usize) -> Vec<IrpRef> {
        if let (Some(mut listener), Some(registry)) =
            (self.listener.take(), state.registry.as_ref())
        {
            let _ = registry.deregister(&mut listener);
        }
        for incoming in self.ready.drain(..) {
            reset(&incoming.stream);
        }
        let tokens: Vec<usize> = state
            .inspections
            .iter()
            .filter(|(_, i)| i.listen_key == key)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            if let Some(mut inspection) = state.inspections.remove(&token) {
                if let Some(registry) = state.registry.as_ref() {
                    let _ = registry.deregister(&mut inspection.stream);
                }
                let _ = socket2::SockRef::from(&inspection.stream).set_linger(Some(Duration::ZERO));
            }
        }
        self.accept_irps.drain(..).map(|r| r.irp).collect()
    }

    /// The listening socket no longer works: stop listening and reset what waits.
    fn break_down(&mut self, state_registry: Option<&mio::Registry>) {
        self.broken = true;
        if let (Some(mut listener), Some(registry)) = (self.listener.take(), state_registry) {
            let _ = registry.deregister(&mut listener);
        }
        for incoming in self.ready.drain(..) {
            reset(&incoming.stream);
        }
    }
}

/// WskBind (PFN_WSK_BIND): binds and starts listening (WSK-FACTS §3: no separate listen call).
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `address` must be NULL or a readable SOCKADDR_IN/SOCKADDR_IN6
/// of its family (PFN_WSK_BIND).
unsafe extern "system" fn wsk_bind(
    socket: *mut WSK_SOCKET,
    address: *mut SOCKADDR,
    flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskBind");
    let irp = take_irp(irp, "WskBind");
    if schedule::should_fail(Fault::WskBind) {
        return finish(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    // SAFETY: the driver passes a readable SOCKADDR of its family (or NULL, refused).
    let Some(address) = (unsafe { translate::read(address) }) else {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    };
    if flags != 0 {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    let key = socket as usize;
    let mut state = state();
    let registry = state
        .registry
        .as_ref()
        .map(|r| r.try_clone().expect("registry clone"));
    let Some(Sock {
        kind: Kind::Listen(listening),
        ..
    }) = live(&mut state, key)
    else {
        drop(state);
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    let wrong_family = match address {
        SocketAddr::V4(_) => listening.family != wsk::AF_INET,
        SocketAddr::V6(_) => listening.family != wsk::AF_INET6,
    };
    if wrong_family {
        drop(state);
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    let Some(os) = listening.unbound.take() else {
        drop(state);
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    let bound = os.bind(&address.into()).and_then(|()| os.listen(4096));
    if let Err(error) = bound {
        listening.unbound = Some(os);
        drop(state);
        return finish(irp, status_of(&error), 0);
    }
    let mut listener = mio::net::TcpListener::from_std(os.into());
    if let Some(registry) = registry {
        registry
            .register(&mut listener, Token(key), Interest::READABLE)
            .expect("hostkernel: epoll register");
    }
    listening.listener = Some(listener);
    drop(state);
    finish(irp, NtStatus::SUCCESS, 0)
}

/// WskAccept (PFN_WSK_ACCEPT). Queued IRPs are served before accept events (WSK-FACTS §4); a
/// connection already waiting may complete the IRP inline.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `local_out` and `remote_out` must each be NULL or a
/// writable SOCKADDR_STORAGE-sized buffer that stays valid until the IRP completes, and
/// `dispatch` NULL or a WSK_CLIENT_CONNECTION_DISPATCH resident while the accepted socket lives
/// (PFN_WSK_ACCEPT, WSK-FACTS §3).
unsafe extern "system" fn wsk_accept(
    socket: *mut WSK_SOCKET,
    flags: u32,
    context: *mut c_void,
    dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    local_out: *mut SOCKADDR,
    remote_out: *mut SOCKADDR,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskAccept");
    let irp = take_irp(irp, "WskAccept");
    if schedule::should_fail(Fault::WskAccept) {
        return finish(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    if flags != 0 {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    let key = socket as usize;
    let request = AcceptRequest {
        irp,
        context,
        dispatch: dispatch.cast(),
        local_out,
        remote_out,
    };
    let mut state = state();
    let Some(Sock {
        kind: Kind::Listen(listening),
        ..
    }) = live(&mut state, key)
    else {
        drop(state);
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    if listening.broken || !listening.is_bound() {
        let status = if listening.broken {
            NtStatus::CONNECTION_ABORTED
        } else {
            NtStatus::INVALID_DEVICE_STATE
        };
        drop(state);
        return finish(irp, status, 0);
    }
    listening.accept_irps.push_back(request);
    post(&mut state, Box::new(move || service(key)));
    drop(state);
    // Inline completion (before WskAccept returns) when a connection is already waiting and the
    // schedule says so; otherwise the provider thread completes it (real Windows: STATUS_PENDING).
    if schedule::complete_inline() && deliver_one(key, true) == Some(irp) {
        return NtStatus::SUCCESS;
    }
    NtStatus::PENDING
}

/// WskInspectComplete (PFN_WSK_INSPECT_COMPLETE): the decision on a pended inspection.
/// Completing an aborted (or unknown) ID does nothing (WSK-FACTS §6).
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `id` must be NULL or a readable WSK_INSPECT_ID
/// (PFN_WSK_INSPECT_COMPLETE).
unsafe extern "system" fn wsk_inspect_complete(
    socket: *mut WSK_SOCKET,
    id: *mut WSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskInspectComplete");
    let irp = take_irp(irp, "WskInspectComplete");
    if id.is_null()
        || (action != WSK_INSPECT_ACTION::ACCEPT && action != WSK_INSPECT_ACTION::REJECT)
    {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    // SAFETY: checked non-NULL; the driver passes its copy of the WSK_INSPECT_ID.
    let id = unsafe { id.read_unaligned() };
    let key = socket as usize;
    let mut state = state();
    let token = INSPECTION_TOKEN_BIT | id.SerialNumber as usize;
    let matches = state
        .inspections
        .get(&token)
        .is_some_and(|i| i.listen_key == key && i.id == id);
    if matches {
        let mut inspection = state.inspections.remove(&token).expect("checked");
        if let Some(registry) = state.registry.as_ref() {
            let _ = registry.deregister(&mut inspection.stream);
        }
        let stream: std::net::TcpStream = inspection.stream.into();
        if action == WSK_INSPECT_ACTION::ACCEPT {
            if let Some(Sock {
                kind: Kind::Listen(listening),
                ..
            }) = live(&mut state, key)
            {
                listening.ready.push_back(Incoming {
                    stream,
                    local: inspection.local,
                    remote: inspection.remote,
                });
            }
            post(&mut state, Box::new(move || service(key)));
        } else {
            reset(&stream);
        }
    }
    drop(state);
    finish(irp, NtStatus::SUCCESS, 0)
}

/// What the provider thread does next for a listener.
enum Step {
    Inspect {
        stream: std::net::TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    DeliverEvent {
        new_key: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
    ListenerFailed {
        irps: Vec<IrpRef>,
        event: bool,
    },
    Completed {
        irp: IrpRef,
        new_key: usize,
    },
}

/// Serves a listener until nothing more can be delivered (provider thread).
pub(crate) fn service(key: usize) {
    while let Some(step) = next_step(key, false) {
        run_step(key, step);
    }
}

/// Delivers at most one connection; returns the IRP completed, if any.
fn deliver_one(key: usize, irp_only: bool) -> Option<IrpRef> {
    let step = next_step(key, irp_only)?;
    let completed = if let Step::Completed { irp, .. } = step {
        Some(irp)
    } else {
        None
    };
    run_step(key, step);
    completed
}

fn accept_os(listening: &Listening) -> Option<Incoming> {
    let listener = listening.listener.as_ref()?;
    loop {
        match listener.accept() {
            Ok((stream, remote)) => {
                let stream: std::net::TcpStream = stream.into();
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                return Some(Incoming {
                    stream,
                    local,
                    remote,
                });
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(_) => return None,
        }
    }
}

fn next_step(key: usize, irp_only: bool) -> Option<Step> {
    let mut guard = state();
    let state = &mut *guard;
    let (incoming, use_event, request, inherited, registration) = {
        let State {
            sockets, registry, ..
        } = &mut *state;
        let Some(super::Slot::Live(sock)) = sockets.get_mut(&key) else {
            return None;
        };
        let events_on = sock.events & WSK_EVENT_ACCEPT != 0 && !irp_only;
        let inherited =
            sock.events & (WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG);
        let registration = sock.registration;
        let Kind::Listen(listening) = &mut sock.kind else {
            return None;
        };
        if listening.broken {
            return None;
        }
        // Conditional accept: inspect every new arrival first, consumer or not (WSK-FACTS §6).
        if listening.conditional
            && !irp_only
            && let Some(incoming) = accept_os(listening)
        {
            return Some(Step::Inspect {
                stream: incoming.stream,
                local: incoming.local,
                remote: incoming.remote,
            });
        }
        let has_irp = !listening.accept_irps.is_empty();
        if !has_irp && !events_on {
            return None;
        }
        let incoming = match listening.ready.pop_front() {
            Some(incoming) => incoming,
            None if listening.conditional => return None,
            None => accept_os(listening)?,
        };
        if schedule::should_fail(Fault::ListenerFailure) {
            reset(&incoming.stream);
            listening.break_down(registry.as_ref());
            let irps: Vec<IrpRef> = listening.accept_irps.drain(..).map(|r| r.irp).collect();
            return Some(Step::ListenerFailed {
                irps,
                event: events_on,
            });
        }
        // A queued IRP wins unless the schedule injects the documented race (WSK-FACTS §4).
        let use_event = events_on && (!has_irp || schedule::inject_accept_race());
        let request = if use_event {
            None
        } else {
            listening.accept_irps.pop_front()
        };
        (incoming, use_event, request, inherited, registration)
    };
    let (local, remote) = (incoming.local, incoming.remote);
    let reset_now = schedule::should_fail(Fault::ConnectionReset);
    let connection = Connection::accepted(incoming.stream, local, remote, reset_now);
    let (context, dispatch) = request
        .as_ref()
        .map_or((std::ptr::null_mut(), std::ptr::null()), |r| {
            (r.context, r.dispatch)
        });
    // Sockets accepted by WskAccept start with every event disabled (WSK-FACTS §3); those accepted
    // by the event inherit the listener's connection events (WSK-FACTS §5).
    let events = if use_event { inherited } else { 0 };
    let new_key = insert(
        state,
        Sock {
            registration,
            kind: Kind::Connection(Box::new(connection)),
            context,
            client_dispatch: dispatch,
            events,
            calls_in_progress: 0,
            callbacks_running: 0,
            accept_event_thread: use_event.then(|| std::thread::current().id()),
        },
    );
    super::connection::register(state, new_key);
    match request {
        None => Some(Step::DeliverEvent {
            new_key,
            local,
            remote,
        }),
        Some(request) => {
            // SAFETY: the driver passed nonpaged SOCKADDR_STORAGE-sized buffers (or NULL) that
            // live until the accept completes (WSK-FACTS §3).
            unsafe { translate::write(request.local_out, local) };
            // SAFETY: `remote_out` is, like `local_out`, NULL or a SOCKADDR_STORAGE-sized buffer
            // the driver keeps until this accept completes (PFN_WSK_ACCEPT, WSK-FACTS §3); the IRP
            // is still pending.
            unsafe { translate::write(request.remote_out, remote) };
            Some(Step::Completed {
                irp: request.irp,
                new_key,
            })
        }
    }
}

fn listen_dispatch(key: usize) -> Option<(*mut c_void, &'static WSK_CLIENT_LISTEN_DISPATCH)> {
    let mut state = state();
    let sock = live(&mut state, key)?;
    if sock.client_dispatch.is_null() {
        return None;
    }
    sock.callbacks_running += 1;
    // SAFETY: a listening socket's client dispatch is the WSK_CLIENT_LISTEN_DISPATCH the driver
    // passed to WskSocket; the driver keeps it resident while the socket lives, and the socket
    // cannot finish closing while this (provider-thread) callback runs.
    Some((sock.context, unsafe {
        &*sock.client_dispatch.cast::<WSK_CLIENT_LISTEN_DISPATCH>()
    }))
}

fn callback_done(key: usize) {
    if let Some(sock) = live(&mut state(), key) {
        sock.callbacks_running -= 1;
    }
}

fn run_step(key: usize, step: Step) {
    match step {
        // Information = the accepted PWSK_SOCKET (WSK-FACTS §3).
        Step::Completed { irp, new_key } => irp::complete(irp, NtStatus::SUCCESS, new_key),
        Step::ListenerFailed { irps, event } => {
            for irp in irps {
                irp::complete(irp, NtStatus::CONNECTION_ABORTED, 0);
            }
            if event && let Some((context, dispatch)) = listen_dispatch(key) {
                if let Some(accept_event) = dispatch.WskAcceptEvent {
                    let mut out_context = std::ptr::null_mut();
                    let mut out_dispatch = std::ptr::null();
                    irql::at_dispatch(|| {
                        // SAFETY: the driver's accept callback, called as WSK does when the
                        // listening socket stops working: AcceptSocket NULL (WSK-FACTS §5).
                        unsafe {
                            accept_event(
                                context,
                                WSK_FLAG_AT_DISPATCH_LEVEL,
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                &raw mut out_context,
                                &raw mut out_dispatch,
                            )
                        }
                    });
                }
                callback_done(key);
            }
        }
        Step::DeliverEvent {
            new_key,
            local,
            remote,
        } => deliver_event(key, new_key, local, remote),
        Step::Inspect {
            stream,
            local,
            remote,
        } => inspect(key, stream, local, remote),
    }
}

fn deliver_event(key: usize, new_key: usize, local: SocketAddr, remote: SocketAddr) {
    let Some((context, dispatch)) = listen_dispatch(key) else {
        forget_and_reset(new_key);
        return;
    };
    let Some(accept_event) = dispatch.WskAcceptEvent else {
        callback_done(key);
        forget_and_reset(new_key);
        return;
    };
    let mut local_sa = SOCKADDR_STORAGE::from(local);
    let mut remote_sa = SOCKADDR_STORAGE::from(remote);
    let mut out_context: *mut c_void = std::ptr::null_mut();
    let mut out_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
    let mut call = || {
        irql::at_dispatch(|| {
            // SAFETY: PFN_WSK_ACCEPT_EVENT's contract (WSK-FACTS §5): `context` is the
            // SocketContext the driver gave this listening socket, valid while the socket lives,
            // and the socket cannot finish closing while this provider-thread callback runs; the
            // addresses are SOCKADDR_STORAGE copies on this stack and the out-parameters locals,
            // all valid for the call; `new_key` is the live WSK_SOCKET being handed over.
            unsafe {
                accept_event(
                    context,
                    WSK_FLAG_AT_DISPATCH_LEVEL,
                    local_sa.as_mut_ptr(),
                    remote_sa.as_mut_ptr(),
                    new_key as *mut WSK_SOCKET,
                    &raw mut out_context,
                    &raw mut out_dispatch,
                )
            }
        })
    };
    let status = if ACCEPT_EVENT_PREEMPTION.load(Ordering::SeqCst) {
        crate::spinlock::preemptible(call)
    } else {
        call()
    };
    {
        // The callback returned: from now on the socket is the client's (or declined). Recorded
        // with the end of the callback, in one step, so that whoever learns that no callback
        // runs (a disable answering STATUS_SUCCESS) finds the socket recorded.
        let mut state = state();
        if let Some(sock) = live(&mut state, new_key) {
            sock.accept_event_thread = None;
        }
        if let Some(sock) = live(&mut state, key) {
            sock.callbacks_running -= 1;
        }
    }
    if status == NtStatus::SUCCESS {
        let mut state = state();
        if let Some(sock) = live(&mut state, new_key) {
            sock.context = out_context;
            sock.client_dispatch = out_dispatch.cast();
            if sock.client_dispatch.is_null() {
                sock.events = 0;
            }
        }
        post(
            &mut state,
            Box::new(move || super::connection::service(new_key)),
        );
    } else if status == NtStatus::REQUEST_NOT_ACCEPTED {
        // The provider closes a rejected socket abortively: the peer sees RST.
        forget_and_reset(new_key);
    } else {
        violation(
            Rule::InvalidArgument,
            format_args!(
                "WskAcceptEvent returned {status}; only STATUS_SUCCESS or STATUS_REQUEST_NOT_ACCEPTED are allowed"
            ),
        );
    }
}

fn forget_and_reset(new_key: usize) {
    let mut state = state();
    if let Some(sock) = forget(&mut state, new_key)
        && let Kind::Connection(connection) = sock.kind
    {
        connection.abort(&state);
    }
}

fn inspect(key: usize, stream: std::net::TcpStream, local: SocketAddr, remote: SocketAddr) {
    let Some((context, dispatch)) = listen_dispatch(key) else {
        reset(&stream);
        return;
    };
    let Some(inspect_event) = dispatch.WskInspectEvent else {
        callback_done(key);
        reset(&stream);
        return;
    };
    let serial = {
        let mut state = state();
        let serial = state.inspect_serial;
        state.inspect_serial = state.inspect_serial.wrapping_add(1).max(1);
        serial
    };
    let mut id = WSK_INSPECT_ID {
        Key: key,
        SerialNumber: serial,
    };
    let mut local_sa = SOCKADDR_STORAGE::from(local);
    let mut remote_sa = SOCKADDR_STORAGE::from(remote);
    let action = irql::at_dispatch(|| {
        // SAFETY: PFN_WSK_INSPECT_EVENT's contract (WSK-FACTS §6): `context` is the listening
        // socket's SocketContext, valid while the socket lives (it cannot finish closing while
        // this provider-thread callback runs); the addresses and the ID are locals, valid for the
        // call.
        unsafe {
            inspect_event(
                context,
                local_sa.as_mut_ptr(),
                remote_sa.as_mut_ptr(),
                &raw mut id,
            )
        }
    });
    callback_done(key);
    let mut state = state();
    match action {
        WSK_INSPECT_ACTION::ACCEPT => {
            if let Some(Sock {
                kind: Kind::Listen(listening),
                ..
            }) = live(&mut state, key)
            {
                listening.ready.push_back(Incoming {
                    stream,
                    local,
                    remote,
                });
            } else {
                reset(&stream);
            }
        }
        WSK_INSPECT_ACTION::REJECT => reset(&stream),
        WSK_INSPECT_ACTION::PEND => {
            let token = INSPECTION_TOKEN_BIT | serial as usize;
            let mut stream = mio::net::TcpStream::from_std(stream);
            if let Some(registry) = state.registry.as_ref() {
                registry
                    .register(&mut stream, Token(token), Interest::READABLE)
                    .expect("hostkernel: epoll register");
            }
            state.inspections.insert(
                token,
                Inspection {
                    listen_key: key,
                    id,
                    stream,
                    local,
                    remote,
                },
            );
        }
        other => {
            drop(state);
            violation(
                Rule::InvalidArgument,
                format_args!(
                    "WskInspectEvent returned {other:?}; only Reject, Accept or Pend are allowed"
                ),
            );
        }
    }
}

/// A pended inspection's socket became readable: if the peer gave up (FIN or RST), the request is
/// withdrawn and WskAbortEvent says so (WSK-FACTS §6).
pub(crate) fn service_inspection(token: usize) {
    let mut state = state();
    let Some(inspection) = state.inspections.get(&token) else {
        return;
    };
    let mut probe = [0u8; 1];
    let gone = match inspection.stream.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    if !gone {
        return;
    }
    let mut inspection = state.inspections.remove(&token).expect("checked");
    if let Some(registry) = state.registry.as_ref() {
        let _ = registry.deregister(&mut inspection.stream);
    }
    drop(state);
    drop(inspection.stream);
    if let Some((context, dispatch)) = listen_dispatch(inspection.listen_key) {
        if let Some(abort_event) = dispatch.WskAbortEvent {
            let mut id = inspection.id;
            irql::at_dispatch(|| {
                // SAFETY: the driver's WskAbortEvent with the ID it pended (WSK-FACTS §6).
                unsafe { abort_event(context, &raw mut id) }
            });
        }
        callback_done(inspection.listen_key);
    }
}
