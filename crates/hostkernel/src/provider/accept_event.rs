//! WskAcceptEvent delivery (WSK-FACTS §5): the provider hands a new connection socket to the
//! client's accept callback at DISPATCH_LEVEL, records its return in one step with the socket
//! becoming the client's (still at DISPATCH_LEVEL, so that a DPC the callback queued for its
//! processor runs after that), or closes a declined one abortively.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use wsk::{
    NtStatus, SOCKADDR_STORAGE, WSK_CLIENT_CONNECTION_DISPATCH, WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_SOCKET,
};

use super::connection_events;
use super::pause::{self, Point};
use super::second_processor;
use super::state::{Kind, callback_done, counted_listen_dispatch, forget, live, lock, state};
use super::work::{ON_LOOP, registry, serve_later};
use crate::irql;
use crate::verifier::{Rule, violation};

static ACCEPT_EVENT_PREEMPTION: AtomicBool = AtomicBool::new(false);

/// Fault mode: every WskAcceptEvent callback may be "preempted" — each spin lock it releases
/// holds its thread up for a millisecond while the driver's other threads run on, so a driver
/// that lets another thread use the handed-over socket before the callback returns is caught
/// (`socket-used-before-accept-event-returned`).
pub fn set_accept_event_preemption(on: bool) {
    ACCEPT_EVENT_PREEMPTION.store(on, Ordering::SeqCst);
}

/// Hands a new connection socket to the client's WskAcceptEvent.
pub(super) fn deliver_event(key: usize, new_key: usize, local: SocketAddr, remote: SocketAddr) {
    pause::pass(Point::BeforeAcceptEvent { listener: key });
    let concurrent = second_processor::enabled();
    if concurrent && let Some(sock) = live(&mut state(), new_key) {
        // Delivered from this thread, not the one that decided it.
        sock.accept_event_thread = Some(std::thread::current().id());
    }
    let Some((context, dispatch)) = counted_listen_dispatch(key) else {
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
    let (context_out, dispatch_out) = (&raw mut out_context, &raw mut out_dispatch);
    let mut call = || {
        // SAFETY: PFN_WSK_ACCEPT_EVENT's contract (WSK-FACTS §5): `context` is the SocketContext
        // the driver gave this listening socket, valid while the socket lives, and the socket
        // cannot finish closing while this provider-thread callback runs; the addresses are
        // SOCKADDR_STORAGE copies on this stack and the out-parameters locals, all valid for the
        // call; `new_key` is the live WSK_SOCKET being handed over. At DISPATCH_LEVEL (below).
        unsafe {
            accept_event(
                context,
                WSK_FLAG_AT_DISPATCH_LEVEL,
                local_sa.as_mut_ptr(),
                remote_sa.as_mut_ptr(),
                new_key as *mut WSK_SOCKET,
                context_out,
                dispatch_out,
            )
        }
    };
    // The provider stays at DISPATCH_LEVEL on this processor from the call until it has recorded
    // the return, as Windows' indication path does: a DPC the callback queued for this processor
    // runs only after that (`crate::dpc`).
    let status = irql::at_dispatch(|| {
        let status = if ACCEPT_EVENT_PREEMPTION.load(Ordering::SeqCst) {
            crate::spinlock::preemptible(&mut call)
        } else {
            call()
        };
        if concurrent {
            // Returned, but the provider is still busy with the callback on this processor.
            std::thread::sleep(second_processor::AFTER_RETURN);
        }
        // The callback returned: from now on the socket is the client's (or declined). Recorded
        // with the end of the callback, in one step, so that whoever learns that no callback
        // runs (a disable answering STATUS_SUCCESS) finds the socket recorded.
        let mut state = state();
        if let Some(sock) = live(&mut state, new_key) {
            sock.accept_event_thread = None;
            if status == NtStatus::SUCCESS {
                sock.context = out_context;
                sock.client_dispatch = out_dispatch.cast();
                if sock.client_dispatch.is_null() {
                    sock.events = 0;
                }
            }
        }
        if let Some(sock) = live(&mut state, key) {
            sock.callbacks_running -= 1;
        }
        status
    });
    if status == NtStatus::SUCCESS {
        if ON_LOOP.with(std::cell::Cell::get) {
            // This is the event loop: serve the new socket now, not through its queue.
            connection_events::service(new_key);
        } else {
            serve_later(new_key);
        }
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

/// Forgets a connection socket no client took, resetting its connection.
pub(super) fn forget_and_reset(new_key: usize) {
    let mut state = state();
    let forgotten = forget(&mut state, new_key);
    drop(state);
    if let Some(sock) = forgotten
        && let Kind::Connection(connection) = sock.kind
    {
        lock(&connection).abort(registry().as_deref());
    }
}
