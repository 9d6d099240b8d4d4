//! A listener: its listening socket, accept IRPs, accept event, connection table and rundown.
//!
//! Every WSK call on a running listener's sockets is made by the worker (or, before the listener
//! is published, by `start`), so no two calls on one socket ever overlap and WskCloseSocket never
//! races another call (WSK-FACTS §7). Completion routines and the accept event only update state
//! under the spin lock and kick the worker.
//!
//! Stop: the worker disables the accept event, closes the listening socket (which cancels the
//! accept IRPs, WSK-FACTS §3, and waits for running callbacks, §7), closes every connection
//! abortively, and when every IRP is back marks the listener stopped. Nothing waits for a peer.

mod accept;
mod conditional;
mod config;
mod events;
mod stats;

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use wsk::{DEVICE_OBJECT, IRP, NtStatus, WSK_EVENT_ACCEPT, WSK_EVENT_DISABLE, WSK_INSPECT_ID};

pub use config::{
    DEFAULT_CAPACITY, DEFAULT_DEPTH, ListenerConfig, MAX_CAPACITY, MAX_DEPTH, Mode, Service,
};
pub use stats::{CounterSnapshot, Counters, Global};

use crate::conn::{self, SlotIo};
use crate::kernel::{
    self, Event, PoolBox, PoolSlice, SpinGuard, SpinLock, WorkItem, WorkQueue, WorkQueueHandle,
    tags,
};
use crate::net::{ConnSocket, ConnSocketRef, DriverIrp, ListenSocket, Provider};
use crate::pending::PendingQueue;
use crate::policy::{Policy, SourceCounts, Verdict};
use crate::rundown::Rundown;
use crate::table::{AcceptPath, ConnId, ConnInfo, SlotState, Table, work};
use crate::trace::{self, Refusal};
use accept::{AcceptSlot, accept_done, state as accept_state};

/// How long `stop` waits for the rundown before it gives up and hands the listener back to be
/// parked (never reached unless a provider is slow to complete a close: no IRP waits for a peer).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after an accept callback's last statement the engine's ticker hands its socket over
/// when no later callback has (the callback's return takes a few instructions).
pub const HANDOVER_DELAY: Duration = Duration::from_millis(1);

/// Where a listener is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being started: bound, not live yet (inspections are refused, the worker does nothing).
    Starting,
    /// Accepting.
    Running,
    /// Recreating its listening socket.
    Restarting,
    /// Recreating the listening socket failed; it accepts nothing until stopped.
    Failed,
    /// Running down.
    Stopping,
    /// Every IRP is back; the memory can go.
    Stopped,
}

/// State under the listener's spin lock.
pub(crate) struct Shared {
    pub(crate) table: Table<ConnSocket>,
    pub(crate) phase: Phase,
    /// IRPs submitted and not completed; stop requested; finished.
    pub(crate) rundown: Rundown,
    /// The address bound (reported, and rebound on restart).
    pub(crate) bound: SocketAddr,
    listen_close_pending: bool,
    swept: bool,
    last_error: NtStatus,
    /// The condition function's rules and limits.
    pub(crate) policy: Policy,
    /// Active connections per source address (for the per-source limit).
    sources: SourceCounts,
    /// Requests deferred to user mode.
    pub(crate) pending: PendingQueue,
    /// First slot on the hand-over list (`NO_SLOT`: empty): sockets accepted by WskAcceptEvent
    /// that the worker may not touch yet (see [`Listener::hand_over`]).
    handovers: u32,
}

/// The end of the hand-over list.
const NO_SLOT: u32 = u32::MAX;

/// A value only the worker touches once the listener is published.
///
/// Invariant: accessed only by `start` (before the listener is reachable by anyone else) and by
/// the worker thread afterwards; never concurrently.
struct WorkerOnly<T>(UnsafeCell<T>);

// SAFETY: by the invariant, one thread at a time.
unsafe impl<T: Send> Sync for WorkerOnly<T> {}

impl<T> WorkerOnly<T> {
    /// # Safety
    /// Only from `start` before publication or from the worker thread.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive by the type invariant and the caller's promise.
        unsafe { &mut *self.0.get() }
    }
}

/// A snapshot of a listener for the control plane.
#[derive(Clone, Copy, Debug)]
pub struct ListenerInfo {
    /// Listener id.
    pub id: u32,
    /// Address bound.
    pub address: SocketAddr,
    /// Configuration asked for.
    pub config: ListenerConfig,
    /// Phase now.
    pub phase: Phase,
    /// Connections in the table (Active or Closing).
    pub active: u32,
    /// Highest `active` seen.
    pub peak: u32,
    /// Accept IRPs pending in the provider.
    pub accept_irps_pending: u32,
    /// Counters.
    pub counters: CounterSnapshot,
    /// Last error of a restart, or SUCCESS.
    pub last_error: NtStatus,
}

