//! Connection sockets: WskSend, WskReceive, WskDisconnect and WskReceiveEvent against a real peer,
//! under twenty seeds.

mod common;

use std::ffi::c_void;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use hostkernel::mdl;
use wsk::*;

/// An accepted connection socket and its peer.
fn accepted_pair(client: &Client) -> (ListenSocket, ConnSocket, TcpStream) {
    let (listener, address) =
        bound_listener(client, AF_INET, std::ptr::null_mut(), std::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    let socket = listener.start_accept().wait_socket();
    (listener, socket, peer)
}

fn io(socket: &ConnSocket, bytes: &mut [u8], send: bool) -> (NtStatus, usize) {
    let dispatch = socket.dispatch();
    let raw = socket.as_ptr();
    let f = if send {
        dispatch.WskSend.unwrap()
    } else {
        dispatch.WskReceive.unwrap()
    };
    let mdl = mdl::allocate(bytes.as_mut_ptr(), u32::try_from(bytes.len()).unwrap());
    let mut buf = WSK_BUF {
        Mdl: mdl,
        Offset: 0,
        Length: bytes.len(),
    };
    // SAFETY: PFN_WSK_SEND/PFN_WSK_RECEIVE's contract: `raw` is a live connection socket
    // (ConnSocket's invariant), `buf` a WSK_BUF over a host MDL describing `bytes`, and both
    // outlive the call (call() waits for the IRP to complete); `irp` is call()'s fresh IRP.
    let (_, status, information) = call(|irp| unsafe { f(raw, &raw mut buf, 0, irp) });
    // SAFETY: allocated above, no longer in use.
    unsafe { mdl::free(mdl) };
    (status, information)
}

fn disconnect(socket: &ConnSocket, abortive: bool) -> NtStatus {
    let f = socket.dispatch().WskDisconnect.unwrap();
    let raw = socket.as_ptr();
    let flags = if abortive { WSK_FLAG_ABORTIVE } else { 0 };
    // SAFETY: PFN_WSK_DISCONNECT's contract: `raw` is a live connection socket (ConnSocket's
    // invariant), the final buffer is optional (NULL), `irp` is call()'s fresh IRP.
    call(|irp| unsafe { f(raw, std::ptr::null_mut(), flags, irp) }).1
}

#[test]
fn send_receive_and_graceful_disconnect_move_real_bytes() {
    for_each_seed(|_| {
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client);
        let mut hello = *b"hello from the kernel";
        assert_eq!(
            io(&socket, &mut hello, true),
            (NtStatus::SUCCESS, hello.len())
        );
        let mut got = [0u8; 21];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello from the kernel");
        peer.write_all(b"ping").unwrap();
        let mut buffer = [0u8; 64];
        let (status, n) = io(&socket, &mut buffer, false);
        assert_eq!((status, &buffer[..n]), (NtStatus::SUCCESS, &b"ping"[..]));
        assert_eq!(disconnect(&socket, false), NtStatus::SUCCESS);
        assert_eq!(peer.read(&mut got).unwrap(), 0, "the peer sees FIN");
        drop(peer);
        // The peer's close: a pending receive completes with 0 bytes.
        assert_eq!(io(&socket, &mut buffer, false), (NtStatus::SUCCESS, 0));
        socket.close();
        listener.close();
        client.deregister();
    });
}

#[test]
fn abortive_disconnect_resets_the_peer_and_a_reset_fails_receives() {
    for_each_seed(|_| {
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client);
        assert_eq!(disconnect(&socket, true), NtStatus::SUCCESS);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            peer.read(&mut [0u8; 1]).unwrap_err().kind(),
            std::io::ErrorKind::ConnectionReset
        );
        socket.close();
        let (socket, peer) = accepted_pair_on(&listener);
        let peer = socket2::Socket::from(peer);
        peer.set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        let mut buffer = [0u8; 8];
        assert_eq!(
            io(&socket, &mut buffer, false).0,
            NtStatus::CONNECTION_RESET
        );
        socket.close();
        listener.close();
        client.deregister();
    });
}

/// Another connection accepted on `listener` (through an accept IRP), and its peer.
fn accepted_pair_on(listener: &ListenSocket) -> (ConnSocket, TcpStream) {
    let peer = TcpStream::connect(listener.local_address()).unwrap();
    let socket = listener.start_accept().wait_socket();
    (socket, peer)
}

