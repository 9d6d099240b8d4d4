//! A minimal WSK client for the host kernel's own tests: registration, synchronous calls through
//! the dispatch tables with an IRP and an event, and a subprocess harness for verifier violations.
#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    missing_docs
)]

use std::ffi::c_void;
use std::net::SocketAddr;
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
    ) -> *mut WSK_SOCKET {
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
        info as *mut WSK_SOCKET
    }

    pub fn deregister(mut self) {
        // SAFETY: the registration is registered and holds the NPI captured once in register.
        unsafe { WskReleaseProviderNPI(self.registration()) };
        // SAFETY: the registration is registered and resident (boxed in self); every socket is
        // closed by the test first.
        unsafe { WskDeregister(self.registration()) };
    }
}

pub fn listen_dispatch(socket: *mut WSK_SOCKET) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: the socket is live, so its WSK_SOCKET is readable.
    let dispatch = unsafe { (*socket).Dispatch };
    // SAFETY: a listening socket's Dispatch is the provider's listen table (static).
    unsafe { &*dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>() }
}

pub fn connection_dispatch(socket: *mut WSK_SOCKET) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: the socket is live, so its WSK_SOCKET is readable.
    let dispatch = unsafe { (*socket).Dispatch };
    // SAFETY: a connection socket's Dispatch is the provider's connection table (static).
    unsafe { &*dispatch.cast::<WSK_PROVIDER_CONNECTION_DISPATCH>() }
}

pub fn set_option(socket: *mut WSK_SOCKET, level: u32, code: u32, value: u32) -> NtStatus {
    let f = listen_dispatch(socket).Basic.WskControlSocket.unwrap();
    let mut value = value;
    call(|irp| {
        // SAFETY: documented WskControlSocket arguments; `value` outlives the call.
        unsafe {
            f(
                socket,
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
pub fn set_events(socket: *mut WSK_SOCKET, mask: u32) -> NtStatus {
    let f = listen_dispatch(socket).Basic.WskControlSocket.unwrap();
    let mut control = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &raw const NPI_WSK_INTERFACE_ID,
        EventMask: mask,
    };
    // SAFETY: PFN_WSK_CONTROL_SOCKET's contract: `socket` is live (the test has not closed it),
    // `control` is a WSK_EVENT_CALLBACK_CONTROL of the size passed that outlives the call, and
    // SO_WSK_EVENT_CALLBACK is the one option that may go without an IRP.
    unsafe {
        f(
            socket,
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

pub fn bind(socket: *mut WSK_SOCKET, address: SocketAddr) -> NtStatus {
    let f = listen_dispatch(socket).WskBind.unwrap();
    let mut storage = SOCKADDR_STORAGE::from(address);
    // SAFETY: PFN_WSK_BIND's contract: `socket` is live, `storage` a SOCKADDR_STORAGE that
    // outlives the call (call() waits for the IRP), `irp` call()'s fresh IRP.
    call(|irp| unsafe { f(socket, storage.as_mut_ptr(), 0, irp) }).1
}

pub fn local_address(socket: *mut WSK_SOCKET) -> SocketAddr {
    let f = listen_dispatch(socket).WskGetLocalAddress.unwrap();
    let mut storage = SOCKADDR_STORAGE::zeroed();
    // SAFETY: PFN_WSK_GET_LOCAL_ADDRESS's contract: `socket` is live, `storage` a writable
    // SOCKADDR_STORAGE that outlives the call (call() waits for the IRP), `irp` call()'s IRP.
    let status = call(|irp| unsafe { f(socket, storage.as_mut_ptr(), irp) }).1;
    assert_eq!(status, NtStatus::SUCCESS);
    storage.to_socket_addr().unwrap()
}

/// WskCloseSocket, waited for. Works for listening and connection sockets (Basic is first).
pub fn close(socket: *mut WSK_SOCKET) {
    let f = listen_dispatch(socket).Basic.WskCloseSocket.unwrap();
    // SAFETY: PFN_WSK_CLOSE_SOCKET's contract: `socket` is live and has no call in progress,
    // `irp` is call()'s fresh IRP, and the caller does not use the socket afterwards.
    let (_, status, _) = call(|irp| unsafe { f(socket, irp) });
    assert_eq!(status, NtStatus::SUCCESS);
}

/// A listening socket bound to an ephemeral loopback port.
pub fn bound_listener(
    client: &Client,
    family: u16,
    context: *mut c_void,
    dispatch: *const WSK_CLIENT_LISTEN_DISPATCH,
) -> (*mut WSK_SOCKET, SocketAddr) {
    let socket = client.listen_socket(family, context, dispatch);
    let any: SocketAddr = if family == AF_INET6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    assert_eq!(bind(socket, any), NtStatus::SUCCESS);
    let address = local_address(socket);
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

/// WskAccept with its own IRP (no address out-parameters).
pub fn start_accept(listener: *mut WSK_SOCKET) -> Pending {
    let f = listen_dispatch(listener).WskAccept.unwrap();
    // SAFETY: PFN_WSK_ACCEPT's contract: `listener` is a live listening socket, the address
    // out-parameters are NULL (not asked for), a NULL client dispatch is allowed (no events on
    // the accepted socket), and `irp` is Pending::start's fresh IRP.
    Pending::start(|irp| unsafe {
        f(
            listener,
            0,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            irp,
        )
    })
}
