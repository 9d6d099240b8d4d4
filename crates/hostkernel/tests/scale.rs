//! The host kernel holds thousands of accepted connections on its one provider thread, with the
//! clients in the same process (each side needs its own descriptor).

mod common;

use std::ffi::c_void;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use wsk::*;

static ACCEPTED: Mutex<Vec<ConnSocket>> = Mutex::new(Vec::new());

/// A WskAcceptEvent that keeps every socket.
///
/// # Safety
/// None beyond PFN_WSK_ACCEPT_EVENT's: it dereferences no argument.
unsafe extern "system" fn keep_all(
    _context: *mut c_void,
    _flags: u32,
    _local: *mut SOCKADDR,
    _remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    _out_context: *mut *mut c_void,
    _out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NtStatus {
    if socket.is_null() {
        return NtStatus::REQUEST_NOT_ACCEPTED;
    }
    // SAFETY: PFN_WSK_ACCEPT_EVENT: a non-NULL AcceptSocket is a connection socket the provider
    // hands to this client, which owns it as this callback returns STATUS_SUCCESS (below); no
    // one has closed it, and ACCEPTED's handle is the only one (closed by the test).
    let socket = unsafe { ConnSocket::from_raw(socket) };
    ACCEPTED.lock().unwrap().push(socket);
    NtStatus::SUCCESS
}

static CALLBACKS: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(keep_all),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

#[test]
fn holds_five_thousand_accepted_connections_with_clients_in_process() {
    const N: usize = 5_000;
    let limit = hostkernel::rlimit::raise_nofile_to_hard_limit();
    assert!(
        limit >= 2 * N as u64 + 100,
        "RLIMIT_NOFILE {limit} is too low for {N} connections and their clients"
    );
    let client = Client::register();
    let (listener, address) =
        bound_listener(&client, AF_INET, std::ptr::null_mut(), &raw const CALLBACKS);
    assert_eq!(listener.set_events(WSK_EVENT_ACCEPT), NtStatus::SUCCESS);
    let peers: Vec<TcpStream> = (0..N)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ACCEPTED.lock().unwrap().len() < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} accepted",
            ACCEPTED.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        hostkernel::accounting::outstanding().sockets,
        i64::try_from(N).unwrap() + 1
    );
    let accepted: Vec<ConnSocket> = std::mem::take(&mut *ACCEPTED.lock().unwrap());
    for socket in accepted {
        socket.close();
    }
    listener.close();
    drop(peers);
    client.deregister();
    let outstanding = hostkernel::accounting::outstanding();
    assert!(outstanding.is_clean(), "{outstanding}");
}
