//! The driver as a whole: WSK registration, the worker, the listener set, and the API the control
//! plane (IOCTLs) and the tests drive. Every method runs at PASSIVE_LEVEL and is serialised by one
//! control lock; the accept path never takes it.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use wsk::NtStatus;

use crate::kernel::{Event, PoolBox, SystemThread, WorkItem, WorkQueue, tags};
use crate::listener::{
    CounterSnapshot, Global, HANDOVER_DELAY, Listener, ListenerConfig, ListenerInfo, STOP_TIMEOUT,
};
use crate::net::WskClient;
use crate::pending::{PendingId, PendingInfo};
use crate::policy::Policy;
use crate::table::{ConnId, ConnInfo, Table};
use crate::trace;

/// Table slots scanned per spin-lock hold when listing connections (what one
/// `Table::active_from` call examines).
const LIST_CHUNK: u32 = crate::table::SCAN_CHUNK;

/// Most listeners at once (listener slots in a connection id are 8 bits).
pub const MAX_LISTENERS: usize = 16;
/// How long a listener start waits for the WSK provider before STATUS_DEVICE_NOT_READY.
pub const NPI_WAIT: Duration = Duration::from_secs(5);
/// How long each WskCaptureProviderNPI attempt on the worker waits, in milliseconds.
const CAPTURE_SLICE_MS: u32 = 250;
/// The first pause after a capture that failed without waiting; it doubles up to
/// [`CAPTURE_BACKOFF_MAX`].
const CAPTURE_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between capture attempts.
const CAPTURE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Driver-wide figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriverStats {
    /// Listeners running.
    pub listeners: u32,
    /// Connections in all tables.
    pub active: u32,
    /// Highest `active` seen.
    pub peak: u32,
    /// Accept IRPs pending across listeners.
    pub accept_irps_pending: u32,
    /// Counters summed over running and stopped listeners.
    pub counters: CounterSnapshot,
}

/// One connection as the control plane lists it.
#[derive(Clone, Copy, Debug)]
pub struct ConnRecord {
    /// The id user mode uses.
    pub id: ConnId,
    /// Listener id.
    pub listener: u32,
    /// What the table recorded.
    pub info: ConnInfo,
}

struct Listeners {
    slots: [Option<PoolBox<Listener>>; MAX_LISTENERS],
    /// Stopped listeners whose rundown outlasted the stop timeout: kept (never freed while an IRP
    /// can reach them) until it finishes; freed by the next control call that finds them done,
    /// or at unload, which waits for them before the work queue goes.
    parked: [Option<PoolBox<Listener>>; MAX_LISTENERS],
    sequence: u32,
    retired: CounterSnapshot,
}

/// The loaded driver.
///
/// Invariant: pinned in pool (work items and listeners point into it); `listeners` is touched
/// only while holding `control`; dropped only through [`Engine::unload`].
pub struct Engine {
    client: PoolBox<WskClient>,
    queue: Option<WorkQueue>,
    capture: WorkItem,
    npi_ready: Event,
    unloading: AtomicBool,
    capture_status: AtomicU32,
    control: Event,
    listeners: UnsafeCell<Listeners>,
    global: Global,
    /// Set to make waiting GET_PENDING calls return STATUS_CANCELLED (host shutdown, unload).
    cancel_waits: AtomicBool,
    ticker: Option<SystemThread>,
    ticker_stop: Event,
    /// Set when unload starts (wakes a capture that is pausing between attempts).
    unload_started: Event,
    /// How long a stop waits before it parks the listener, in milliseconds.
    stop_timeout_ms: AtomicU64,
}

// SAFETY: `listeners` is only reached under the `control` lock; everything else is Sync.
unsafe impl Sync for Engine {}
// SAFETY: the engine holds no thread-affine data: its kernel objects (spin lock, events, system
// thread handle, registration) may be used and dropped from any thread at PASSIVE_LEVEL.
unsafe impl Send for Engine {}

