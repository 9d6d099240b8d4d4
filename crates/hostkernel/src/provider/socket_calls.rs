//! The basic calls every socket dispatch table starts with — WskControlSocket (options and
//! SO_WSK_EVENT_CALLBACK), WskCloseSocket — and the address queries WskGetLocalAddress and
//! WskGetRemoteAddress.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use wsk::{
    IRP, NPI_WSK_INTERFACE_ID, NtStatus, SOCKADDR, WSK_CONTROL_SOCKET_TYPE, WSK_EVENT_ACCEPT,
    WSK_EVENT_CALLBACK_CONTROL, WSK_EVENT_DISABLE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG, WSK_SOCKET,
};

use super::conditional;
use super::state::{
    CallGuard, Kind, Slot, Sock, changed, check_wsk_entry, finish, finish_finished, live, lock,
    retire, state, take_irp,
};
use super::translate;
use super::work::{complete_later, no_completion_posted, post_after, registry, serve_later};
use crate::accounting::COUNTERS;
use crate::irp::{self, IrpRef};
use crate::schedule::{self, Fault};
use crate::verifier::{Rule, violation};

/// Completes `irp` with `status` if there is one; returns what the call returns.
fn answer(irp: Option<IrpRef>, status: NtStatus) -> NtStatus {
    match irp {
        Some(irp) => finish(irp, status, 0),
        None => status,
    }
}

/// WskControlSocket (PFN_WSK_CONTROL_SOCKET): SO_WSK_EVENT_CALLBACK, SO_EXCLUSIVEADDRUSE,
/// SO_REUSEADDR, IPV6_V6ONLY and SO_CONDITIONAL_ACCEPT.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// NULL (SO_WSK_EVENT_CALLBACK only) or an IRP from IoAllocateIrp with a completion routine, not
/// pending (all checked); `input` must be NULL or `input_size` readable bytes, and a
/// WSK_EVENT_CALLBACK_CONTROL's `NpiId` NULL or a readable GUID (PFN_WSK_CONTROL_SOCKET).
pub(crate) unsafe extern "system" fn wsk_control_socket(
    socket: *mut WSK_SOCKET,
    request: WSK_CONTROL_SOCKET_TYPE,
    code: u32,
    level: u32,
    input_size: usize,
    input: *mut c_void,
    _output_size: usize,
    _output: *mut c_void,
    _returned: *mut usize,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskControlSocket");
    let key = socket as usize;
    let is_event_option = request == WSK_CONTROL_SOCKET_TYPE::SET_OPTION
        && level == wsk::SOL_SOCKET
        && code == wsk::SO_WSK_EVENT_CALLBACK;
    let irp = if irp.is_null() {
        if !is_event_option {
            violation(
                Rule::IrpRequired,
                format_args!(
                    "WskControlSocket(code 0x{code:X}, level 0x{level:X}) requires an IRP"
                ),
            );
        }
        None
    } else {
        Some(take_irp(irp, "WskControlSocket"))
    };
    if schedule::should_fail(Fault::WskControlSocket) {
        return answer(irp, NtStatus::INSUFFICIENT_RESOURCES);
    }
    if request != WSK_CONTROL_SOCKET_TYPE::SET_OPTION {
        return answer(irp, NtStatus::NOT_SUPPORTED);
    }
    if is_event_option {
        if input_size < size_of::<WSK_EVENT_CALLBACK_CONTROL>() || input.is_null() {
            return answer(irp, NtStatus::INVALID_PARAMETER);
        }
        // SAFETY: the driver passed a buffer of at least this size (checked above).
        let control = unsafe { input.cast::<WSK_EVENT_CALLBACK_CONTROL>().read_unaligned() };
        // SAFETY: NpiId must point at a GUID; NULL is refused first.
        if control.NpiId.is_null() || unsafe { *control.NpiId } != NPI_WSK_INTERFACE_ID {
            return answer(irp, NtStatus::INVALID_PARAMETER);
        }
        return set_events(key, control.EventMask, irp);
    }
    // Every other option takes a ULONG.
    if input_size != 4 || input.is_null() {
        return answer(irp, NtStatus::INVALID_PARAMETER);
    }
    // SAFETY: the driver passed 4 readable bytes (checked above).
    let value = unsafe { input.cast::<u32>().read_unaligned() };
    let mut state = state();
    let Some(sock) = live(&mut state, key) else {
        return answer(irp, NtStatus::INVALID_DEVICE_STATE);
    };
    let status = match &sock.kind {
        Kind::Listen(listening) => lock(listening).set_option(level, code, value),
        Kind::Connection(_) => NtStatus::NOT_SUPPORTED,
    };
    drop(state);
    answer(irp, status)
}

