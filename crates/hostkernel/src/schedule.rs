//! Schedules and faults. One seed decides, call by call, whether a provider completes an IRP
//! inline (before the WSK call returns) or later on the provider thread, and whether to inject the
//! documented race of WSK-FACTS §4 (an accept event while an accept IRP is queued). Faults are
//! either armed one by one ("fail the 2nd WskBind"), drawn from the seed at a rate (allocations
//! and WSK calls), or — for an exhaustive sweep over a scenario — "fail the N-th allocation of
//! any kind" (pool, IRP or MDL): [`fail_nth_allocation`], with [`allocations_seen`] telling when N
//! has passed the scenario's last allocation.
//!
//! Every violation prints the seed, so a failing run can be replayed with `HOSTKERNEL_SEED`.

use std::sync::{Mutex, PoisonError};

/// What a schedule does, apart from armed faults.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// The seed of every draw.
    pub seed: u64,
    /// Percent of completions that run inline, before the WSK call returns (0–100).
    pub inline_percent: u8,
    /// Percent of accepted connections delivered by WskAcceptEvent although an accept IRP is
    /// queued (WSK-FACTS §4), when both are armed (0–100).
    pub race_percent: u8,
    /// Percent of pool, IRP and MDL allocations that fail (0–100).
    pub alloc_fail_percent: u8,
    /// Percent of the calls the provider finishes during the call — a WskAccept with a connection
    /// waiting, a WskDisconnect whose FIN is acknowledged at once, a WskCloseSocket with nothing
    /// outstanding — whose IRP completes inline, before the call returns (0–100); the others
    /// complete on the provider thread.
    /// Unseeded: 100 (the provider completes what it finished where it found it finished).
    pub finished_inline_percent: u8,
}

impl Schedule {
    /// A schedule derived from `seed` alone: inline/deferred mix and race rate drawn from it, no
    /// random allocation failures.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        Self {
            seed,
            inline_percent: rng.u8(0..=100),
            race_percent: if seed.is_multiple_of(2) {
                0
            } else {
                rng.u8(10..=50)
            },
            alloc_fail_percent: 0,
            finished_inline_percent: rng.u8(0..=100),
        }
    }

    /// The schedule named by `HOSTKERNEL_SEED`, or seed 0 with deferred completions only, but
    /// for the calls the provider finished during the call (`finished_inline_percent` 100).
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var("HOSTKERNEL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(seed) => Self::from_seed(seed),
            None => Self {
                seed: 0,
                inline_percent: 0,
                race_percent: 0,
                alloc_fail_percent: 0,
                finished_inline_percent: 100,
            },
        }
    }
}

/// Points where a failure can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Fault {
    /// ExAllocatePool2 returns NULL.
    PoolAllocation,
    /// IoAllocateIrp returns NULL.
    IrpAllocation,
    /// IoAllocateMdl returns NULL.
    MdlAllocation,
    /// WskSocket fails with STATUS_INSUFFICIENT_RESOURCES.
    WskSocket,
    /// WskBind fails with STATUS_INSUFFICIENT_RESOURCES.
    WskBind,
    /// WskControlSocket fails with STATUS_INSUFFICIENT_RESOURCES.
    WskControlSocket,
    /// WskGetLocalAddress fails with STATUS_INSUFFICIENT_RESOURCES.
    WskGetLocalAddress,
    /// WskAccept completes with STATUS_INSUFFICIENT_RESOURCES.
    WskAccept,
    /// The peer of the next accepted connection resets it right after the handshake.
    ConnectionReset,
    /// The listening socket breaks: the next delivery is an accept event with a NULL AcceptSocket
    /// (or an accept IRP failing with STATUS_CONNECTION_ABORTED).
    ListenerFailure,
}

const FAULTS: usize = 10;

impl Fault {
    fn is_allocation(self) -> bool {
        matches!(
            self,
            Self::PoolAllocation | Self::IrpAllocation | Self::MdlAllocation
        )
    }

    fn is_wsk_call(self) -> bool {
        matches!(
            self,
            Self::WskSocket
                | Self::WskBind
                | Self::WskControlSocket
                | Self::WskGetLocalAddress
                | Self::WskAccept
        )
    }
}

