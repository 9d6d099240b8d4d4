//! The owned listening socket ([`ListenSocket`]), and what both socket kinds share (the close
//! through the basic dispatch). A listening socket, like a connection socket (`connection.rs`),
//! is closed exactly once: the close methods take `self`, and neither type is `Clone`, so use
//! after close does not compile.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::ptr::NonNull;

use wsk::{
    NtStatus, PfnIoCompletionRoutine, SO_WSK_EVENT_CALLBACK, SOCKADDR, SOCKADDR_STORAGE,
    SOL_SOCKET, WSK_CLIENT_LISTEN_DISPATCH, WSK_CONTROL_SOCKET_TYPE, WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_DISABLE, WSK_FLAG_LISTEN_SOCKET, WSK_INSPECT_ACTION, WSK_INSPECT_ID,
    WSK_PROVIDER_LISTEN_DISPATCH, WSK_SOCKET,
};

use super::{DriverIrp, Provider, sync};
use crate::kernel;

pub(super) fn missing() -> NtStatus {
    NtStatus::NOT_SUPPORTED
}

/// A listening socket (WSK_FLAG_LISTEN_SOCKET).
///
/// # Invariants
/// `raw` is a live listening socket of a captured provider, owned here, closed once by
/// [`ListenSocket::close`] or [`ListenSocket::close_async`]. `closer` is allocated before the
/// socket exists, so that the waited close never needs memory it may not get: a socket left open
/// would make WskDeregister wait forever (WSK-FACTS §7). `control` is the prepared IRP of
/// [`ListenSocket::disable_event_waited`], so that the hand-over's proof allocates nothing.
#[derive(Debug)]
pub struct ListenSocket {
    raw: NonNull<WSK_SOCKET>,
    closer: sync::Prepared,
    control: sync::Prepared,
}

// SAFETY: a WSK socket may be used from any thread (callers serialise calls on it).
unsafe impl Send for ListenSocket {}
// SAFETY: `&ListenSocket` only gives out calls through the provider's dispatch table, which the
// provider allows from any thread (WSK-FACTS §1); `closer` is used only by the one closing call,
// and `control` only by `disable_event_waited`, whose callers make one call at a time.
unsafe impl Sync for ListenSocket {}

