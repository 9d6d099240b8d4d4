//! Worker-only state: what, once the listener is published, only the worker touches — reachable
//! only through a [`Worker`] proof token, the way `kick_locked` takes a `&SpinGuard`.

use core::cell::UnsafeCell;
use core::marker::PhantomData;

/// Proof that the holder may touch a listener's worker-only state: the worker's run of that
/// listener (`Listener::process`, once it found the listener past Starting), or `start` under
/// the listener's lock before it goes Running.
///
/// # Invariants
/// For one listener, at most one `Worker` is alive at a time: the ordered work queue runs one item
/// at a time, a run makes its token only after it saw a phase past Starting under the lock, and
/// `start` drops its token before it sets Running under that same lock. Not `Send`: a token never
/// leaves the thread that was given it.
pub(super) struct Worker<'l> {
    _listener: PhantomData<&'l ()>,
    _not_send: PhantomData<*const ()>,
}

impl Worker<'_> {
    /// The token. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// The caller is the worker's run of the listener whose state the token will reach, after it
    /// saw a phase past Starting under the listener's lock, or `start` holding that lock before
    /// the listener goes Running; no other token for the listener is alive (the type's invariant).
    pub(super) unsafe fn assume() -> Self {
        // INVARIANT: the caller's promise: it is the worker's run (or `start` under the lock)
        // and no other token for the listener is alive.
        Self {
            _listener: PhantomData,
            _not_send: PhantomData,
        }
    }
}

/// A value only the [`Worker`] touches once the listener is published.
///
/// # Invariants
/// The value is reached only through [`WorkerOnly::get`], which needs the `Worker` token, so
/// (by the token's invariant) never from two threads at once.
pub(super) struct WorkerOnly<T>(UnsafeCell<T>);

// SAFETY: by the invariant, one thread at a time reaches the value (the token holder), so sharing
// the cell shares `T` only as moving it between threads would (`T: Send`).
unsafe impl<T: Send> Sync for WorkerOnly<T> {}

impl<T> WorkerOnly<T> {
    /// A cell holding `value`.
    pub(super) const fn new(value: T) -> Self {
        // INVARIANT: the only way to the value is `get`, which takes the token.
        Self(UnsafeCell::new(value))
    }

    /// The value, for as long as the token is lent. IRQL: PASSIVE_LEVEL.
    #[allow(clippy::mut_from_ref)]
    pub(super) fn get<'a>(&'a self, _worker: &'a mut Worker<'_>) -> &'a mut T {
        // SAFETY: the type's invariant and the token's: the token's holder is the only one who
        // reaches the value, and the token is borrowed mutably for as long as this reference
        // lives, so no second reference can be made from it meanwhile.
        unsafe { &mut *self.0.get() }
    }
}
