//! The event accept path: WskAcceptEvent (WSK-FACTS §5).

use core::ffi::c_void;

use wsk::{
    NtStatus, SOCKADDR, WSK_CLIENT_CONNECTION_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH,
    WSK_INSPECT_ACTION, WSK_INSPECT_ID, WSK_SOCKET,
};

use super::admission::Returned;
use super::{Counters, Listener};
use crate::conn::NOT_AT_DISPATCH;
use crate::kernel;
use crate::net::ConnSocket;
use crate::net::connection::NO_CONNECTION_CALLBACKS;
use crate::table::AcceptPath;

/// The client listen dispatch every listener registers. The provider calls the inspect and abort
/// callbacks only on listeners with SO_CONDITIONAL_ACCEPT (WSK-FACTS §6).
pub static LISTEN_CALLBACKS: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_event),
    WskInspectEvent: Some(inspect_event),
    WskAbortEvent: Some(abort_event),
};

/// WskAcceptEvent. IRQL: <= DISPATCH_LEVEL. Applies policy and capacity, inserts into the table
/// and returns STATUS_SUCCESS, or STATUS_REQUEST_NOT_ACCEPTED (the provider then closes the
/// socket). Copies the addresses (valid only during the call). Never calls WSK, never blocks,
/// never allocates.
///
/// # Safety
/// Called by the provider as WskAcceptEvent (WSK-FACTS §5): `context` is the listener given as the
/// listening socket's context, alive until its close completed; the address and out-parameters are
/// valid for the duration of the call.
unsafe extern "system" fn accept_event(
    context: *mut c_void,
    _flags: u32,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    accept_socket: *mut WSK_SOCKET,
    out_context: *mut *mut c_void,
    out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NtStatus {
    // SAFETY: the socket context is the listener, alive until its listening socket is closed
    // (close waits for running callbacks, WSK-FACTS §7).
    let listener = unsafe { &*context.cast::<Listener>() };
    // Read before the spin lock raises the IRQL: called at DISPATCH_LEVEL, this callback runs to
    // its return on this processor without a break (see `Returned::OnProcessor`).
    let at_dispatch = kernel::current_irql() == kernel::DISPATCH_LEVEL;
    let mut shared = listener.shared.lock();
    // At DISPATCH_LEVEL (the spin lock): the processor cannot change until the lock is released.
    let here = u16::try_from(kernel::current_processor()).unwrap_or(NOT_AT_DISPATCH);
    // Sockets earlier callbacks on this processor handed over: those callbacks have returned.
    listener.hand_over(&mut shared, Returned::OnProcessor(here));
    // SAFETY: WSK-FACTS §5: NULL AcceptSocket means the listening socket no longer works.
    let Some(socket) = (unsafe { ConnSocket::from_accepted(accept_socket) }) else {
        Listener::request_restart_locked(&mut shared);
        listener.kick_locked(&shared);
        return NtStatus::REQUEST_NOT_ACCEPTED;
    };
    let fallback = shared.bound;
    // SAFETY: the provider passes valid addresses for the duration of the call.
    let local = unsafe { wsk::addr::read_sockaddr(local) }.unwrap_or(fallback);
    // SAFETY: WskAcceptEvent's RemoteAddress is valid for the duration of the callback (WSK-FACTS
    // §5).
    let remote = unsafe { wsk::addr::read_sockaddr(remote) }.unwrap_or(fallback);
    let verdict = listener.admit(&mut shared, socket, local, remote, AcceptPath::Event);
    // A processor numbered NOT_AT_DISPATCH or beyond proves nothing: recorded as such.
    let here = if at_dispatch { here } else { NOT_AT_DISPATCH };
    if let Ok(id) = verdict {
        listener.note_indication(&mut shared, id, here);
    }
    listener.kick_locked(&shared);
    drop(shared);
    match verdict {
        Ok(id) => {
            Counters::bump(&listener.counters.accepted_event);
            // SAFETY: out-parameters are valid for the call; written before returning success.
            unsafe { out_context.write(core::ptr::null_mut()) };
            // SAFETY: AcceptSocketDispatch is a valid out-parameter for the callback (WSK-FACTS
            // §5); it points at a static table, which outlives the socket.
            unsafe { out_dispatch.write(&raw const NO_CONNECTION_CALLBACKS) };
            // Last: the worker may have the socket once a later point knows we returned (this
            // processor's hand-over DPC, queued here, when called at DISPATCH_LEVEL).
            listener.accept_event_returning(id, here);
            NtStatus::SUCCESS
        }
        Err(refused) => {
            // Not ours: the provider closes it after we decline.
            let _ = refused.into_raw();
            NtStatus::REQUEST_NOT_ACCEPTED
        }
    }
}

/// WskInspectEvent: the condition function. IRQL: <= DISPATCH_LEVEL. Answers Accept or Reject at
/// once, or Pend after queueing a copy of the ID and addresses for user mode. A NULL InspectID
/// means the listening socket stopped working (WSK-FACTS §6): recreate it. Never calls WSK, never
/// blocks, never allocates.
///
/// # Safety
/// Called by the provider as WskInspectEvent (WSK-FACTS §6): `context` is the listener given as the
/// listening socket's context, alive until its close completed; the addresses and `inspect_id`
/// (NULL or valid) are valid for the duration of the call.
unsafe extern "system" fn inspect_event(
    context: *mut c_void,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    inspect_id: *mut WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    // SAFETY: the socket context is the listener (see accept_event).
    let listener = unsafe { &*context.cast::<Listener>() };
    if inspect_id.is_null() {
        let mut shared = listener.shared.lock();
        Listener::request_restart_locked(&mut shared);
        listener.kick_locked(&shared);
        return WSK_INSPECT_ACTION::REJECT;
    }
    // SAFETY: the provider passes a valid ID for the call; copy it (compare contents later).
    let id = unsafe { inspect_id.read() };
    let fallback = listener.shared.lock().bound;
    // SAFETY: valid for the call.
    let local = unsafe { wsk::addr::read_sockaddr(local) }.unwrap_or(fallback);
    // SAFETY: valid for the call.
    let remote = unsafe { wsk::addr::read_sockaddr(remote) }.unwrap_or(fallback);
    listener.inspect(local, remote, &id)
}

/// WskAbortEvent: a deferred request was withdrawn by the peer. IRQL: <= DISPATCH_LEVEL. Always
/// STATUS_SUCCESS.
///
/// # Safety
/// Called by the provider as WskAbortEvent (WSK-FACTS §6): `context` is the listener given as the
/// listening socket's context; `inspect_id` is valid for the duration of the call.
unsafe extern "system" fn abort_event(
    context: *mut c_void,
    inspect_id: *mut WSK_INSPECT_ID,
) -> NtStatus {
    // SAFETY: the socket context is the listener (see accept_event).
    let listener = unsafe { &*context.cast::<Listener>() };
    if !inspect_id.is_null() {
        // SAFETY: valid for the call.
        listener.abort(&unsafe { inspect_id.read() });
    }
    NtStatus::SUCCESS
}
