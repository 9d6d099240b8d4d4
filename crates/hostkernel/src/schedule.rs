//! Schedules and faults. One seed decides, call by call, whether a provider completes an IRP
//! inline (before the WSK call returns) or later on the provider thread, and whether to inject the
//! documented race of WSK-FACTS §4 (an accept event while an accept IRP is queued). Faults are
//! either armed one by one ("fail the 2nd WskBind") or drawn from the seed at a rate.
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
    /// Percent of pool and IRP allocations that fail (0–100).
    pub alloc_fail_percent: u8,
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
        }
    }

    /// The schedule named by `HOSTKERNEL_SEED`, or seed 0 with deferred completions only.
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
    /// WskSocket fails with STATUS_INSUFFICIENT_RESOURCES.
    WskSocket,
    /// WskBind fails with STATUS_INSUFFICIENT_RESOURCES.
    WskBind,
    /// WskControlSocket fails with STATUS_INSUFFICIENT_RESOURCES.
    WskControlSocket,
    /// WskAccept completes with STATUS_INSUFFICIENT_RESOURCES.
    WskAccept,
    /// The peer of the next accepted connection resets it right after the handshake.
    ConnectionReset,
    /// The listening socket breaks: the next delivery is an accept event with a NULL AcceptSocket
    /// (or an accept IRP failing with STATUS_CONNECTION_ABORTED).
    ListenerFailure,
}

const FAULTS: usize = 8;

struct State {
    schedule: Schedule,
    rng: fastrand::Rng,
    armed: [u32; FAULTS],
    fired: [u32; FAULTS],
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
    });
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

/// How many times `fault` has fired since the schedule was configured.
#[must_use]
pub fn fired(fault: Fault) -> u32 {
    with_state(|state| state.fired[fault as usize])
}

/// Asks whether `fault` fires now (consumes an armed count; draws for allocation faults).
pub(crate) fn should_fail(fault: Fault) -> bool {
    with_state(|state| {
        let slot = &mut state.armed[fault as usize];
        let fire = if *slot > 0 {
            *slot -= 1;
            *slot == 0
        } else if matches!(fault, Fault::PoolAllocation | Fault::IrpAllocation) {
            let percent = state.schedule.alloc_fail_percent;
            percent > 0 && state.rng.u8(0..100) < percent
        } else {
            false
        };
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

/// Whether to deliver this connection by accept event although an IRP is queued.
pub(crate) fn inject_accept_race() -> bool {
    with_state(|state| {
        let percent = state.schedule.race_percent;
        percent > 0 && state.rng.u8(0..100) < percent
    })
}
