//! Connection-oriented sockets: WskSend, WskReceive, WskDisconnect, WskDisconnectEvent and
//! WskReceiveEvent over a real TCP stream. Received bytes are buffered (like the transport's
//! receive window) up to `RX_WINDOW`, then reading stops until the client drains them.
//!
//! A graceful WskDisconnect completes when the peer has acknowledged our FIN — on Linux, when
//! TCP_INFO's state has left FIN_WAIT1 (or LAST_ACK / CLOSING) — not when `shutdown()` returns,
//! so a disconnect takes as long as the peer makes it. With [`set_peers_vanished`] on, the peers
//! of connections accepted from then on have vanished: the FIN is never acknowledged and the
//! disconnect stays pending until the socket is closed (Windows would wait out its retransmission
//! timeout: minutes).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::{Interest, Token};
use wsk::{
    IRP, NtStatus, SOCKADDR, WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION,
    WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_FLAG_ABORTIVE, WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_SOCKET,
};

use super::{CallGuard, Kind, State, finish, live, post, state, take_irp};
use crate::irp::{self, IrpRef};
use crate::irql;
use crate::verifier::{Rule, violation};

const RX_WINDOW: usize = 64 * 1024;

static PEERS_VANISHED: AtomicBool = AtomicBool::new(false);

/// Fault mode: the peers of connections accepted from now on have vanished (their host is gone:
/// nothing they would send arrives, nothing we send is acknowledged). A graceful WskDisconnect on
/// such a connection never completes by itself; WskCloseSocket cancels it and aborts the
/// connection (WSK-FACTS §7).
pub fn set_peers_vanished(vanished: bool) {
    PEERS_VANISHED.store(vanished, Ordering::SeqCst);
}

/// Whether the peer has acknowledged our FIN: TCP_INFO's state is past FIN_WAIT1, LAST_ACK and
/// CLOSING (the states in which our FIN is still unacknowledged).
#[cfg(target_os = "linux")]
fn fin_acknowledged(stream: &mio::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    const TCP_FIN_WAIT1: u8 = 4;
    const TCP_LAST_ACK: u8 = 9;
    const TCP_CLOSING: u8 = 11;
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).unwrap_or(0);
    // SAFETY: a live socket descriptor, and a buffer of `length` writable bytes.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut length,
        )
    };
    result != 0 || !matches!(info.tcpi_state, TCP_FIN_WAIT1 | TCP_LAST_ACK | TCP_CLOSING)
}

#[cfg(not(target_os = "linux"))]
fn fin_acknowledged(_stream: &mio::net::TcpStream) -> bool {
    true
}

/// The connection dispatch table the host hands out.
pub(crate) static CONNECTION_DISPATCH: wsk::WSK_PROVIDER_CONNECTION_DISPATCH =
    wsk::WSK_PROVIDER_CONNECTION_DISPATCH {
        Basic: wsk::WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(super::socket::wsk_control_socket),
            WskCloseSocket: Some(super::socket::wsk_close_socket),
        },
        WskBind: Some(wsk_bind_connection),
        WskConnect: Some(wsk_connect),
        WskGetLocalAddress: Some(super::socket::wsk_get_local_address),
        WskGetRemoteAddress: Some(super::socket::wsk_get_remote_address),
        WskSend: Some(wsk_send),
        WskReceive: Some(wsk_receive),
        WskDisconnect: Some(wsk_disconnect),
        WskRelease: Some(wsk_release),
        WskConnectEx: None,
        WskSendEx: None,
        WskReceiveEx: None,
    };

struct Receive {
    irp: IrpRef,
    mdl: *mut wsk::MDL,
    offset: u32,
    length: usize,
}

struct Send {
    irp: IrpRef,
    data: Vec<u8>,
    written: usize,
}

/// A connection socket's state (the flags mirror TCP's: each is an independent fact).
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Connection {
    stream: Option<mio::net::TcpStream>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    rx: Vec<u8>,
    eof: bool,
    reset: bool,
    receives: VecDeque<Receive>,
    sends: VecDeque<Send>,
    disconnect: Option<IrpRef>,
    /// A graceful disconnect whose FIN is sent and not yet acknowledged.
    fin_wait: Option<IrpRef>,
    /// The peer has vanished ([`set_peers_vanished`]): our FIN is never acknowledged.
    vanished: bool,
    shutdown_sent: bool,
    disconnect_indicated: bool,
    indications_paused: bool,
}