impl ListenSocket {
    /// WskSocket(LISTEN, TCP) with `context` and the client's listen callbacks. IRQL: PASSIVE.
    ///
    /// # Errors
    /// What WskSocket completes with.
    ///
    /// # Safety
    /// `context` must stay valid for every callback until the socket is closed.
    pub unsafe fn create(
        provider: Provider,
        family: u16,
        context: *mut c_void,
        callbacks: &'static WSK_CLIENT_LISTEN_DISPATCH,
    ) -> Result<Self, NtStatus> {
        let wsk_socket = provider.dispatch().WskSocket.ok_or_else(missing)?;
        let client = provider.client();
        let closer = sync::Prepared::new()?;
        let control = sync::Prepared::new()?;
        let information = sync::call(|irp| {
            // SAFETY: documented WskSocket arguments (WSK-FACTS §1); the dispatch is static.
            unsafe {
                wsk_socket(
                    client,
                    family,
                    wsk::SOCK_STREAM,
                    wsk::IPPROTO_TCP,
                    WSK_FLAG_LISTEN_SOCKET,
                    context,
                    core::ptr::from_ref(callbacks).cast(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            }
        })?;
        // INVARIANT: WskSocket's Information is the new listening socket, which nobody else owns;
        // `closer` and `control` were allocated before it existed.
        NonNull::new(information as *mut WSK_SOCKET)
            .map(|raw| Self {
                raw,
                closer,
                control,
            })
            .ok_or(NtStatus::UNSUCCESSFUL)
    }

    fn dispatch(&self) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
        // SAFETY: the socket is live (type invariant), so its WSK_SOCKET is readable.
        let dispatch = unsafe { (*self.raw.as_ptr()).Dispatch };
        // SAFETY: a listening socket's Dispatch is the provider's listen table, which lives as long
        // as the provider.
        unsafe { &*dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>() }
    }

    /// WskControlSocket(WskSetOption) with a ULONG value, waited for. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// What the provider completes with.
    pub fn set_option(&self, level: u32, code: u32, value: u32) -> Result<(), NtStatus> {
        let control = self.dispatch().Basic.WskControlSocket.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let mut value = value;
        let input = (&raw mut value).cast();
        // SAFETY: WskControlSocket(WskSetOption) per WSK-FACTS §1: `raw` is live (type invariant),
        // the input buffer is `value`'s 4 bytes and outlives the call (sync::call waits), no output
        // buffer.
        sync::call(|irp| unsafe {
            control(
                raw,
                WSK_CONTROL_SOCKET_TYPE::SET_OPTION,
                code,
                level,
                4,
                input,
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        })
        .map(|_| ())
    }

    /// Enables (or, with `WSK_EVENT_DISABLE`, disables one) event callbacks: SO_WSK_EVENT_CALLBACK
    /// without an IRP (WSK-FACTS §5). Returns SUCCESS, or EVENT_PENDING when disabling while a
    /// callback runs. IRQL: <= DISPATCH_LEVEL.
    #[must_use]
    pub fn set_events(&self, mask: u32) -> NtStatus {
        let Some(control) = self.dispatch().Basic.WskControlSocket else {
            return missing();
        };
        let mut value = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: kernel::npi_wsk_interface_id(),
            EventMask: mask,
        };
        // SAFETY: WskControlSocket(SO_WSK_EVENT_CALLBACK) without an IRP (WSK-FACTS §5): `raw` is
        // live (type invariant) and the input buffer is `value`, which the provider reads during
        // the call only.
        unsafe {
            control(
                self.raw.as_ptr(),
                WSK_CONTROL_SOCKET_TYPE::SET_OPTION,
                SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET,
                size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
                (&raw mut value).cast(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        }
    }

    /// Disables one event callback (SO_WSK_EVENT_CALLBACK with `event | WSK_EVENT_DISABLE`) with
    /// an IRP, and waits: the IRP completes at once when no callback of that event runs, or once
    /// the running one returned (WSK-FACTS §5). Either way, when this returns STATUS_SUCCESS no
    /// such callback runs, and none starts until the event is enabled again. Allocates nothing.
    /// One call at a time per socket (the prepared IRP is reused): the listener makes it from its
    /// worker only. IRQL: PASSIVE_LEVEL.
    #[must_use]
    pub fn disable_event_waited(&self, event: u32) -> NtStatus {
        let Some(control) = self.dispatch().Basic.WskControlSocket else {
            return missing();
        };
        let raw = self.raw.as_ptr();
        let mut value = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: kernel::npi_wsk_interface_id(),
            EventMask: event | WSK_EVENT_DISABLE,
        };
        let input = (&raw mut value).cast();
        // SAFETY: WskControlSocket(SO_WSK_EVENT_CALLBACK) with an IRP (WSK-FACTS §5): `raw` is
        // live (type invariant), the input buffer is `value`, which outlives the call (`call`
        // waits for the IRP), no output buffer.
        let result = self.control.call(|irp| unsafe {
            control(
                raw,
                WSK_CONTROL_SOCKET_TYPE::SET_OPTION,
                SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET,
                size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
                input,
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        });
        result.map_or_else(|status| status, |_| NtStatus::SUCCESS)
    }

    /// WskBind, which also starts listening (WSK-FACTS §3). IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// What WskBind completes with (e.g. STATUS_ADDRESS_ALREADY_ASSOCIATED).
    pub fn bind(&self, address: SocketAddr) -> Result<(), NtStatus> {
        let bind = self.dispatch().WskBind.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let mut storage = SOCKADDR_STORAGE::from(address);
        let ptr = storage.as_mut_ptr();
        // SAFETY: WskBind (WSK-FACTS §3): `raw` is live (type invariant), `ptr` points at a
        // SOCKADDR_STORAGE holding the address, which outlives the call (sync::call waits).
        sync::call(|irp| unsafe { bind(raw, ptr, 0, irp) }).map(|_| ())
    }

    /// WskGetLocalAddress. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// What the provider completes with, or STATUS_INVALID_PARAMETER for a family it cannot read.
    pub fn local_address(&self) -> Result<SocketAddr, NtStatus> {
        let get = self.dispatch().WskGetLocalAddress.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let mut storage = SOCKADDR_STORAGE::zeroed();
        let ptr = storage.as_mut_ptr();
        // SAFETY: WskGetLocalAddress (WSK-FACTS §1): `raw` is live (type invariant), `ptr` points
        // at a SOCKADDR_STORAGE the provider may fill, which outlives the call (sync::call waits).
        sync::call(|irp| unsafe { get(raw, ptr, irp) })?;
        storage
            .to_socket_addr()
            .map_err(|_| NtStatus::INVALID_PARAMETER)
    }

    /// WskAccept with a caller-allocated IRP. The completion routine receives the PWSK_SOCKET in
    /// IoStatus.Information (WSK-FACTS §3). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE when `irp` is busy.
    ///
    /// # Safety
    /// `routine(context)` as for [`DriverIrp::submit`]; `local`/`remote` must be nonpaged
    /// SOCKADDR_STORAGE buffers (or NULL) alive until completion; no other call on this socket may
    /// be in progress concurrently with a close.
    pub unsafe fn accept(
        &self,
        irp: &DriverIrp,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
        local: *mut SOCKADDR,
        remote: *mut SOCKADDR,
    ) -> Result<(), NtStatus> {
        let accept = self.dispatch().WskAccept.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let call = |irp: *mut wsk::IRP| {
            // SAFETY: WskAccept (WSK-FACTS §1, §3): `raw` is a live listening socket (type
            // invariant), the address buffers stay valid until completion (the caller's contract),
            // and `irp` is the IRP submit hands over with our completion routine set.
            unsafe {
                accept(
                    raw,
                    0,
                    core::ptr::null_mut(),
                    core::ptr::null(),
                    local,
                    remote,
                    irp,
                )
            }
        };
        // SAFETY: the caller upholds submit's contract for routine and context.
        unsafe { irp.submit(routine, context, call) }
    }

    /// WskInspectComplete. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE when `irp` is busy.
    ///
    /// # Safety
    /// As for [`ListenSocket::accept`]; `id` is the driver's copy of the pended ID.
    pub unsafe fn inspect_complete(
        &self,
        irp: &DriverIrp,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
        id: *mut WSK_INSPECT_ID,
        action: WSK_INSPECT_ACTION,
    ) -> Result<(), NtStatus> {
        let complete = self.dispatch().WskInspectComplete.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let call = |irp: *mut wsk::IRP| {
            // SAFETY: WskInspectComplete (WSK-FACTS §6): `raw` is a live listening socket (type
            // invariant), `id` stays valid until completion (the caller's contract), and `irp` is
            // the IRP submit hands over.
            unsafe { complete(raw, id, action, irp) }
        };
        // SAFETY: the caller upholds submit's contract for routine and context.
        unsafe { irp.submit(routine, context, call) }
    }

    /// WskCloseSocket, waited for: pending accepts complete with STATUS_CANCELLED first
    /// (WSK-FACTS §7). Allocates nothing (the IRP was prepared with the socket). IRQL:
    /// PASSIVE_LEVEL.
    pub fn close(self) {
        let Some(close) = self.dispatch().Basic.WskCloseSocket else {
            return;
        };
        let raw = self.raw.as_ptr();
        // SAFETY: consumed: no other call can follow. Close never fails (WSK-FACTS §7).
        let _ = self.closer.call(|irp| unsafe { close(raw, irp) });
    }

    /// WskCloseSocket without waiting. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// Gives the socket back with STATUS_INVALID_DEVICE_STATE when `irp` is busy.
    ///
    /// # Safety
    /// As for [`DriverIrp::submit`].
    pub unsafe fn close_async(
        self,
        irp: &DriverIrp,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
    ) -> Result<(), (Self, NtStatus)> {
        let basic = &self.dispatch().Basic;
        // SAFETY: the caller's guarantees; the socket is consumed by a successful submission.
        unsafe { submit_close(self.raw.as_ptr(), basic, irp, routine, context) }
            .map_err(|status| (self, status))
    }
}

/// WskCloseSocket through the basic dispatch every socket table starts with.
///
/// # Safety
/// `raw` is a live socket of the provider whose table `basic` is; as for [`DriverIrp::submit`].
pub(super) unsafe fn submit_close(
    raw: *mut WSK_SOCKET,
    basic: &wsk::WSK_PROVIDER_BASIC_DISPATCH,
    irp: &DriverIrp,
    routine: PfnIoCompletionRoutine,
    context: *mut c_void,
) -> Result<(), NtStatus> {
    let close = basic.WskCloseSocket.ok_or_else(missing)?;
    let call = |irp: *mut wsk::IRP| {
        // SAFETY: WskCloseSocket (WSK-FACTS §7): `raw` is a live socket of this provider and this
        // is its one close (the caller's contract); `irp` is the IRP submit hands over.
        unsafe { close(raw, irp) }
    };
    // SAFETY: the caller upholds submit's contract for routine and context.
    unsafe { irp.submit(routine, context, call) }
}