struct State {
    schedule: Schedule,
    rng: fastrand::Rng,
    armed: [u32; FAULTS],
    fired: [u32; FAULTS],
    /// Fail the allocation (of any kind) this many allocations from now (0: disarmed).
    armed_allocation: u32,
    /// Allocations (of any kind) asked for since the schedule was configured.
    allocations: u64,
    /// Percent of WSK calls that fail (see [`set_wsk_fail_percent`]).
    wsk_fail_percent: u8,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    let state = guard.get_or_insert_with(|| {
        let schedule = Schedule::from_env();
        State {
            schedule,
            rng: fastrand::Rng::with_seed(schedule.seed),
            armed: [0; FAULTS],
            fired: [0; FAULTS],
            armed_allocation: 0,
            allocations: 0,
            wsk_fail_percent: 0,
        }
    });
    f(state)
}

/// Installs a schedule (and disarms every fault).
pub fn configure(schedule: Schedule) {
    with_state(|state| {
        state.schedule = schedule;
        state.rng = fastrand::Rng::with_seed(schedule.seed);
        state.armed = [0; FAULTS];
        state.fired = [0; FAULTS];
        state.armed_allocation = 0;
        state.allocations = 0;
        state.wsk_fail_percent = 0;
    });
}

/// Makes `percent` of WskSocket, WskBind, WskControlSocket, WskGetLocalAddress and WskAccept
/// calls fail with STATUS_INSUFFICIENT_RESOURCES, drawn from the schedule's seed (0–100; reset
/// by [`configure`]).
pub fn set_wsk_fail_percent(percent: u8) {
    with_state(|state| state.wsk_fail_percent = percent.min(100));
}

/// The schedule in force.
#[must_use]
pub fn current() -> Schedule {
    with_state(|state| state.schedule)
}

/// The seed in force (printed with every violation).
#[must_use]
pub fn current_seed() -> u64 {
    // Never block a violation report on a poisoned or busy lock.
    match STATE.try_lock() {
        Ok(guard) => guard.as_ref().map_or(0, |s| s.schedule.seed),
        Err(_) => u64::MAX,
    }
}

/// Arms `fault` to fire at its `nth` next opportunity (1 = the very next one).
pub fn fail_nth(fault: Fault, nth: u32) {
    with_state(|state| state.armed[fault as usize] = nth);
}

/// Arms the `nth` next allocation of any kind — pool, IRP or MDL — to fail (1 = the very next).
/// Sweeping `nth` from 1 until [`allocations_seen`] stays below it makes every allocation of a
/// scenario fail once, alone.
pub fn fail_nth_allocation(nth: u32) {
    with_state(|state| state.armed_allocation = nth);
}

/// Allocations of any kind the driver asked for since the schedule was configured.
#[must_use]
pub fn allocations_seen() -> u64 {
    with_state(|state| state.allocations)
}

/// How many times `fault` has fired since the schedule was configured.
#[must_use]
pub fn fired(fault: Fault) -> u32 {
    with_state(|state| state.fired[fault as usize])
}

/// Asks whether `fault` fires now (consumes armed counts; draws for allocations and WSK calls
/// at the schedule's rates).
pub(crate) fn should_fail(fault: Fault) -> bool {
    with_state(|state| {
        let mut any_allocation = false;
        if fault.is_allocation() {
            state.allocations += 1;
            if state.armed_allocation > 0 {
                state.armed_allocation -= 1;
                any_allocation = state.armed_allocation == 0;
            }
        }
        let slot = &mut state.armed[fault as usize];
        let fire = if *slot > 0 {
            *slot -= 1;
            *slot == 0
        } else if any_allocation {
            true
        } else if fault.is_allocation() {
            let percent = state.schedule.alloc_fail_percent;
            percent > 0 && state.rng.u8(0..100) < percent
        } else if fault.is_wsk_call() {
            let percent = state.wsk_fail_percent;
            percent > 0 && state.rng.u8(0..100) < percent
        } else {
            false
        };
        let fire = fire || any_allocation;
        if fire {
            state.fired[fault as usize] += 1;
        }
        fire
    })
}

/// Whether this completion runs inline.
pub(crate) fn complete_inline() -> bool {
    with_state(|state| state.rng.u8(0..100) < state.schedule.inline_percent)
}

/// Whether the IRP of a call the provider finished during the call completes inline.
pub(crate) fn complete_finished_inline() -> bool {
    with_state(|state| state.rng.u8(0..100) < state.schedule.finished_inline_percent)
}

/// Whether to deliver this connection by accept event although an IRP is queued.
pub(crate) fn inject_accept_race() -> bool {
    with_state(|state| {
        let percent = state.schedule.race_percent;
        percent > 0 && state.rng.u8(0..100) < percent
    })
}
