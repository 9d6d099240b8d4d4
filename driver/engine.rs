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
    CounterSnapshot, Global, Listener, ListenerConfig, ListenerInfo, STOP_TIMEOUT,
};
use crate::net::WskClient;
use crate::policy::Policy;
use crate::table::{ConnId, ConnInfo};
use crate::trace;

mod background;
mod queries;

use background::{capture_provider, tick};

/// Table slots scanned per spin-lock hold when listing connections (what one
/// `Table::active_from` call examines).
const LIST_CHUNK: u32 = crate::table::SCAN_CHUNK;

/// Most listeners at once (listener slots in a connection id are 8 bits).
pub const MAX_LISTENERS: usize = 16;
// Every listener slot fits the id's listener field.
const _: () = assert!(MAX_LISTENERS as u64 <= 1 << crate::ids::LISTENER_BITS);
/// How long a listener start waits for the WSK provider before STATUS_DEVICE_NOT_READY.
pub const NPI_WAIT: Duration = Duration::from_secs(5);

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
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
}

struct Listeners {
    slots: [Option<PoolBox<Listener>>; MAX_LISTENERS],
    /// Slots whose listener a STOP call is running down while it waits without the control lock
    /// (so that queries can watch the rundown): such a listener stays in its slot, is reached
    /// (shared) by that call outside the lock, and is taken out of the slot by that call alone.
    stopping: [bool; MAX_LISTENERS],
    /// Stopped listeners whose rundown outlasted the stop timeout: kept (never freed while an IRP
    /// can reach them) until it finishes; freed by the next control call that finds them done,
    /// or at unload, which waits for them before the work queue goes.
    parked: [Option<PoolBox<Listener>>; MAX_LISTENERS],
    sequence: u32,
    retired: CounterSnapshot,
}

/// The loaded driver.
///
/// # Invariants
/// Pinned in pool (work items and listeners point into it); `listeners` is touched
/// only while holding `control`, except that a listener in a slot marked `stopping` is also
/// reached, shared, by the STOP call that marked it, which alone empties that slot; dropped only
/// through [`Engine::unload`], which runs after every control call has returned (KMDF purges the
/// queues before EvtDriverUnload; `wskctl host` joins its serving threads first).
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

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("unloading", &self.unloading)
            .finish_non_exhaustive()
    }
}

// SAFETY: `listeners` is only reached under the `control` lock, apart from the shared access a
// stopping slot's stopper keeps (Engine invariant; Listener is Sync); everything else is Sync.
unsafe impl Sync for Engine {}
// SAFETY: the engine holds no thread-affine data: its kernel objects (spin lock, events, system
// thread handle, registration) may be used and dropped from any thread at PASSIVE_LEVEL.
unsafe impl Send for Engine {}

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
        // INVARIANT: pinned in pool from here (the PoolBox) before any work item or listener
        // gets its address; `listeners` is empty, and nobody else can reach it yet.
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
                    stopping: [false; MAX_LISTENERS],
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
        // SAFETY: `capture_provider` needs the engine, which is pinned in pool and flushes the
        // queue (in unload) before it goes.
        unsafe { engine.capture.set_context(context) };
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
    /// outlasts `timeout`; `active` is how many connections it had when the stop began (traced).
    /// Control lock held. IRQL: PASSIVE_LEVEL.
    fn stop_one(
        &self,
        listeners: &mut Listeners,
        listener: PoolBox<Listener>,
        timeout: Duration,
        active: u32,
    ) -> CounterSnapshot {
        self.reap(listeners);
        let id = listener.id();
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
        let index = Self::slot_of(id);
        let (listener, active): (*const Listener, u32) = {
            let guard = self.lock();
            let listeners = self.listeners(&guard);
            let listener = listeners
                .slots
                .get(index)
                .and_then(Option::as_ref)
                .filter(|l| l.id() == id)
                .ok_or(NtStatus::NOT_FOUND)?;
            if listeners.stopping[index] {
                // Another STOP is running it down; that one reports its counters.
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            listeners.stopping[index] = true;
            let active = listener.info().active;
            listener.begin_stop();
            (listener.as_ptr(), active)
        };
        // Wait without the control lock, so that queries (`wskctl stop` shows the connections and
        // IRPs still out) and other listeners' calls go on meanwhile.
        let timeout = Duration::from_millis(self.stop_timeout_ms.load(Ordering::Relaxed));
        // SAFETY: the slot is marked stopping by this call, so the listener stays in it (pinned
        // in pool) until this call takes it out below (Engine invariant).
        let _ = unsafe { &*listener }.wait_stopped(timeout);
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        listeners.stopping[index] = false;
        let listener = listeners.slots[index].take().ok_or(NtStatus::NOT_FOUND)?;
        // Its rundown has finished, or the stop timeout has passed: free it or park it now.
        Ok(self.stop_one(listeners, listener, Duration::ZERO, active))
    }

    /// Stops every listener. IRQL: PASSIVE_LEVEL.
    pub fn stop_all(&self) {
        let guard = self.lock();
        let listeners = self.listeners(&guard);
        let timeout = Duration::from_millis(self.stop_timeout_ms.load(Ordering::Relaxed));
        for index in 0..MAX_LISTENERS {
            // A slot being stopped belongs to its STOP call (Engine invariant).
            if listeners.stopping[index] {
                continue;
            }
            if let Some(listener) = listeners.slots[index].take() {
                let active = listener.info().active;
                self.stop_one(listeners, listener, timeout, active);
            }
        }
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
