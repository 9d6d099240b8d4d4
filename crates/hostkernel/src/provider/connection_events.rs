//! The event loop's side of a connection socket: register it with the poller, move its bytes
//! and complete its IRPs ([`Connection::pump`](super::connection::Connection::pump)), then make
//! the event callback due — WskReceiveEvent or WskDisconnectEvent, at DISPATCH_LEVEL
//! (WSK-FACTS §5).

use std::sync::Mutex;

use mio::Token;
use wsk::{
    NtStatus, WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION,
    WSK_FLAG_AT_DISPATCH_LEVEL,
};

use super::connection::{Connection, Indication};
use super::pause::{self, Point};
use super::state::{Kind, connection_of, live, lock, state};
use super::work::{loop_state, post};
use crate::irp;
use crate::irql;
use crate::verifier::{Rule, violation};

/// Gives an accepted connection its poller token (under its own lock only); one accepted with
/// event callbacks enabled (inherited from the listener) is watched from its first service.
pub(crate) fn register(connection: &Mutex<Connection>, key: usize, events: bool) {
    let mut connection = lock(connection);
    connection.assign_token(Token(key));
    connection.wants_readiness = events;
}

/// Serves a connection socket (provider thread): I/O, completions, then event callbacks.
pub(crate) fn service(key: usize) {
    let Some(shared) = connection_of(key) else {
        return;
    };
    let mut done = Vec::new();
    // The I/O, under the connection's own lock only (a closed connection does none).
    let awaits_fin_ack = {
        let mut connection = lock(&shared);
        connection.pump(&mut done);
        // Completions taken here are made below: a close meanwhile must wait for them.
        if !done.is_empty() {
            connection.in_service += 1;
        }
        connection.awaits_fin_ack()
    };
    if awaits_fin_ack {
        loop_state().fin_waiters.insert(key);
    }
    // The callback due, decided under STATE with the socket's events and counted as running in
    // the same step, so a disable that found no callback running is never followed by one.
    let indication = {
        let mut state = state();
        live(&mut state, key).and_then(|sock| {
            let indication = lock(&shared).next_indication(sock.events)?;
            sock.callbacks_running += 1;
            Some((indication, sock.context, sock.client_dispatch))
        })
    };
    if !done.is_empty() {
        pause::pass(Point::BeforeCompletions { connection: key });
        for (irp, status, information) in done {
            irp::complete(irp, status, information);
        }
        lock(&shared).in_service -= 1;
    }
    let Some((indication, context, dispatch)) = indication else {
        return;
    };
    // SAFETY: a connection socket's client dispatch is the WSK_CLIENT_CONNECTION_DISPATCH the
    // driver gave (WskAccept or its accept event), resident while the socket lives (Sock
    // invariants); an event is only enabled when that dispatch is non-NULL and has the callback
    // (checked at enable time; a NULL dispatch from the accept event clears the events).
    let dispatch = unsafe { &*dispatch.cast::<WSK_CLIENT_CONNECTION_DISPATCH>() };
    match indication {
        Indication::Disconnect { flags } => {
            if let Some(callback) = dispatch.WskDisconnectEvent {
                // SAFETY: the driver's WskDisconnectEvent with its socket context.
                irql::at_dispatch(|| unsafe { callback(context, flags) });
            }
            finish_callback(key, 0, false);
        }
        Indication::Receive { mut data } => {
            let Some(callback) = dispatch.WskReceiveEvent else {
                return finish_callback(key, 0, false);
            };
            let length = data.len();
            let mdl =
                crate::mdl::allocate(data.as_mut_ptr(), u32::try_from(length).unwrap_or(u32::MAX));
            let mut indication = WSK_DATA_INDICATION {
                Next: std::ptr::null_mut(),
                Buffer: WSK_BUF {
                    Mdl: mdl,
                    Offset: 0,
                    Length: length,
                },
            };
            let mut accepted = 0usize;
            let status = irql::at_dispatch(|| {
                // SAFETY: the driver's WskReceiveEvent with one indication over `data`, valid for
                // the call.
                unsafe {
                    callback(
                        context,
                        WSK_FLAG_AT_DISPATCH_LEVEL,
                        &raw mut indication,
                        length,
                        &raw mut accepted,
                    )
                }
            });
            // SAFETY: the MDL was allocated above and the driver may not retain it (see below).
            unsafe { crate::mdl::free(mdl) };
            if status == NtStatus::PENDING {
                violation(
                    Rule::InvalidArgument,
                    "WskReceiveEvent retained the indication (STATUS_PENDING): not emulated by the host kernel",
                );
            }
            let consumed = if status == NtStatus::SUCCESS {
                accepted.min(length)
            } else {
                0
            };
            finish_callback(
                key,
                consumed,
                status == NtStatus::DATA_NOT_ACCEPTED || consumed < length,
            );
        }
    }
}

/// A connection's event callback returned: `consumed` bytes are taken; serve it again.
fn finish_callback(key: usize, consumed: usize, pause: bool) {
    let mut state = state();
    if let Some(sock) = live(&mut state, key) {
        sock.callbacks_running -= 1;
        if let Kind::Connection(connection) = &sock.kind {
            lock(connection).indicated(consumed, pause);
        }
        post(Box::new(move || service(key)));
    }
}
