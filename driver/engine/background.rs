//! The engine's background work: capturing the provider NPI on the worker (never blocking
//! DriverEntry), and the ticker thread (deferred requests' timeouts, accept-event hand-overs).

use core::ffi::c_void;
use core::sync::atomic::Ordering;
use core::time::Duration;

use super::Engine;

/// How long each WskCaptureProviderNPI attempt on the worker waits, in milliseconds.
const CAPTURE_SLICE_MS: u32 = 250;
/// The first pause after a capture that failed without waiting; it doubles up to
/// [`CAPTURE_BACKOFF_MAX`].
const CAPTURE_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between capture attempts.
const CAPTURE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The capture work item: captures the provider NPI. IRQL: PASSIVE_LEVEL (worker).
///
/// # Safety
/// Run only by the work queue as the capture item's routine: `context` is the engine, which flushes
/// the queue before it goes.
pub(super) unsafe fn capture_provider(context: *mut c_void) {
    // SAFETY: the capture item's context is the engine, alive until unload flushed the queue.
    let engine = unsafe { &*context.cast::<Engine>() };
    // WSK-FACTS §7: capture on a worker, never blocking DriverEntry; retry in slices so unload
    // is never held up by a provider that does not come. A capture that fails without waiting
    // (STATUS_NOINTERFACE) is retried after a pause that grows, never in a tight loop.
    let slice_100ns = u64::from(CAPTURE_SLICE_MS) * 10_000;
    let mut backoff = CAPTURE_BACKOFF_MIN;
    while !engine.unloading.load(Ordering::Acquire) {
        let started = crate::kernel::interrupt_time();
        let status = engine.client.capture(CAPTURE_SLICE_MS);
        engine
            .capture_status
            .store(status.as_u32(), Ordering::Release);
        if status.is_success() {
            engine.npi_ready.set();
            return;
        }
        if crate::kernel::interrupt_time().saturating_sub(started) < slice_100ns {
            // Interrupted by unload (the event is set at its start) or the pause is over.
            if engine.unload_started.wait(Some(backoff)) {
                return;
            }
            backoff = (backoff * 2).min(CAPTURE_BACKOFF_MAX);
        } else {
            backoff = CAPTURE_BACKOFF_MIN;
        }
    }
}

/// How often deferred requests' timeouts are checked.
const TICK: Duration = Duration::from_millis(200);

/// The ticker: every [`TICK`], kicks listeners with deferred requests (their timeouts); and when
/// an accept callback signalled a socket to hand over that no hand-over DPC covers (a callback
/// below DISPATCH_LEVEL, or on a processor without one), asks its listener to hand over what no
/// later callback has (the worker's waited disable of the accept event proves the callbacks
/// returned: `Listener::hand_over_quiesced`). IRQL: PASSIVE_LEVEL (system thread).
///
/// # Safety
/// Run only as the ticker thread's routine: `context` is the engine, which joins the thread before
/// it goes.
pub(super) unsafe fn tick(context: *mut c_void) {
    // SAFETY: the ticker's context is the engine, which joins this thread before it goes.
    let engine = unsafe { &*context.cast::<Engine>() };
    let tick_100ns = u64::try_from(TICK.as_nanos() / 100).unwrap_or(u64::MAX);
    let mut next_tick = crate::kernel::interrupt_time().saturating_add(tick_100ns);
    loop {
        let now = crate::kernel::interrupt_time();
        let until_tick = Duration::from_nanos(next_tick.saturating_sub(now).saturating_mul(100));
        // Woken early by an accept callback's hand-over signal: it is looked at below.
        let _ = engine.global.handover_ready.wait(Some(until_tick));
        if engine.ticker_stop.wait(Some(Duration::ZERO)) {
            return;
        }
        let due = crate::kernel::interrupt_time() >= next_tick;
        if due {
            next_tick = crate::kernel::interrupt_time().saturating_add(tick_100ns);
        }
        let guard = engine.lock();
        for listener in engine.listeners(&guard).slots.iter().flatten() {
            if due && listener.has_pending() {
                listener.kick();
            }
            if listener.has_handovers() {
                listener.tick_handovers();
            }
        }
    }
}
