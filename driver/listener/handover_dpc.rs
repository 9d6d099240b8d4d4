//! The hand-over DPCs: the proof, at no WSK call, that an accept callback called at
//! DISPATCH_LEVEL has returned (WSK-FACTS §5: the socket it hands over may be used only then).
//!
//! Each listener has one KDPC per processor, for the first [`DPC_PROCESSORS`] processors. An
//! accept callback at DISPATCH_LEVEL on processor p, after recording its socket, queues p's DPC.
//! A DPC runs on its processor at DISPATCH_LEVEL, and only once that processor's IRQL dropped
//! below DISPATCH_LEVEL: so when p's DPC runs, every callback that ran on p at DISPATCH_LEVEL
//! before it was queued has returned, and the DPC hands their sockets to the worker
//! (`Returned::OnProcessor(p)`). A DPC already queued is not queued twice (KeInsertQueueDpc
//! answers FALSE) and still covers the callback that finds it queued: it has not started (it
//! cannot run while this callback holds p at DISPATCH_LEVEL), so it runs after this callback
//! too. Callbacks below DISPATCH_LEVEL (a DPC on their processor proves nothing: they can be
//! preempted) and processors numbered from [`DPC_PROCESSORS`] on keep the waited disable of the
//! accept event (`Listener::hand_over_quiesced`).
//!
//! Stop and a failed start flush the DPCs (KeFlushQueuedDpcs) once no callback can queue one
//! (the listening socket's close waited for them, WSK-FACTS §7), before the work queue is
//! flushed and the listener's memory goes (see `Listener`'s invariants).

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use wsk::NtStatus;

use super::Listener;
use super::admission::Returned;
use crate::conn::NOT_AT_DISPATCH;
use crate::kernel::{Dpc, PoolSlice, tags};

/// How many processors get a hand-over DPC (one Windows processor group); a callback on a
/// processor numbered higher falls back to the waited disable. 64 DPCs are about 5 KiB of
/// nonpaged pool per listener on Windows.
pub(super) const DPC_PROCESSORS: usize = 64;

/// The listener's DPCs, not initialised yet ([`Listener::arm_dpcs`]). IRQL: <= DISPATCH_LEVEL.
///
/// # Errors
/// STATUS_INSUFFICIENT_RESOURCES.
pub(super) fn allocate() -> Result<PoolSlice<Dpc>, NtStatus> {
    PoolSlice::try_new(tags::LISTENER, DPC_PROCESSORS, |_| {
        Ok(Dpc::new(handover_dpc))
    })
}

/// A hand-over DPC's routine: hands over the sockets whose callbacks ran on `processor` at
/// DISPATCH_LEVEL, and kicks the worker. IRQL: DISPATCH_LEVEL, on `processor`. Never calls WSK,
/// never blocks, never allocates.
///
/// # Safety
/// Run only as a listener's hand-over DPC: `context` is the listener, which flushes its DPCs
/// before it goes.
unsafe fn handover_dpc(context: *mut c_void, processor: usize) {
    // SAFETY: the DPC's context is its listener, alive until it flushed its DPCs (invariant).
    let listener = unsafe { &*context.cast::<Listener>() };
    let Ok(here) = u16::try_from(processor) else {
        return;
    };
    let mut shared = listener.shared.lock();
    listener.hand_over(&mut shared, Returned::OnProcessor(here));
    listener.kick_locked(&shared);
}

impl Listener {
    /// Initialises every hand-over DPC with the pinned listener. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `this` is this listener, pinned in pool until it flushed its DPCs after the last callback.
    pub(super) unsafe fn arm_dpcs(&self, this: *const Listener) {
        for (processor, dpc) in self.dpcs.iter().enumerate() {
            // SAFETY: the DPC is pinned inside the pinned listener, which flushes the DPCs before
            // its memory goes (the caller's promise and the Listener invariant).
            unsafe { dpc.initialize(this.cast_mut().cast(), processor) };
        }
    }

    /// Whether processor `here` has a hand-over DPC ([`NOT_AT_DISPATCH`] never has).
    pub(super) fn dpc_covers(&self, here: u16) -> bool {
        here != NOT_AT_DISPATCH && usize::from(here) < self.dpcs.len()
    }

    /// The accept callback that handed over the socket of slot `index` on processor `here` at
    /// DISPATCH_LEVEL is at its end: queues `here`'s DPC. When that cannot be done (the target
    /// could not be set), the socket is left to the waited disable. Returns whether a DPC covers
    /// it. IRQL: DISPATCH_LEVEL (callback), on `here`.
    pub(super) fn queue_handover_dpc(&self, index: u32, here: u16) -> bool {
        if let Some(dpc) = self.dpcs.get(usize::from(here))
            && dpc.queue_here()
        {
            return true;
        }
        let mut shared = self.shared.lock();
        if let Some(io) = self.io.get(index as usize)
            && io.awaiting.load(Ordering::Relaxed)
        {
            io.indicated_on.store(NOT_AT_DISPATCH, Ordering::Relaxed);
            shared.uncovered += 1;
        }
        false
    }
}