static RECEIVED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A WskReceiveEvent that takes every byte indicated.
///
/// # Safety
/// PFN_WSK_RECEIVE_EVENT's contract: `indication` must be one valid WSK_DATA_INDICATION over a
/// host MDL of `indicated` bytes and `accepted` writable, both for the call.
unsafe extern "system" fn on_receive(
    _context: *mut c_void,
    flags: u32,
    indication: *mut WSK_DATA_INDICATION,
    indicated: usize,
    accepted: *mut usize,
) -> NtStatus {
    assert_ne!(flags & WSK_FLAG_AT_DISPATCH_LEVEL, 0);
    assert_eq!(
        hostkernel::irql::current(),
        hostkernel::irql::DISPATCH_LEVEL
    );
    // SAFETY: the provider passes one valid indication over its MDL for the call.
    let buf = unsafe { &(*indication).Buffer };
    // SAFETY: a host MDL describing `indicated` bytes.
    let host = unsafe { &*buf.Mdl.cast::<mdl::HostMdl>() };
    // SAFETY: the host indicates one MDL whose `address` starts `indicated` readable bytes, valid
    // for the call (PFN_WSK_RECEIVE_EVENT).
    let bytes = unsafe { std::slice::from_raw_parts(host.address, indicated) };
    RECEIVED.lock().unwrap().extend_from_slice(bytes);
    // SAFETY: the out-parameter is valid for the call.
    unsafe { *accepted = indicated };
    NtStatus::SUCCESS
}

/// A WskAcceptEvent that keeps every socket and enables receive callbacks on it.
///
/// # Safety
/// PFN_WSK_ACCEPT_EVENT's contract: `out_dispatch` must be writable for the call.
unsafe extern "system" fn accept_with_receive(
    _context: *mut c_void,
    _flags: u32,
    _local: *mut SOCKADDR,
    _remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    _out_context: *mut *mut c_void,
    out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NtStatus {
    if socket.is_null() {
        return NtStatus::REQUEST_NOT_ACCEPTED;
    }
    // SAFETY: PFN_WSK_ACCEPT_EVENT: a non-NULL AcceptSocket is a connection socket the provider
    // hands to this client, which owns it as this callback returns STATUS_SUCCESS (below); no
    // one has closed it, and ACCEPTED's handle is the only one (closed by the test).
    let socket = unsafe { ConnSocket::from_raw(socket) };
    ACCEPTED.lock().unwrap().push(socket);
    // SAFETY: the out-parameter is valid for the call.
    unsafe { *out_dispatch = &raw const RECEIVE_CALLBACKS };
    NtStatus::SUCCESS
}

static ACCEPTED: Mutex<Vec<ConnSocket>> = Mutex::new(Vec::new());
static RECEIVE_CALLBACKS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: None,
    WskSendBacklogEvent: None,
};
static LISTEN: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_with_receive),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

