//! The ordered work queue: `flush` waits for everything queued before it, even when no memory is
//! left — `Listener::stop` frees the listener (and the work item inside it) right after its
//! flush, so a flush that returned early would let the worker run on freed memory.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hostkernel::schedule::{self, Schedule};
use wskaccept::kernel::{WorkItem, WorkQueue};

struct Slow {
    started: AtomicBool,
    release: AtomicBool,
    ran: AtomicBool,
}

/// The work routine: marks the start, spins until released, marks the end.
///
/// # Safety
/// `context` is the test's `Slow`, alive until the queue is stopped (the work queue's contract
/// for a routine's context).
unsafe fn slow(context: *mut c_void) {
    // SAFETY: the context is the test's `Slow`, alive until the queue is stopped.
    let slow = unsafe { &*context.cast::<Slow>() };
    slow.started.store(true, Ordering::SeqCst);
    while !slow.release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    slow.ran.store(true, Ordering::SeqCst);
}

#[test]
fn flush_waits_for_queued_work_even_when_no_memory_is_left() {
    schedule::configure(Schedule::from_seed(1));
    let queue = WorkQueue::start().unwrap();
    let state = Slow {
        started: AtomicBool::new(false),
        release: AtomicBool::new(false),
        ran: AtomicBool::new(false),
    };
    let item = WorkItem::new(slow);
    // SAFETY: `slow` needs a `Slow`; `state` is one and outlives the queue (stopped below).
    unsafe { item.set_context(std::ptr::from_ref(&state).cast_mut().cast()) };
    // SAFETY: `item` and `state` outlive the queue (stopped below).
    unsafe { queue.handle().queue(&item) };
    while !state.started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // From now on every allocation fails.
    let mut starved = Schedule::from_seed(1);
    starved.alloc_fail_percent = 100;
    schedule::configure(starved);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            state.release.store(true, Ordering::SeqCst);
        });
        queue.flush();
        assert!(
            state.ran.load(Ordering::SeqCst),
            "flush returned before the work queued before it had run"
        );
    });
    schedule::configure(Schedule::from_seed(1));
    queue.stop();
    let outstanding = hostkernel::accounting::outstanding();
    assert!(outstanding.is_clean(), "{outstanding}");
}
