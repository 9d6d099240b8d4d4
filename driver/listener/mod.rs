//! A listener: the room that owns everything about one listener — its listening socket, accept
//! IRPs, accept event, connection table, per-slot connection IO and rundown.
//!
//! Every WSK call on a running listener's sockets is made by the worker (or, before the listener
//! is published, by `start`), so no two calls on one socket ever overlap and WskCloseSocket never
//! races another call (WSK-FACTS §7). Completion routines and the callbacks only update state
//! under the spin lock and kick the worker.
//!
//! # The life of a connection
//!
//! 1. **Start** (`lifecycle.rs`, `Listener::start`): WskSocket, options, WskBind, the accept
//!    event enabled last; the table, the accept IRPs and every slot's IO block are allocated
//!    here, once. IOCTL entry: `crate::control` → `crate::engine`.
//! 2. **Inspection**, mode `conditional` only (`events.rs`, `inspect_event`; `conditional.rs`):
//!    the policy answers accept or reject, or defers the request to user mode
//!    (`crate::pending`), whose decision the worker completes with WskInspectComplete.
//! 3. **Accept**, by either path: an accept IRP the worker armed completes (`accept.rs`,
//!    `accept_done`; armed by `Listener::service_accepts`), or WskAcceptEvent calls
//!    (`events.rs`, `accept_event`).
//! 4. **Admission** (`admission.rs`, `Listener::admit`): state, policy (`crate::policy`),
//!    capacity and the per-source limit; the socket goes into the table (`crate::table`) or is
//!    refused and counted (`stats.rs`). An event-accepted socket waits on the hand-over list
//!    until its callback is known to have returned (`Listener::hand_over`): for a callback at
//!    DISPATCH_LEVEL, its processor's hand-over DPC proves it (`handover_dpc.rs`), at no WSK
//!    call; otherwise the worker's waited disable of the accept event (`admission.rs`).
//! 5. **Connection IO** (`slots.rs`, `data.rs`): the worker takes the slot's work
//!    (`run_slot_work`) and runs the data path on the slot's IO block (`crate::conn::SlotIo`:
//!    one data IRP, one preallocated buffer): service `discard` keeps a receive pending and drops
//!    what it reads; service `echo` receives, sends the bytes back, and posts the next receive
//!    only when that send completed (`receive_done`, `send_done`). A receive of 0 bytes (FIN) or
//!    an error (reset) is the peer's close; `disconnect_done` and `close_done` end the rest.
//! 6. **Close** (`slots.rs`): a graceful WskDisconnect then WskCloseSocket, or an abortive close
//!    (user request, peer gone, stop); the slot is released when every IRP is back
//!    (`Listener::try_release`).
//! 7. **Restart** (`lifecycle.rs`, `restart_step`): a broken listening socket is closed and a new
//!    one opened on the same address; connections stay.
//! 8. **Stop** (`stop.rs`): the listening socket is closed (cancelling the accept IRPs,
//!    WSK-FACTS §3, and waiting for running callbacks, §7), every connection is closed abortively,
//!    and when every IRP is back the listener is freed. Nothing waits for a peer.
//!
//! The worker's entry is `Listener::process` (below); state only the worker touches is in
//! `worker_only.rs`.

mod accept;
mod admission;
mod conditional;
mod config;
mod data;
mod events;
mod handover_dpc;
mod lifecycle;
mod slots;
mod stats;
mod stop;
mod worker_only;

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use wsk::{NtStatus, WSK_INSPECT_ID};

pub use config::{
    DEFAULT_BUFFER, DEFAULT_CAPACITY, DEFAULT_DEPTH, ListenerConfig, MAX_BUFFER, MAX_CAPACITY,
    MAX_DEPTH, MIN_BUFFER, Mode, Service,
};
pub use stats::{CounterSnapshot, Counters, Global};

