//! KeGetCurrentProcessorNumberEx: each host thread is its own processor. That is what a driver
//! may conclude from a processor number on Windows, at DISPATCH_LEVEL: code that runs on one
//! processor at DISPATCH_LEVEL runs to its end before anything else at that level starts there.
//! A host thread is sequential in the same way (the OS may preempt it, but nothing else runs as
//! that thread meanwhile). The host's DPC thread runs an idle processor's DPCs *as* that
//! processor ([`crate::dpc`]): meanwhile this answers that processor's number there.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static NUMBER: Cell<Option<u32>> = const { Cell::new(None) };
    static IMPERSONATING: Cell<Option<u32>> = const { Cell::new(None) };
}

/// KeGetCurrentProcessorNumberEx(NULL): this thread's processor number, given on first use.
#[must_use]
pub fn current() -> u32 {
    if let Some(number) = IMPERSONATING.with(Cell::get) {
        return number;
    }
    NUMBER.with(|n| {
        n.get().unwrap_or_else(|| {
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            n.set(Some(number));
            crate::dpc::register(number);
            number
        })
    })
}

/// Runs `f` as processor `number` (the DPC thread, running that processor's DPCs).
pub(crate) fn impersonate<R>(number: u32, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IMPERSONATING.with(|i| i.set(None));
        }
    }
    IMPERSONATING.with(|i| i.set(Some(number)));
    let _reset = Reset;
    f()
}
