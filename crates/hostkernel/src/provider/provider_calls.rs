//! The provider-level calls (WSK_PROVIDER_DISPATCH, handed out with the provider NPI): WskSocket,
//! which creates listening and connection sockets, and WskControlClient.

use std::ffi::c_void;

use wsk::{IRP, NtStatus};

use super::connection::Connection;
use super::connection_calls::CONNECTION_DISPATCH;
use super::listen_calls::LISTEN_DISPATCH;
use super::listening::Listening;
use super::state::{Kind, Sock, check_wsk_entry, finish, insert, state, take_irp};
use crate::schedule::{self, Fault};
use crate::verifier::{Rule, violation};

/// The WSK_PROVIDER_DISPATCH the host hands out with the provider NPI.
pub(crate) static PROVIDER_DISPATCH: wsk::WSK_PROVIDER_DISPATCH = wsk::WSK_PROVIDER_DISPATCH {
    Version: wsk::WSK_VERSION_1_0,
    Reserved: 0,
    WskSocket: Some(wsk_socket),
    WskSocketConnect: None,
    WskControlClient: Some(wsk_control_client),
    WskGetAddressInfo: None,
    WskFreeAddressInfo: None,
    WskGetNameInfo: None,
};

/// WskSocket (PFN_WSK_SOCKET). Listening and connection-oriented TCP sockets only.
///
/// # Safety
/// `client` must be the Client of a captured provider NPI and `irp` an IRP from IoAllocateIrp
/// with a completion routine, not pending (both checked); `dispatch` must be NULL or the client
/// dispatch of the socket's category (WSK_CLIENT_LISTEN_DISPATCH or
/// WSK_CLIENT_CONNECTION_DISPATCH), resident with `socket_context` while the socket lives
/// (PFN_WSK_SOCKET).
unsafe extern "system" fn wsk_socket(
    client: *mut c_void,
    family: u16,
    socket_type: u16,
    protocol: u32,
    flags: u32,
    socket_context: *mut c_void,
    dispatch: *const c_void,
    _owning_process: *mut c_void,
    _owning_thread: *mut c_void,
    _security_descriptor: *mut c_void,
    irp: *mut IRP,
) -> NtStatus {
    check_wsk_entry("WskSocket");
    let irp = take_irp(irp, "WskSocket");
    let registration = client as u64;
    if !state().registrations.contains_key(&registration) {
        violation(
            Rule::RegistrationMisuse,
            "WskSocket with a client that is not a captured provider NPI",
        );
    }
    if schedule::should_fail(Fault::WskSocket) {
        return finish(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    if socket_type != wsk::SOCK_STREAM || (protocol != wsk::IPPROTO_TCP && protocol != 0) {
        return finish(irp, NtStatus::NOT_SUPPORTED, 0);
    }
    let kind = match flags {
        wsk::WSK_FLAG_LISTEN_SOCKET => match Listening::new(family) {
            Ok(listening) => Kind::listen(listening),
            Err(status) => return finish(irp, status, 0),
        },
        wsk::WSK_FLAG_CONNECTION_SOCKET => match Connection::unconnected(family) {
            Some(connection) => Kind::connection(connection),
            None => return finish(irp, NtStatus::INVALID_PARAMETER, 0),
        },
        _ => return finish(irp, NtStatus::NOT_SUPPORTED, 0),
    };
    let dispatch_table: *const c_void = match &kind {
        Kind::Listen(_) => (&raw const LISTEN_DISPATCH).cast(),
        Kind::Connection(_) => (&raw const CONNECTION_DISPATCH).cast(),
    };
    let key = insert(
        &mut state(),
        Sock {
            registration,
            kind,
            context: socket_context,
            client_dispatch: dispatch,
            events: 0,
            calls_in_progress: 0,
            callbacks_running: 0,
            accept_event_thread: None,
        },
        dispatch_table,
    );
    finish(irp, NtStatus::SUCCESS, key)
}

/// WskControlClient: the host supports no client-level control codes (static event callbacks
/// are not emulated; wskaccept enables events per socket).
///
/// # Safety
/// `irp` must be NULL or an IRP from IoAllocateIrp with a completion routine, not pending
/// (checked); no other argument is read.
unsafe extern "system" fn wsk_control_client(
    _client: *mut c_void,
    _code: u32,
    _input_size: usize,
    _input: *mut c_void,
    _output_size: usize,
    _output: *mut c_void,
    _returned: *mut usize,
    irp: *mut IRP,
) -> NtStatus {
    check_wsk_entry("WskControlClient");
    if irp.is_null() {
        return NtStatus::NOT_SUPPORTED;
    }
    finish(
        take_irp(irp, "WskControlClient"),
        NtStatus::NOT_SUPPORTED,
        0,
    )
}
