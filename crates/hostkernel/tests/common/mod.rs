//! A minimal WSK client for the host kernel's own tests: registration, synchronous calls through
//! the dispatch tables with an IRP and an event, and a subprocess harness for verifier violations.
//! The sockets a test holds are owned handles ([`ListenSocket`], [`ConnSocket`]): safe to make
//! only from what the provider handed out ([`Client::listen_socket`],
//! [`PendingAccept::wait_socket`]), otherwise through an `unsafe fn from_raw`, and consumed by
//! their close.
#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    missing_docs
)]

use std::ffi::c_void;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::time::Duration;

use hostkernel::event::{Event, EventKind};
use hostkernel::irp;
use hostkernel::provider::{
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI,
};
use hostkernel::schedule::{self, Schedule};
use wsk::*;

pub static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: WSK_VERSION_1_0,
    Reserved: 0,
    WskClientEvent: None,
};

/// Twenty seeds: every rule test runs under each.
pub const SEEDS: std::ops::Range<u64> = 1..21;

/// Runs `body` once per seed with that seed's schedule, printing the seed first so a failure can be
/// replayed with HOSTKERNEL_SEED.
pub fn for_each_seed(mut body: impl FnMut(u64)) {
    for seed in SEEDS {
        eprintln!("-- seed {seed}");
        schedule::configure(Schedule::from_seed(seed));
        body(seed);
        let outstanding = hostkernel::accounting::outstanding();
        assert!(outstanding.is_clean(), "seed {seed}: {outstanding}");
    }
}

pub struct Client {
    registration: Box<WSK_REGISTRATION>,
    pub npi: WSK_PROVIDER_NPI,
}

/// The completion routine of [`call`] and [`Pending`]: sets their event.
///
/// # Safety
/// `context` must point at a live [`Event`] (PIO_COMPLETION_ROUTINE's context is the caller's).
unsafe extern "system" fn signal(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: the context is the Event of `call`, alive until the wait in `call` returns.
    unsafe { (*context.cast::<Event>()).set() };
    NtStatus::MORE_PROCESSING_REQUIRED
}

/// One WSK call with its own IRP, waited for: `(returned, IoStatus.Status, IoStatus.Information)`.
pub fn call(f: impl FnOnce(*mut IRP) -> NtStatus) -> (NtStatus, NtStatus, usize) {
    let irp = irp::io_allocate_irp(1);
    assert!(!irp.is_null());
    let event = Event::new(EventKind::Notification, false);
    // SAFETY: `irp` is live; the routine and context stay valid until the wait below returns.
    unsafe {
        irp::io_set_completion_routine(
            irp,
            signal,
            std::ptr::from_ref(&event).cast_mut().cast(),
            true,
            true,
            true,
        );
    };
    let returned = f(irp);
    assert!(
        event.wait(Some(Duration::from_secs(10))),
        "IRP never completed"
    );
    // SAFETY: completed, so no longer pending.
    let (status, information) = unsafe { irp::io_status(irp) };
    // SAFETY: completed and not used again.
    unsafe { irp::io_free_irp(irp) };
    if returned != NtStatus::PENDING {
        assert_eq!(
            returned, status,
            "a synchronous return must equal the IRP status"
        );
    }
    (returned, status, information)
}

impl Client {
    pub fn register() -> Self {
        let mut registration = Box::new(WSK_REGISTRATION::zeroed());
        let npi_client = WSK_CLIENT_NPI {
            ClientContext: std::ptr::null_mut(),
            Dispatch: &raw const CLIENT_DISPATCH,
        };
        // SAFETY: valid NPI; the registration box stays resident until deregister.
        let status = unsafe { WskRegister(&raw const npi_client, &raw mut *registration) };
        assert_eq!(status, NtStatus::SUCCESS);
        let mut npi = WSK_PROVIDER_NPI {
            Client: std::ptr::null_mut(),
            Dispatch: std::ptr::null(),
        };
        // SAFETY: `registration` was registered above and stays boxed until deregister;
        // `npi` is writable.
        let status = unsafe {
            WskCaptureProviderNPI(&raw mut *registration, WSK_INFINITE_WAIT, &raw mut npi)
        };
        assert_eq!(status, NtStatus::SUCCESS);
        Self { registration, npi }
    }