#[test]
fn receive_event_indicates_data_at_dispatch_level_once_enabled() {
    let client = Client::register();
    let (listener, address) =
        bound_listener(&client, AF_INET, std::ptr::null_mut(), &raw const LISTEN);
    // Inherited by sockets accepted through the event (WSK-FACTS §5).
    assert_eq!(
        listener.set_events(WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE),
        NtStatus::SUCCESS
    );
    let mut peer = TcpStream::connect(address).unwrap();
    peer.write_all(b"indicated bytes").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while RECEIVED.lock().unwrap().as_slice() != b"indicated bytes" {
        assert!(
            std::time::Instant::now() < deadline,
            "got {:?}",
            RECEIVED.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for socket in ACCEPTED.lock().unwrap().drain(..) {
        socket.close();
    }
    listener.close();
    client.deregister();
    assert!(hostkernel::accounting::outstanding().is_clean());
}

/// WskDisconnect (graceful) with its own IRP, left pending.
fn start_disconnect(socket: &ConnSocket) -> Pending {
    let f = socket.dispatch().WskDisconnect.unwrap();
    let raw = socket.as_ptr();
    // SAFETY: PFN_WSK_DISCONNECT's contract: `raw` is a live connection socket (ConnSocket's
    // invariant), the final buffer is optional (NULL), `irp` is Pending::start's fresh IRP.
    Pending::start(|irp| unsafe { f(raw, std::ptr::null_mut(), 0, irp) })
}

/// Seeds of the disconnect timing tests (each waits a little to show that nothing completes).
const FEW_SEEDS: [u64; 4] = [1, 2, 3, 4];

#[test]
fn a_graceful_disconnect_completes_when_the_peer_acknowledges_the_fin_not_when_it_is_sent() {
    for seed in FEW_SEEDS {
        hostkernel::schedule::configure(hostkernel::schedule::Schedule::from_seed(seed));
        let client = Client::register();
        let (listener, address) =
            bound_listener(&client, AF_INET, std::ptr::null_mut(), std::ptr::null());
        // A peer with a tiny receive window that does not read: our data fills it, the FIN
        // queues behind the unsent rest, and stays unacknowledged (FIN_WAIT1) until it reads.
        let peer =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        peer.set_recv_buffer_size(2048).unwrap();
        peer.connect(&address.into()).unwrap();
        let mut peer = TcpStream::from(peer);
        let socket = listener.start_accept().wait_socket();
        let mut data = vec![7u8; 16 * 1024];
        assert_eq!(
            io(&socket, &mut data, true),
            (NtStatus::SUCCESS, data.len())
        );
        let disconnect = start_disconnect(&socket);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !disconnect.is_done(),
            "seed {seed}: the disconnect completed although the peer never acknowledged the FIN"
        );
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert_eq!(
            received.len(),
            data.len(),
            "the peer reads everything, then EOF"
        );
        assert_eq!(disconnect.wait(), (NtStatus::SUCCESS, 0));
        socket.close();
        listener.close();
        client.deregister();
        let outstanding = hostkernel::accounting::outstanding();
        assert!(outstanding.is_clean(), "seed {seed}: {outstanding}");
    }
}

#[test]
fn a_vanished_peer_keeps_a_graceful_disconnect_pending_until_the_socket_is_closed() {
    for seed in FEW_SEEDS {
        hostkernel::schedule::configure(hostkernel::schedule::Schedule::from_seed(seed));
        let client = Client::register();
        hostkernel::provider::set_peers_vanished(true);
        let (listener, socket, mut peer) = accepted_pair(&client);
        hostkernel::provider::set_peers_vanished(false);
        let disconnect = start_disconnect(&socket);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !disconnect.is_done(),
            "seed {seed}: a disconnect to a vanished peer completed"
        );
        // Closing with the disconnect pending is allowed: it is cancelled, the connection
        // aborted (WSK-FACTS §7).
        socket.close();
        assert_eq!(disconnect.wait(), (NtStatus::CANCELLED, 0));
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            peer.read(&mut [0u8; 1]).unwrap_err().kind(),
            std::io::ErrorKind::ConnectionReset
        );
        listener.close();
        client.deregister();
        let outstanding = hostkernel::accounting::outstanding();
        assert!(outstanding.is_clean(), "seed {seed}: {outstanding}");
    }
}

/// WskSend with its own IRP over `bytes` (through a host MDL), left pending; the MDL is returned
/// for the caller to free after completion.
fn start_send(socket: &ConnSocket, bytes: &mut [u8]) -> (Pending, *mut MDL, Box<WSK_BUF>) {
    start_io(socket, bytes, true)
}

/// WskReceive with its own IRP into `bytes`, as `start_send`.
fn start_receive(socket: &ConnSocket, bytes: &mut [u8]) -> (Pending, *mut MDL, Box<WSK_BUF>) {
    start_io(socket, bytes, false)
}

