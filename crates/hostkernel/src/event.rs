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
#[derive(Debug)]
pub struct Event {
    kind: EventKind,
    signaled: Mutex<bool>,
    condvar: Condvar,
}

impl Event {
    /// KeInitializeEvent.
    #[must_use]
    pub const fn new(kind: EventKind, signaled: bool) -> Self {
        Self {
            kind,
            signaled: Mutex::new(signaled),
            condvar: Condvar::new(),
        }
    }

    /// KeSetEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        irql::assert_at_most_dispatch("KeSetEvent");
        let mut signaled = self.signaled.lock().unwrap_or_else(PoisonError::into_inner);
        *signaled = true;
        match self.kind {
            EventKind::Notification => self.condvar.notify_all(),
            EventKind::Synchronization => self.condvar.notify_one(),
        }
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        *self.signaled.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// KeReadStateEvent.
    #[must_use]
    pub fn is_set(&self) -> bool {
        *self.signaled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// KeWaitForSingleObject. `None` waits forever. Returns true when signaled, false on timeout.
    ///
    /// IRQL: PASSIVE_LEVEL, or <= DISPATCH_LEVEL with a zero timeout (a poll), as on Windows.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        if timeout != Some(Duration::ZERO) {
            irql::assert_passive("KeWaitForSingleObject with a non-zero timeout");
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut signaled = self.signaled.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *signaled {
                if self.kind == EventKind::Synchronization {
                    *signaled = false;
                }
                return true;
            }
            match deadline {
                None => {
                    signaled = self
                        .condvar
                        .wait(signaled)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    signaled = self
                        .condvar
                        .wait_timeout(signaled, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
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
