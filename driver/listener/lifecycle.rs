//! A listener's life: start (socket, options, bind, go live last), the listening socket's close,
//! and restart (recreate the listening socket on the same address). Stop is in `stop.rs`.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wsk::{DEVICE_OBJECT, IRP, NtStatus, WSK_EVENT_ACCEPT, WSK_EVENT_DISABLE, WSK_INSPECT_ID};

use super::accept::AcceptSlot;
use super::admission::Returned;
use super::worker_only::{Worker, WorkerOnly};
use super::{
    Counters, Global, Listener, ListenerConfig, Mode, NO_SLOT, Phase, Shared, SlotIo, events,
    handover_dpc, listener_work,
};
use crate::kernel::{Event, PoolBox, PoolSlice, SpinLock, WorkItem, WorkQueue, tags};
use crate::net::{DriverIrp, ListenSocket, Provider};
use crate::pending::PendingQueue;
use crate::policy::{Policy, SourceCounts};
use crate::rundown::Rundown;
use crate::table::Table;
use crate::trace;

/// Completion of the listening socket's WskCloseSocket. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// Called by the I/O manager as the completion routine of the listening socket's close IRP:
/// `context` is the listener given with that IRP, which stays alive until this routine has run.
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
                    counting_sources: policy.per_source != 0,
                    pending: PendingQueue::new(slot, config.address),
                    // Every accept slot starts Idle.
                    accepts_waiting: u32::try_from(depth)
                        .ok()
                        .and_then(|depth| 64u32.checked_sub(depth))
                        .and_then(|shift| u64::MAX.checked_shr(shift))
                        .unwrap_or(0),
                    handovers: NO_SLOT,
                    uncovered: 0,
                }),
                socket: WorkerOnly::new(None),
                accepts: PoolSlice::try_new(tags::ACCEPT, depth, AcceptSlot::new)?,
                #[allow(clippy::cast_possible_truncation)]
                io: PoolSlice::try_new(tags::TABLE, config.capacity as usize, |i| {
                    SlotIo::new(i as u32, config.buffer)
                })?,
                ctl: DriverIrp::allocate()?,
                counters: Counters::default(),
                global,
                stopped: Event::notification(false)?,
                decision: DriverIrp::allocate()?,
                decision_id: core::cell::UnsafeCell::new(WSK_INSPECT_ID::default()),
                decision_index: AtomicUsize::new(0),
                handover_tick: AtomicBool::new(false),
                dpcs: handover_dpc::allocate()?,
            },
        )?;
        let this = listener.as_ptr();
        // SAFETY: `listener_work` needs the listener, which is pinned in pool and freed only once
        // the item cannot run any more (Listener invariant: stop flushes the queue first, and so
        // does a failed start once anything could have queued the item).
        unsafe { listener.work.set_context(this.cast_mut().cast()) };
        for slot in listener.accepts.iter() {
            // SAFETY: the slot is pinned in its PoolSlice inside the pinned listener, which
            // outlives its IRPs (Listener invariant); no accept IRP is submitted yet.
            unsafe { slot.attach(this) };
        }
        // SAFETY: the listener is pinned in pool and flushes its DPCs before its memory goes
        // (Listener invariant; the failed start below too).
        unsafe { listener.arm_dpcs(this) };
        for io in listener.io.iter() {
            // SAFETY: `io` is pinned in the listener's PoolSlice, the listener outlives every slot
            // IRP's completion (Listener invariant), and none is submitted yet.
            unsafe { io.attach(this) }?;
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
            // A DPC a callback queued kicks the worker: flushed first (Listener invariant).
            crate::kernel::flush_queued_dpcs();
            queue.flush();
            return Err(status);
        }
        let mut shared = listener.shared.lock();
        {
            // SAFETY: `start` holding the lock while the listener is Starting: a worker run makes
            // its token only after it saw a later phase under this lock, and this token is
            // dropped before Running is set.
            let mut worker = unsafe { Worker::assume() };
            *listener.socket.get(&mut worker) = Some(socket);
        }
        shared.phase = Phase::Running;
        listener.kick_locked(&shared);
        drop(shared);
        Ok(listener)
    }

    /// Enables the accept event in the modes that use it: the listener's last step before it
    /// goes live (WSK-FACTS §5: after bind). IRQL: PASSIVE_LEVEL.
    pub(super) fn arm_events(&self, socket: &ListenSocket) -> Result<(), NtStatus> {
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
    pub(super) fn open_socket(&self, address: SocketAddr) -> Result<ListenSocket, NtStatus> {
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

    /// Closes the listening socket asynchronously (cancelling accepts). Worker only.
    pub(super) fn close_listening_socket(&self, worker: &mut Worker<'_>) {
        let Some(socket) = self.socket.get(worker).take() else {
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

    /// Restart: close the broken listening socket, wait for the accept IRPs to come back, then
    /// open a new one on the same address. Worker only.
    pub(super) fn restart_step(&self, worker: &mut Worker<'_>) {
        self.close_listening_socket(worker);
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
            self.hand_over(&mut shared, Returned::All);
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
                *self.socket.get(worker) = Some(socket);
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
}
