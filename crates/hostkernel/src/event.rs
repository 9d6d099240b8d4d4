//! KEVENT: notification events (stay signaled until reset, wake every waiter) and synchronization
//! events (wake one waiter and reset themselves).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::irql;

/// The two KEVENT kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// NotificationEvent.
    Notification,
    /// SynchronizationEvent.
    Synchronization,
}

/// A kernel event.
///
/// Setting it takes the lock only to change the state and count the waiters; the condition
/// variable is told after the lock is released and only when a thread waits, so a set with no
/// waiter makes no system call and a woken waiter does not find the lock still held (one futex
/// wake and one futex wait per wake-up, as KeSetEvent readying one thread).
#[derive(Debug)]
pub struct Event {
    state: Mutex<EventState>,
    condvar: Condvar,
}

/// Four bytes, kind included, so that an event is no larger than a mutex, a flag and a condition
/// variable (drivers embed events in their objects).
#[derive(Debug)]
struct EventState {
    kind: EventKind,
    signaled: bool,
    /// Threads in `wait` blocked on the condition variable (counted under the lock).
    waiters: u16,
}

impl Event {
    /// KeInitializeEvent.
    #[must_use]
    pub const fn new(kind: EventKind, signaled: bool) -> Self {
        Self {
            state: Mutex::new(EventState {
                kind,
                signaled,
                waiters: 0,
            }),
            condvar: Condvar::new(),
        }
    }

    /// KeSetEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        irql::assert_at_most_dispatch("KeSetEvent");
        let (kind, waiters) = {
            let mut state = self.lock();
            state.signaled = true;
            (state.kind, state.waiters)
        };
        // A waiter counted under the lock is blocked on the condition variable or about to
        // re-check `signaled` under the lock: told after the release, it cannot miss the set.
        if waiters > 0 {
            match kind {
                EventKind::Notification => self.condvar.notify_all(),
                EventKind::Synchronization => self.condvar.notify_one(),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        self.lock().signaled = false;
    }

    /// KeReadStateEvent.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.lock().signaled
    }

    /// KeWaitForSingleObject. `None` waits forever. Returns true when signaled, false on timeout.
    ///
    /// IRQL: PASSIVE_LEVEL, or <= DISPATCH_LEVEL with a zero timeout (a poll), as on Windows.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        if timeout != Some(Duration::ZERO) {
            irql::assert_passive("KeWaitForSingleObject with a non-zero timeout");
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if state.signaled {
                if state.kind == EventKind::Synchronization {
                    state.signaled = false;
                }
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    Some(deadline - now)
                }
            };
            state.waiters += 1;
            state = match timeout {
                None => self
                    .condvar
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(timeout) => {
                    self.condvar
                        .wait_timeout(state, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, EventKind};
    use std::time::Duration;

    #[test]
    fn notification_event_stays_signaled() {
        let event = Event::new(EventKind::Notification, false);
        assert!(!event.wait(Some(Duration::ZERO)));
        event.set();
        assert!(event.wait(Some(Duration::ZERO)));
        assert!(event.wait(Some(Duration::ZERO)));
        event.clear();
        assert!(!event.wait(Some(Duration::from_millis(5))));
    }

    #[test]
    fn synchronization_event_resets_after_one_wait() {
        let event = Event::new(EventKind::Synchronization, true);
        assert!(event.wait(None));
        assert!(!event.wait(Some(Duration::ZERO)));
    }
}