/// The capture work item: captures the provider NPI. IRQL: PASSIVE_LEVEL (worker).
///
/// # Safety
/// Run only by the work queue as the capture item's routine: `context` is the engine, which flushes
/// the queue before it goes.
unsafe fn capture_provider(context: *mut c_void) {
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

/// The ticker: every [`TICK`], kicks listeners with deferred requests (their timeouts); and
/// [`HANDOVER_DELAY`] after an accept callback signalled a socket to hand over, asks its listener
/// to hand it over. IRQL: PASSIVE_LEVEL (system thread).
///
/// # Safety
/// Run only as the ticker thread's routine: `context` is the engine, which joins the thread before
/// it goes.
unsafe fn tick(context: *mut c_void) {
    // SAFETY: the ticker's context is the engine, which joins this thread before it goes.
    let engine = unsafe { &*context.cast::<Engine>() };
    let tick_100ns = u64::try_from(TICK.as_nanos() / 100).unwrap_or(u64::MAX);
    let mut next_tick = crate::kernel::interrupt_time().saturating_add(tick_100ns);
    loop {
        let now = crate::kernel::interrupt_time();
        let until_tick = Duration::from_nanos(next_tick.saturating_sub(now).saturating_mul(100));
        let handover = engine.global.handover_ready.wait(Some(until_tick));
        if handover && engine.ticker_stop.wait(Some(HANDOVER_DELAY)) {
            return;
        }
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

/// The control lock (a synchronization event used as a PASSIVE-level mutex).
struct ControlGuard<'a>(&'a Event);

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl Engine {
    /// DriverEntry's part: WskRegister, start the worker, and start capturing the provider NPI in
    /// the background. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// What WskRegister returns, or STATUS_INSUFFICIENT_RESOURCES.
    pub fn load() -> Result<PoolBox<Self>, NtStatus> {
        let client = WskClient::register()?;
        let queue = WorkQueue::start()?;
        let engine = PoolBox::new(
            tags::DRIVER,
            Self {
                client,
                queue: Some(queue),
                capture: WorkItem::new(capture_provider),
                npi_ready: Event::notification(false)?,
                unloading: AtomicBool::new(false),
                capture_status: AtomicU32::new(NtStatus::PENDING.as_u32()),
                control: Event::synchronization(true)?,
                listeners: UnsafeCell::new(Listeners {
                    slots: Default::default(),
                    parked: Default::default(),
                    sequence: 0,
                    retired: CounterSnapshot::default(),
                }),
                global: Global::new()?,
                cancel_waits: AtomicBool::new(false),
                ticker: None,
                ticker_stop: Event::notification(false)?,
                unload_started: Event::notification(false)?,
                stop_timeout_ms: AtomicU64::new(
                    u64::try_from(STOP_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                ),
            },
        )?;
        let mut engine = engine;
        let context: *mut c_void = engine.as_ptr().cast_mut().cast();
        engine.capture.set_context(context);
        // SAFETY: the engine is pinned and joins the ticker in Drop before it goes.
        engine.ticker = Some(unsafe { SystemThread::spawn(tick, context) }?);
        if let Some(queue) = &engine.queue {
            // SAFETY: the item lives in the pinned engine, which flushes the queue before it goes.
            unsafe { queue.handle().queue(&engine.capture) };
        }
        Ok(engine)
    }

    fn lock(&self) -> ControlGuard<'_> {
        self.control.wait(None);
        ControlGuard(&self.control)
    }

    #[allow(clippy::mut_from_ref)]
    fn listeners<'a>(&'a self, _guard: &'a ControlGuard<'_>) -> &'a mut Listeners {
        // SAFETY: the guard proves the control lock is held (Engine invariant).
        unsafe { &mut *self.listeners.get() }
    }

    /// Starts a listener. Waits up to [`NPI_WAIT`] for the provider. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_DEVICE_NOT_READY (no provider yet), STATUS_QUOTA_EXCEEDED (too many listeners), and
    /// whatever [`Listener::start`] returns.
    pub fn start_listener(&self, config: ListenerConfig) -> Result<ListenerInfo, NtStatus> {
        self.start_listener_with_policy(config, Policy::default())
    }

    /// Starts a listener with a policy in force from its first connection. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// As [`Engine::start_listener`].
    pub fn start_listener_with_policy(
        &self,
        config: ListenerConfig,
        policy: Policy,
    ) -> Result<ListenerInfo, NtStatus> {
        config.validate()?;
        if !self.npi_ready.wait(Some(NPI_WAIT)) {
            return Err(NtStatus::DEVICE_NOT_READY);
        }
        let provider = self.client.provider().ok_or(NtStatus::DEVICE_NOT_READY)?;
        let queue = self.queue.as_ref().ok_or(NtStatus::DEVICE_NOT_READY)?;
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        self.reap(listeners);
        let slot = listeners
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(NtStatus::QUOTA_EXCEEDED)?;
        listeners.sequence = listeners.sequence.wrapping_add(1) & 0x00FF_FFFF;
        #[allow(clippy::cast_possible_truncation)]
        let (slot_u8, id) = (slot as u8, (listeners.sequence << 8) | slot as u32);
        let address = config.address;
        let listener = Listener::start(id, slot_u8, config, policy, provider, queue, &self.global)
            .inspect_err(|&status| {
                trace::emit(trace::Event::ListenerStartFailed { address, status });
            })?;
        let info = listener.info();
        listeners.slots[slot] = Some(listener);
        trace::emit(trace::Event::ListenerStarted {
            listener: info.id,
            address: info.address,
        });
        Ok(info)
    }

    fn slot_of(id: u32) -> usize {
        (id & 0xFF) as usize
    }

    fn flush(&self) {
        if let Some(queue) = &self.queue {
            queue.flush();
        }
    }

    /// How long a stop waits for a listener's rundown before it parks the listener and returns
    /// (default [`STOP_TIMEOUT`]). A parked listener is freed once its last IRP is back, never
    /// before. IRQL: <= DISPATCH_LEVEL.
    pub fn set_stop_timeout(&self, timeout: Duration) {
        self.stop_timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Stops one listener (taken out of its slot) and frees it, or parks it when its rundown
    /// outlasts the stop timeout. Control lock held. IRQL: PASSIVE_LEVEL.
    fn stop_one(&self, listeners: &mut Listeners, listener: PoolBox<Listener>) -> CounterSnapshot {
        self.reap(listeners);
        let timeout = Duration::from_millis(self.stop_timeout_ms.load(Ordering::Relaxed));
        let id = listener.id();
        let active = listener.info().active;
        let counters = match Listener::stop(listener, || self.flush(), timeout) {
            Ok(counters) => {
                trace::emit(trace::Event::ListenerStopped {
                    listener: id,
                    connections: active,
                });
                counters
            }
            Err(listener) => {
                let info = listener.info();
                trace::emit(trace::Event::StopTimedOut {
                    listener: id,
                    connections: info.active,
                });
                let counters = info.counters;
                match listeners.parked.iter_mut().find(|p| p.is_none()) {
                    Some(free) => *free = Some(listener),
                    // Every parking place is taken: wait for this one here.
                    None => {
                        let _ = Listener::free_when_stopped(listener, || self.flush());
                    }
                }
                counters
            }
        };
        listeners.retired.add(&counters);
        counters
    }

    /// Frees parked listeners whose rundown has finished. Control lock held. IRQL: PASSIVE_LEVEL.
    fn reap(&self, listeners: &mut Listeners) {
        for place in &mut listeners.parked {
            if place.as_ref().is_some_and(|l| l.is_stopped())
                && let Some(listener) = place.take()
            {
                let _ = Listener::free_when_stopped(listener, || self.flush());
            }
        }
    }

    /// Waits for every parked listener and frees it (unload). IRQL: PASSIVE_LEVEL.
    fn free_parked(&self) {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        let held = listeners.parked.iter().filter(|p| p.is_some()).count();
        if held > 0 {
            trace::emit(trace::Event::UnloadOutstanding {
                listeners: u32::try_from(held).unwrap_or(u32::MAX),
            });
        }
        for place in &mut listeners.parked {
            if let Some(listener) = place.take() {
                let _ = Listener::free_when_stopped(listener, || self.flush());
            }
        }
    }

    /// Stops and frees one listener, closing its connections. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown id.
    pub fn stop_listener(&self, id: u32) -> Result<CounterSnapshot, NtStatus> {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        let slot = listeners
            .slots
            .get_mut(Self::slot_of(id))
            .ok_or(NtStatus::NOT_FOUND)?;
        if slot.as_ref().is_none_or(|l| l.id() != id) {
            return Err(NtStatus::NOT_FOUND);
        }
        let listener = slot.take().ok_or(NtStatus::NOT_FOUND)?;
        Ok(self.stop_one(listeners, listener))
    }

    /// Stops every listener. IRQL: PASSIVE_LEVEL.
    pub fn stop_all(&self) {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        for index in 0..MAX_LISTENERS {
            if let Some(listener) = listeners.slots[index].take() {
                self.stop_one(listeners, listener);
            }
        }
    }

    /// Every running listener. IRQL: PASSIVE_LEVEL.
    pub fn listeners_info(&self, mut each: impl FnMut(ListenerInfo)) {
        let guard = self.lock();
        for listener in self.listeners(&guard).slots.iter().flatten() {
            each(listener.info());
        }
    }

    /// One listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn listener_info(&self, id: u32) -> Result<ListenerInfo, NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => Ok(listener.info()),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Driver-wide figures. IRQL: PASSIVE_LEVEL.
    #[must_use]
    pub fn stats(&self) -> DriverStats {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        let mut stats = DriverStats {
            counters: listeners.retired,
            ..DriverStats::default()
        };
        for listener in listeners.slots.iter().flatten() {
            let info = listener.info();
            stats.listeners += 1;
            stats.accept_irps_pending += info.accept_irps_pending;
            stats.counters.add(&info.counters);
        }
        stats.active = self.global.active.load(Ordering::Relaxed);
        stats.peak = self.global.peak.load(Ordering::Relaxed);
        stats
    }

    /// Lists Active connections, paged: starts at `cursor` (0 first), fills `out`, returns how
    /// many were written and the cursor to continue with (`None` at the end). `listener` limits
    /// the list to one listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown listener.
    pub fn list_connections(
        &self,
        listener: Option<u32>,
        cursor: u64,
        out: &mut [Option<ConnRecord>],
    ) -> Result<(usize, Option<u64>), NtStatus> {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        if let Some(id) = listener {
            match listeners.slots.get(Self::slot_of(id)) {
                Some(Some(l)) if l.id() == id => {}
                _ => return Err(NtStatus::NOT_FOUND),
            }
        }
        // Cursor: listener slot in the high 32 bits, table index in the low 32.
        let mut slot = usize::try_from(cursor >> 32).unwrap_or(MAX_LISTENERS);
        #[allow(clippy::cast_possible_truncation)]
        let mut index = cursor as u32;
        let mut written = 0;
        while slot < MAX_LISTENERS {
            if let Some(l) = listeners.slots[slot]
                .as_ref()
                .filter(|l| listener.is_none_or(|id| id == l.id()))
            {
                let listener_id = l.id();
                let capacity = l.with_table(Table::capacity);
                // A chunk of slots per lock hold: the spin lock is never held for a whole table.
                while index < capacity {
                    let chunk_end = index.saturating_add(LIST_CHUNK).min(capacity);
                    let full = l.with_table(|table| {
                        for (i, entry) in
                            table.active_from(index).take_while(|(i, _)| *i < chunk_end)
                        {
                            if written == out.len() {
                                index = i;
                                return true;
                            }
                            if let Some(id) = table.id_of(i) {
                                out[written] = Some(ConnRecord {
                                    id,
                                    listener: listener_id,
                                    info: *entry.info(),
                                });
                                written += 1;
                            }
                        }
                        false
                    });
                    if full {
                        return Ok((written, Some(((slot as u64) << 32) | u64::from(index))));
                    }
                    index = chunk_end;
                }
            }
            slot += 1;
            index = 0;
        }
        Ok((written, None))
    }

    /// Closes one connection by id (graceful or abortive). IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown or stale id.
    pub fn close_connection(&self, id: ConnId, abortive: bool) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(usize::from(id.listener())) {
            Some(Some(listener)) => listener.close_connection(id, abortive),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Replaces a listener's policy. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn set_policy(&self, id: u32, policy: Policy) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => {
                listener.set_policy(policy);
                Ok(())
            }
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// A listener's policy. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND.
    pub fn policy(&self, id: u32) -> Result<Policy, NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(Self::slot_of(id)) {
            Some(Some(listener)) if listener.id() == id => Ok(listener.policy()),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// GET_PENDING, the inverted call: waits up to `timeout` for a request deferred to user mode
    /// (from one listener, or any) and hands it over. The control lock is not held while waiting.
    /// IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_TIMEOUT when none came; STATUS_CANCELLED when the listener stopped or the driver is
    /// unloading; STATUS_NOT_FOUND for an unknown listener.
    pub fn get_pending(
        &self,
        listener: Option<u32>,
        timeout: Duration,
    ) -> Result<(u32, PendingInfo), NtStatus> {
        let deadline = crate::kernel::interrupt_time()
            .saturating_add(u64::try_from(timeout.as_nanos() / 100).unwrap_or(u64::MAX));
        let mut first = true;
        loop {
            if self.unloading.load(Ordering::Acquire) || self.cancel_waits.load(Ordering::Acquire) {
                return Err(NtStatus::CANCELLED);
            }
            // Clear before looking: a request deferred after the look sets it again.
            self.global.pending_ready.clear();
            {
                let guard = self.lock();
                let listeners = self.listeners(&guard);
                let mut present = listener.is_none();
                for l in listeners
                    .slots
                    .iter()
                    .flatten()
                    .filter(|l| listener.is_none_or(|id| id == l.id()))
                {
                    present = true;
                    if let Some(info) = l.take_pending() {
                        return Ok((l.id(), info));
                    }
                }
                if !present {
                    return Err(if first {
                        NtStatus::NOT_FOUND
                    } else {
                        NtStatus::CANCELLED
                    });
                }
            }
            first = false;
            let now = crate::kernel::interrupt_time();
            if now >= deadline {
                return Err(NtStatus::TIMEOUT);
            }
            // In slices, so that cancellation is seen promptly.
            let slice = Duration::from_nanos((deadline - now).saturating_mul(100))
                .min(Duration::from_millis(100));
            self.global.pending_ready.wait(Some(slice));
        }
    }

    /// DECIDE: user mode's answer for a deferred request. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an unknown, decided, timed-out or withdrawn request.
    pub fn decide(&self, id: PendingId, accept: bool) -> Result<(), NtStatus> {
        let guard = self.lock();
        match self.listeners(&guard).slots.get(usize::from(id.listener())) {
            Some(Some(listener)) => listener.decide(id, accept),
            _ => Err(NtStatus::NOT_FOUND),
        }
    }

    /// Waits up to `timeout` (`None`: until signalled) for a request to be deferred to user mode,
    /// or for [`Engine::wake_pending_waiters`] (for the Windows inverted-call pump that completes
    /// parked GET_PENDING requests). True when signalled. IRQL: PASSIVE_LEVEL.
    pub fn wait_pending_ready(&self, timeout: Option<Duration>) -> bool {
        let signalled = self.global.pending_ready.wait(timeout);
        self.global.pending_ready.clear();
        signalled
    }

    /// How many requests were ever deferred to user mode: a waiter that looks at the pending
    /// queue more than once per wake-up compares it across its looks (each look clears the
    /// pending-ready signal). IRQL: any.
    #[must_use]
    pub fn deferrals(&self) -> u64 {
        self.global.deferrals.load(Ordering::Acquire)
    }

    /// Wakes whoever waits in [`Engine::wait_pending_ready`] without cancelling anything: after a
    /// GET_PENDING answered directly (its look cleared the signal another deferral may have set)
    /// and to stop the pump. IRQL: <= DISPATCH_LEVEL.
    pub fn wake_pending_waiters(&self) {
        self.global.pending_ready.set();
    }

    /// Makes every waiting and future GET_PENDING return STATUS_CANCELLED (before a host
    /// shutdown or unload). IRQL: <= DISPATCH_LEVEL.
    pub fn cancel_waits(&self) {
        self.cancel_waits.store(true, Ordering::Release);
        self.global.pending_ready.set();
    }

    /// The status of the last provider capture attempt (PENDING before the first).
    #[must_use]
    pub fn provider_status(&self) -> NtStatus {
        NtStatus(self.capture_status.load(Ordering::Acquire).cast_signed())
    }

    /// Unload: stop every listener (closing every connection — never waiting for peers), stop
    /// the worker, release the NPI and deregister. IRQL: PASSIVE_LEVEL.
    pub fn unload(this: PoolBox<Self>) {
        drop(this);
    }
}

impl Drop for Engine {
    /// Dropping the engine is unloading it, so that no path (an early return, a failed test) can
    /// reach WskDeregister with sockets open — it would wait for them forever (WSK-FACTS §7).
    fn drop(&mut self) {
        self.unloading.store(true, Ordering::Release);
        self.unload_started.set();
        self.cancel_waits();
        if let Some(ticker) = self.ticker.take() {
            self.ticker_stop.set();
            self.global.handover_ready.set();
            ticker.join();
        }
        self.stop_all();
        // Parked listeners' IRPs still reach them and, through their kicks, the work queue: both
        // stay until the last completion is back (WskDeregister would wait for it anyway).
        self.free_parked();
        if let Some(queue) = self.queue.take() {
            queue.flush();
            queue.stop();
        }
        // The client field drops next: it releases the NPI and deregisters (every socket is
        // closed by now).
    }
}
