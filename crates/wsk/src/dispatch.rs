//! Function-pointer types (wsk.h `PFN_WSK_*`, wdm.h `PIO_COMPLETION_ROUTINE`) and the dispatch
//! tables that carry them. Every pointer is `extern "system"`; nullable ones are `Option<fn>`,
//! which has the same size and ABI as a C function pointer.
#![allow(non_camel_case_types, non_snake_case)]

use core::ffi::c_void;

use crate::addr::SOCKADDR;
use crate::status::NtStatus;
use crate::types::{
    DEVICE_OBJECT, IRP, WSK_BUF, WSK_CONTROL_SOCKET_TYPE, WSK_DATA_INDICATION, WSK_INSPECT_ACTION,
    WSK_INSPECT_ID, WSK_SOCKET,
};

/// PIO_COMPLETION_ROUTINE (wdm.h). WSK passes a NULL device object.
pub type PfnIoCompletionRoutine =
    unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP, *mut c_void) -> NtStatus;

/// A dispatch slot this server never calls; typed only so the table has the right size.
pub type PfnNotUsed = unsafe extern "system" fn();

/// PFN_WSK_SOCKET (wsk.h): `(Client, AddressFamily, SocketType, Protocol, Flags, SocketContext,
/// Dispatch, OwningProcess, OwningThread, SecurityDescriptor, Irp)`.
pub type PfnWskSocket = unsafe extern "system" fn(
    *mut c_void,
    u16,
    u16,
    u32,
    u32,
    *mut c_void,
    *const c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut IRP,
) -> NtStatus;

/// PFN_WSK_CONTROL_CLIENT (wsk.h): `(Client, ControlCode, InputSize, InputBuffer, OutputSize,
/// OutputBuffer, OutputSizeReturned, Irp)`.
pub type PfnWskControlClient = unsafe extern "system" fn(
    *mut c_void,
    u32,
    usize,
    *mut c_void,
    usize,
    *mut c_void,
    *mut usize,
    *mut IRP,
) -> NtStatus;

/// PFN_WSK_CONTROL_SOCKET (wsk.h): `(Socket, RequestType, ControlCode, Level, InputSize,
/// InputBuffer, OutputSize, OutputBuffer, OutputSizeReturned, Irp)`.
pub type PfnWskControlSocket = unsafe extern "system" fn(
    *mut WSK_SOCKET,
    WSK_CONTROL_SOCKET_TYPE,
    u32,
    u32,
    usize,
    *mut c_void,
    usize,
    *mut c_void,
    *mut usize,
    *mut IRP,
) -> NtStatus;

/// PFN_WSK_CLOSE_SOCKET (wsk.h).
pub type PfnWskCloseSocket = unsafe extern "system" fn(*mut WSK_SOCKET, *mut IRP) -> NtStatus;

/// PFN_WSK_BIND (wsk.h): `(Socket, LocalAddress, Flags, Irp)`.
pub type PfnWskBind =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut SOCKADDR, u32, *mut IRP) -> NtStatus;

/// PFN_WSK_ACCEPT (wsk.h): `(ListenSocket, Flags, AcceptSocketContext, AcceptSocketDispatch,
/// LocalAddress, RemoteAddress, Irp)`.
pub type PfnWskAccept = unsafe extern "system" fn(
    *mut WSK_SOCKET,
    u32,
    *mut c_void,
    *const WSK_CLIENT_CONNECTION_DISPATCH,
    *mut SOCKADDR,
    *mut SOCKADDR,
    *mut IRP,
) -> NtStatus;

/// PFN_WSK_INSPECT_COMPLETE (wsk.h): `(ListenSocket, InspectID, Action, Irp)`.
pub type PfnWskInspectComplete = unsafe extern "system" fn(
    *mut WSK_SOCKET,
    *mut WSK_INSPECT_ID,
    WSK_INSPECT_ACTION,
    *mut IRP,
) -> NtStatus;

/// PFN_WSK_GET_LOCAL_ADDRESS and PFN_WSK_GET_REMOTE_ADDRESS (wsk.h): `(Socket, Address, Irp)`.
pub type PfnWskGetAddress =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut SOCKADDR, *mut IRP) -> NtStatus;

/// PFN_WSK_CONNECT (wsk.h): `(Socket, RemoteAddress, Flags, Irp)`.
pub type PfnWskConnect =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut SOCKADDR, u32, *mut IRP) -> NtStatus;

/// PFN_WSK_SEND and PFN_WSK_RECEIVE (wsk.h): `(Socket, Buffer, Flags, Irp)`.
pub type PfnWskSendReceive =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut WSK_BUF, u32, *mut IRP) -> NtStatus;

/// PFN_WSK_DISCONNECT (wsk.h): `(Socket, Buffer opt, Flags, Irp)`.
pub type PfnWskDisconnect =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut WSK_BUF, u32, *mut IRP) -> NtStatus;

/// PFN_WSK_RELEASE_DATA_INDICATION_LIST (wsk.h).
pub type PfnWskRelease =
    unsafe extern "system" fn(*mut WSK_SOCKET, *mut WSK_DATA_INDICATION) -> NtStatus;