use crate::kernel::{Dpc, Event, PoolSlice, SpinGuard, SpinLock, WorkItem, WorkQueueHandle};
use crate::net::{ConnSocket, DriverIrp, ListenSocket, Provider};
use crate::pending::PendingQueue;
use crate::policy::{Policy, SourceCounts};
use crate::rundown::Rundown;
use crate::table::{ConnId, SlotState, Table, work};
use accept::{AcceptSlot, State as AcceptState};
use worker_only::{Worker, WorkerOnly};

/// A table slot's IO block, owned by its listener.
pub(crate) type SlotIo = crate::conn::SlotIo<Listener>;

/// How long `stop` waits for the rundown before it gives up and hands the listener back to be
/// parked (never reached unless a provider is slow to complete a close: no IRP waits for a peer).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Active connections per source address (for the per-source limit), kept only while
    /// `counting_sources` (see `Listener::set_policy`).
    sources: SourceCounts,
    /// Whether admission counts sources. Off until the listener's policy first has a per-source
    /// limit (at start, or `set_policy`, which first counts what the table holds); then on for
    /// the listener's life. A policy with `per_source != 0` is only ever in force with it on.
    counting_sources: bool,
    /// Requests deferred to user mode.
    pub(crate) pending: PendingQueue,
    /// Bit i: accept slot i is not Accepting (its IRP is not pending in the provider: idle, or
    /// busy with a refused socket). Changed with the slot's state, under this lock, so a pass and
    /// a kick look at one word, not at every slot.
    accepts_waiting: u64,
    /// First slot on the hand-over list (`NO_SLOT`: empty): sockets accepted by WskAcceptEvent
    /// that the worker may not touch yet (see [`Listener::hand_over`]).
    handovers: u32,
    /// Of those, how many no hand-over DPC covers (their callback was not at DISPATCH_LEVEL, or
    /// on a processor without a DPC): only for them does the ticker ask for the waited disable.
    uncovered: u32,
}

/// The end of the hand-over list.
const NO_SLOT: u32 = u32::MAX;

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
/// # Invariants
/// Pinned in pool; freed only after `stop` saw phase Stopped (every IRP back, the
/// listening socket closed so no callback can run), flushed the hand-over DPCs
/// (KeFlushQueuedDpcs: no DPC may run once the memory is freed, and one that runs kicks the
/// worker) and then the work queue. A failed start does the same after closing its socket.
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
    /// One hand-over DPC per processor (`handover_dpc.rs`).
    dpcs: PoolSlice<Dpc>,
}

