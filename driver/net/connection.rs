//! An owned accepted connection socket ([`ConnSocket`]), the borrowed handle the worker's calls
//! use ([`ConnSocketRef`]), and the connection dispatch accepted sockets get.

use core::ffi::c_void;
use core::ptr::NonNull;

use wsk::{
    NtStatus, PfnIoCompletionRoutine, WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_FLAG_ABORTIVE,
    WSK_PROVIDER_CONNECTION_DISPATCH, WSK_SOCKET,
};

use super::DriverIrp;
use super::socket::{missing, submit_close};

/// An accepted connection socket.
///
/// # Invariants
/// `raw` is a live connection socket handed to the driver (WskAccept's Information or
/// WskAcceptEvent's AcceptSocket), owned here, closed once by [`ConnSocket::close`].
#[derive(Debug)]
pub struct ConnSocket {
    raw: NonNull<WSK_SOCKET>,
}

// SAFETY: a WSK socket may be used from any thread.
unsafe impl Send for ConnSocket {}

impl ConnSocket {
    /// Takes ownership of an accepted socket.
    ///
    /// # Safety
    /// `raw` must be an accepted connection socket nobody else owns.
    #[must_use]
    pub unsafe fn from_accepted(raw: *mut WSK_SOCKET) -> Option<Self> {
        // INVARIANT: by the caller's promise, an accepted connection socket nobody else owns.
        NonNull::new(raw).map(|raw| Self { raw })
    }

    /// Gives up ownership without closing (a socket the provider closes itself, e.g. one an accept
    /// event declined, or one parked for the worker to close).
    #[must_use]
    pub fn into_raw(self) -> *mut WSK_SOCKET {
        self.raw.as_ptr()
    }

    /// A borrowed handle for calls made while the socket stays owned (see [`ConnSocketRef`]).
    #[must_use]
    pub fn by_ref(&self) -> ConnSocketRef {
        ConnSocketRef { raw: self.raw }
    }

    /// WskCloseSocket: pending IRPs complete with STATUS_CANCELLED; a connection not disconnected
    /// is aborted (RST) (WSK-FACTS §7). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// Gives the socket back when `irp` is busy.
    ///
    /// # Safety
    /// As for [`DriverIrp::submit`]; no other call on the socket may be in progress.
    pub unsafe fn close(
        self,
        irp: &DriverIrp,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
    ) -> Result<(), (Self, NtStatus)> {
        let basic = &self.by_ref().dispatch().Basic;
        // SAFETY: the caller's guarantees; the socket is consumed by a successful submission.
        unsafe { submit_close(self.raw.as_ptr(), basic, irp, routine, context) }
            .map_err(|status| (self, status))
    }
}

/// A borrowed connection socket for one call.
///
/// # Invariants
/// Whoever makes one guarantees the owning [`ConnSocket`] is not closed before the
/// call it is used for has been made (in wskaccept only the worker makes calls and closes).
#[derive(Clone, Copy, Debug)]
pub struct ConnSocketRef {
    raw: NonNull<WSK_SOCKET>,
}

impl ConnSocketRef {
    fn dispatch(self) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
        // SAFETY: the socket is live (type invariant), so its WSK_SOCKET is readable.
        let dispatch = unsafe { (*self.raw.as_ptr()).Dispatch };
        // SAFETY: a connection socket's Dispatch is the provider's connection table.
        unsafe { &*dispatch.cast::<WSK_PROVIDER_CONNECTION_DISPATCH>() }
    }

    /// WskReceive into `buffer` (completes with the byte count, 0 on a graceful close, or an
    /// error on a reset) or, with `send`, WskSend of `buffer` (completes when every byte is in
    /// the transport, so a peer that does not read keeps it pending). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE when `irp` is busy.
    ///
    /// # Safety
    /// As for [`DriverIrp::submit`]; `buffer` (and its MDL, and the memory it describes) must stay
    /// valid, and unchanged for a send, until completion.
    pub unsafe fn transfer(
        self,
        send: bool,
        irp: &DriverIrp,
        buffer: *mut WSK_BUF,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
    ) -> Result<(), NtStatus> {
        let dispatch = self.dispatch();
        let function = if send {
            dispatch.WskSend
        } else {
            dispatch.WskReceive
        };
        let function = function.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let call = |irp: *mut wsk::IRP| {
            // SAFETY: WskSend / WskReceive (WSK-FACTS §1): `raw` is a live connection socket (type
            // invariant), `buffer` and its MDL stay valid until completion (the caller's
            // contract), flags 0, and `irp` is the IRP submit hands over.
            unsafe { function(raw, buffer, 0, irp) }
        };
        // SAFETY: the caller upholds submit's contract for routine and context.
        unsafe { irp.submit(routine, context, call) }
    }

    /// WskDisconnect, graceful (FIN) or abortive (RST). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_DEVICE_STATE when `irp` is busy.
    ///
    /// # Safety
    /// As for [`DriverIrp::submit`].
    pub unsafe fn disconnect(
        self,
        irp: &DriverIrp,
        abortive: bool,
        routine: PfnIoCompletionRoutine,
        context: *mut c_void,
    ) -> Result<(), NtStatus> {
        let disconnect = self.dispatch().WskDisconnect.ok_or_else(missing)?;
        let raw = self.raw.as_ptr();
        let flags = if abortive { WSK_FLAG_ABORTIVE } else { 0 };
        let call = |irp: *mut wsk::IRP| {
            // SAFETY: WskDisconnect (WSK-FACTS §1): `raw` is a live connection socket (type
            // invariant), a NULL buffer is allowed (no final data), and `irp` is the IRP submit
            // hands over.
            unsafe { disconnect(raw, core::ptr::null_mut(), flags, irp) }
        };
        // SAFETY: the caller upholds submit's contract for routine and context.
        unsafe { irp.submit(routine, context, call) }
    }
}

/// The client connection dispatch used for accepted sockets: no callbacks (peer closes are seen
/// by a pending receive, which has no enable race, see `conn.rs`).
pub static NO_CONNECTION_CALLBACKS: WSK_CLIENT_CONNECTION_DISPATCH =
    WSK_CLIENT_CONNECTION_DISPATCH {
        WskReceiveEvent: None,
        WskDisconnectEvent: None,
        WskSendBacklogEvent: None,
    };
