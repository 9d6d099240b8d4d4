//! Each verifier check fires on its misuse. A violation is fatal (a bug check on Windows), so every
//! misuse runs in a child process that must die naming the rule.

mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hostkernel::{irp, irql};
use wsk::*;

/// WskGetLocalAddress on `listener` with a fresh IRP whose completion routine is `routine`;
/// returns the IRP (the tests misuse it afterwards).
fn local_address_with(
    listener: *mut WSK_SOCKET,
    routine: wsk::PfnIoCompletionRoutine,
    context: *mut c_void,
) -> *mut IRP {
    let irp = irp::io_allocate_irp(1);
    // SAFETY: a live IRP; the routine and its context are the test's, valid for the process.
    unsafe { irp::io_set_completion_routine(irp, routine, context, true, true, true) };
    query_local_address(listener, irp);
    irp
}

/// WskGetLocalAddress on `listener` with `irp` (the host writes the address during the call).
fn query_local_address(listener: *mut WSK_SOCKET, irp: *mut IRP) {
    let f = listen_dispatch(listener).WskGetLocalAddress.unwrap();
    let mut storage = SOCKADDR_STORAGE::zeroed();
    // SAFETY: PFN_WSK_GET_LOCAL_ADDRESS's contract for `listener` (live) and `storage` (a
    // writable SOCKADDR_STORAGE for the call: the host writes it during the call); the IRP is
    // deliberately wrong in these tests, which the verifier stops before any memory is touched.
    unsafe { f(listener, storage.as_mut_ptr(), irp) };
}

fn listener_with_client() -> (Client, *mut WSK_SOCKET) {
    let client = Client::register();
    let (listener, _) = bound_listener(&client, AF_INET, std::ptr::null_mut(), std::ptr::null());
    (client, listener)
}

#[test]
fn freeing_a_pending_irp_is_caught() {
    expect_violation(
        "freeing_a_pending_irp_is_caught",
        "free-pending-irp",
        || {
            let (_client, listener) = listener_with_client();
            let accept = start_accept(listener);
            // SAFETY: deliberately wrong: the IRP is pending.
            unsafe { irp::io_free_irp(accept.irp()) };
        },
    );
}

#[test]
fn reusing_a_pending_irp_is_caught() {
    expect_violation(
        "reusing_a_pending_irp_is_caught",
        "reuse-pending-irp",
        || {
            let (_client, listener) = listener_with_client();
            let accept = start_accept(listener);
            // SAFETY: deliberately wrong: the IRP is pending.
            unsafe { irp::io_reuse_irp(accept.irp(), NtStatus::SUCCESS) };
        },
    );
}

#[test]
fn resubmitting_a_pending_irp_is_caught() {
    expect_violation(
        "resubmitting_a_pending_irp_is_caught",
        "resubmit-pending-irp",
        || {
            let (_client, listener) = listener_with_client();
            let accept = start_accept(listener);
            let f = listen_dispatch(listener).WskAccept.unwrap();
            // SAFETY: deliberately wrong: the same IRP again while pending.
            unsafe {
                f(
                    listener,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    accept.irp(),
                )
            };
        },
    );
}

/// A completion routine that records it ran.
///
/// # Safety
/// `done` must point at a live `AtomicBool` (PIO_COMPLETION_ROUTINE's context is the caller's).
unsafe extern "system" fn keep(
    _d: *mut DEVICE_OBJECT,
    _i: *mut IRP,
    done: *mut c_void,
) -> NtStatus {
    // SAFETY: `done` points at a live AtomicBool (this function's # Safety): the static DONE.
    unsafe { (*done.cast::<AtomicBool>()).store(true, Ordering::SeqCst) };
    NtStatus::MORE_PROCESSING_REQUIRED
}

static DONE: AtomicBool = AtomicBool::new(false);

#[test]
fn submitting_a_completed_irp_without_reuse_is_caught() {
    expect_violation(
        "submitting_a_completed_irp_without_reuse_is_caught",
        "submit-completed-irp-without-reuse",
        || {
            let (_client, listener) = listener_with_client();
            let irp =
                local_address_with(listener, keep, std::ptr::from_ref(&DONE).cast_mut().cast());
            while !DONE.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Deliberately wrong: completed, and submitted again without IoReuseIrp.
            query_local_address(listener, irp);
        },
    );
}

/// A completion routine that wrongly returns STATUS_SUCCESS.
///
/// # Safety
/// None beyond PIO_COMPLETION_ROUTINE's: it reads neither the IRP nor the context.
unsafe extern "system" fn returns_success(
    _d: *mut DEVICE_OBJECT,
    _i: *mut IRP,
    _c: *mut c_void,
) -> NtStatus {
    NtStatus::SUCCESS
}

#[test]
fn a_completion_routine_must_return_more_processing_required() {
    expect_violation(
        "a_completion_routine_must_return_more_processing_required",
        "completion-routine-must-return-more-processing-required",
        || {
            let (_client, listener) = listener_with_client();
            let _irp = local_address_with(listener, returns_success, std::ptr::null_mut());
            std::thread::sleep(Duration::from_secs(2));
        },
    );
}