/// PFN_WSK_ACCEPT_EVENT (wsk.h): `(SocketContext, Flags, LocalAddress, RemoteAddress,
/// AcceptSocket opt, *AcceptSocketContext, *AcceptSocketDispatch)`.
pub type PfnWskAcceptEvent = unsafe extern "system" fn(
    *mut c_void,
    u32,
    *mut SOCKADDR,
    *mut SOCKADDR,
    *mut WSK_SOCKET,
    *mut *mut c_void,
    *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NtStatus;

/// PFN_WSK_INSPECT_EVENT (wsk.h): `(SocketContext, LocalAddress, RemoteAddress, InspectID opt)`.
pub type PfnWskInspectEvent = unsafe extern "system" fn(
    *mut c_void,
    *mut SOCKADDR,
    *mut SOCKADDR,
    *mut WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION;

/// PFN_WSK_ABORT_EVENT (wsk.h): `(SocketContext, InspectID)`.
pub type PfnWskAbortEvent = unsafe extern "system" fn(*mut c_void, *mut WSK_INSPECT_ID) -> NtStatus;

/// PFN_WSK_RECEIVE_EVENT (wsk.h): `(SocketContext, Flags, DataIndication opt, BytesIndicated,
/// BytesAccepted)`.
pub type PfnWskReceiveEvent = unsafe extern "system" fn(
    *mut c_void,
    u32,
    *mut WSK_DATA_INDICATION,
    usize,
    *mut usize,
) -> NtStatus;

/// PFN_WSK_DISCONNECT_EVENT (wsk.h): `(SocketContext, Flags)`.
pub type PfnWskDisconnectEvent = unsafe extern "system" fn(*mut c_void, u32) -> NtStatus;

/// PFN_WSK_SEND_BACKLOG_EVENT (wsk.h): `(SocketContext, IdealBacklogSize)`.
pub type PfnWskSendBacklogEvent = unsafe extern "system" fn(*mut c_void, usize) -> NtStatus;

/// WSK_PROVIDER_DISPATCH (wsk.h): provider-level functions.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_DISPATCH {
    /// Provider's WSK version.
    pub Version: u16,
    /// Reserved.
    pub Reserved: u16,
    /// WskSocket.
    pub WskSocket: Option<PfnWskSocket>,
    /// WskSocketConnect (not used by this server).
    pub WskSocketConnect: Option<PfnNotUsed>,
    /// WskControlClient.
    pub WskControlClient: Option<PfnWskControlClient>,
    /// WskGetAddressInfo (not used).
    pub WskGetAddressInfo: Option<PfnNotUsed>,
    /// WskFreeAddressInfo (not used).
    pub WskFreeAddressInfo: Option<PfnNotUsed>,
    /// WskGetNameInfo (not used).
    pub WskGetNameInfo: Option<PfnNotUsed>,
}

/// WSK_PROVIDER_BASIC_DISPATCH (wsk.h): the head of every socket dispatch table.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_BASIC_DISPATCH {
    /// WskControlSocket.
    pub WskControlSocket: Option<PfnWskControlSocket>,
    /// WskCloseSocket.
    pub WskCloseSocket: Option<PfnWskCloseSocket>,
}

/// WSK_PROVIDER_LISTEN_DISPATCH (wsk.h).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_LISTEN_DISPATCH {
    /// Basic functions.
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    /// WskBind.
    pub WskBind: Option<PfnWskBind>,
    /// WskAccept.
    pub WskAccept: Option<PfnWskAccept>,
    /// WskInspectComplete.
    pub WskInspectComplete: Option<PfnWskInspectComplete>,
    /// WskGetLocalAddress.
    pub WskGetLocalAddress: Option<PfnWskGetAddress>,
}

/// WSK_PROVIDER_CONNECTION_DISPATCH (wsk.h). Nothing after `WskRelease` may be called: older
/// systems end the table there.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_CONNECTION_DISPATCH {
    /// Basic functions.
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    /// WskBind.
    pub WskBind: Option<PfnWskBind>,
    /// WskConnect.
    pub WskConnect: Option<PfnWskConnect>,
    /// WskGetLocalAddress.
    pub WskGetLocalAddress: Option<PfnWskGetAddress>,
    /// WskGetRemoteAddress.
    pub WskGetRemoteAddress: Option<PfnWskGetAddress>,
    /// WskSend.
    pub WskSend: Option<PfnWskSendReceive>,
    /// WskReceive.
    pub WskReceive: Option<PfnWskSendReceive>,
    /// WskDisconnect.
    pub WskDisconnect: Option<PfnWskDisconnect>,
    /// WskRelease.
    pub WskRelease: Option<PfnWskRelease>,
    /// WskConnectEx (not used; may be absent on older systems).
    pub WskConnectEx: Option<PfnNotUsed>,
    /// WskSendEx (not used).
    pub WskSendEx: Option<PfnNotUsed>,
    /// WskReceiveEx (not used).
    pub WskReceiveEx: Option<PfnNotUsed>,
}

/// WSK_CLIENT_LISTEN_DISPATCH (wsk.h): the client's callbacks for a listening socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_LISTEN_DISPATCH {
    /// WskAcceptEvent.
    pub WskAcceptEvent: Option<PfnWskAcceptEvent>,
    /// WskInspectEvent.
    pub WskInspectEvent: Option<PfnWskInspectEvent>,
    /// WskAbortEvent.
    pub WskAbortEvent: Option<PfnWskAbortEvent>,
}

/// WSK_CLIENT_CONNECTION_DISPATCH (wsk.h): the client's callbacks for a connection socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_CONNECTION_DISPATCH {
    /// WskReceiveEvent.
    pub WskReceiveEvent: Option<PfnWskReceiveEvent>,
    /// WskDisconnectEvent.
    pub WskDisconnectEvent: Option<PfnWskDisconnectEvent>,
    /// WskSendBacklogEvent.
    pub WskSendBacklogEvent: Option<PfnWskSendBacklogEvent>,
}