fn start_io(
    socket: &ConnSocket,
    bytes: &mut [u8],
    send: bool,
) -> (Pending, *mut MDL, Box<WSK_BUF>) {
    let dispatch = socket.dispatch();
    let f = if send {
        dispatch.WskSend.unwrap()
    } else {
        dispatch.WskReceive.unwrap()
    };
    let raw_socket = socket.as_ptr();
    let mdl = mdl::allocate(bytes.as_mut_ptr(), u32::try_from(bytes.len()).unwrap());
    let mut buf = Box::new(WSK_BUF {
        Mdl: mdl,
        Offset: 0,
        Length: bytes.len(),
    });
    let raw: *mut WSK_BUF = &raw mut *buf;
    // SAFETY: PFN_WSK_SEND's and PFN_WSK_RECEIVE's contract: `raw_socket` is a live connection
    // socket (ConnSocket's invariant), `raw` a WSK_BUF over a host MDL describing `bytes`
    // (writable: a &mut slice), both kept alive by the caller until the IRP completes; `irp` is
    // Pending::start's fresh IRP.
    let pending = Pending::start(|irp| unsafe { f(raw_socket, raw, 0, irp) });
    (pending, mdl, buf)
}

/// Windows' transport reads a send's buffer until the send completes (the MDL's pages stay
/// locked for it), so a driver that rewrites a buffer whose send is still pending sends the
/// rewritten bytes. The host must not hide that bug by copying the bytes when the send is
/// submitted: it reads them when it writes them to the socket.
#[test]
fn a_pending_send_reads_the_driver_buffer_when_it_writes_not_when_submitted() {
    for_each_seed(|_| {
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client);
        // Far more than the socket buffers take while the peer does not read: the send stays
        // pending.
        let mut bytes = vec![1u8; 32 << 20];
        let (pending, mdl, _buf) = start_send(&socket, &mut bytes);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !pending.is_done(),
            "a send to a peer that does not read stays pending"
        );
        // The driver's bug: rewriting the tail while the send is pending.
        let tail = bytes.len() - 1024;
        for b in &mut bytes[tail..] {
            *b = 2;
        }
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut chunk = vec![0u8; 1 << 20];
            while all.len() < 32 << 20 {
                let n = peer.read(&mut chunk).unwrap();
                assert!(n > 0, "early EOF");
                all.extend_from_slice(&chunk[..n]);
            }
            (all, peer)
        });
        assert_eq!(pending.wait(), (NtStatus::SUCCESS, 32 << 20));
        let (all, _peer) = reader.join().unwrap();
        // SAFETY: allocated by start_send; the send completed.
        unsafe { mdl::free(mdl) };
        assert!(all[..tail].iter().all(|&b| b == 1));
        assert!(
            all[tail..].iter().all(|&b| b == 2),
            "the peer got the bytes as they were at submission, not as the transport read them"
        );
        socket.close();
        listener.close();
        client.deregister();
    });
}

/// After an abortive WskDisconnect the connection is gone: a receive or send fails at once (the
/// ones pending then complete with STATUS_CONNECTION_ABORTED) rather than waiting for data that
/// can never come; after the peer's reset, a send fails too.
#[test]
fn receives_and_sends_on_an_aborted_or_reset_connection_fail() {
    for_each_seed(|_| {
        let client = Client::register();
        let (listener, socket, _peer) = accepted_pair(&client);
        assert_eq!(disconnect(&socket, true), NtStatus::SUCCESS);
        let mut buffer = [0u8; 8];
        let f = socket.dispatch().WskReceive.unwrap();
        let socket_raw = socket.as_ptr();
        let mdl = mdl::allocate(buffer.as_mut_ptr(), 8);
        let mut buf = WSK_BUF {
            Mdl: mdl,
            Offset: 0,
            Length: 8,
        };
        let raw: *mut WSK_BUF = &raw mut buf;
        // SAFETY: PFN_WSK_RECEIVE's contract: `socket_raw` is a live connection socket
        // (ConnSocket's invariant), `raw` a WSK_BUF over a host MDL describing `buffer`, both
        // alive until the IRP completes (waited for below or the socket's close cancels it);
        // `irp` is Pending::start's fresh IRP.
        let receive = Pending::start(|irp| unsafe { f(socket_raw, raw, 0, irp) });
        std::thread::sleep(Duration::from_millis(100));
        let done = receive.is_done();
        socket.close();
        let (status, _) = receive.wait();
        // SAFETY: allocated above; the receive has completed.
        unsafe { mdl::free(mdl) };
        assert!(done, "a receive on an aborted connection waits forever");
        assert_eq!(status, NtStatus::CONNECTION_ABORTED);
        let reset = socket_after_reset(&listener);
        assert!(
            io(&reset, &mut buffer, true).0.is_error(),
            "a send after a reset"
        );
        reset.close();
        listener.close();
        client.deregister();
    });
}