static LISTENER: AtomicUsize = AtomicUsize::new(0);

/// A completion routine that wrongly calls WSK.
///
/// # Safety
/// None beyond PIO_COMPLETION_ROUTINE's: it reads neither the IRP nor the context.
unsafe extern "system" fn calls_wsk(
    _d: *mut DEVICE_OBJECT,
    _i: *mut IRP,
    _c: *mut c_void,
) -> NtStatus {
    let listener = LISTENER.load(Ordering::SeqCst) as *mut WSK_SOCKET;
    // Deliberately wrong: a WSK call from a completion routine.
    query_local_address(listener, irp::io_allocate_irp(1));
    NtStatus::MORE_PROCESSING_REQUIRED
}

#[test]
fn a_wsk_call_inside_a_completion_routine_is_caught() {
    expect_violation(
        "a_wsk_call_inside_a_completion_routine_is_caught",
        "wsk-call-in-completion-routine",
        || {
            let (_client, listener) = listener_with_client();
            LISTENER.store(listener as usize, Ordering::SeqCst);
            let _irp = local_address_with(listener, calls_wsk, std::ptr::null_mut());
            std::thread::sleep(Duration::from_secs(2));
        },
    );
}

#[test]
fn a_passive_only_call_above_passive_is_caught() {
    expect_violation(
        "a_passive_only_call_above_passive_is_caught",
        "irql-not-passive",
        || {
            let _old = irql::raise(irql::DISPATCH_LEVEL);
            let _client = Client::register();
        },
    );
}

#[test]
fn a_blocking_wait_at_dispatch_is_caught() {
    expect_violation(
        "a_blocking_wait_at_dispatch_is_caught",
        "irql-not-passive",
        || {
            let lock = hostkernel::spinlock::SpinLock::new(());
            let event =
                hostkernel::event::Event::new(hostkernel::event::EventKind::Notification, false);
            let _guard = lock.lock();
            event.wait(Some(Duration::from_millis(10)));
        },
    );
}

#[test]
fn a_socket_used_after_close_is_caught() {
    expect_violation(
        "a_socket_used_after_close_is_caught",
        "socket-used-after-close",
        || {
            let (_client, listener) = listener_with_client();
            close(listener);
            let _ = bind(listener, "127.0.0.1:0".parse().unwrap());
        },
    );
}

#[test]
fn a_socket_closed_twice_is_caught() {
    expect_violation(
        "a_socket_closed_twice_is_caught",
        "socket-closed-twice",
        || {
            let (_client, listener) = listener_with_client();
            close(listener);
            close(listener);
        },
    );
}

static IN_CALL: AtomicBool = AtomicBool::new(false);

/// A completion routine that holds its (inline) call open for two seconds.
///
/// # Safety
/// None beyond PIO_COMPLETION_ROUTINE's: it reads neither the IRP nor the context.
unsafe extern "system" fn stalls(
    _d: *mut DEVICE_OBJECT,
    _i: *mut IRP,
    _c: *mut c_void,
) -> NtStatus {
    // Runs inline, inside the provider call: hold the call open while another thread closes.
    IN_CALL.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    NtStatus::MORE_PROCESSING_REQUIRED
}

#[test]
fn closing_while_another_call_is_in_progress_is_caught() {
    expect_violation(
        "closing_while_another_call_is_in_progress_is_caught",
        "close-while-call-in-progress",
        || {
            hostkernel::schedule::configure(hostkernel::schedule::Schedule {
                seed: 1,
                inline_percent: 100,
                race_percent: 0,
                alloc_fail_percent: 0,
            });
            let (_client, listener) = listener_with_client();
            let key = listener as usize;
            let closer = std::thread::spawn(move || {
                while !IN_CALL.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                close(key as *mut WSK_SOCKET);
            });
            let _irp = local_address_with(listener, stalls, std::ptr::null_mut());
            let _ = closer.join();
        },
    );
}

#[test]
fn freeing_pool_twice_is_caught() {
    expect_violation("freeing_pool_twice_is_caught", "bad-pool-free", || {
        let block = hostkernel::pool::allocate(u32::from_le_bytes(*b"Test"), 64, 8);
        // SAFETY: allocated above.
        unsafe { hostkernel::pool::free(block, u32::from_le_bytes(*b"Test")) };
        // SAFETY: deliberately wrong: a double free.
        unsafe { hostkernel::pool::free(block, u32::from_le_bytes(*b"Test")) };
    });
}

#[test]
fn an_invalid_irp_pointer_is_caught() {
    expect_violation("an_invalid_irp_pointer_is_caught", "invalid-irp", || {
        let irp = irp::io_allocate_irp(1);
        // SAFETY: allocated above.
        unsafe { irp::io_free_irp(irp) };
        // SAFETY: deliberately wrong: freed already.
        unsafe { irp::io_free_irp(irp) };
    });
}

