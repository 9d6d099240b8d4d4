//! Conditional accept (SO_CONDITIONAL_ACCEPT, WSK-FACTS §6), emulated after the handshake: the
//! delivery state machine hands every new arrival of a conditional listener to [`inspect`], which
//! asks the client's WskInspectEvent; a pended request waits here (its socket polled under an
//! [`INSPECTION_TOKEN_BIT`] token) for WskInspectComplete, or for its peer to give up, which
//! WskAbortEvent reports.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::{Interest, Token};
use wsk::{IRP, NtStatus, SOCKADDR_STORAGE, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WSK_SOCKET};

use super::listening::{Incoming, Inspection, reset};
use super::state::{
    CallGuard, Kind, Sock, State, callback_done, finish, listen_dispatch, live, lock, state,
    take_irp,
};
use super::work::{registry, serve_later};
use crate::irql;
use crate::verifier::{Rule, violation};

/// Tokens of pended inspections carry this bit, so they never collide with socket keys.
pub(crate) const INSPECTION_TOKEN_BIT: usize = 1 << 63;

/// WskInspectComplete (PFN_WSK_INSPECT_COMPLETE): the decision on a pended inspection.
/// Completing an aborted (or unknown) ID does nothing (WSK-FACTS §6).
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `id` must be NULL or a readable WSK_INSPECT_ID
/// (PFN_WSK_INSPECT_COMPLETE).
pub(super) unsafe extern "system" fn wsk_inspect_complete(
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
        if let Some(registry) = registry().as_deref() {
            let _ = registry.deregister(&mut inspection.stream);
        }
        let stream: std::net::TcpStream = inspection.stream.into();
        if action == WSK_INSPECT_ACTION::ACCEPT {
            if let Some(Sock {
                kind: Kind::Listen(listening),
                ..
            }) = live(&mut state, key)
            {
                lock(listening).ready.push_back(Incoming {
                    stream,
                    local: inspection.local,
                    remote: inspection.remote,
                });
            }
            serve_later(key);
        } else {
            reset(&stream);
        }
    }
    drop(state);
    finish(irp, NtStatus::SUCCESS, 0)
}

/// Asks the client's WskInspectEvent about a new arrival of listening socket `key` and acts on
/// its answer (provider thread).
pub(super) fn inspect(
    key: usize,
    stream: std::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
) {
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
                lock(listening).ready.push_back(Incoming {
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
            if let Some(registry) = registry().as_deref() {
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
    if let Some(registry) = registry().as_deref() {
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

/// Resets the pended inspections of listening socket `key`, which is closing.
pub(super) fn drop_inspections(state: &mut State, key: usize) {
    let tokens: Vec<usize> = state
        .inspections
        .iter()
        .filter(|(_, i)| i.listen_key == key)
        .map(|(t, _)| *t)
        .collect();
    for token in tokens {
        if let Some(mut inspection) = state.inspections.remove(&token) {
            if let Some(registry) = registry().as_deref() {
                let _ = registry.deregister(&mut inspection.stream);
            }
            let _ = socket2::SockRef::from(&inspection.stream).set_linger(Some(Duration::ZERO));
        }
    }
}
