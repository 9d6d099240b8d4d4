//! A connection socket's state over a real TCP stream ([`Connection`]): what the calls queue
//! (`connection_calls`), what the event loop moves between the OS and those queues
//! ([`Connection::pump`]) and which event callback is due ([`Connection::next_indication`], made
//! by `connection_events`). Received bytes are buffered (like the transport's receive window) up
//! to `RX_WINDOW`, then reading stops until the client drains them. The sending side (sends, then
//! the FIN of a graceful disconnect) is `transmit`'s.
//!
//! A graceful WskDisconnect completes when the peer has acknowledged our FIN, not when
//! `shutdown()` returns, so a disconnect takes as long as the peer makes it. With [`set_peers_vanished`] on, the peers
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
    NtStatus, WSK_BUF, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
};

use super::translate;
use super::transmit::{Send, fin_acknowledged};
use super::work::registry;
use crate::irp::IrpRef;

const RX_WINDOW: usize = 64 * 1024;

thread_local! {
    /// Where a pump reads from the OS before the bytes join a connection's queue: one per thread,
    /// made once (not a zeroed 16 KiB on every pump).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

static PEERS_VANISHED: AtomicBool = AtomicBool::new(false);

/// Fault mode: the peers of connections accepted from now on have vanished (their host is gone:
/// nothing they would send arrives, nothing we send is acknowledged). A graceful WskDisconnect on
/// such a connection never completes by itself; WskCloseSocket cancels it and aborts the
/// connection (WSK-FACTS §7).
pub fn set_peers_vanished(vanished: bool) {
    PEERS_VANISHED.store(vanished, Ordering::SeqCst);
}

/// A queued WskReceive.
///
/// # Invariants
/// `mdl`, `offset` and `length` are the WSK_BUF the driver passed, whose MDL chain describes
/// writable memory valid until `irp` completes (WskReceive's # Safety: PFN_WSK_RECEIVE).
pub(super) struct Receive {
    pub(super) irp: IrpRef,
    pub(super) mdl: *mut wsk::MDL,
    pub(super) offset: u32,
    pub(super) length: usize,
}

/// A connection socket's state (the flags mirror TCP's: each is an independent fact).
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Connection {
    pub(super) stream: Option<mio::net::TcpStream>,
    pub(super) local: Option<SocketAddr>,
    pub(super) remote: Option<SocketAddr>,
    /// Received bytes no receive has taken yet, oldest first (a ring: taking bytes from the
    /// front moves nothing).
    pub(super) rx: VecDeque<u8>,
    pub(super) eof: bool,
    pub(super) reset: bool,
    pub(super) receives: VecDeque<Receive>,
    pub(super) sends: VecDeque<Send>,
    pub(super) disconnect: Option<IrpRef>,
    /// A graceful disconnect whose FIN is sent and not yet acknowledged.
    pub(super) fin_wait: Option<IrpRef>,
    /// The peer has vanished ([`set_peers_vanished`]): our FIN is never acknowledged.
    pub(super) vanished: bool,
    pub(super) shutdown_sent: bool,
    pub(super) disconnect_indicated: bool,
    pub(super) indications_paused: bool,
    /// WskCloseSocket was called: the event loop moves no more bytes and completes nothing until
    /// the close finishes (`shut_down`).
    pub(super) closed: bool,
    /// Services of the event loop that took completions from this connection and have not made
    /// them yet: a close finishes on the loop then, after them, never on the caller's thread.
    pub(super) in_service: u32,
    /// The poller's token (the socket's key), given at accept.
    token: Option<Token>,
    /// The stream is registered with the poller. Not before something may wait on its readiness
    /// ([`Connection::watch_if_needed`]): a connection accepted and disconnected with nothing
    /// queued costs no epoll_ctl and wakes the loop for none of its peer's packets.
    registered: bool,
    /// An event callback was enabled on the socket: its peer's data, FIN or reset is indicated
    /// when it arrives, so the stream is watched from then on.
    pub(super) wants_readiness: bool,
    /// The stream is registered for writability too: a write once found the send buffer full.
    /// Until then no EPOLLOUT edge (one per new connection) wakes the loop for nothing.
    writable_interest: bool,
}

// SAFETY: the raw pointers a connection holds (the MDLs of pending receives) belong to the
// driver, which keeps them valid and usable from any thread until the IRP completes
// (PFN_WSK_RECEIVE); the connection is only reached through its lock.
unsafe impl std::marker::Send for Connection {}

pub(super) fn abortive_drop(stream: mio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

impl Connection {
    pub(crate) fn unconnected(family: u16) -> Option<Self> {
        translate::domain(family)?;
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
            rx: VecDeque::new(),
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
            closed: false,
            in_service: 0,
            token: None,
            registered: false,
            wants_readiness: false,
            writable_interest: false,
        }
    }

    /// A connection the listener accepted. `reset_now` models a peer that resets it at once.
    pub(crate) fn accepted(
        stream: std::net::TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
        reset_now: bool,
    ) -> Self {
        // Already non-blocking: every accepted stream comes from mio's accept (accept4 with
        // SOCK_NONBLOCK), so no fcntl per connection.
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
    /// The stream is not deregistered first: closing its only descriptor takes it out of the
    /// epoll set, and a readiness event already collected for it finds the socket closed.
    pub(crate) fn shut_down(&mut self) -> Vec<IrpRef> {
        if let Some(stream) = self.stream.take() {
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
    pub(crate) fn abort(&mut self, registry: Option<&mio::Registry>) {
        if let Some(mut stream) = self.stream.take() {
            if let Some(registry) = registry {
                let _ = registry.deregister(&mut stream);
            }
            abortive_drop(stream);
        }
    }

    /// The event callback to make now, if any (the disconnect event wins over data).
    pub(super) fn next_indication(&mut self, events: u32) -> Option<Indication> {
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
                data: self.rx.iter().copied().collect(),
            })
    }

    /// Moves bytes between the OS and the queues; adds the IRPs to complete to `done`. A write
    /// that finds the send buffer full registers the stream for writability, so the loop hears
    /// when it drains.
    pub(super) fn pump(&mut self, done: &mut Vec<(IrpRef, NtStatus, usize)>) {
        if self.closed {
            return;
        }
        // Bytes are read from the OS only for someone: a queued receive or an enabled event.
        // Otherwise they wait in the OS socket (the transport's buffer), for the next pump.
        let reader = self.wants_readiness || !self.receives.is_empty();
        if let Some(stream) = self.stream.as_mut().filter(|_| reader) {
            SCRATCH.with_borrow_mut(|chunk| {
                while !self.eof && !self.reset && self.rx.len() < RX_WINDOW {
                    let room = (RX_WINDOW - self.rx.len()).min(chunk.len());
                    match stream.read(&mut chunk[..room]) {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.rx.extend(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => self.reset = true,
                    }
                }
            });
        }
        self.write_and_disconnect(done);
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
            // SAFETY: the WSK_BUF the driver passed to WskReceive stays valid until completion
            // (Receive invariants), and its IRP is still pending.
            let pieces = unsafe { crate::mdl::pieces(&buf) };
            let mut copied = 0;
            for (ptr, len) in pieces {
                let n = len.min(self.rx.len() - copied);
                // SAFETY: `ptr..ptr+len` is driver memory described by the receive's MDL (Receive
                // invariants), so `n <= len` bytes fit, and none of it is the ring's memory.
                unsafe { copy_out(&self.rx, copied, ptr, n) };
                copied += n;
                if copied == self.rx.len() {
                    break;
                }
            }
            self.rx.drain(..copied);
            self.indications_paused = false;
            done.push((receive.irp, NtStatus::SUCCESS, copied));
        }
        self.watch_if_needed();
    }

    /// Writes the queued sends, then, once none is left, sends the FIN of a pending graceful
    /// disconnect; completes the disconnect (adds it to `done`) once the peer acknowledged the FIN.
    /// Also called on the caller's thread by WskDisconnect (under this connection's lock).
    pub(super) fn write_and_disconnect(&mut self, done: &mut Vec<(IrpRef, NtStatus, usize)>) {
        if self.closed {
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while let Some(send) = self.sends.front_mut() {
            let result = if send.written < send.length {
                stream.write(send.unwritten())
            } else {
                Ok(0)
            };
            match result {
                Ok(n) => {
                    send.written += n;
                    if send.written == send.length {
                        let send = self.sends.pop_front().expect("front exists");
                        done.push((send.irp, NtStatus::SUCCESS, send.length));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The loop's lock is a leaf: taken under this connection's lock.
                    if !self.writable_interest
                        && let (Some(registry), Some(token)) = (registry(), self.token)
                    {
                        // Registering for EPOLLOUT reports it at once if the buffer drained
                        // meanwhile (the edge is not lost between the write and this).
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if self.registered {
                            registry.reregister(stream, token, interest)
                        } else {
                            registry.register(stream, token, interest)
                        }
                        .expect("hostkernel: epoll register");
                        self.registered = true;
                        self.writable_interest = true;
                        continue;
                    }
                    break;
                }
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

    /// Gives the connection its poller token; it is registered once something may wait on its
    /// readiness ([`Connection::watch_if_needed`]).
    pub(super) fn assign_token(&mut self, token: Token) {
        self.token = Some(token);
    }

    /// Registers the stream with the provider's poller, for readability (and a peer's FIN or
    /// reset), once something may wait on it: a queued receive, send or disconnect, a FIN not
    /// acknowledged yet, an enabled event. Edge-triggered registration reports what is already
    /// ready, so nothing that arrived before is missed; until then, what arrives waits in the OS
    /// socket, read by the next pump.
    pub(super) fn watch_if_needed(&mut self) {
        let needed = self.wants_readiness
            || !self.receives.is_empty()
            || !self.sends.is_empty()
            || self.disconnect.is_some()
            || self.fin_wait.is_some();
        if self.registered || !needed || self.closed {
            return;
        }
        if let (Some(stream), Some(token), Some(registry)) =
            (self.stream.as_mut(), self.token, registry())
        {
            registry
                .register(stream, token, Interest::READABLE)
                .expect("hostkernel: epoll register");
            self.registered = true;
        }
    }

    /// A receive event returned: `consumed` bytes are the client's; `pause` stops indications
    /// until the next WskReceive.
    pub(super) fn indicated(&mut self, consumed: usize, pause: bool) {
        self.rx.drain(..consumed.min(self.rx.len()));
        self.indications_paused |= pause;
    }
}

/// Copies `n` bytes of `ring`, from `offset` on, to `destination`.
///
/// # Safety
/// `destination` must be valid for `n` bytes of writes and not overlap `ring`'s memory;
/// `offset + n <= ring.len()`.
unsafe fn copy_out(ring: &VecDeque<u8>, offset: usize, destination: *mut u8, n: usize) {
    let (front, back) = ring.as_slices();
    let mut offset = offset;
    let mut left = n;
    let mut at = destination;
    for run in [front, back] {
        if offset >= run.len() {
            offset -= run.len();
            continue;
        }
        let take = left.min(run.len() - offset);
        // SAFETY: `run[offset..offset + take]` is in bounds (take <= run.len() - offset); `at`
        // has room for `left >= take` more bytes and does not overlap the ring (# Safety).
        unsafe { std::ptr::copy_nonoverlapping(run[offset..].as_ptr(), at, take) };
        // SAFETY: `take <= left`, so `at + take` stays within (or one past) the destination.
        at = unsafe { at.add(take) };
        left -= take;
        offset = 0;
        if left == 0 {
            break;
        }
    }
}

/// An event callback due on a connection.
pub(super) enum Indication {
    /// WskDisconnectEvent with these flags.
    Disconnect { flags: u32 },
    /// WskReceiveEvent over a copy of the buffered bytes.
    Receive { data: Vec<u8> },
}
