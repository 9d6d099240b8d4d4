//! Fault mode: holding the event loop in its accept path or between a connection's I/O and its
//! completions ([`pause_accept_loop`]), the way a preempted provider thread is held, so that a
//! test can line up a race with it: the loop's batch of accepts against WskAccept calls
//! completing inline on other threads, an accept callback decided on against a disable of the
//! accept event, or completions the loop took against a close on another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Where the event loop is held, on which listening socket (its `WSK_SOCKET` address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// About to take a batch of connections from the OS backlog.
    BeforeBatch {
        /// The listening socket.
        listener: usize,
    },
    /// About to call WskAcceptEvent with a connection (decided on, not yet called).
    BeforeAcceptEvent {
        /// The listening socket.
        listener: usize,
    },
    /// Holding connections it took, before it hands any out.
    AfterBatch {
        /// The listening socket.
        listener: usize,
        /// How many connections it holds.
        held: usize,
    },
    /// Serving a connection socket: holding the completions its I/O produced (taken under the
    /// socket's lock), before it makes them.
    BeforeCompletions {
        /// The connection socket.
        connection: usize,
    },
}

#[derive(Debug, Default)]
struct Shared {
    /// Where the loop waits now, if it does.
    held_at: Mutex<Option<Point>>,
    changed: Condvar,
}

impl Shared {
    fn held_at(&self) -> MutexGuard<'_, Option<Point>> {
        self.held_at.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static ARMED: Mutex<Option<Arc<Shared>>> = Mutex::new(None);
/// Whether a pause may be armed: the event loop's accept path reads only this when none is (it
/// passes two points per connection).
static MAYBE_ARMED: AtomicBool = AtomicBool::new(false);

fn armed() -> MutexGuard<'static, Option<Arc<Shared>>> {
    ARMED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pause of the event loop's accept path, armed by [`pause_accept_loop`]: while it lives, the
/// loop waits at every [`Point`] it reaches until [`AcceptPause::resume`]. Dropping it lets the
/// loop go for good.
#[derive(Debug)]
pub struct AcceptPause {
    shared: Arc<Shared>,
}

/// Arms a pause of the event loop's accept path (one at a time).
#[must_use]
pub fn pause_accept_loop() -> AcceptPause {
    let shared = Arc::new(Shared::default());
    *armed() = Some(Arc::clone(&shared));
    MAYBE_ARMED.store(true, Ordering::SeqCst);
    AcceptPause { shared }
}

impl AcceptPause {
    /// Waits (at most `limit`) until the loop is held, and says where.
    ///
    /// # Panics
    /// If the loop is not held within `limit`.
    #[must_use]
    pub fn wait_until_held(&self, limit: Duration) -> Point {
        let deadline = Instant::now() + limit;
        let mut held_at = self.shared.held_at();
        loop {
            if let Some(point) = *held_at {
                return point;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the event loop did not reach a pause point"
            );
            held_at = self
                .shared
                .changed
                .wait_timeout(held_at, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets the loop go on from where it is held, to the next point.
    pub fn resume(&self) {
        *self.shared.held_at() = None;
        self.shared.changed.notify_all();
    }
}

impl Drop for AcceptPause {
    fn drop(&mut self) {
        {
            let mut armed = armed();
            if armed.as_ref().is_some_and(|a| Arc::ptr_eq(a, &self.shared)) {
                armed.take();
                MAYBE_ARMED.store(false, Ordering::SeqCst);
            }
        }
        self.resume();
    }
}

/// Called by the event loop at `point`, holding no lock: waits there while a pause is armed.
pub(super) fn pass(point: Point) {
    if !MAYBE_ARMED.load(Ordering::SeqCst) {
        return;
    }
    let Some(shared) = armed().clone() else {
        return;
    };
    let mut held_at = shared.held_at();
    *held_at = Some(point);
    shared.changed.notify_all();
    while held_at.is_some() {
        held_at = shared
            .changed
            .wait(held_at)
            .unwrap_or_else(PoisonError::into_inner);
    }
}