/// One listener.
///
/// Invariant: pinned in pool; freed only after `stop` saw phase Stopped (every IRP back, the
/// listening socket closed so no callback can run) and flushed the work queue.
pub struct Listener {
    id: u32,
    config: ListenerConfig,
    provider: Provider,
    queue: WorkQueueHandle,
    work: WorkItem,
    pub(crate) shared: SpinLock<Shared>,
    socket: WorkerOnly<Option<ListenSocket>>,
    accepts: PoolSlice<AcceptSlot>,
    io: PoolSlice<SlotIo>,
    ctl: DriverIrp,
    pub(crate) counters: Counters,
    global: *const Global,
    stopped: Event,
    /// Carries WskInspectComplete (one decision at a time, from the worker).
    decision: DriverIrp,
    /// The decision in flight: its ID (read by the provider during the call) and queue slot.
    decision_id: UnsafeCell<WSK_INSPECT_ID>,
    decision_index: AtomicUsize,
    /// The ticker asks the worker to hand over sockets whose accept callback has returned.
    handover_tick: AtomicBool,
}

// SAFETY: shared state is behind the spin lock or atomics; `socket` and `decision_id` are
// worker-only (the ID is read by the provider only during the worker's WskInspectComplete call);
// `global` points at the engine's figures, which outlive every listener.
unsafe impl Sync for Listener {}
// SAFETY: no field is thread-affine: the spin lock, IRPs and sockets are kernel objects usable from
// any thread, and the worker-only cells are used by whichever thread runs the worker.
unsafe impl Send for Listener {}

/// Bytes of driver memory per table entry: the slot itself and its IO block. Each entry also owns
/// three IRPs (receive, disconnect, close) and one MDL from the kernel (not counted here).
pub const BYTES_PER_ENTRY: usize = Table::<ConnSocket>::BYTES_PER_ENTRY + size_of::<SlotIo>();

/// The listener's work item. IRQL: PASSIVE_LEVEL (worker).
///
/// # Safety
/// Run only by the work queue as the listener's item: `context` is the listener, alive until stop
/// flushed the queue.
unsafe fn listener_work(context: *mut c_void) {
    // SAFETY: the work item's context is its listener, alive until stop flushed the queue.
    let listener = unsafe { &*context.cast::<Listener>() };
    listener.process();
}

/// Completion of the listening socket's WskCloseSocket. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// Called by the I/O manager as the completion routine of the listening socket's close IRP: `context` is the listener given
/// with that IRP, which stays alive until this routine has run.
unsafe extern "system" fn listen_close_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    context: *mut c_void,
) -> NtStatus {
    // SAFETY: submitted with the listener as context; it outlives its IRPs.
    let listener = unsafe { &*context.cast::<Listener>() };
    // SAFETY: this is the ctl IRP's completion routine.
    let _ = unsafe { listener.ctl.take_back() };
    let mut shared = listener.shared.lock();
    shared.rundown.completed();
    shared.listen_close_pending = false;
    listener.kick_locked(&shared);
    NtStatus::MORE_PROCESSING_REQUIRED
}

enum SlotAction {
    Receive(u32, ConnSocketRef),
    Disconnect(u32, ConnSocketRef),
    Close(u32, ConnSocket),
}

