//! A per-thread IRQL. Threads start at PASSIVE_LEVEL; completion routines and event callbacks run
//! at DISPATCH_LEVEL; a spin lock raises to DISPATCH_LEVEL. Crossing DISPATCH_LEVEL is where the
//! thread's processor becomes busy, and where, on the way down, it runs its queued DPCs
//! ([`crate::processor`], [`crate::dpc`]).

use std::cell::Cell;
use std::sync::OnceLock;

use crate::verifier::{Rule, violation};

pub use wsk::consts::irql::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};

/// An interrupt request level.
pub type Kirql = u8;

thread_local! {
    static CURRENT: Cell<Kirql> = const { Cell::new(PASSIVE_LEVEL) };
}

/// What happens when a thread's IRQL crosses DISPATCH_LEVEL: its processor becomes busy on the way
/// up; on the way down it runs its queued DPCs first, then calls the given `lower`
/// ([`crate::processor`] installs them with the first processor number it gives).
struct Hooks {
    entering: fn(),
    leaving: fn(&dyn Fn()),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Installs the DISPATCH_LEVEL crossing hooks (once; later calls change nothing).
pub(crate) fn install_dispatch_hooks(entering: fn(), leaving: fn(&dyn Fn())) {
    let _ = HOOKS.set(Hooks { entering, leaving });
}

/// KeGetCurrentIrql.
#[must_use]
pub fn current() -> Kirql {
    CURRENT.with(Cell::get)
}

/// KeRaiseIrql: raises to `new` and returns the previous level.
#[must_use = "the old IRQL must be given back to lower()"]
pub fn raise(new: Kirql) -> Kirql {
    let old = current();
    if new < old {
        violation(
            Rule::IrqlMismatch,
            format_args!("KeRaiseIrql to {new} from higher IRQL {old}"),
        );
    }
    if old < DISPATCH_LEVEL
        && new >= DISPATCH_LEVEL
        && let Some(hooks) = HOOKS.get()
    {
        (hooks.entering)();
    }
    CURRENT.with(|c| c.set(new));
    old
}

/// Sets the IRQL to `new` (at or above DISPATCH_LEVEL) without the DPC bookkeeping: for
/// [`crate::dpc`], which holds the processor already.
pub(crate) fn raise_quietly(new: Kirql) -> Kirql {
    let old = current();
    CURRENT.with(|c| c.set(new));
    old
}

/// Sets the IRQL back to `old`; when that drops below DISPATCH_LEVEL, the processor's queued DPCs
/// run first (still at DISPATCH_LEVEL).
fn set_lower(old: Kirql) {
    let now = current();
    if now >= DISPATCH_LEVEL
        && old < DISPATCH_LEVEL
        && let Some(hooks) = HOOKS.get()
    {
        (hooks.leaving)(&|| CURRENT.with(|c| c.set(old)));
    } else {
        CURRENT.with(|c| c.set(old));
    }
}

/// KeLowerIrql: back to `old`, which must not be above the current level.
pub fn lower(old: Kirql) {
    let now = current();
    if old > now {
        violation(
            Rule::IrqlMismatch,
            format_args!("KeLowerIrql to {old} from lower IRQL {now}"),
        );
    }
    set_lower(old);
}

/// Runs `f` at DISPATCH_LEVEL (the level of completion routines and event callbacks), then
/// returns to the level it was called at.
pub fn at_dispatch<R>(f: impl FnOnce() -> R) -> R {
    let old = raise(DISPATCH_LEVEL);
    let guard = LowerOnDrop(old);
    let result = f();
    drop(guard);
    result
}

struct LowerOnDrop(Kirql);

impl Drop for LowerOnDrop {
    fn drop(&mut self) {
        set_lower(self.0);
    }
}

/// Asserts PASSIVE_LEVEL for a call documented as PASSIVE-only or one that may block.
#[track_caller]
pub fn assert_passive(what: &str) {
    let now = current();
    if now != PASSIVE_LEVEL {
        violation(
            Rule::IrqlNotPassive,
            format_args!("{what} must be called at PASSIVE_LEVEL, called at IRQL {now}"),
        );
    }
}

/// Asserts IRQL <= DISPATCH_LEVEL.
#[track_caller]
pub fn assert_at_most_dispatch(what: &str) {
    let now = current();
    if now > DISPATCH_LEVEL {
        violation(
            Rule::IrqlMismatch,
            format_args!("{what} must be called at IRQL <= DISPATCH_LEVEL, called at {now}"),
        );
    }
}