/// SO_WSK_EVENT_CALLBACK: enables or disables event callbacks (WSK-FACTS §5).
fn set_events(key: usize, mask: u32, irp: Option<IrpRef>) -> NtStatus {
    let mut state = state();
    let Some(sock) = live(&mut state, key) else {
        return answer(irp, NtStatus::INVALID_DEVICE_STATE);
    };
    let (allowed, bound) = match &sock.kind {
        // Connection events enabled on a listening socket are inherited by sockets accepted
        // through WskAcceptEvent (WSK-FACTS §5).
        Kind::Listen(l) => (
            WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
            lock(l).is_bound(),
        ),
        Kind::Connection(c) => (
            WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
            lock(c).is_connected(),
        ),
    };
    if mask & WSK_EVENT_DISABLE != 0 {
        let event = mask & !WSK_EVENT_DISABLE;
        if event.count_ones() != 1 || event & allowed == 0 {
            drop(state);
            return answer(irp, NtStatus::INVALID_PARAMETER);
        }
        sock.events &= !event;
        let running = sock.callbacks_running > 0;
        if !running {
            drop(state);
            return answer(irp, NtStatus::SUCCESS);
        }
        // A callback is running on the provider thread: the disable takes effect at once for
        // new indications; the IRP completes after the running call returns.
        return match irp {
            None => NtStatus::EVENT_PENDING,
            Some(irp) => {
                complete_later(irp, NtStatus::SUCCESS, 0);
                NtStatus::PENDING
            }
        };
    }
    if mask == 0 || mask & !allowed != 0 {
        drop(state);
        return answer(irp, NtStatus::INVALID_PARAMETER);
    }
    // Events are enabled after bind (listening) or once connected (WSK-FACTS §5).
    if !bound {
        drop(state);
        return answer(irp, NtStatus::INVALID_DEVICE_STATE);
    }
    if !callbacks_present(sock, mask) {
        drop(state);
        return answer(irp, NtStatus::INVALID_PARAMETER);
    }
    sock.events |= mask;
    if let Kind::Connection(connection) = &sock.kind {
        // Its peer's data, FIN or reset is indicated as it arrives: watched from its next service.
        lock(connection).wants_readiness = true;
    }
    // A listener may have connections waiting for a consumer; a connection may have data.
    serve_later(key);
    drop(state);
    answer(irp, NtStatus::SUCCESS)
}

/// Whether the client dispatch has a callback for every event in `mask`.
fn callbacks_present(sock: &Sock, mask: u32) -> bool {
    if sock.client_dispatch.is_null() {
        return false;
    }
    match &sock.kind {
        Kind::Listen(_) => {
            // SAFETY: non-NULL (checked above), so the WSK_CLIENT_LISTEN_DISPATCH the driver
            // passed to WskSocket, resident while the socket lives (Sock invariants).
            let d = unsafe {
                &*sock
                    .client_dispatch
                    .cast::<wsk::WSK_CLIENT_LISTEN_DISPATCH>()
            };
            mask & WSK_EVENT_ACCEPT == 0 || d.WskAcceptEvent.is_some()
        }
        Kind::Connection(_) => {
            // SAFETY: non-NULL (checked above), so the WSK_CLIENT_CONNECTION_DISPATCH the driver
            // gave with the socket, resident while it lives (Sock invariants).
            let d = unsafe {
                &*sock
                    .client_dispatch
                    .cast::<wsk::WSK_CLIENT_CONNECTION_DISPATCH>()
            };
            (mask & WSK_EVENT_RECEIVE == 0 || d.WskReceiveEvent.is_some())
                && (mask & WSK_EVENT_DISCONNECT == 0 || d.WskDisconnectEvent.is_some())
                && (mask & WSK_EVENT_SEND_BACKLOG == 0 || d.WskSendBacklogEvent.is_some())
        }
    }
}

