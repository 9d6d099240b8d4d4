//! Spin locks and events: KSPIN_LOCK and KEVENT behind the facade's `SpinLock` and `Event`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::time::Duration;

use wdk_sys::ntddk::{
    KeAcquireSpinLockRaiseToDpc, KeClearEvent, KeInitializeEvent, KeReleaseSpinLock, KeSetEvent,
    KeWaitForSingleObject,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, KEVENT, KIRQL, KSPIN_LOCK, LARGE_INTEGER, STATUS_SUCCESS,
};
use wsk::NtStatus;

use super::{KERNEL_MODE, NonPaged};

/// A KSPIN_LOCK protecting a `T`; acquiring raises to DISPATCH_LEVEL.
///
/// # Invariants
/// `value` is reached only through a [`SpinGuard`], and the KSPIN_LOCK admits one guard at a
/// time. The lock lives wherever its owner lives: every owner in this driver is in nonpaged pool
/// or a static, as a spin lock must be.
pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

impl<T> core::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The value is reached only under the lock (type invariant), so it is not shown.
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

// SAFETY: by the type's invariant one holder at a time reaches the value, so sharing the lock
// shares `T` only as moving it between threads would (`T: Send`).
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: a KSPIN_LOCK is a plain word with no thread affinity; moving the lock moves `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// KeInitializeSpinLock (a zeroed KSPIN_LOCK). IRQL: any.
    pub const fn new(value: T) -> Self {
        // INVARIANT: no guard exists yet; `value` is reachable only through `lock`, which hands
        // out guards.
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// KeAcquireSpinLockRaiseToDpc. IRQL: <= DISPATCH_LEVEL; the guard holds DISPATCH_LEVEL.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: `self.lock` is an initialised KSPIN_LOCK (zero, KeInitializeSpinLock's value)
        // in nonpaged memory (the type's invariant); the caller is at <= DISPATCH_LEVEL.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // INVARIANT: the KSPIN_LOCK was just acquired, at `old_irql`.
        SpinGuard {
            lock: self,
            old_irql,
        }
    }
}

/// A held spin lock.
///
/// # Invariants
/// The guard's KSPIN_LOCK is held, acquired by this guard at `old_irql`.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    old_irql: KIRQL,
}

impl<T> core::fmt::Debug for SpinGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinGuard")
            .field("old_irql", &self.old_irql)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock (its invariant), so no other reference to the value
        // exists outside this guard.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock (its invariant) and is borrowed uniquely, so this is
        // the only reference to the value.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard's invariant: this guard acquired the lock at `old_irql`, and
        // releases it once, here.
        unsafe { KeReleaseSpinLock(self.lock.lock.get(), self.old_irql) };
    }
}

/// A KEVENT in nonpaged pool (a KEVENT must not move after KeInitializeEvent).
///
/// # Invariants
/// The block holds a KEVENT initialised by KeInitializeEvent; it is freed on drop, after which
/// no waiter can exist (waiters borrow the event).
#[derive(Debug)]
pub struct Event(NonNull<UnsafeCell<KEVENT>>);

// SAFETY: KEVENTs are made to be signalled and waited on from any thread (KeSetEvent and
// KeWaitForSingleObject synchronise internally on the dispatcher lock).
unsafe impl Sync for Event {}
// SAFETY: a KEVENT has no thread affinity; ownership of the pool block moves with the value.
unsafe impl Send for Event {}

impl Event {
    fn with(kind: wdk_sys::EVENT_TYPE, signaled: bool) -> Result<Self, NtStatus> {
        // SAFETY: KEVENT is a plain C struct for which all-zero bytes is a valid value; it is
        // initialised by KeInitializeEvent below before any other use.
        let zeroed = unsafe { core::mem::zeroed::<KEVENT>() };
        let block = NonPaged::new(UnsafeCell::new(zeroed))?;
        let event = Self(block.0);
        // SAFETY: the KEVENT is in its final, nonpaged place and not yet shared.
        unsafe { KeInitializeEvent(event.raw(), kind, u8::from(signaled)) };
        // INVARIANT: the block holds a KEVENT KeInitializeEvent just initialised, and no waiter
        // can exist before the event is returned.
        Ok(event)
    }

    fn raw(&self) -> *mut KEVENT {
        // SAFETY: the block is live for as long as `self` (the type's invariant).
        unsafe { self.0.as_ref().get() }
    }

    /// KeInitializeEvent(NotificationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no nonpaged pool is left for the KEVENT.
    pub fn notification(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::NotificationEvent, signaled)
    }

    /// KeInitializeEvent(SynchronizationEvent). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when no nonpaged pool is left for the KEVENT.
    pub fn synchronization(signaled: bool) -> Result<Self, NtStatus> {
        Self::with(_EVENT_TYPE::SynchronizationEvent, signaled)
    }

    /// KeSetEvent(Increment 0, Wait FALSE). IRQL: <= DISPATCH_LEVEL.
    pub fn set(&self) {
        // SAFETY: an initialised KEVENT (the type's invariant); Wait FALSE allows DISPATCH_LEVEL.
        // The previous state it returns is of no use here.
        let _previous = unsafe { KeSetEvent(self.raw(), 0, 0) };
    }

    /// KeClearEvent. IRQL: <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        // SAFETY: an initialised KEVENT (the type's invariant).
        unsafe { KeClearEvent(self.raw()) };
    }

    /// KeWaitForSingleObject(Executive, KernelMode, not alertable). IRQL: PASSIVE_LEVEL (or
    /// <= DISPATCH_LEVEL with a zero timeout). True when signalled, false on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        // Relative timeouts are negative, in 100 ns units.
        let mut relative = timeout.map(|t| LARGE_INTEGER {
            QuadPart: -i64::try_from(t.as_nanos() / 100).unwrap_or(i64::MAX),
        });
        let timeout_ptr = relative
            .as_mut()
            .map_or(core::ptr::null_mut(), core::ptr::from_mut);
        // SAFETY: an initialised KEVENT (the type's invariant) in nonpaged memory; a KernelMode,
        // non-alertable wait, so the only outcomes are STATUS_SUCCESS and STATUS_TIMEOUT.
        let status = unsafe {
            KeWaitForSingleObject(
                self.raw().cast(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                0,
                timeout_ptr,
            )
        };
        status == STATUS_SUCCESS
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the block came from NonPaged::new; `&mut self` proves no waiter borrows it.
        unsafe { NonPaged::free(self.0) };
    }
}
