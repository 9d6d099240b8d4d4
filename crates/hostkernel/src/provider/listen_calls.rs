//! The calls of the listen dispatch table: WskBind (which starts listening), WskAccept; with
//! WskInspectComplete (`conditional`) and the basic calls (`socket_calls`).

use std::ffi::c_void;
use std::net::SocketAddr;

use mio::{Interest, Token};
use wsk::{IRP, NtStatus, SOCKADDR, WSK_CLIENT_CONNECTION_DISPATCH, WSK_SOCKET};

use super::conditional::wsk_inspect_complete;
use super::delivery::deliver_one;
use super::listening::AcceptRequest;
use super::socket_calls;
use super::state::{CallGuard, finish, listening_of, lock, take_irp};
use super::translate::{self, status_of};
use super::work::{registry, serve_later};
use crate::schedule::{self, Fault};

/// The listen dispatch table the host hands out.
pub(crate) static LISTEN_DISPATCH: wsk::WSK_PROVIDER_LISTEN_DISPATCH =
    wsk::WSK_PROVIDER_LISTEN_DISPATCH {
        Basic: wsk::WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(socket_calls::wsk_control_socket),
            WskCloseSocket: Some(socket_calls::wsk_close_socket),
        },
        WskBind: Some(wsk_bind),
        WskAccept: Some(wsk_accept),
        WskInspectComplete: Some(wsk_inspect_complete),
        WskGetLocalAddress: Some(socket_calls::wsk_get_local_address),
    };

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
    let registry = registry();
    let Some(shared) = listening_of(key) else {
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    let mut listening = lock(&shared);
    let wrong_family = match address {
        SocketAddr::V4(_) => listening.family != wsk::AF_INET,
        SocketAddr::V6(_) => listening.family != wsk::AF_INET6,
    };
    if wrong_family {
        drop(listening);
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    let Some(os) = listening.unbound.take() else {
        drop(listening);
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    let bound = os.bind(&address.into()).and_then(|()| os.listen(4096));
    if let Err(error) = bound {
        listening.unbound = Some(os);
        drop(listening);
        return finish(irp, status_of(&error), 0);
    }
    let mut listener = mio::net::TcpListener::from_std(os.into());
    if let Some(registry) = registry {
        registry
            .register(&mut listener, Token(key), Interest::READABLE)
            .expect("hostkernel: epoll register");
    }
    // Bound to one address, the listener's connections all have it as their local address.
    listening.fixed_local = listener
        .local_addr()
        .ok()
        .filter(|local| !local.ip().is_unspecified());
    listening.listener = Some(listener);
    drop(listening);
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
    let Some(shared) = listening_of(key) else {
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    let mut listening = lock(&shared);
    if listening.broken || !listening.is_bound() {
        let status = if listening.broken {
            NtStatus::CONNECTION_ABORTED
        } else {
            NtStatus::INVALID_DEVICE_STATE
        };
        drop(listening);
        return finish(irp, status, 0);
    }
    listening.accept_irps.push_back(request);
    // The event loop serves the listener on every arrival and, while it is serving, sees this
    // IRP; only a listener it left for want of a consumer needs serving again, and only when a
    // connection may wait: one it holds, or one in the OS backlog since it last looked (not
    // `quiet`). Otherwise the next arrival is a readiness edge, and the loop finds this IRP.
    let starved =
        std::mem::take(&mut listening.starved) && !(listening.quiet && listening.ready.is_empty());
    drop(listening);
    if starved {
        serve_later(key);
    }
    // A connection already waiting finishes the accept during the call: completed inline as a
    // rule (`finished_inline_percent`; a seeded schedule defers some); with none waiting, the
    // provider thread completes it when one arrives (STATUS_PENDING).
    if schedule::complete_finished_inline() && deliver_one(key, true) == Some(irp) {
        return NtStatus::SUCCESS;
    }
    NtStatus::PENDING
}