impl Listener {
    /// Creates, binds and arms a listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER / STATUS_NOT_SUPPORTED for a bad configuration,
    /// STATUS_INSUFFICIENT_RESOURCES, or what WskSocket / WskBind / WskControlSocket return
    /// (e.g. STATUS_ADDRESS_ALREADY_ASSOCIATED). Nothing is left allocated on error.
    pub fn start(
        id: u32,
        slot: u8,
        config: ListenerConfig,
        policy: Policy,
        provider: Provider,
        queue: &WorkQueue,
        global: &Global,
    ) -> Result<PoolBox<Self>, NtStatus> {
        config.validate()?;
        let depth = if config.mode.uses_irps() {
            usize::from(config.depth)
        } else {
            0
        };
        let listener = PoolBox::new(
            tags::LISTENER,
            Self {
                id,
                config,
                provider,
                queue: queue.handle(),
                work: WorkItem::new(listener_work),
                shared: SpinLock::new(Shared {
                    table: Table::with_capacity(slot, config.capacity, config.address)?,
                    phase: Phase::Starting,
                    rundown: Rundown::new(),
                    bound: config.address,
                    listen_close_pending: false,
                    swept: false,
                    last_error: NtStatus::SUCCESS,
                    policy,
                    sources: SourceCounts::with_capacity(config.capacity)?,
                    pending: PendingQueue::new(slot, config.address),
                    handovers: NO_SLOT,
                }),
                socket: WorkerOnly(UnsafeCell::new(None)),
                accepts: PoolSlice::try_new(tags::ACCEPT, depth, |_| AcceptSlot::new())?,
                #[allow(clippy::cast_possible_truncation)]
                io: PoolSlice::try_new(tags::TABLE, config.capacity as usize, |i| {
                    SlotIo::new(i as u32)
                })?,
                ctl: DriverIrp::allocate()?,
                counters: Counters::default(),
                global,
                stopped: Event::notification(false)?,
                decision: DriverIrp::allocate()?,
                decision_id: UnsafeCell::new(WSK_INSPECT_ID::default()),
                decision_index: AtomicUsize::new(0),
                handover_tick: AtomicBool::new(false),
            },
        )?;
        let this = listener.as_ptr();
        listener.work.set_context(this.cast_mut().cast());
        for slot in listener.accepts.iter() {
            slot.attach(this);
        }
        for io in listener.io.iter() {
            io.attach(this)?;
        }
        let socket = listener.open_socket(config.address)?;
        // Live last: the accept event is enabled only after every step that can fail, so a
        // failed start has admitted nothing. (From bind on, inspections may call in: they are
        // refused while Starting.)
        let bound = match socket.local_address() {
            // Wine test build: Wine 8.0's WskGetLocalAddress is a stub (STATUS_NOT_IMPLEMENTED);
            // the lane binds a fixed port, so the requested address is the bound one.
            #[cfg(feature = "wine-test")]
            Err(NtStatus::NOT_IMPLEMENTED) if config.address.port() != 0 => Ok(config.address),
            other => other,
        };
        let armed = bound.and_then(|bound| {
            listener.shared.lock().bound = bound;
            listener.arm_events(&socket)
        });
        if let Err(status) = armed {
            // Close waits for running callbacks (WSK-FACTS §7); any worker run they kicked found
            // the listener Starting and did nothing, and the flush waits it out before the
            // listener's memory goes.
            socket.close();
            queue.flush();
            return Err(status);
        }
        let mut shared = listener.shared.lock();
        // SAFETY: the worker touches `socket` only in a run that found the phase past Starting
        // under this lock, so it cannot run concurrently with this write.
        unsafe { *listener.socket.get() = Some(socket) };
        shared.phase = Phase::Running;
        listener.kick_locked(&shared);
        drop(shared);
        Ok(listener)
    }

