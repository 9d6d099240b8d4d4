//! The calls of the connection dispatch table: WskSend, WskReceive, WskDisconnect (graceful or
//! abortive), and the ones the host does not emulate (WskBind, WskConnect, WskRelease); the
//! basic calls and the address queries are `socket_calls`'.

use wsk::{IRP, NtStatus, SOCKADDR, WSK_BUF, WSK_DATA_INDICATION, WSK_FLAG_ABORTIVE, WSK_SOCKET};

use super::connection::{Connection, Receive, abortive_drop};
use super::connection_events::service;
use super::socket_calls;
use super::state::{CallGuard, connection_of, finish, finish_finished, lock, take_irp};
use super::transmit::Send;
use super::work::{complete_later, post, registry};
use crate::irp::IrpRef;

/// The connection dispatch table the host hands out.
pub(crate) static CONNECTION_DISPATCH: wsk::WSK_PROVIDER_CONNECTION_DISPATCH =
    wsk::WSK_PROVIDER_CONNECTION_DISPATCH {
        Basic: wsk::WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(socket_calls::wsk_control_socket),
            WskCloseSocket: Some(socket_calls::wsk_close_socket),
        },
        WskBind: Some(wsk_bind_connection),
        WskConnect: Some(wsk_connect),
        WskGetLocalAddress: Some(socket_calls::wsk_get_local_address),
        WskGetRemoteAddress: Some(socket_calls::wsk_get_remote_address),
        WskSend: Some(wsk_send),
        WskReceive: Some(wsk_receive),
        WskDisconnect: Some(wsk_disconnect),
        WskRelease: Some(wsk_release),
        WskConnectEx: None,
        WskSendEx: None,
        WskReceiveEx: None,
    };

/// Runs `f` on the live connection at `key`, then has the event loop serve it.
fn with_connection(
    key: usize,
    f: impl FnOnce(&mut Connection) -> Result<(), NtStatus>,
) -> Result<(), NtStatus> {
    let connection = connection_of(key).ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    f(&mut lock(&connection))?;
    post(Box::new(move || service(key)));
    Ok(())
}

