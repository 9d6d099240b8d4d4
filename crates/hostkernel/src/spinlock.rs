//! A KSPIN_LOCK: acquiring raises the thread to DISPATCH_LEVEL and spins; releasing lowers it back.
//! Nothing that may block (an event wait, a PASSIVE-only call) may run while it is held — the IRQL
//! checks catch that. A lock carries a signature that its drop overwrites, so acquiring a lock
//! whose memory was dropped or freed (a late completion kicking a freed work queue) is a
//! violation instead of silent corruption, like pool poisoning under Driver Verifier.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::irql::{self, DISPATCH_LEVEL, Kirql};
use crate::verifier::{Rule, violation};

/// The signature of a live lock ("SPLK").
const LIVE: u32 = 0x4B4C_5053;
/// What a dropped lock's signature becomes.
const DEAD: u32 = 0xDEAD_10CC;

/// A spin lock protecting a `T`.
///
/// # Invariants
/// `value` is only reached through a [`SpinGuard`], and at most one guard exists at a
/// time (`locked` is true exactly while one does).
pub struct SpinLock<T> {
    signature: AtomicU32,
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time, so sharing the lock is sound when
// `T` may be sent between threads — the same bound std's Mutex uses.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`; sound when `T: Send`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// KeInitializeSpinLock.
    pub const fn new(value: T) -> Self {
        Self {
            signature: AtomicU32::new(LIVE),
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// KeAcquireSpinLockRaiseToDpc: raises to DISPATCH_LEVEL and takes the lock.
    ///
    /// IRQL: <= DISPATCH_LEVEL; returns at DISPATCH_LEVEL until the guard drops.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        irql::assert_at_most_dispatch("KeAcquireSpinLock");
        let signature = self.signature.load(Ordering::Acquire);
        if signature != LIVE {
            violation(
                Rule::ObjectUsedAfterFree,
                format_args!(
                    "KeAcquireSpinLock({:p}): the lock's memory was freed (signature {signature:#x})",
                    std::ptr::from_ref(self)
                ),
            );
        }
        let old_irql = irql::raise(DISPATCH_LEVEL);
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(256) {
                // A user-mode thread can be preempted while holding the lock, which a real CPU
                // at DISPATCH_LEVEL cannot; yield so that the holder gets to run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        SpinGuard {
            lock: self,
            old_irql,
        }
    }
}

thread_local! {
    /// Set while this thread runs a callback the provider lets be "preempted" (fault mode).
    static PREEMPTIBLE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a driver callback) so that every spin lock it releases gives the processor away for
/// a millisecond first: the callback's thread is held up just after dropping a lock — an
/// interrupt on Windows — while other threads (the driver's worker) run on.
pub(crate) fn preemptible<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            PREEMPTIBLE.with(|p| p.set(false));
        }
    }
    PREEMPTIBLE.with(|p| p.set(true));
    let _reset = Reset;
    f()
}

impl<T> Drop for SpinLock<T> {
    fn drop(&mut self) {
        *self.signature.get_mut() = DEAD;
    }
}

/// Shows whether the lock is held, never the value (reading it needs the lock).
impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Proof that the lock is held; releases it and lowers IRQL when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    old_irql: Kirql,
}

/// Shows the value: the guard holds the lock.
impl<T: fmt::Debug> fmt::Debug for SpinGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinGuard")
            .field("value", &**self)
            .field("old_irql", &self.old_irql)
            .finish()
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (type invariant), so no `&mut T` exists elsewhere.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one (type invariant) and `&mut self` is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        irql::lower(self.old_irql);
        if PREEMPTIBLE.with(Cell::get) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use crate::irql::{self, DISPATCH_LEVEL, PASSIVE_LEVEL};

    #[test]
    fn holding_a_spin_lock_raises_irql_to_dispatch() {
        let lock = SpinLock::new(0u32);
        assert_eq!(irql::current(), PASSIVE_LEVEL);
        {
            let mut guard = lock.lock();
            *guard += 1;
            assert_eq!(irql::current(), DISPATCH_LEVEL);
        }
        assert_eq!(irql::current(), PASSIVE_LEVEL);
        assert_eq!(*lock.lock(), 1);
    }

    #[test]
    fn spin_lock_serialises_threads() {
        let lock = std::sync::Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }
}