    /// Enables the accept event in the modes that use it: the listener's last step before it
    /// goes live (WSK-FACTS §5: after bind). IRQL: PASSIVE_LEVEL.
    fn arm_events(&self, socket: &ListenSocket) -> Result<(), NtStatus> {
        if !self.config.mode.uses_events() {
            return Ok(());
        }
        let status = socket.set_events(WSK_EVENT_ACCEPT);
        if status.is_success() {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// WskSocket, options and WskBind; the accept event is left off ([`Listener::arm_events`]).
    /// IRQL: PASSIVE_LEVEL.
    fn open_socket(&self, address: SocketAddr) -> Result<ListenSocket, NtStatus> {
        let family = if address.is_ipv4() {
            wsk::AF_INET
        } else {
            wsk::AF_INET6
        };
        let context = core::ptr::from_ref(self).cast_mut().cast();
        // SAFETY: the context is this pinned listener, which outlives its listening socket.
        let socket = unsafe {
            ListenSocket::create(self.provider, family, context, &events::LISTEN_CALLBACKS)
        }?;
        let configured = (|| {
            // Before bind: nobody else may bind the port while we hold it. (Not on the Wine test
            // build: Wine 8.0's WskControlSocket is a stub.)
            #[cfg(not(feature = "wine-test"))]
            socket.set_option(wsk::SOL_SOCKET, wsk::SO_EXCLUSIVEADDRUSE, 1)?;
            if self.config.mode == Mode::Conditional {
                // Before bind, listening sockets only (WSK-FACTS §6).
                socket.set_option(wsk::SOL_SOCKET, wsk::SO_CONDITIONAL_ACCEPT, 1)?;
            }
            if address.is_ipv6() {
                socket.set_option(
                    wsk::IPPROTO_IPV6,
                    wsk::IPV6_V6ONLY,
                    u32::from(!self.config.dual_stack),
                )?;
            }
            socket.bind(address)?;
            Ok(())
        })();
        match configured {
            Ok(()) => Ok(socket),
            Err(status) => {
                socket.close();
                Err(status)
            }
        }
    }

    /// The listener id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A snapshot for the control plane. IRQL: <= DISPATCH_LEVEL.
    #[must_use]
    pub fn info(&self) -> ListenerInfo {
        let shared = self.shared.lock();
        let occupancy = shared.table.occupancy();
        let pending = self
            .accepts
            .iter()
            .filter(|a| a.state.load(Ordering::Relaxed) == accept_state::ACCEPTING)
            .count();
        ListenerInfo {
            id: self.id,
            address: shared.bound,
            config: self.config,
            phase: shared.phase,
            active: occupancy.in_use,
            peak: occupancy.peak,
            accept_irps_pending: u32::try_from(pending).unwrap_or(u32::MAX),
            counters: self.counters.snapshot(),
            last_error: shared.last_error,
        }
    }

    /// Runs `f` over the table under the lock (listing). IRQL: <= DISPATCH_LEVEL; `f` must be short.
    pub fn with_table<R>(&self, f: impl FnOnce(&Table<ConnSocket>) -> R) -> R {
        f(&self.shared.lock().table)
    }

    /// Asks for a connection to be closed (gracefully, or abortively). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_NOT_FOUND for an id that is not an Active connection of this listener.
    pub fn close_connection(&self, id: ConnId, abortive: bool) -> Result<(), NtStatus> {
        let mut shared = self.shared.lock();
        match shared.table.get(id) {
            Some(entry) if entry.state() == SlotState::Active => {}
            _ => return Err(NtStatus::NOT_FOUND),
        }
        Counters::bump(&self.counters.user_closed);
        shared
            .table
            .request(id.index(), if abortive { work::ABORT } else { work::CLOSE });
        self.kick_locked(&shared);
        Ok(())
    }

    /// Queues the worker (the timeout ticker). IRQL: <= DISPATCH_LEVEL.
    pub fn kick(&self) {
        let shared = self.shared.lock();
        self.kick_locked(&shared);
    }

    /// Queues the worker. Called with the lock held so that a stopping listener cannot be freed
    /// between the last completion and its kick (stop flushes the queue after the rundown).
    pub(crate) fn kick_locked(&self, _shared: &SpinGuard<'_, Shared>) {
        // SAFETY: the work item lives in this listener, which stays alive until stop has flushed
        // the queue (Listener invariant).
        unsafe { self.queue.queue(&self.work) };
    }

    /// Marks the listener for a restart of its listening socket (NULL AcceptSocket, broken
    /// listener). IRQL: <= DISPATCH_LEVEL.
    pub(crate) fn request_restart_locked(shared: &mut Shared) {
        if shared.phase == Phase::Running {
            shared.phase = Phase::Restarting;
        }
    }

    /// Policy, capacity and insertion for a just-accepted socket, on either path.
    /// IRQL: DISPATCH_LEVEL (under the lock). Gives the socket back when refused.
    pub(crate) fn admit(
        &self,
        shared: &mut Shared,
        socket: ConnSocket,
        local: SocketAddr,
        remote: SocketAddr,
        path: AcceptPath,
    ) -> Result<ConnId, ConnSocket> {
        // Starting: only reachable once the accept event is on, after the last failure point.
        if !matches!(shared.phase, Phase::Running | Phase::Starting) {
            Counters::bump(&self.counters.rejected_not_running);
            self.trace_refused(Refusal::NotRunning, Some(remote));
            return Err(socket);
        }
        // In conditional mode the inspection already applied the rules (and user mode may have
        // accepted a deferred request); capacity and the per-source limit are checked again here.
        let settled = self.config.mode == Mode::Conditional;
        let from_source = shared.sources.count(remote.ip());
        let verdict = shared.policy.evaluate(
            &remote,
            shared.table.occupancy(),
            from_source,
            false,
            settled,
        );
        if let Verdict::Reject(reason) = verdict {
            self.count_rejection(reason, remote);
            return Err(socket);
        }
        let info = ConnInfo {
            remote,
            local,
            path,
            accepted_at: kernel::interrupt_time(),
        };
        match shared.table.insert(socket, info) {
            Ok(id) => {
                shared.sources.add(remote.ip());
                // SAFETY: `global` points at the engine's counters, which outlive listeners.
                unsafe { (*self.global).opened() };
                let first = match self.config.service {
                    Service::Hold => work::RECEIVE,
                    Service::Close => work::CLOSE,
                };
                match (path, self.io.get(id.index() as usize)) {
                    // WskAcceptEvent has not returned: the provider has not recorded the socket
                    // as accepted, so the worker may not touch it yet (see `hand_over`).
                    (AcceptPath::Event, Some(io)) => {
                        io.returned.store(false, Ordering::Release);
                        io.stashed.store(first, Ordering::Relaxed);
                        io.awaiting.store(true, Ordering::Relaxed);
                        io.next_handover.store(shared.handovers, Ordering::Relaxed);
                        shared.handovers = id.index();
                    }
                    _ => shared.table.request(id.index(), first),
                }
                Ok(id)
            }
            Err(full) => {
                Counters::bump(&self.counters.rejected_full);
                self.trace_refused(Refusal::Full, Some(remote));
                Err(full.0)
            }
        }
    }

    /// The accept callback that handed the socket of `id` over is about to return: its last
    /// statements. IRQL: DISPATCH_LEVEL (callback); no lock.
    pub(crate) fn accept_event_returning(&self, id: ConnId) {
        if let Some(io) = self.io.get(id.index() as usize) {
            io.returned.store(true, Ordering::Release);
        }
        // SAFETY: `global` points at the engine's figures, which outlive listeners.
        unsafe { (*self.global).handover_ready.set() };
    }

    /// Hands sockets accepted by WskAcceptEvent over to the worker: their stashed work goes on
    /// the work list. Only at points where their callbacks are known to have returned: the entry
    /// of a later accept callback (the provider delivers one listener's accepts in turn), the
    /// completed close of the listening socket (close waits for running callbacks, WSK-FACTS §7;
    /// `all`), or a disable of the accept event that found no callback running (`all`, see
    /// `hand_over_quiesced`, which the engine's ticker asks for [`HANDOVER_DELAY`] after the
    /// callback's last statement signalled it). Otherwise, a slot whose callback has not reached
    /// its last statement stays on the list. IRQL: DISPATCH_LEVEL (under the lock).
    pub(crate) fn hand_over(&self, shared: &mut Shared, all: bool) {
        let mut link = NO_SLOT;
        let mut index = shared.handovers;
        while index != NO_SLOT {
            let Some(io) = self.io.get(index as usize) else {
                break;
            };
            let next = io.next_handover.load(Ordering::Relaxed);
            if all || io.returned.load(Ordering::Acquire) {
                io.next_handover.store(NO_SLOT, Ordering::Relaxed);
                io.awaiting.store(false, Ordering::Relaxed);
                let bits = io.stashed.swap(0, Ordering::Relaxed);
                shared.table.request(index, bits);
                match self.io.get(link as usize) {
                    Some(previous) => previous.next_handover.store(next, Ordering::Relaxed),
                    None => shared.handovers = next,
                }
            } else {
                link = index;
            }
            index = next;
        }
    }

    /// Whether sockets wait to be handed over (the ticker hands them over). IRQL: <=
    /// DISPATCH_LEVEL.
    #[must_use]
    pub fn has_handovers(&self) -> bool {
        self.shared.lock().handovers != NO_SLOT
    }

    /// Hands over sockets whose accept callbacks have returned, when no later callback did: the
    /// worker disables the accept event, which answers STATUS_SUCCESS only when no accept
    /// callback is running (WSK-FACTS §5), hands everything over, and enables it again
    /// (connections arriving meanwhile wait in the backlog, or go to accept IRPs). Worker only.
    fn hand_over_quiesced(&self) {
        if !self.config.mode.uses_events() || !self.has_handovers() {
            return;
        }
        // SAFETY: worker thread.
        let Some(socket) = (unsafe { self.socket.get() }).as_ref() else {
            // No listening socket: the restart or stop that closed it hands over.
            return;
        };
        let status = socket.set_events(WSK_EVENT_ACCEPT | WSK_EVENT_DISABLE);
        if status == NtStatus::SUCCESS {
            self.hand_over(&mut self.shared.lock(), true);
        }
        // Otherwise a callback is running: it hands over at its entry, or the next tick does.
        if !socket.set_events(WSK_EVENT_ACCEPT).is_success() {
            let mut shared = self.shared.lock();
            shared.last_error = NtStatus::INVALID_DEVICE_STATE;
            Self::request_restart_locked(&mut shared);
        }
    }

    /// The ticker: hand over what waits, then run the worker. IRQL: <= DISPATCH_LEVEL.
    pub fn tick_handovers(&self) {
        self.handover_tick.store(true, Ordering::Release);
        self.kick();
    }

    /// Frees a Closing slot once its close completed and both its IRPs are back.
    /// IRQL: DISPATCH_LEVEL (under the lock).
    pub(crate) fn try_release(&self, shared: &mut Shared, index: u32) {
        let Some(io) = self.io.get(index as usize) else {
            return;
        };
        let ready = shared
            .table
            .entry(index)
            .is_some_and(|e| e.state() == SlotState::Closing && e.close_done);
        if ready && !io.recv.is_busy() && !io.ctl.is_busy() && !io.close.is_busy() {
            let peer_closed = shared.table.entry(index).is_some_and(|e| e.peer_closed);
            let source = shared.table.entry(index).map(|e| e.info().remote.ip());
            if shared.table.release(index) {
                if let Some(source) = source {
                    shared.sources.remove(source);
                }
                Counters::bump(&self.counters.closed);
                if peer_closed {
                    Counters::bump(&self.counters.peer_closed);
                }
                // SAFETY: as in `admit`.
                unsafe { (*self.global).closed() };
            }
        }
    }

    /// The worker's routine for this listener. IRQL: PASSIVE_LEVEL (worker thread).
    fn process(&self) {
        let phase = self.shared.lock().phase;
        if phase == Phase::Running && self.handover_tick.swap(false, Ordering::AcqRel) {
            self.hand_over_quiesced();
        }
        match phase {
            Phase::Running => {
                self.run_slot_work();
                self.service_accepts(true);
                self.service_decisions();
            }
            Phase::Restarting => {
                self.run_slot_work();
                self.service_accepts(false);
                self.service_decisions();
                self.restart_step();
            }
            Phase::Failed => {
                self.run_slot_work();
                self.service_accepts(false);
            }
            Phase::Stopping => self.stop_step(),
            Phase::Starting | Phase::Stopped => {}
        }
    }

    /// Performs queued slot work: receives, disconnects, closes. Worker only.
    fn run_slot_work(&self) {
        loop {
            let action = {
                let mut shared = self.shared.lock();
                let Some((index, bits)) = shared.table.pop_work() else {
                    break;
                };
                self.decide_slot_work(&mut shared, index, bits)
            };
            if let Some(action) = action {
                self.perform(action);
            }
        }
    }

    fn decide_slot_work(&self, shared: &mut Shared, index: u32, bits: u8) -> Option<SlotAction> {
        let io = self.io.get(index as usize)?;
        let entry = shared.table.entry(index)?;
        if entry.state() != SlotState::Active {
            return None;
        }
        if io.awaiting.load(Ordering::Relaxed) {
            // Not handed over yet: keep the work for the hand-over.
            io.stashed.fetch_or(bits, Ordering::Relaxed);
            return None;
        }
        let generation = entry.generation();
        if bits & (work::CLOSE | work::ABORT) != 0 {
            let graceful =
                bits & work::ABORT == 0 && !entry.disconnected && shared.phase != Phase::Stopping;
            if graceful {
                if io.ctl.is_busy() {
                    // A disconnect is in flight; its completion asks for the close.
                    return None;
                }
                let socket = entry.socket()?.by_ref();
                io.ctl_generation.store(generation, Ordering::Release);
                shared.rundown.submitted();
                return Some(SlotAction::Disconnect(index, socket));
            }
            // Abortive, after the disconnect, or stopping: close now, whatever disconnect or
            // receive is in flight. Close cancels them (WSK-FACTS §7), so it never waits for a
            // peer, and it has its own IRP, so a disconnect never holds it up.
            let socket = shared.table.begin_close(index)?;
            io.close_generation.store(generation, Ordering::Release);
            shared.rundown.submitted();
            return Some(SlotAction::Close(index, socket));
        }
        if bits & work::RECEIVE != 0
            && self.config.service == Service::Hold
            && !io.recv.is_busy()
            && !entry.peer_closed
        {
            io.recv_generation.store(generation, Ordering::Release);
            shared.rundown.submitted();
            return Some(SlotAction::Receive(index, entry.socket()?.by_ref()));
        }
        None
    }

    fn perform(&self, action: SlotAction) {
        let submitted = match action {
            SlotAction::Receive(index, socket) => self.io.get(index as usize).map(|io| {
                // SAFETY: the slot's buffer and context are pinned; only the worker closes the
                // socket, so it is alive for this call.
                unsafe { socket.receive(&io.recv, io.buffer(), conn::receive_done, io.context()) }
            }),
            SlotAction::Disconnect(index, socket) => self.io.get(index as usize).map(|io| {
                // SAFETY: the slot's control IRP and context are pinned for the listener's life;
                // only the worker closes the socket, so it is alive for this call.
                unsafe { socket.disconnect(&io.ctl, false, conn::disconnect_done, io.context()) }
            }),
            SlotAction::Close(index, socket) => self.io.get(index as usize).map(|io| {
                // SAFETY: the slot's close IRP and context are pinned for the listener's life; the
                // socket was taken out of the table, so this is its one
                // close, and no other call on it is in progress (worker only).
                unsafe { socket.close(&io.close, conn::close_done, io.context()) }.map_err(
                    |(socket, status)| {
                        // Unreachable (the IRP was idle under the lock); keep the socket parked
                        // rather than lose it.
                        let _ = socket.into_raw();
                        status
                    },
                )
            }),
        };
        if !matches!(submitted, Some(Ok(()))) {
            self.shared.lock().rundown.completed();
        }
    }

    /// Arms idle accept IRPs (when `arm`) and closes refused sockets. Worker only.
    fn service_accepts(&self, arm: bool) {
        // SAFETY: worker thread.
        let socket = unsafe { self.socket.get() }.as_ref();
        for slot in self.accepts.iter() {
            let refused = {
                let mut shared = self.shared.lock();
                match slot.state.load(Ordering::Acquire) {
                    accept_state::IDLE if arm && socket.is_some() => {
                        slot.state.store(accept_state::ACCEPTING, Ordering::Release);
                        shared.rundown.submitted();
                        None
                    }
                    accept_state::REJECT_PENDING => {
                        slot.state
                            .store(accept_state::CLOSING_REJECTED, Ordering::Release);
                        shared.rundown.submitted();
                        Some(slot.rejected.swap(core::ptr::null_mut(), Ordering::AcqRel))
                    }
                    _ => continue,
                }
            };
            let submitted = match (refused, socket) {
                (Some(raw), _) => {
                    // SAFETY: the refused socket was parked by the completion routine; we own it.
                    match unsafe { ConnSocket::from_accepted(raw) } {
                        // WSK-FACTS §7: closing a connection that is not disconnected aborts it.
                        Some(refused) => {
                            // SAFETY: pinned slot context; this socket's only call.
                            unsafe { refused.close(&slot.irp, accept_done, slot.context()) }
                                .map_err(|(s, e)| {
                                    let _ = s.into_raw();
                                    e
                                })
                        }
                        None => Err(NtStatus::INVALID_PARAMETER),
                    }
                }
                (None, Some(socket)) => {
                    let (local, remote) = slot.address_buffers();
                    // SAFETY: pinned slot buffers and context; worker-only calls on the socket.
                    unsafe { socket.accept(&slot.irp, accept_done, slot.context(), local, remote) }
                }
                (None, None) => Err(NtStatus::INVALID_DEVICE_STATE),
            };
            if submitted.is_err() {
                let mut shared = self.shared.lock();
                shared.rundown.completed();
                slot.state.store(accept_state::IDLE, Ordering::Release);
            }
        }
    }

    /// Closes the listening socket asynchronously (cancelling accepts). Worker only.
    fn close_listening_socket(&self) {
        // SAFETY: worker thread.
        let Some(socket) = (unsafe { self.socket.get() }).take() else {
            return;
        };
        if self.config.mode.uses_events() {
            // STATUS_EVENT_PENDING is fine: the close below waits for running callbacks.
            let _ = socket.set_events(WSK_EVENT_ACCEPT | WSK_EVENT_DISABLE);
        }
        {
            let mut shared = self.shared.lock();
            shared.rundown.submitted();
            shared.listen_close_pending = true;
        }
        let context = core::ptr::from_ref(self).cast_mut().cast();
        // SAFETY: the listener outlives its IRPs; no other call on the socket (worker only).
        let closing = unsafe { socket.close_async(&self.ctl, listen_close_done, context) };
        if let Err((socket, _)) = closing {
            {
                let mut shared = self.shared.lock();
                shared.rundown.completed();
                shared.listen_close_pending = false;
            }
            socket.close();
        }
    }

    fn accepts_idle(&self) -> bool {
        self.accepts
            .iter()
            .all(|a| a.state.load(Ordering::Acquire) == accept_state::IDLE)
    }

    /// Restart: close the broken listening socket, wait for the accept IRPs to come back, then
    /// open a new one on the same address. Worker only.
    fn restart_step(&self) {
        self.close_listening_socket();
        let (pending, bound) = {
            let shared = self.shared.lock();
            (shared.listen_close_pending, shared.bound)
        };
        if pending || !self.accepts_idle() {
            return;
        }
        {
            let mut shared = self.shared.lock();
            // The old listening socket's close completed, so every accept callback has returned.
            self.hand_over(&mut shared, true);
            // The provider forgot the requests deferred on it (and reset their peers): drop them
            // as stop does, so that DECIDE answers STATUS_NOT_FOUND and nothing is completed on
            // the new socket.
            let refused = shared.pending.clear();
            self.counters
                .rejected_not_running
                .fetch_add(u64::from(refused), Ordering::Relaxed);
        }
        let reopened = self
            .open_socket(bound)
            .and_then(|socket| match self.arm_events(&socket) {
                Ok(()) => Ok(socket),
                Err(status) => {
                    socket.close();
                    Err(status)
                }
            });
        let mut shared = self.shared.lock();
        if shared.phase != Phase::Restarting {
            drop(shared);
            if let Ok(socket) = reopened {
                socket.close();
            }
            return;
        }
        match reopened {
            Ok(socket) => {
                // SAFETY: worker thread.
                unsafe { *self.socket.get() = Some(socket) };
                shared.phase = Phase::Running;
                Counters::bump(&self.counters.listener_restarts);
                trace::emit(trace::Event::ListenerRestarted {
                    listener: self.id(),
                });
            }
            Err(status) => {
                shared.phase = Phase::Failed;
                shared.last_error = status;
                trace::emit(trace::Event::ListenerRestartFailed {
                    listener: self.id(),
                    status,
                });
            }
        }
        self.kick_locked(&shared);
    }

    /// One step of the rundown. Worker only.
    fn stop_step(&self) {
        self.close_listening_socket();
        let sweep = {
            let mut shared = self.shared.lock();
            // Only once the listening socket's close has completed: it waited for every running
            // accept callback (WSK-FACTS §7), so every accepted socket can be handed over and
            // closed — never one whose WskAcceptEvent has not returned.
            let first = !shared.swept && !shared.listen_close_pending;
            if first {
                shared.swept = true;
                // The provider forgets pended inspections with the listening socket (and resets
                // their peers).
                let refused = shared.pending.clear();
                self.counters
                    .rejected_not_running
                    .fetch_add(u64::from(refused), Ordering::Relaxed);
                self.hand_over(&mut shared, true);
            }
            first.then(|| shared.table.capacity())
        };
        if let Some(capacity) = sweep {
            // Ask every Active slot for an abortive close, a chunk per lock hold so that the
            // spin lock is never held for a whole 65,536-slot table.
            const CHUNK: u32 = 256;
            for start in (0..capacity).step_by(CHUNK as usize) {
                let mut shared = self.shared.lock();
                for index in start..capacity.min(start + CHUNK) {
                    if shared
                        .table
                        .entry(index)
                        .is_some_and(|e| e.state() == SlotState::Active)
                    {
                        shared.table.request(index, work::ABORT);
                    }
                }
            }
        }
        self.run_slot_work();
        self.service_accepts(false);
        let mut shared = self.shared.lock();
        let quiet = !shared.listen_close_pending
            && shared.table.occupancy().in_use == 0
            && self.accepts_idle();
        if shared.rundown.try_finish(quiet) {
            shared.phase = Phase::Stopped;
            self.stopped.set();
        }
    }

    /// Stops the listener and frees it: bounded time whatever the peers do (every socket is
    /// closed at once, and a close never waits for a peer). Returns its final counters.
    /// IRQL: PASSIVE_LEVEL.
    ///
    /// `flush` must wait until everything queued on the work queue has run.
    ///
    /// # Errors
    /// When the rundown has not finished within `timeout` (a provider slow to complete a close),
    /// the listener comes back (its counters so far in `info()`): it must not be freed while an IRP can
    /// still reach it, and nothing its completions use (the work queue) may go before it. The
    /// caller parks it and frees it with [`Listener::free_when_stopped`].
    pub fn stop(
        this: PoolBox<Self>,
        flush: impl Fn(),
        timeout: Duration,
    ) -> Result<CounterSnapshot, PoolBox<Self>> {
        {
            let mut shared = this.shared.lock();
            shared.phase = Phase::Stopping;
            shared.rundown.request_stop();
            this.kick_locked(&shared);
        }
        if !this.stopped.wait(Some(timeout)) {
            return Err(this);
        }
        Ok(Self::free_when_stopped(this, flush))
    }

    /// Whether a stopping listener's rundown has finished (every IRP back). IRQL: <= DISPATCH_LEVEL.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.stopped.wait(Some(Duration::ZERO))
    }

    /// Waits — without a limit: every IRP of a stopping listener is a close or is cancelled by
    /// one, and WSK completes every close (WSK-FACTS §7) — until the rundown has finished, then
    /// flushes the work queue and frees the listener. Returns its final counters.
    /// IRQL: PASSIVE_LEVEL.
    pub fn free_when_stopped(this: PoolBox<Self>, flush: impl Fn()) -> CounterSnapshot {
        this.stopped.wait(None);
        // The worker run that set `stopped` (and any kick before it) must be over before the
        // work item's memory goes.
        flush();
        let snapshot = this.counters.snapshot();
        drop(this);
        snapshot
    }
}
