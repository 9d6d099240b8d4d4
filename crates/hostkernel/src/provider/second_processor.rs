//! Fault mode: a second processor ([`set_second_processor`]). On Windows, completion routines
//! and event callbacks run on whichever processor the transport's work happened on, several at
//! once: nothing documents that one listener's WskAcceptEvent calls, its accept IRPs'
//! completions, or the completions of different connections' IRPs come one at a time. And a
//! callback that has reached its last statement has not yet returned to the provider, which may
//! still be busy with it. In this mode the event loop hands every other accept callback or
//! accept completion of a batch, and every other connection it serves for one poll (its
//! receive, send and disconnect completions), to a second thread; and every accept callback is
//! held up for half a millisecond after it returns, before the provider records that it
//! returned. A driver that takes "a later callback has started" as proof that an earlier one
//! returned is caught using a socket before its WskAcceptEvent returned; one whose completion
//! routines assume they run one at a time meets them running at once.
//!
//! The loop waits for the second processor ([`join`]) before it does anything but deliver more
//! connections of the same listener or serve more sockets of the same poll, so a close or a
//! disable finished on the loop still comes after every running callback (WSK-FACTS §5, §7),
//! and no socket is served on both threads at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use super::work::ON_LOOP;
use crate::verifier;

static ON: AtomicBool = AtomicBool::new(false);
/// Whether the second processor's thread was started (it is, on first use, and then stays).
static STARTED: AtomicBool = AtomicBool::new(false);

/// Turns the fault mode on or off.
pub fn set_second_processor(on: bool) {
    ON.store(on, Ordering::SeqCst);
}

/// Jobs (accept callbacks, accept completions, connection services) the second processor ran
/// since the process started: a test can check that the mode took effect.
static JOBS: AtomicU64 = AtomicU64::new(0);

/// How many accept callbacks, accept completions and connection services the second processor
/// has run since the process started.
#[must_use]
pub fn second_processor_jobs() -> u64 {
    JOBS.load(Ordering::SeqCst)
}

/// Whether the fault mode is on.
pub(super) fn enabled() -> bool {
    ON.load(Ordering::SeqCst)
}

/// How long the provider stays busy with an accept callback after it returned, in this mode.
pub(super) const AFTER_RETURN: Duration = Duration::from_micros(500);

type Job = Box<dyn FnOnce() + Send>;

/// The second processor: its queue, and whether it is busy.
struct Processor {
    jobs: Sender<Job>,
    busy: Arc<(Mutex<bool>, Condvar)>,
}

static PROCESSOR: LazyLock<Processor> = LazyLock::new(|| {
    let (jobs, inbox) = channel::<Job>();
    let busy = Arc::new((Mutex::new(false), Condvar::new()));
    let done = Arc::clone(&busy);
    STARTED.store(true, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("hostkernel-wsk-cpu1".into())
        .spawn(move || {
            verifier::abort_on_violation_in_this_thread();
            for job in inbox {
                job();
                JOBS.fetch_add(1, Ordering::SeqCst);
                *done.0.lock().unwrap_or_else(PoisonError::into_inner) = false;
                done.1.notify_all();
            }
        })
        .expect("hostkernel: cannot start the second processor's thread");
    Processor { jobs, busy }
});

/// Runs `job` on the second processor when the mode is on, this is the event loop and the second
/// processor is idle; otherwise here, at once. Nothing is allocated when the mode is off.
pub(super) fn run(job: impl FnOnce() + Send + 'static) {
    if !enabled() || !ON_LOOP.with(Cell::get) {
        return job();
    }
    if let Err(job) = try_run(Box::new(job)) {
        job();
    }
}

/// Runs `job` on the second processor if it is idle; gives the job back if it is busy.
fn try_run(job: Job) -> Result<(), Job> {
    let processor = &*PROCESSOR;
    let mut busy = processor
        .busy
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *busy {
        return Err(job);
    }
    *busy = true;
    drop(busy);
    processor.jobs.send(job).map_err(|error| {
        *processor
            .busy
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        error.0
    })
}

/// Waits until the second processor is idle.
pub(super) fn join() {
    if !STARTED.load(Ordering::SeqCst) {
        return;
    }
    let processor = &*PROCESSOR;
    let mut busy = processor
        .busy
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    while *busy {
        busy = processor
            .busy
            .1
            .wait(busy)
            .unwrap_or_else(PoisonError::into_inner);
    }
}