/// A connection whose peer has reset it (the caller closes it).
fn socket_after_reset(listener: &ListenSocket) -> ConnSocket {
    let (socket, peer) = accepted_pair_on(listener);
    let peer = socket2::Socket::from(peer);
    peer.set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
    std::thread::sleep(Duration::from_millis(20));
    socket
}

/// A close the provider finishes on the caller's thread must not overtake a completion the event
/// loop already took for that socket: the driver would see its close complete (and free what the
/// receive writes to) before the receive completes. The loop is held between taking a receive's
/// completion and making it; the close must then wait for the loop.
#[test]
fn a_close_never_completes_before_a_completion_the_event_loop_took() {
    let client = Client::register();
    let (listener, socket, mut peer) = accepted_pair(&client);
    let key = socket.key();
    let mut buffer = vec![0u8; 64];
    let (receive, mdl, _buf) = start_receive(&socket, &mut buffer);
    assert_eq!(receive.returned, NtStatus::PENDING);
    let pause = hostkernel::provider::pause_accept_loop();
    peer.write_all(b"data").unwrap();
    // The loop may pass its listener's points first (a readiness edge left from the accept).
    while pause.wait_until_held(Duration::from_secs(10))
        != (hostkernel::provider::Point::BeforeCompletions { connection: key })
    {
        pause.resume();
    }
    let close = socket.start_close();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !close.is_done(),
        "the close completed while a receive completion the event loop took was not made"
    );
    drop(pause);
    assert_eq!(receive.wait(), (NtStatus::SUCCESS, 4));
    assert_eq!(close.wait(), (NtStatus::SUCCESS, 0));
    assert_eq!(&buffer[..4], b"data");
    // SAFETY: allocated by start_receive; its IRP completed.
    unsafe { mdl::free(mdl) };
    listener.close();
    client.deregister();
    let outstanding = hostkernel::accounting::outstanding();
    assert!(outstanding.is_clean(), "{outstanding}");
}

/// Nor may it overtake a completion the provider posted to the event loop before it (a deferred
/// one): an abortive WskDisconnect completes later while the loop is held elsewhere, and the close
/// that follows must not complete before it.
#[test]
fn a_close_never_completes_before_a_completion_posted_before_it() {
    hostkernel::schedule::configure(hostkernel::schedule::Schedule {
        seed: 11,
        inline_percent: 0,
        race_percent: 0,
        alloc_fail_percent: 0,
        finished_inline_percent: 100,
    });
    let client = Client::register();
    let (listener, socket, _peer) = accepted_pair(&client);
    let (other, other_address) =
        bound_listener(&client, AF_INET, std::ptr::null_mut(), std::ptr::null());
    let pause = hostkernel::provider::pause_accept_loop();
    let _other_peer = TcpStream::connect(other_address).unwrap();
    while pause.wait_until_held(Duration::from_secs(10))
        != (hostkernel::provider::Point::BeforeBatch {
            listener: other.key(),
        })
    {
        pause.resume();
    }
    let f = socket.dispatch().WskDisconnect.unwrap();
    let raw = socket.as_ptr();
    // SAFETY: PFN_WSK_DISCONNECT's contract: `raw` is a live connection socket (ConnSocket's
    // invariant), no final buffer, `irp` is Pending::start's fresh IRP.
    let disconnect =
        Pending::start(|irp| unsafe { f(raw, std::ptr::null_mut(), WSK_FLAG_ABORTIVE, irp) });
    assert_eq!(
        disconnect.returned,
        NtStatus::PENDING,
        "deferred: the loop is held"
    );
    let close = socket.start_close();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !close.is_done(),
        "the close completed before the disconnect completion posted before it"
    );
    drop(pause);
    assert_eq!(disconnect.wait(), (NtStatus::SUCCESS, 0));
    assert_eq!(close.wait(), (NtStatus::SUCCESS, 0));
    other.close();
    listener.close();
    client.deregister();
    let outstanding = hostkernel::accounting::outstanding();
    assert!(outstanding.is_clean(), "{outstanding}");
}
