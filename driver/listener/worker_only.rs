//! The worker-only cell: state that, once the listener is published, only the worker touches.

use core::cell::UnsafeCell;

/// A value only the worker touches once the listener is published.
///
/// Invariant: accessed only by `start` (before the listener is reachable by anyone else) and by
/// the worker thread afterwards; never concurrently.
pub(super) struct WorkerOnly<T>(UnsafeCell<T>);

// SAFETY: by the invariant, one thread at a time.
unsafe impl<T: Send> Sync for WorkerOnly<T> {}

impl<T> WorkerOnly<T> {
    /// # Safety
    /// Only from `start` before publication or from the worker thread.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive by the type invariant and the caller's promise.
        unsafe { &mut *self.0.get() }
    }
}

impl<T> WorkerOnly<T> {
    /// A cell holding `value`.
    pub(super) const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }
}
