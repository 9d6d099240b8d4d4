//! KeGetCurrentProcessorNumberEx: each host thread is its own processor. That is what a driver
//! may conclude from a processor number on Windows, at DISPATCH_LEVEL: code that runs on one
//! processor at DISPATCH_LEVEL runs to its end before anything else at that level starts there.
//! A host thread is sequential in the same way (the OS may preempt it, but nothing else runs as
//! that thread meanwhile).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static NUMBER: Cell<Option<u32>> = const { Cell::new(None) };
}

/// KeGetCurrentProcessorNumberEx(NULL): this thread's processor number, given on first use.
#[must_use]
pub fn current() -> u32 {
    NUMBER.with(|n| {
        n.get().unwrap_or_else(|| {
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            n.set(Some(number));
            number
        })
    })
}