/// WskCloseSocket (PFN_WSK_CLOSE_SOCKET): cancels every pending IRP of the socket with
/// STATUS_CANCELLED and Information 0, aborts a connection that is not disconnected, waits for
/// running callbacks (they run on the provider thread, which finishes the close), then completes
/// the close IRP. Never fails (WSK-FACTS §7).
///
/// # Safety
/// `socket` must be a socket this provider handed out and `irp` an IRP from IoAllocateIrp with a
/// completion routine, not pending (both checked, as are a second close and a close while
/// another call is in progress); the driver must not use `socket` once the close completes
/// (a use within the quarantine is caught through the poisoned Dispatch).
pub(crate) unsafe extern "system" fn wsk_close_socket(
    socket: *mut WSK_SOCKET,
    irp: *mut IRP,
) -> NtStatus {
    check_wsk_entry("WskCloseSocket");
    let key = socket as usize;
    let state = state();
    let slot = state.sockets.get(&key);
    match slot {
        Some(Slot::Live(sock)) if sock.accept_event_thread.is_some() => {
            drop(state);
            violation(
                Rule::SocketUsedBeforeAcceptEventReturned,
                format_args!(
                    "WskCloseSocket({socket:p}) before the WskAcceptEvent that hands it over \
                     returned"
                ),
            );
        }
        Some(Slot::Live(sock)) if sock.calls_in_progress > 0 => {
            drop(state);
            violation(
                Rule::CloseWhileCallInProgress,
                format_args!("WskCloseSocket({socket:p}) while another call on it is in progress"),
            );
        }
        Some(Slot::Live(_)) => {}
        Some(Slot::Closed { .. }) => {
            drop(state);
            violation(
                Rule::SocketClosedTwice,
                format_args!("WskCloseSocket({socket:p}) on a closed socket"),
            );
        }
        None => {
            drop(state);
            violation(
                Rule::InvalidSocket,
                format_args!("WskCloseSocket: {socket:p} is not a WSK socket"),
            );
        }
    }
    drop(state);
    let irp = take_irp(irp, "WskCloseSocket");
    let mut guard = super::state::state();
    let registration = match guard.sockets.get(&key) {
        Some(Slot::Live(sock)) => sock.registration,
        _ => unreachable!("checked above under the same call"),
    };
    let Some(Slot::Live(sock)) = guard.sockets.insert(key, Slot::Closed { registration }) else {
        unreachable!("checked above")
    };
    // From now on the event loop moves nothing on this socket (the object lock orders this after
    // any service in progress); its close finishes on the loop, or here when nothing of the
    // socket is in flight: no callback running (none can start: it is a tombstone under STATE),
    // no service holding completions it took before `closed` (`in_service`).
    let idle = match &sock.kind {
        Kind::Listen(listening) => {
            lock(listening).closed = true;
            false
        }
        Kind::Connection(connection) => {
            let mut connection = lock(connection);
            connection.closed = true;
            connection.in_service == 0 && sock.callbacks_running == 0
        }
    };
    let delay = guard.close_delay;
    drop(guard);
    // Nor may a completion posted to the loop before (a deferred one) wait behind this close.
    if idle && delay.is_zero() && no_completion_posted() {
        return close_now(key, sock, irp);
    }
    post_after(delay, Box::new(move || finish_close(key, sock, irp)));
    NtStatus::PENDING
}

/// Finishes the close of an idle connection socket on the caller's thread: the OS socket is
/// closed and the WSK_SOCKET retired before the IRP completes (inline as a rule,
/// `finish_finished`); IRPs it cancels complete first, in order, on the provider thread.
fn close_now(key: usize, sock: Sock, irp: IrpRef) -> NtStatus {
    let registration = sock.registration;
    let cancelled = match sock.kind {
        Kind::Connection(connection) => lock(&connection).shut_down(),
        Kind::Listen(_) => unreachable!("only connection sockets close here"),
    };
    retire_closed(key, registration);
    if cancelled.is_empty() {
        return finish_finished(irp, NtStatus::SUCCESS, 0);
    }
    for pending in cancelled {
        complete_later(pending, NtStatus::CANCELLED, 0);
    }
    complete_later(irp, NtStatus::SUCCESS, 0);
    NtStatus::PENDING
}

/// A socket's close completed (or is about to, with nothing of it in flight): it no longer counts
/// against its registration, and its WSK_SOCKET is poisoned, then freed (WSK-FACTS §7: after the
/// call the socket must not be used again).
fn retire_closed(key: usize, registration: u64) {
    let mut state = state();
    if let Some(reg) = state.registrations.get_mut(&registration) {
        reg.sockets -= 1;
    }
    retire(&mut state, key);
    COUNTERS.sockets.fetch_sub(1, Ordering::SeqCst);
    changed(&state);
}