#[test]
fn a_completion_routine_that_may_not_run_on_a_driver_allocated_irp_is_caught() {
    expect_violation(
        "a_completion_routine_that_may_not_run_on_a_driver_allocated_irp_is_caught",
        "completion-routine-must-always-run",
        || {
            let irp = irp::io_allocate_irp(1);
            // SAFETY: a live IRP; deliberately wrong: InvokeOnCancel FALSE on an IRP the driver
            // allocated (its routine must run on every outcome to take it back).
            unsafe {
                irp::io_set_completion_routine(
                    irp,
                    keep,
                    std::ptr::from_ref(&DONE).cast_mut().cast(),
                    true,
                    true,
                    false,
                );
            };
        },
    );
}

#[test]
fn a_spin_lock_used_after_its_memory_was_freed_is_caught() {
    expect_violation(
        "a_spin_lock_used_after_its_memory_was_freed_is_caught",
        "object-used-after-free",
        || {
            let lock = Box::into_raw(Box::new(hostkernel::spinlock::SpinLock::new(0u32)));
            // SAFETY: dropped in place (the memory stays allocated and is never freed), as the
            // owner of a freed object would have done.
            unsafe { std::ptr::drop_in_place(lock) };
            // SAFETY: deliberately wrong: the lock was dropped (a late completion kicking a work
            // queue its driver already freed).
            let _guard = unsafe { (*lock).lock() };
        },
    );
}

#[test]
fn a_closed_socket_is_poisoned_so_a_call_through_its_dispatch_is_caught() {
    expect_violation(
        "a_closed_socket_is_poisoned_so_a_call_through_its_dispatch_is_caught",
        "socket-used-after-close",
        || {
            let (_client, listener) = listener_with_client();
            let address = local_address(listener);
            let _peer = std::net::TcpStream::connect(address).unwrap();
            let (status, information) = start_accept(listener).wait();
            assert_eq!(status, NtStatus::SUCCESS);
            let socket = information as *mut WSK_SOCKET;
            close(socket);
            // Deliberately wrong: reading Dispatch after the close completed yields the poison
            // table, and any function through it stops the process.
            let send = connection_dispatch(socket).WskSend.unwrap();
            let mut buffer = WSK_BUF {
                Mdl: std::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            };
            // SAFETY: deliberately wrong: the socket is closed.
            unsafe { send(socket, &raw mut buffer, 0, std::ptr::null_mut()) };
        },
    );
}

static HANDED_OVER: AtomicUsize = AtomicUsize::new(0);

/// An accept callback that publishes the socket, then takes its time returning (a test stand-in
/// for a callback whose thread is interrupted just before it returns).
///
/// # Safety
/// None beyond PFN_WSK_ACCEPT_EVENT's: it dereferences no argument.
unsafe extern "system" fn slow_accept(
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
    HANDED_OVER.store(socket as usize, Ordering::SeqCst);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    NtStatus::SUCCESS
}

static SLOW_ACCEPT: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(slow_accept),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

/// A listener whose accept callback is `slow_accept`, a peer connected to it, and the socket the
/// callback is handing over (its callback still running).
fn socket_being_handed_over() -> (Client, std::net::TcpStream, *mut WSK_SOCKET) {
    let client = Client::register();
    let (listener, address) = bound_listener(
        &client,
        AF_INET,
        std::ptr::null_mut(),
        &raw const SLOW_ACCEPT,
    );
    assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), NtStatus::SUCCESS);
    let peer = std::net::TcpStream::connect(address).unwrap();
    while HANDED_OVER.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    (
        client,
        peer,
        HANDED_OVER.load(Ordering::SeqCst) as *mut WSK_SOCKET,
    )
}

#[test]
fn closing_a_socket_before_its_accept_event_returned_is_caught() {
    expect_violation(
        "closing_a_socket_before_its_accept_event_returned_is_caught",
        "socket-used-before-accept-event-returned",
        || {
            let (_client, _peer, socket) = socket_being_handed_over();
            // Deliberately wrong: the accept callback has not returned yet.
            close(socket);
        },
    );
}

#[test]
fn using_a_socket_from_another_thread_before_its_accept_event_returned_is_caught() {
    expect_violation(
        "using_a_socket_from_another_thread_before_its_accept_event_returned_is_caught",
        "socket-used-before-accept-event-returned",
        || {
            let (_client, _peer, socket) = socket_being_handed_over();
            let f = connection_dispatch(socket).WskGetRemoteAddress.unwrap();
            let mut storage = SOCKADDR_STORAGE::zeroed();
            // SAFETY: PFN_WSK_GET_REMOTE_ADDRESS's contract: `socket` is live, `storage` a
            // writable SOCKADDR_STORAGE that outlives the call, `irp` call()'s IRP. Deliberately
            // wrong: the accept callback handing `socket` over has not returned.
            let _ = call(|irp| unsafe { f(socket, storage.as_mut_ptr(), irp) });
        },
    );
}