    pub fn registration(&mut self) -> *mut WSK_REGISTRATION {
        &raw mut *self.registration
    }

    fn provider(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: captured provider dispatch, static in the host.
        unsafe { &*self.npi.Dispatch }
    }

    /// WskSocket(LISTEN) with the given client listen dispatch and context.
    pub fn listen_socket(
        &self,
        family: u16,
        context: *mut c_void,
        dispatch: *const WSK_CLIENT_LISTEN_DISPATCH,
    ) -> ListenSocket {
        let f = self.provider().WskSocket.unwrap();
        let client = self.npi.Client;
        let (_, status, info) = call(|irp| {
            // SAFETY: PFN_WSK_SOCKET's contract: `client` is the captured NPI's Client, `dispatch`
            // NULL or the test's static WSK_CLIENT_LISTEN_DISPATCH, kept with `context` while the
            // socket lives; `irp` is call()'s fresh IRP.
            unsafe {
                f(
                    client,
                    family,
                    SOCK_STREAM,
                    IPPROTO_TCP,
                    WSK_FLAG_LISTEN_SOCKET,
                    context,
                    dispatch.cast(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    irp,
                )
            }
        });
        assert_eq!(status, NtStatus::SUCCESS);
        let raw = NonNull::new(info as *mut WSK_SOCKET).expect("WskSocket's Information is NULL");
        // INVARIANT: a WskSocket(WSK_FLAG_LISTEN_SOCKET) that completed with STATUS_SUCCESS: its
        // Information is the new listening socket (PFN_WSK_SOCKET), handed to this test only and
        // not closed.
        ListenSocket { raw }
    }

    pub fn deregister(mut self) {
        // SAFETY: the registration is registered and holds the NPI captured once in register.
        unsafe { WskReleaseProviderNPI(self.registration()) };
        // SAFETY: the registration is registered and resident (boxed in self); every socket is
        // closed by the test first.
        unsafe { WskDeregister(self.registration()) };
    }
}

/// The provider's key for a socket: its WSK_SOCKET's address, which is how
/// `hostkernel::provider::Point` names a listener. Its provenance is exposed, so a test that
/// stores the key (in an atomic, for a callback) may turn it back into the pointer.
fn key(raw: NonNull<WSK_SOCKET>) -> usize {
    raw.as_ptr().expose_provenance()
}

/// WskCloseSocket through the basic dispatch (first in both tables), waited for.
///
/// # Safety
/// `raw` must be a socket this provider handed out that is not closed and has no other call in
/// progress, and `basic` its WSK_PROVIDER_BASIC_DISPATCH; nobody may use `raw` afterwards.
unsafe fn close_raw(raw: *mut WSK_SOCKET, basic: &WSK_PROVIDER_BASIC_DISPATCH) {
    let f = basic.WskCloseSocket.unwrap();
    // SAFETY: PFN_WSK_CLOSE_SOCKET's contract: `raw` is a live socket with no call in progress
    // and is not used afterwards (this function's # Safety), `irp` is call()'s fresh IRP.
    let (_, status, _) = call(|irp| unsafe { f(raw, irp) });
    assert_eq!(status, NtStatus::SUCCESS);
}

/// A listening socket the test owns.
///
/// # Invariants
/// `raw` is a listening socket this provider handed out (WskSocket with WSK_FLAG_LISTEN_SOCKET)
/// that is not closed: the safe constructors ([`Client::listen_socket`], [`bound_listener`]) take
/// it from the provider, [`ListenSocket::from_raw`]'s caller promises it, and
/// [`ListenSocket::close`] consumes the handle, which is neither `Copy` nor `Clone`, so a closed
/// socket cannot be used again through it.
#[derive(Debug)]
pub struct ListenSocket {
    raw: NonNull<WSK_SOCKET>,
}

// SAFETY: a WSK socket may be used from any thread (the provider's entry points are callable at
// IRQL <= DISPATCH_LEVEL from any context); the one exception, a socket handed over by a
// WskAcceptEvent that has not returned yet, is a connection socket, and the host checks it.
unsafe impl Send for ListenSocket {}

impl ListenSocket {
    /// Takes a listening socket the test holds as a raw pointer (a recorded address, a verifier
    /// test's deliberate misuse).
    ///
    /// # Safety
    /// `raw` must be a listening socket this provider handed out that is not closed, and no
    /// handle to it may be used while or after one of them is closed: the returned handle is one
    /// more owner of the socket's single close.
    pub unsafe fn from_raw(raw: *mut WSK_SOCKET) -> Self {
        let raw = NonNull::new(raw).expect("a NULL listening socket");
        // INVARIANT: a live listening socket of this provider (this function's # Safety).
        Self { raw }
    }