fn abortive_drop(stream: mio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

impl Connection {
    pub(crate) fn unconnected(family: u16) -> Option<Self> {
        super::translate::domain(family)?;
        Some(Self::with(None, None, None))
    }

    fn with(
        stream: Option<mio::net::TcpStream>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        Self {
            stream,
            local,
            remote,
            rx: Vec::new(),
            eof: false,
            reset: false,
            receives: VecDeque::new(),
            sends: VecDeque::new(),
            disconnect: None,
            fin_wait: None,
            vanished: false,
            shutdown_sent: false,
            disconnect_indicated: false,
            indications_paused: false,
        }
    }

    /// A connection the listener accepted. `reset_now` models a peer that resets it at once.
    pub(crate) fn accepted(
        stream: std::net::TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
        reset_now: bool,
    ) -> Self {
        let _ = stream.set_nonblocking(true);
        let stream = mio::net::TcpStream::from_std(stream);
        if reset_now {
            abortive_drop(stream);
            let mut connection = Self::with(None, Some(local), Some(remote));
            connection.reset = true;
            return connection;
        }
        let mut connection = Self::with(Some(stream), Some(local), Some(remote));
        connection.vanished = PEERS_VANISHED.load(Ordering::SeqCst);
        connection
    }

    /// Whether the provider thread must look again soon: a FIN waits for its acknowledgement,
    /// which no readiness event announces.
    pub(crate) fn awaits_fin_ack(&self) -> bool {
        self.fin_wait.is_some() && !self.vanished && !self.reset
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.remote.is_some()
    }

    pub(crate) fn local_address(&self) -> Option<SocketAddr> {
        self.local
    }

    pub(crate) fn remote_address(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Close: everything pending is cancelled; a connection that was not disconnected gracefully
    /// by the client is aborted (WSK-FACTS §7).
    pub(crate) fn shut_down(mut self, state: &State) -> Vec<IrpRef> {
        if let Some(mut stream) = self.stream.take() {
            if let Some(registry) = state.registry.as_ref() {
                let _ = registry.deregister(&mut stream);
            }
            // Fully disconnected only once our FIN was acknowledged; otherwise close aborts.
            if self.shutdown_sent && self.fin_wait.is_none() {
                drop(stream);
            } else {
                abortive_drop(stream);
            }
        }
        let mut irps: Vec<IrpRef> = self.receives.drain(..).map(|r| r.irp).collect();
        irps.extend(self.sends.drain(..).map(|s| s.irp));
        irps.extend(self.disconnect.take());
        irps.extend(self.fin_wait.take());
        irps
    }

    /// The provider resets a connection the client never owned (a rejected accept event).
    pub(crate) fn abort(mut self, state: &State) {
        if let Some(mut stream) = self.stream.take() {
            if let Some(registry) = state.registry.as_ref() {
                let _ = registry.deregister(&mut stream);
            }
            abortive_drop(stream);
        }
    }

    /// The event callback to make now, if any (the disconnect event wins over data).
    fn next_indication(&mut self, events: u32) -> Option<Indication> {
        if (self.eof || self.reset)
            && !self.disconnect_indicated
            && events & WSK_EVENT_DISCONNECT != 0
        {
            self.disconnect_indicated = true;
            let abortive = if self.reset { WSK_FLAG_ABORTIVE } else { 0 };
            return Some(Indication::Disconnect {
                flags: abortive | WSK_FLAG_AT_DISPATCH_LEVEL,
            });
        }
        (events & WSK_EVENT_RECEIVE != 0
            && self.receives.is_empty()
            && !self.rx.is_empty()
            && !self.indications_paused)
            .then(|| Indication::Receive {
                data: self.rx.clone(),
            })
    }

    /// Moves bytes between the OS and the queues; returns the IRPs to complete.
    fn pump(&mut self, done: &mut Vec<(IrpRef, NtStatus, usize)>) {
        if let Some(stream) = self.stream.as_mut() {
            let mut chunk = [0u8; 16 * 1024];
            while !self.eof && !self.reset && self.rx.len() < RX_WINDOW {
                let room = (RX_WINDOW - self.rx.len()).min(chunk.len());
                match stream.read(&mut chunk[..room]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => self.reset = true,
                }
            }
            while let Some(send) = self.sends.front_mut() {
                match stream.write(&send.data[send.written..]) {
                    Ok(n) => {
                        send.written += n;
                        if send.written == send.data.len() {
                            let send = self.sends.pop_front().expect("front exists");
                            done.push((send.irp, NtStatus::SUCCESS, send.data.len()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.reset = true;
                        break;
                    }
                }
            }
            if self.sends.is_empty()
                && let Some(irp) = self.disconnect.take()
            {
                // A vanished peer would never see the FIN: it is not sent to the real one.
                if !self.vanished {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                self.shutdown_sent = true;
                self.fin_wait = Some(irp);
            }
            // The disconnect completes when the peer acknowledged the FIN, not when it was sent.
            if !self.vanished
                && !self.reset
                && self.fin_wait.is_some()
                && fin_acknowledged(stream)
                && let Some(irp) = self.fin_wait.take()
            {
                done.push((irp, NtStatus::SUCCESS, 0));
            }
        }
        if self.reset {
            for send in self.sends.drain(..) {
                done.push((send.irp, NtStatus::CONNECTION_RESET, 0));
            }
            if let Some(irp) = self.fin_wait.take() {
                done.push((irp, NtStatus::CONNECTION_RESET, 0));
            }
        }
        while !self.receives.is_empty() && (!self.rx.is_empty() || self.eof || self.reset) {
            let receive = self.receives.pop_front().expect("not empty");
            if self.rx.is_empty() {
                let status = if self.reset {
                    NtStatus::CONNECTION_RESET
                } else {
                    NtStatus::SUCCESS
                };
                done.push((receive.irp, status, 0));
                continue;
            }
            let buf = WSK_BUF {
                Mdl: receive.mdl,
                Offset: receive.offset,
                Length: receive.length,
            };
            // SAFETY: the WSK_BUF the driver passed to WskReceive stays valid until completion.
            let pieces = unsafe { crate::mdl::pieces(&buf) };
            let mut copied = 0;
            for (ptr, len) in pieces {
                let n = len.min(self.rx.len() - copied);
                let source = &self.rx[copied..copied + n];
                // SAFETY: `ptr..ptr+len` is driver memory described by its MDL and `n <= len`;
                // `source` is `n` bytes of our own buffer, which cannot overlap driver memory.
                unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), ptr, n) };
                copied += n;
                if copied == self.rx.len() {
                    break;
                }
            }
            self.rx.drain(..copied);
            self.indications_paused = false;
            done.push((receive.irp, NtStatus::SUCCESS, copied));
        }
    }
}

/// Registers an accepted connection with the provider's poller.
pub(crate) fn register(state: &mut State, key: usize) {
    let State {
        sockets, registry, ..
    } = state;
    if let (Some(super::Slot::Live(sock)), Some(registry)) =
        (sockets.get_mut(&key), registry.as_ref())
        && let Kind::Connection(connection) = &mut sock.kind
        && let Some(stream) = connection.stream.as_mut()
    {
        registry
            .register(stream, Token(key), Interest::READABLE | Interest::WRITABLE)
            .expect("hostkernel: epoll register");
    }
}

enum Indication {
    Disconnect { flags: u32 },
    Receive { data: Vec<u8> },
}

/// Serves a connection socket (provider thread): I/O, completions, then event callbacks.
pub(crate) fn service(key: usize) {
    let mut done = Vec::new();
    let indication = {
        let mut state = state();
        let Some(sock) = live(&mut state, key) else {
            return;
        };
        let events = sock.events;
        let Kind::Connection(connection) = &mut sock.kind else {
            return;
        };
        connection.pump(&mut done);
        let awaits_fin_ack = connection.awaits_fin_ack();
        let indication = connection.next_indication(events);
        if indication.is_some() {
            sock.callbacks_running += 1;
        }
        let indication = indication.map(|i| (i, sock.context, sock.client_dispatch));
        if awaits_fin_ack {
            state.fin_waiters.insert(key);
        }
        indication
    };
    for (irp, status, information) in done {
        irp::complete(irp, status, information);
    }
    let Some((indication, context, dispatch)) = indication else {
        return;
    };
    // SAFETY: a connection socket's client dispatch is the WSK_CLIENT_CONNECTION_DISPATCH the
    // driver gave (WskAccept or its accept event); an event is only enabled when the callback is
    // present (checked at enable time).
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

fn finish_callback(key: usize, consumed: usize, pause: bool) {
    let mut state = state();
    if let Some(sock) = live(&mut state, key) {
        sock.callbacks_running -= 1;
        if let Kind::Connection(connection) = &mut sock.kind {
            connection.rx.drain(..consumed.min(connection.rx.len()));
            connection.indications_paused |= pause;
        }
        post(&mut state, Box::new(move || service(key)));
    }
}

fn with_connection(
    key: usize,
    f: impl FnOnce(&mut Connection) -> Result<(), NtStatus>,
) -> Result<(), NtStatus> {
    let mut state = state();
    match live(&mut state, key).map(|s| &mut s.kind) {
        Some(Kind::Connection(connection)) => f(connection)?,
        _ => return Err(NtStatus::INVALID_DEVICE_STATE),
    }
    post(&mut state, Box::new(move || service(key)));
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
    // SAFETY: the driver's WSK_BUF describes live MDLs until completion.
    let data: Vec<u8> = unsafe { crate::mdl::pieces(buffer) }
        .into_iter()
        // SAFETY: each piece is a readable range of driver memory described by its MDL.
        .flat_map(|(ptr, len)| unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
        .collect();
    let result = with_connection(socket as usize, |c| {
        if c.stream.is_none() || c.shutdown_sent || c.disconnect.is_some() {
            return Err(if c.reset {
                NtStatus::CONNECTION_RESET
            } else {
                NtStatus::INVALID_DEVICE_STATE
            });
        }
        c.sends.push_back(Send {
            irp,
            data,
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
            let mut state = state();
            let registry = state
                .registry
                .as_ref()
                .map(|r| r.try_clone().expect("registry clone"));
            match live(&mut state, key).map(|s| &mut s.kind) {
                Some(Kind::Connection(c)) => {
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
    let result = with_connection(key, |c| {
        if c.stream.is_none() || c.shutdown_sent || c.disconnect.is_some() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        c.disconnect = Some(irp);
        Ok(())
    });
    match result {
        Ok(()) => NtStatus::PENDING,
        Err(status) => finish(irp, status, 0),
    }
}

fn complete_later_now(irp: IrpRef, status: NtStatus) {
    super::complete_later(&mut state(), irp, status, 0);
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