/// Runs on the provider thread, after any callback of the socket has returned.
fn finish_close(key: usize, sock: Sock, irp: IrpRef) {
    let registration = sock.registration;
    let registry = registry();
    // The OS sockets are deregistered and closed under the socket's own lock only.
    let cancelled = match sock.kind {
        Kind::Listen(listening) => {
            conditional::drop_inspections(&mut state(), key);
            lock(&listening).shut_down(registry.as_deref())
        }
        Kind::Connection(connection) => lock(&connection).shut_down(),
    };
    for pending in cancelled {
        irp::complete(pending, NtStatus::CANCELLED, 0);
    }
    irp::complete(irp, NtStatus::SUCCESS, 0);
    retire_closed(key, registration);
}

static LOCAL_ADDRESS_FAILURE: std::sync::Mutex<Option<std::time::Duration>> =
    std::sync::Mutex::new(None);

/// Fault mode: the next WskGetLocalAddress on a listening socket answers only after `delay` (a
/// slow provider: connections keep arriving meanwhile) and then fails with
/// STATUS_INSUFFICIENT_RESOURCES.
pub fn fail_next_listen_local_address(delay: std::time::Duration) {
    *LOCAL_ADDRESS_FAILURE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(delay);
}

/// WskGetLocalAddress (listen and connection dispatch).
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `out` must be NULL or a writable
/// SOCKADDR_STORAGE-sized buffer (PFN_WSK_GET_LOCAL_ADDRESS).
pub(crate) unsafe extern "system" fn wsk_get_local_address(
    socket: *mut WSK_SOCKET,
    out: *mut SOCKADDR,
    irp: *mut IRP,
) -> NtStatus {
    // SAFETY: the caller's guarantees for `socket`, `out` and `irp` (this function's # Safety)
    // are exactly get_address's.
    unsafe { get_address(socket, out, irp, "WskGetLocalAddress", true) }
}

/// WskGetRemoteAddress (connection dispatch).
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `out` must be NULL or a writable
/// SOCKADDR_STORAGE-sized buffer (PFN_WSK_GET_REMOTE_ADDRESS).
pub(crate) unsafe extern "system" fn wsk_get_remote_address(
    socket: *mut WSK_SOCKET,
    out: *mut SOCKADDR,
    irp: *mut IRP,
) -> NtStatus {
    // SAFETY: the caller's guarantees for `socket`, `out` and `irp` (this function's # Safety)
    // are exactly get_address's.
    unsafe { get_address(socket, out, irp, "WskGetRemoteAddress", false) }
}

/// WskGetLocalAddress (`local`) or WskGetRemoteAddress on `socket`.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `out` must be NULL or a writable
/// SOCKADDR_STORAGE-sized buffer.
unsafe fn get_address(
    socket: *mut WSK_SOCKET,
    out: *mut SOCKADDR,
    irp: *mut IRP,
    function: &'static str,
    local: bool,
) -> NtStatus {
    let _call = CallGuard::enter(socket, function);
    let irp = take_irp(irp, function);
    let is_listener = matches!(
        state().sockets.get(&(socket as usize)),
        Some(Slot::Live(Sock {
            kind: Kind::Listen(_),
            ..
        }))
    );
    let failure = if local && is_listener {
        LOCAL_ADDRESS_FAILURE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    } else {
        None
    };
    if let Some(delay) = failure {
        std::thread::sleep(delay);
        return finish(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    let address = {
        let mut state = state();
        match live(&mut state, socket as usize).map(|s| &s.kind) {
            Some(Kind::Listen(l)) if local => lock(l).local_address(),
            Some(Kind::Connection(c)) => {
                let c = lock(c);
                if local {
                    c.local_address()
                } else {
                    c.remote_address()
                }
            }
            _ => None,
        }
    };
    if local && schedule::should_fail(Fault::WskGetLocalAddress) {
        return finish(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    match address {
        Some(address) if !out.is_null() => {
            // SAFETY: the driver passes a SOCKADDR_STORAGE-sized buffer for the address.
            unsafe { translate::write(out, address) };
            finish(irp, NtStatus::SUCCESS, 0)
        }
        Some(_) => finish(irp, NtStatus::INVALID_PARAMETER, 0),
        None => finish(irp, NtStatus::INVALID_DEVICE_STATE, 0),
    }
}
