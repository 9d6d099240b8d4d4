//! Each verifier check fires on its misuse. A violation is fatal (a bug check on Windows), so every
//! misuse runs in a child process that must die naming the rule.

mod common;

use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hostkernel::{irp, irql};
use wsk::*;

/// WskGetLocalAddress on `listener` with a fresh IRP whose completion routine is `routine`;
/// returns the IRP (the tests misuse it afterwards).
fn local_address_with(
    listener: &ListenSocket,
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
fn query_local_address(listener: &ListenSocket, irp: *mut IRP) {
    let f = listener.dispatch().WskGetLocalAddress.unwrap();
    let mut storage = SOCKADDR_STORAGE::zeroed();
    // SAFETY: PFN_WSK_GET_LOCAL_ADDRESS's contract for `listener` (live: ListenSocket's
    // invariant) and `storage` (a writable SOCKADDR_STORAGE for the call: the host writes it
    // during the call); the IRP is deliberately wrong in these tests, which the verifier stops
    // before any memory is touched.
    unsafe { f(listener.as_ptr(), storage.as_mut_ptr(), irp) };
}

/// Waits until the provider has finished every close but for `open` sockets (the child runs one
/// test, so the count is exact). A waited close returns once its IRP completed, which the provider
/// does before it poisons the WSK_SOCKET, so a read of its Dispatch right then would race with
/// that write (and find the real table, or the poison, by chance). The provider poisons the
/// socket before it takes it off the sockets count, a SeqCst atomic: once this returns, the
/// poisoning happens-before whatever the caller does next.
fn wait_until_closes_finished(open: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hostkernel::accounting::outstanding().sockets != open {
        assert!(
            std::time::Instant::now() < deadline,
            "the close never finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn listener_with_client() -> (Client, ListenSocket) {
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
            let accept = listener.start_accept();
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
            let accept = listener.start_accept();
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
            let accept = listener.start_accept();
            let f = listener.dispatch().WskAccept.unwrap();
            // SAFETY: PFN_WSK_ACCEPT's contract for the listener (live: ListenSocket's
            // invariant) and the NULL out-parameters; deliberately wrong: the same IRP again
            // while pending, which the verifier stops (resubmit-pending-irp) before the call
            // goes on.
            unsafe {
                f(
                    listener.as_ptr(),
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
                local_address_with(&listener, keep, std::ptr::from_ref(&DONE).cast_mut().cast());
            while !DONE.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Deliberately wrong: completed, and submitted again without IoReuseIrp.
            query_local_address(&listener, irp);
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
            let _irp = local_address_with(&listener, returns_success, std::ptr::null_mut());
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
    let raw = LISTENER.load(Ordering::SeqCst) as *mut WSK_SOCKET;
    // SAFETY: LISTENER holds the listener of the test that stored it before the call this
    // routine completes, which stays open for the child's whole life (it is never closed): a
    // live listening socket of this provider, and this handle is never closed.
    let listener = unsafe { ListenSocket::from_raw(raw) };
    // Deliberately wrong: a WSK call from a completion routine.
    query_local_address(&listener, irp::io_allocate_irp(1));
    NtStatus::MORE_PROCESSING_REQUIRED
}

#[test]
fn a_wsk_call_inside_a_completion_routine_is_caught() {
    expect_violation(
        "a_wsk_call_inside_a_completion_routine_is_caught",
        "wsk-call-in-completion-routine",
        || {
            let (_client, listener) = listener_with_client();
            LISTENER.store(listener.key(), Ordering::SeqCst);
            let _irp = local_address_with(&listener, calls_wsk, std::ptr::null_mut());
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
            // The provider's WskBind and the socket's address, taken while it is open: the misuse
            // below reaches WskBind without reading the closed socket's WSK_SOCKET.
            let bind = listener.dispatch().WskBind.unwrap();
            let stale = listener.as_ptr();
            listener.close();
            let mut storage = SOCKADDR_STORAGE::from(SocketAddr::from(([127, 0, 0, 1], 0)));
            // SAFETY: deliberately wrong, and the point of the test: `stale` is closed, against
            // PFN_WSK_BIND's rule that the socket is live. Sound in the host kernel all the same:
            // wsk_bind starts with CallGuard::enter, which looks `stale` up as a number in the
            // provider's socket table, finds the tombstone its close left (kept while the socket
            // is quarantined, the 8,192 latest closes) and raises socket-used-after-close, which
            // stops the child, before anything reads `stale` or `storage` or takes the IRP. This
            // thread never reads the closed WSK_SOCKET, so it cannot race with the provider
            // poisoning it.
            let _ = call(|irp| unsafe { bind(stale, storage.as_mut_ptr(), 0, irp) });
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
            let stale = listener.as_ptr();
            listener.close();
            wait_until_closes_finished(0);
            // SAFETY: deliberately wrong, and the point of the test: `stale` is closed, against
            // from_raw's contract, and is closed again below as a driver would, through the
            // Dispatch it reads from the WSK_SOCKET. Sound in the host kernel all the same: a
            // closed socket's WSK_SOCKET stays allocated while it is quarantined (the 8,192
            // latest closes), and its close having finished (waited for above) its Dispatch is
            // the poison table, written before this thread reads it; the table's WskCloseSocket
            // (poisoned_close) reads no argument and raises socket-closed-twice, which stops the
            // child.
            let closed = unsafe { ListenSocket::from_raw(stale) };
            closed.close();
        },
    );
}

/// A second WskCloseSocket reached through the provider table read while the socket was open
/// (the WSK_SOCKET's Dispatch is never read after the close): the host kernel's close finds the
/// tombstone the first close left.
#[test]
fn a_second_close_through_a_table_read_while_open_is_caught() {
    expect_violation(
        "a_second_close_through_a_table_read_while_open_is_caught",
        "socket-closed-twice",
        || {
            let (_client, listener) = listener_with_client();
            let close = listener.dispatch().Basic.WskCloseSocket.unwrap();
            let stale = listener.as_ptr();
            listener.close();
            // SAFETY: deliberately wrong, and the point of the test: `stale` is closed, against
            // PFN_WSK_CLOSE_SOCKET's rule that a socket is closed once. Sound in the host kernel
            // all the same: wsk_close_socket looks `stale` up as a number in the provider's
            // socket table, finds the tombstone the first close left (kept while the socket is
            // quarantined, the 8,192 latest closes) and raises socket-closed-twice, which stops
            // the child, before it reads `stale` or takes the IRP.
            let _ = call(|irp| unsafe { close(stale, irp) });
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
                finished_inline_percent: 100,
            });
            let (_client, listener) = listener_with_client();
            // SAFETY: a second handle to the open listener, for the closer thread: a listening
            // socket of this provider, not closed, and the first handle is not used once the
            // second closes it. Deliberately wrong, and the point of the test: the close comes
            // while this thread's WskGetLocalAddress on the listener is in progress. Sound in
            // the host kernel: the closer reads the live socket's Dispatch (the provider's
            // table), and wsk_close_socket finds the call counted in the provider's socket table
            // (CallGuard) and raises close-while-call-in-progress, which stops the child, before
            // it closes anything.
            let second = unsafe { ListenSocket::from_raw(listener.as_ptr()) };
            let closer = std::thread::spawn(move || {
                while !IN_CALL.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                second.close();
            });
            let _irp = local_address_with(&listener, stalls, std::ptr::null_mut());
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
            let address = listener.local_address();
            let _peer = std::net::TcpStream::connect(address).unwrap();
            let socket = listener.start_accept().wait_socket();
            let stale = socket.as_ptr();
            socket.close();
            wait_until_closes_finished(1);
            // SAFETY: deliberately wrong, and the point of the test: `stale` is closed, against
            // from_raw's contract. Sound in the host kernel all the same: a closed socket's
            // WSK_SOCKET stays allocated while it is quarantined (the 8,192 latest closes), and
            // its close having finished (waited for above) its Dispatch is the poison table,
            // written before this thread reads it: a table of non-NULL functions at least as
            // long as the connection table.
            let closed = unsafe { ConnSocket::from_raw(stale) };
            // Deliberately wrong: reading Dispatch after the close completed yields the poison
            // table, and any function through it stops the process.
            let send = closed.dispatch().WskSend.unwrap();
            let mut buffer = WSK_BUF {
                Mdl: std::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            };
            // SAFETY: deliberately wrong: the socket is closed, and `send` is the poison table's
            // entry (poisoned_call), which reads no argument (the system ABI leaves them to the
            // caller) and raises socket-used-after-close, which stops the child.
            unsafe { send(stale, &raw mut buffer, 0, std::ptr::null_mut()) };
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
fn socket_being_handed_over() -> (Client, std::net::TcpStream, ConnSocket) {
    let client = Client::register();
    let (listener, address) = bound_listener(
        &client,
        AF_INET,
        std::ptr::null_mut(),
        &raw const SLOW_ACCEPT,
    );
    assert_eq!(listener.set_events(WSK_EVENT_ACCEPT), NtStatus::SUCCESS);
    let peer = std::net::TcpStream::connect(address).unwrap();
    while HANDED_OVER.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let raw = HANDED_OVER.load(Ordering::SeqCst) as *mut WSK_SOCKET;
    // SAFETY: `raw` is the AcceptSocket the running slow_accept hands over (it returns
    // STATUS_SUCCESS): a connection socket of this provider, not closed, whose WSK_SOCKET the
    // provider wrote before the callback published it (HANDED_OVER's SeqCst store and load order
    // that write before this thread's reads). Deliberately, its callback has not returned: the
    // tests use the socket anyway, which is the misuse under test; the host looks the socket up
    // (CallGuard::enter, wsk_close_socket) and raises socket-used-before-accept-event-returned
    // before it touches anything.
    let socket = unsafe { ConnSocket::from_raw(raw) };
    (client, peer, socket)
}

#[test]
fn closing_a_socket_before_its_accept_event_returned_is_caught() {
    expect_violation(
        "closing_a_socket_before_its_accept_event_returned_is_caught",
        "socket-used-before-accept-event-returned",
        || {
            let (_client, _peer, socket) = socket_being_handed_over();
            // Deliberately wrong: the accept callback has not returned yet.
            socket.close();
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
            let f = socket.dispatch().WskGetRemoteAddress.unwrap();
            let raw = socket.as_ptr();
            let mut storage = SOCKADDR_STORAGE::zeroed();
            // SAFETY: PFN_WSK_GET_REMOTE_ADDRESS's contract: `raw` is live (ConnSocket's
            // invariant), `storage` a writable SOCKADDR_STORAGE that outlives the call, `irp`
            // call()'s IRP. Deliberately wrong: the accept callback handing `raw` over has not
            // returned.
            let _ = call(|irp| unsafe { f(raw, storage.as_mut_ptr(), irp) });
        },
    );
}

unsafe extern "system" fn nothing(
    _dpc: *mut hostkernel::dpc::Kdpc,
    _context: *mut c_void,
    _argument1: *mut c_void,
    _argument2: *mut c_void,
) {
}

#[test]
fn queuing_an_uninitialized_dpc_is_caught() {
    expect_violation(
        "queuing_an_uninitialized_dpc_is_caught",
        "dpc-not-initialized",
        || {
            let dpc = Box::leak(Box::new(hostkernel::dpc::Kdpc::new()));
            // SAFETY: the DPC is leaked (it never moves); deliberately wrong: KeInitializeDpc
            // was never called on it.
            unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) };
        },
    );
}

#[test]
fn freeing_pool_that_holds_a_queued_dpc_is_caught() {
    expect_violation(
        "freeing_pool_that_holds_a_queued_dpc_is_caught",
        "free-queued-dpc",
        || {
            let tag = u32::from_le_bytes(*b"Test");
            let size = size_of::<hostkernel::dpc::Kdpc>() + 64;
            let block = hostkernel::pool::allocate(tag, size, 64);
            #[allow(clippy::cast_ptr_alignment)] // 64-aligned block, offset 64
            let dpc = block.wrapping_add(64).cast::<hostkernel::dpc::Kdpc>();
            // SAFETY: the block is `size` bytes, 64-aligned: room for a KDPC at offset 64.
            unsafe { dpc.write(hostkernel::dpc::Kdpc::new()) };
            // SAFETY: written above; it stays at this address until the (wrong) free below.
            let dpc = unsafe { &*dpc };
            dpc.initialize(nothing, std::ptr::null_mut());
            irql::at_dispatch(|| {
                dpc.set_target(hostkernel::processor::current());
                // SAFETY: deliberately wrong: the pool holding the queued DPC is freed below,
                // before this processor's IRQL drops and runs it.
                unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) };
                // SAFETY: allocated above with this tag.
                unsafe { hostkernel::pool::free(block, tag) };
            });
        },
    );
}

#[test]
fn flushing_dpcs_above_passive_is_caught() {
    expect_violation(
        "flushing_dpcs_above_passive_is_caught",
        "irql-not-passive",
        || irql::at_dispatch(hostkernel::dpc::flush_queued_dpcs),
    );
}