    /// The WSK_SOCKET, for a call the test makes through [`ListenSocket::dispatch`] itself. It
    /// stays valid while this handle does (until [`ListenSocket::close`]).
    pub fn as_ptr(&self) -> *mut WSK_SOCKET {
        self.raw.as_ptr()
    }

    /// The provider's key for this socket (as `hostkernel::provider::Point` names it).
    pub fn key(&self) -> usize {
        key(self.raw)
    }

    /// The provider's listen dispatch table.
    pub fn dispatch(&self) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
        // SAFETY: the socket is live (type invariant), so its WSK_SOCKET is readable.
        let dispatch = unsafe { (*self.raw.as_ptr()).Dispatch };
        // SAFETY: a live listening socket's Dispatch is the provider's listen table (static).
        unsafe { &*dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>() }
    }

    /// WskControlSocket(WskSetOption) with a ULONG value, waited for.
    pub fn set_option(&self, level: u32, code: u32, value: u32) -> NtStatus {
        let f = self.dispatch().Basic.WskControlSocket.unwrap();
        let raw = self.as_ptr();
        let mut value = value;
        call(|irp| {
            // SAFETY: PFN_WSK_CONTROL_SOCKET's contract: `raw` is live (type invariant), `value`
            // a ULONG of the size passed that outlives the call (call() waits for the IRP), no
            // output buffer, `irp` call()'s fresh IRP.
            unsafe {
                f(
                    raw,
                    WSK_CONTROL_SOCKET_TYPE::SET_OPTION,
                    code,
                    level,
                    4,
                    (&raw mut value).cast(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    irp,
                )
            }
        })
        .1
    }

    /// SO_WSK_EVENT_CALLBACK without an IRP.
    pub fn set_events(&self, mask: u32) -> NtStatus {
        let f = self.dispatch().Basic.WskControlSocket.unwrap();
        let mut control = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: &raw const NPI_WSK_INTERFACE_ID,
            EventMask: mask,
        };
        // SAFETY: PFN_WSK_CONTROL_SOCKET's contract: the socket is live (type invariant),
        // `control` is a WSK_EVENT_CALLBACK_CONTROL of the size passed that outlives the call,
        // and SO_WSK_EVENT_CALLBACK is the one option that may go without an IRP.
        unsafe {
            f(
                self.as_ptr(),
                WSK_CONTROL_SOCKET_TYPE::SET_OPTION,
                SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET,
                size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
                (&raw mut control).cast(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }

    /// WskBind, waited for.
    pub fn bind(&self, address: SocketAddr) -> NtStatus {
        let f = self.dispatch().WskBind.unwrap();
        let raw = self.as_ptr();
        let mut storage = SOCKADDR_STORAGE::from(address);
        // SAFETY: PFN_WSK_BIND's contract: `raw` is live (type invariant), `storage` a
        // SOCKADDR_STORAGE that outlives the call (call() waits for the IRP), `irp` call()'s
        // fresh IRP.
        call(|irp| unsafe { f(raw, storage.as_mut_ptr(), 0, irp) }).1
    }

    /// WskGetLocalAddress, waited for; it must succeed.
    pub fn local_address(&self) -> SocketAddr {
        let f = self.dispatch().WskGetLocalAddress.unwrap();
        let raw = self.as_ptr();
        let mut storage = SOCKADDR_STORAGE::zeroed();
        // SAFETY: PFN_WSK_GET_LOCAL_ADDRESS's contract: `raw` is live (type invariant), `storage`
        // a writable SOCKADDR_STORAGE that outlives the call (call() waits for the IRP), `irp`
        // call()'s fresh IRP.
        let status = call(|irp| unsafe { f(raw, storage.as_mut_ptr(), irp) }).1;
        assert_eq!(status, NtStatus::SUCCESS);
        storage.to_socket_addr().unwrap()
    }

    /// WskAccept with its own IRP (no address out-parameters), left pending.
    pub fn start_accept(&self) -> PendingAccept {
        let f = self.dispatch().WskAccept.unwrap();
        let raw = self.as_ptr();
        // SAFETY: PFN_WSK_ACCEPT's contract: `raw` is a live listening socket (type invariant),
        // the address out-parameters are NULL (not asked for), a NULL client dispatch is allowed
        // (no events on the accepted socket), and `irp` is Pending::start's fresh IRP.
        let pending = Pending::start(|irp| unsafe {
            f(
                raw,
                0,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        });
        PendingAccept { pending }
    }

    /// WskCloseSocket, waited for; consumes the handle.
    pub fn close(self) {
        // SAFETY: the socket is live (type invariant); no other call on it is in progress: none
        // through this handle (consumed here, and not Sync, so no other thread borrows it), none
        // through another (from_raw's callers promise not to use one while or after the socket
        // is closed); this handle is not used again; `Basic` is its table's basic dispatch.
        unsafe { close_raw(self.as_ptr(), &self.dispatch().Basic) };
    }
}

/// A connection socket the test owns (accepted through WskAccept or WskAcceptEvent).
///
/// # Invariants
/// `raw` is a connection socket this provider handed out that is not closed: the safe constructor
/// ([`PendingAccept::wait_socket`]) takes it from a successful WskAccept's Information,
/// [`ConnSocket::from_raw`]'s caller promises it, and [`ConnSocket::close`] consumes the handle,
/// which is neither `Copy` nor `Clone`, so a closed socket cannot be used again through it.
#[derive(Debug)]
pub struct ConnSocket {
    raw: NonNull<WSK_SOCKET>,
}

// SAFETY: a WSK socket may be used from any thread (the provider's entry points are callable at
// IRQL <= DISPATCH_LEVEL from any context); a call from another thread while the WskAcceptEvent
// handing the socket over has not returned is a violation the host checks before it touches the
// socket, not a memory error.
unsafe impl Send for ConnSocket {}

impl ConnSocket {
    /// Takes a connection socket the test holds as a raw pointer (one an accept event recorded, a
    /// verifier test's deliberate misuse).
    ///
    /// # Safety
    /// `raw` must be a connection socket this provider handed out (a successful WskAccept's
    /// Information, or the AcceptSocket of a WskAcceptEvent that returns STATUS_SUCCESS) that is
    /// not closed, and no handle to it may be used while or after one of them is closed: the
    /// returned handle is one more owner of the socket's single close.
    pub unsafe fn from_raw(raw: *mut WSK_SOCKET) -> Self {
        let raw = NonNull::new(raw).expect("a NULL connection socket");
        // INVARIANT: a live connection socket of this provider (this function's # Safety).
        Self { raw }
    }

    /// The WSK_SOCKET, for a call the test makes through [`ConnSocket::dispatch`] itself. It
    /// stays valid while this handle does (until [`ConnSocket::close`]).
    pub fn as_ptr(&self) -> *mut WSK_SOCKET {
        self.raw.as_ptr()
    }

    /// The provider's key for this socket (its WSK_SOCKET's address).
    pub fn key(&self) -> usize {
        key(self.raw)
    }

    /// The provider's connection dispatch table.
    pub fn dispatch(&self) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
        // SAFETY: the socket is live (type invariant), so its WSK_SOCKET is readable.
        let dispatch = unsafe { (*self.raw.as_ptr()).Dispatch };
        // SAFETY: a live connection socket's Dispatch is the provider's connection table (static).
        unsafe { &*dispatch.cast::<WSK_PROVIDER_CONNECTION_DISPATCH>() }
    }

    /// WskCloseSocket, waited for; consumes the handle.
    pub fn close(self) {
        // SAFETY: the socket is live (type invariant); no other call on it is in progress: none
        // through this handle (consumed here, and not Sync, so no other thread borrows it), none
        // through another (from_raw's callers promise not to use one while or after the socket
        // is closed); this handle is not used again; `Basic` is its table's basic dispatch.
        unsafe { close_raw(self.as_ptr(), &self.dispatch().Basic) };
    }

    /// WskCloseSocket, not waited for; consumes the handle.
    pub fn start_close(self) -> Pending {
        let f = self.dispatch().Basic.WskCloseSocket.unwrap();
        let raw = self.as_ptr();
        // SAFETY: PFN_WSK_CLOSE_SOCKET's contract: the socket is live (type invariant) with no
        // other call on it in progress (as in `close`: this handle is consumed, others are not
        // used while or after it closes), and `irp` is Pending::start's fresh IRP.
        Pending::start(|irp| unsafe { f(raw, irp) })
    }
}

/// A listening socket bound to an ephemeral loopback port.
pub fn bound_listener(
    client: &Client,
    family: u16,
    context: *mut c_void,
    dispatch: *const WSK_CLIENT_LISTEN_DISPATCH,
) -> (ListenSocket, SocketAddr) {
    let socket = client.listen_socket(family, context, dispatch);
    let any: SocketAddr = if family == AF_INET6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    assert_eq!(socket.bind(any), NtStatus::SUCCESS);
    let address = socket.local_address();
    (socket, address)
}

/// Runs `body` in a child process (this test binary, only `test_name`) and asserts that it dies
/// with a verifier violation naming `rule`. In the child, runs `body`.
pub fn expect_violation(test_name: &str, rule: &str, body: impl FnOnce()) {
    if std::env::var("HOSTKERNEL_CHILD").as_deref() == Ok(test_name) {
        body();
        eprintln!("the misuse was not caught");
        std::process::exit(0);
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTKERNEL_CHILD", test_name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the child survived its misuse:\n{stderr}"
    );
    assert!(
        stderr.contains(hostkernel::verifier::VIOLATION_PREFIX)
            && stderr.contains(&format!("[{rule}]")),
        "expected a [{rule}] violation, got:\n{stderr}"
    );
}

/// A WSK call left pending: its IRP and the event its completion routine sets.
pub struct Pending {
    irp: *mut IRP,
    event: Box<Event>,
    pub returned: NtStatus,
}

impl Pending {
    pub fn start(f: impl FnOnce(*mut IRP) -> NtStatus) -> Self {
        let irp = irp::io_allocate_irp(1);
        let event = Box::new(Event::new(EventKind::Notification, false));
        // SAFETY: live IRP; the boxed event outlives the IRP (freed in `wait`).
        unsafe {
            irp::io_set_completion_routine(
                irp,
                signal,
                std::ptr::from_ref(&*event).cast_mut().cast(),
                true,
                true,
                true,
            );
        };
        let returned = f(irp);
        Self {
            irp,
            event,
            returned,
        }
    }

    pub fn irp(&self) -> *mut IRP {
        self.irp
    }

    pub fn is_done(&self) -> bool {
        self.event.is_set()
    }

    pub fn wait(self) -> (NtStatus, usize) {
        assert!(
            self.event.wait(Some(Duration::from_secs(10))),
            "IRP never completed"
        );
        // SAFETY: completed.
        let result = unsafe { irp::io_status(self.irp) };
        // SAFETY: completed and not used again.
        unsafe { irp::io_free_irp(self.irp) };
        result
    }
}

/// A WskAccept left pending ([`ListenSocket::start_accept`]).
pub struct PendingAccept {
    pending: Pending,
}

impl PendingAccept {
    /// What WskAccept returned.
    pub fn returned(&self) -> NtStatus {
        self.pending.returned
    }

    pub fn irp(&self) -> *mut IRP {
        self.pending.irp()
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_done()
    }

    /// Waits for completion: `(IoStatus.Status, IoStatus.Information)`.
    pub fn wait(self) -> (NtStatus, usize) {
        self.pending.wait()
    }

    /// Waits for completion, which must be STATUS_SUCCESS, and takes the accepted socket.
    pub fn wait_socket(self) -> ConnSocket {
        let (status, information) = self.pending.wait();
        assert_eq!(status, NtStatus::SUCCESS, "the WskAccept failed");
        let raw = NonNull::new(information as *mut WSK_SOCKET)
            .expect("a successful WskAccept's Information is NULL");
        // INVARIANT: a WskAccept that completed with STATUS_SUCCESS: its Information is the
        // accepted connection socket (PFN_WSK_ACCEPT, WSK-FACTS §3), handed to this test only
        // (the PendingAccept is consumed) and not closed.
        ConnSocket { raw }
    }
}