/// WskSend: queues the bytes; the provider thread writes them and completes the IRP with the
/// number of bytes sent.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `buffer` must be NULL or a WSK_BUF whose MDL chain
/// describes readable memory (PFN_WSK_SEND).
unsafe extern "system" fn wsk_send(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskSend");
    let irp = take_irp(irp, "WskSend");
    if buffer.is_null() || flags != 0 {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    // SAFETY: checked non-NULL; the driver's WSK_BUF stays valid until completion.
    let buffer = unsafe { &*buffer };
    // SAFETY: the driver's WSK_BUF describes live MDLs until completion. The bytes are read when
    // they are written to the socket (see `Send`), not copied here.
    let pieces = unsafe { crate::mdl::pieces(buffer) };
    let length = pieces.iter().map(|&(_, len)| len).sum();
    let result = with_connection(socket as usize, |c| {
        if c.stream.is_none() || c.shutdown_sent || c.disconnect.is_some() {
            return Err(if c.reset {
                NtStatus::CONNECTION_RESET
            } else {
                NtStatus::INVALID_DEVICE_STATE
            });
        }
        // INVARIANT: `pieces` are the driver's WSK_BUF ranges, valid until `irp` completes (the
        // WskSend contract); `length` is their total; nothing is written yet.
        c.sends.push_back(Send {
            irp,
            pieces,
            length,
            written: 0,
        });
        Ok(())
    });
    match result {
        Ok(()) => NtStatus::PENDING,
        Err(status) => finish(irp, status, 0),
    }
}

/// WskReceive: completes when data (Information = bytes), a graceful close (Information 0) or a
/// reset (STATUS_CONNECTION_RESET) arrives.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `buffer` must be NULL or a WSK_BUF whose MDL chain
/// describes writable memory that stays valid until the IRP completes (PFN_WSK_RECEIVE).
unsafe extern "system" fn wsk_receive(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskReceive");
    let irp = take_irp(irp, "WskReceive");
    if buffer.is_null() || flags != 0 {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    // SAFETY: checked non-NULL; the driver's WSK_BUF stays valid until completion.
    let buffer = unsafe { &*buffer };
    let (mdl, offset, length) = (buffer.Mdl, buffer.Offset, buffer.Length);
    if mdl.is_null() || length == 0 {
        return finish(irp, NtStatus::INVALID_PARAMETER, 0);
    }
    let result = with_connection(socket as usize, |c| {
        if !c.is_connected() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        if c.stream.is_none() && c.shutdown_sent && !c.reset {
            // Aborted by an abortive WskDisconnect: the receives pending then failed with
            // STATUS_CONNECTION_ABORTED, and so does any later one (nothing can arrive).
            return Err(NtStatus::CONNECTION_ABORTED);
        }
        c.receives.push_back(Receive {
            irp,
            mdl,
            offset,
            length,
        });
        Ok(())
    });
    match result {
        Ok(()) => NtStatus::PENDING,
        Err(status) => finish(irp, status, 0),
    }
}

/// WskDisconnect: graceful (FIN after queued sends) or abortive (RST) with `WSK_FLAG_ABORTIVE`.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); `buffer` is not read (a final buffer is refused,
/// PFN_WSK_DISCONNECT).
unsafe extern "system" fn wsk_disconnect(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskDisconnect");
    let irp = take_irp(irp, "WskDisconnect");
    if !buffer.is_null() || flags & !WSK_FLAG_ABORTIVE != 0 {
        // A final send buffer with the disconnect is not emulated.
        return finish(irp, NtStatus::NOT_SUPPORTED, 0);
    }
    let key = socket as usize;
    if flags & WSK_FLAG_ABORTIVE != 0 {
        let mut cancelled = Vec::new();
        let status = {
            let registry = registry();
            match connection_of(key) {
                Some(shared) => {
                    let mut c = lock(&shared);
                    if let Some(mut stream) = c.stream.take() {
                        if let Some(registry) = registry {
                            let _ = registry.deregister(&mut stream);
                        }
                        abortive_drop(stream);
                    }
                    cancelled.extend(c.receives.drain(..).map(|r| r.irp));
                    cancelled.extend(c.sends.drain(..).map(|s| s.irp));
                    cancelled.extend(c.disconnect.take());
                    cancelled.extend(c.fin_wait.take());
                    c.shutdown_sent = true;
                    NtStatus::SUCCESS
                }
                _ => NtStatus::INVALID_DEVICE_STATE,
            }
        };
        for pending in cancelled {
            complete_later_now(pending, NtStatus::CONNECTION_ABORTED);
        }
        return finish(irp, status, 0);
    }
    let Some(connection) = connection_of(key) else {
        return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
    };
    // The FIN goes out now, on the caller's thread, when no send is queued before it (as a
    // transport sends it from the caller's context); the event loop only watches for its
    // acknowledgement when it is not acknowledged at once.
    let mut done = Vec::new();
    let still_pending = {
        let mut c = lock(&connection);
        if c.stream.is_none() || c.shutdown_sent || c.disconnect.is_some() {
            drop(c);
            return finish(irp, NtStatus::INVALID_DEVICE_STATE, 0);
        }
        c.disconnect = Some(irp);
        c.write_and_disconnect(&mut done);
        c.disconnect.is_some() || c.fin_wait.is_some()
    };
    // Sends still queued, a FIN not yet acknowledged, or a reset found on the way: the loop
    // takes over (and looks again every few milliseconds for the acknowledgement).
    if still_pending {
        post(Box::new(move || service(key)));
    }
    match done.as_slice() {
        // Only this disconnect completed, during the call: inline as a rule (`finish_finished`).
        [(only, status, information)] if *only == irp => {
            finish_finished(irp, *status, *information)
        }
        // Sends completed too: all later, in order, so none is seen after the disconnect.
        _ => {
            for (irp, status, information) in done {
                complete_later(irp, status, information);
            }
            NtStatus::PENDING
        }
    }
}

/// Completes `irp` later on the provider thread, with Information 0.
fn complete_later_now(irp: IrpRef, status: NtStatus) {
    complete_later(irp, status, 0);
}

/// WskBind on a connection socket: outgoing connections are not emulated.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); the address is not read.
unsafe extern "system" fn wsk_bind_connection(
    socket: *mut WSK_SOCKET,
    _address: *mut SOCKADDR,
    _flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskBind");
    // Outgoing connections are not emulated: wskaccept only accepts.
    finish(take_irp(irp, "WskBind"), NtStatus::NOT_SUPPORTED, 0)
}

/// WskConnect: outgoing connections are not emulated.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed, and `irp`
/// an IRP from IoAllocateIrp with a completion routine, not pending (both checked: anything else
/// is a verifier violation); the address is not read.
unsafe extern "system" fn wsk_connect(
    socket: *mut WSK_SOCKET,
    _address: *mut SOCKADDR,
    _flags: u32,
    irp: *mut IRP,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskConnect");
    finish(take_irp(irp, "WskConnect"), NtStatus::NOT_SUPPORTED, 0)
}

/// WskRelease: the host never lets a client retain indications, so nothing is released.
///
/// # Safety
/// `socket` must be a socket this provider handed out that the driver has not closed (checked);
/// the indication list is not read.
unsafe extern "system" fn wsk_release(
    socket: *mut WSK_SOCKET,
    _indication: *mut WSK_DATA_INDICATION,
) -> NtStatus {
    let _call = CallGuard::enter(socket, "WskRelease");
    // The host never lets a client retain indications, so there is nothing to release.
    NtStatus::INVALID_PARAMETER
}
