//! A listening socket's state ([`Listening`]): the OS socket before and after bind, the queued
//! WskAccept requests, the connections the OS accepted that no client has taken yet, and a
//! pended conditional-accept request ([`Inspection`]).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::net::SocketAddr;
use std::time::Duration;

use wsk::{NtStatus, SOCKADDR, WSK_INSPECT_ID};

use super::translate::{self, status_of};
use crate::irp::IrpRef;

/// A connection the OS accepted that no client has taken yet (still "in the backlog").
pub(crate) struct Incoming {
    pub(super) stream: std::net::TcpStream,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
}

/// A queued WskAccept.
///
/// # Invariants
/// `local_out` and `remote_out` are NULL or writable SOCKADDR_STORAGE-sized buffers, and
/// `dispatch` NULL or a WSK_CLIENT_CONNECTION_DISPATCH, that the driver keeps valid until `irp`
/// completes (WskAccept's # Safety: PFN_WSK_ACCEPT).
pub(super) struct AcceptRequest {
    pub(super) irp: IrpRef,
    pub(super) context: *mut c_void,
    pub(super) dispatch: *const c_void,
    pub(super) local_out: *mut SOCKADDR,
    pub(super) remote_out: *mut SOCKADDR,
}

/// A conditional-accept request the client answered with WskInspectPend (WSK-FACTS §6).
pub(crate) struct Inspection {
    pub(super) listen_key: usize,
    pub(super) id: WSK_INSPECT_ID,
    pub(super) stream: mio::net::TcpStream,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
}

/// A listening socket's state (the flags are independent facts).
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Listening {
    pub(super) family: u16,
    /// The OS socket until bind.
    pub(super) unbound: Option<socket2::Socket>,
    pub(super) listener: Option<mio::net::TcpListener>,
    pub(super) exclusive: bool,
    pub(super) conditional: bool,
    pub(super) accept_irps: VecDeque<AcceptRequest>,
    pub(super) ready: VecDeque<Incoming>,
    pub(super) broken: bool,
    /// WskCloseSocket was called: nothing more is delivered until the close finishes.
    pub(super) closed: bool,
    /// The event loop last stopped serving this listener for want of a consumer (no accept IRP,
    /// no accept event): the next WskAccept must have it served again. Set and read under this
    /// socket's lock, with the IRP queue, so no IRP is left waiting beside a waiting connection.
    pub(super) starved: bool,
    /// An `accept4` saw the OS backlog empty and the event loop has not begun serving this
    /// listener since: neither a WskAccept completing inline nor the loop's next look in the same
    /// service asks the OS again (it would answer EAGAIN). Any later arrival is a readiness edge,
    /// and the loop clears this when it begins serving, so no arrival is missed: an IRP waits
    /// queued for the loop, as it would have anyway.
    pub(super) quiet: bool,
    /// The address every accepted connection has as its local address, when the listener is
    /// bound to one (not a wildcard): no getsockname per connection then.
    pub(super) fixed_local: Option<SocketAddr>,
}

// SAFETY: the raw pointers a listening socket holds (the out-buffers and dispatch of queued
// WskAccept requests) belong to the driver, which keeps them valid and usable from any thread
// until the IRP completes (AcceptRequest invariants); the state is only reached through its lock.
unsafe impl Send for Listening {}

/// Closes an OS connection abortively.
pub(super) fn reset(stream: &std::net::TcpStream) {
    // SO_LINGER {1, 0}: close sends RST (what the peer of a rejected connection sees).
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

impl Listening {
    pub(crate) fn new(family: u16) -> Result<Self, NtStatus> {
        let domain = translate::domain(family).ok_or(NtStatus::INVALID_PARAMETER)?;
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
                .map_err(|e| status_of(&e))?;
        // Linux's SO_REUSEADDR on a listener still refuses a second listener on the same port
        // (like SO_EXCLUSIVEADDRUSE) and only lets TIME_WAIT leftovers be ignored.
        socket.set_reuse_address(true).map_err(|e| status_of(&e))?;
        if family == wsk::AF_INET6 {
            // Windows' default for AF_INET6 sockets is IPV6_V6ONLY on; Linux's is off.
            socket.set_only_v6(true).map_err(|e| status_of(&e))?;
        }
        socket.set_nonblocking(true).map_err(|e| status_of(&e))?;
        Ok(Self {
            family,
            unbound: Some(socket),
            listener: None,
            exclusive: false,
            conditional: false,
            accept_irps: VecDeque::new(),
            ready: VecDeque::new(),
            broken: false,
            closed: false,
            starved: false,
            quiet: false,
            fixed_local: None,
        })
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.listener.is_some()
    }

    pub(crate) fn local_address(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Options set before bind: SO_EXCLUSIVEADDRUSE, SO_REUSEADDR, IPV6_V6ONLY,
    /// SO_CONDITIONAL_ACCEPT.
    pub(crate) fn set_option(&mut self, level: u32, code: u32, value: u32) -> NtStatus {
        let Some(socket) = &self.unbound else {
            return NtStatus::INVALID_DEVICE_STATE;
        };
        match (level, code) {
            (wsk::SOL_SOCKET, wsk::SO_EXCLUSIVEADDRUSE) => {
                self.exclusive = value != 0;
                NtStatus::SUCCESS
            }
            (wsk::SOL_SOCKET, wsk::SO_CONDITIONAL_ACCEPT) => {
                self.conditional = value != 0;
                NtStatus::SUCCESS
            }
            (wsk::IPPROTO_IPV6, wsk::IPV6_V6ONLY) if self.family == wsk::AF_INET6 => socket
                .set_only_v6(value != 0)
                .map_or_else(|e| status_of(&e), |()| NtStatus::SUCCESS),
            // Windows' SO_REUSEADDR would let another socket steal the port; the host does not
            // emulate that (nor any other option) and says so.
            _ => NtStatus::NOT_SUPPORTED,
        }
    }

    /// Cancels everything at close: returns the IRPs to complete with STATUS_CANCELLED; resets
    /// connections nobody took (the pended inspections are the provider's: `conditional`).
    pub(crate) fn shut_down(&mut self, registry: Option<&mio::Registry>) -> Vec<IrpRef> {
        if let (Some(mut listener), Some(registry)) = (self.listener.take(), registry) {
            let _ = registry.deregister(&mut listener);
        }
        for incoming in self.ready.drain(..) {
            reset(&incoming.stream);
        }
        self.accept_irps.drain(..).map(|r| r.irp).collect()
    }

    /// The listening socket no longer works: stop listening and reset what waits.
    pub(super) fn break_down(&mut self, state_registry: Option<&mio::Registry>) {
        self.broken = true;
        if let (Some(mut listener), Some(registry)) = (self.listener.take(), state_registry) {
            let _ = registry.deregister(&mut listener);
        }
        for incoming in self.ready.drain(..) {
            reset(&incoming.stream);
        }
    }
}