impl core::fmt::Debug for Listener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Listener")
            .field("id", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// SAFETY: shared state is behind the spin lock or atomics; `socket` and `decision_id` are
// worker-only (the ID is read by the provider only during the worker's WskInspectComplete call);
// `global` points at the engine's figures, which outlive every listener.
unsafe impl Sync for Listener {}
// SAFETY: no field is thread-affine: the spin lock, IRPs and sockets are kernel objects usable from
// any thread, and the worker-only cells are used by whichever thread runs the worker.
unsafe impl Send for Listener {}

/// Bytes of driver memory per table entry: the slot itself and its IO block. Each entry also owns
/// its data buffer (the listener's `buffer` bytes), three IRPs (data, disconnect, close) and one
/// MDL from the kernel (not counted here).
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
impl Listener {
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
            .filter(|a| a.state.load(Ordering::Relaxed) == AcceptState::Accepting)
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

    /// Runs `f` over the table under the lock (listing). IRQL: <= DISPATCH_LEVEL; `f` must be
    /// short.
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

    /// Queues the worker, unless it would certainly find nothing to do (see
    /// [`Listener::worker_needed`]). Called with the lock held so that a stopping listener cannot
    /// be freed between the last completion and its kick (stop flushes the queue after the
    /// rundown), and so that the state the test reads cannot change under it.
    pub(crate) fn kick_locked(&self, shared: &SpinGuard<'_, Shared>) {
        if !self.worker_needed(shared) {
            return;
        }
        // SAFETY: the work item lives in this listener, which stays alive until stop has flushed
        // the queue (Listener invariant).
        unsafe { self.queue.queue(&self.work) };
    }

    /// Whether a worker pass could find something to do. Every pass is a thread switch on Windows
    /// (a wake-up of the work queue's thread), so the kicks that leave nothing for the worker —
    /// the close of a connection completing, an accept callback whose socket waits for its
    /// hand-over — do not queue one. Conservative: only a running listener outside mode
    /// `conditional` (whose deferred requests have timeouts and decisions the worker services)
    /// can skip, and only when what `process` does in phase Running has nothing to act on: no
    /// slot work queued, no hand-over asked for by the ticker, and every accept IRP pending (none
    /// to re-arm, no refused socket to close). Everything read here changes under the lock (the
    /// accept states and the hand-over flag are set before the kick that follows them), so a
    /// change that creates work is always followed by a kick that sees it.
    /// IRQL: DISPATCH_LEVEL (under the lock).
    fn worker_needed(&self, shared: &Shared) -> bool {
        shared.phase != Phase::Running
            || self.config.mode == Mode::Conditional
            || shared.table.has_work()
            || self.handover_tick.load(Ordering::Acquire)
            || shared.accepts_waiting != 0
    }

    /// Marks the listener for a restart of its listening socket (NULL AcceptSocket, broken
    /// listener). IRQL: <= DISPATCH_LEVEL.
    pub(crate) fn request_restart_locked(shared: &mut Shared) {
        if shared.phase == Phase::Running {
            shared.phase = Phase::Restarting;
        }
    }

    /// The worker's routine for this listener. IRQL: PASSIVE_LEVEL (worker thread).
    fn process(&self) {
        let mut shared = self.shared.lock();
        let phase = shared.phase;
        if matches!(phase, Phase::Starting | Phase::Stopped) {
            return;
        }
        // SAFETY: this is the worker's run of this listener (the ordered queue runs one item at a
        // time), and it saw a phase past Starting under the lock, after `start` dropped its token.
        let mut worker = unsafe { Worker::assume() };
        if phase == Phase::Running && !self.handover_tick.load(Ordering::Acquire) {
            // The usual pass, started in this one hold: the first chunk of slot work and the
            // accept claims are taken here (as `run_slot_work` and `service_accepts` would in holds
            // of their own), then the calls are made with the lock released. What changes after
            // this hold was kicked for under the lock, and that kick queued the next pass (the
            // queue clears the item's flag before running it). A hand-over tick set after the
            // load above is followed by its kick too.
            let mut actions = slots::no_actions();
            let popped = if shared.table.has_work() {
                self.take_slot_work(&mut shared, &mut actions)
            } else {
                0
            };
            let arm = self.socket.get(&mut worker).is_some();
            let claims = self.claim_accepts(&mut shared, arm);
            drop(shared);
            if popped != 0 {
                self.slot_work_rounds(&mut actions, Some(popped));
            }
            self.submit_accepts(self.socket.get(&mut worker).as_ref(), claims);
            self.service_decisions(&mut worker);
            return;
        }
        let queued = shared.table.has_work();
        drop(shared);
        let ticked = phase == Phase::Running && self.handover_tick.swap(false, Ordering::AcqRel);
        if ticked {
            self.hand_over_quiesced(&mut worker);
        }
        // Slot work is looked for when the hold above saw some, or when a hand-over (which does
        // not kick) may have queued some; any other work asked for since that hold was kicked
        // for, and the kick queued the next pass (a pass that re-arms an accept IRP saves a lock
        // hold).
        let slot_work = queued || ticked;
        match phase {
            Phase::Running => {
                if slot_work {
                    self.run_slot_work();
                }
                self.service_accepts(&mut worker, true);
                self.service_decisions(&mut worker);
            }
            Phase::Restarting => {
                if slot_work {
                    self.run_slot_work();
                }
                self.service_accepts(&mut worker, false);
                self.service_decisions(&mut worker);
                self.restart_step(&mut worker);
            }
            Phase::Failed => {
                if slot_work {
                    self.run_slot_work();
                }
                self.service_accepts(&mut worker, false);
            }
            Phase::Stopping => self.stop_step(&mut worker),
            Phase::Starting | Phase::Stopped => {}
        }
    }
}
