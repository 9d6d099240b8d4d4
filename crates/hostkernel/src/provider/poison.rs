//! The poison table a closed socket's WSK_SOCKET points at: every entry is a verifier violation,
//! so a use after close is caught instead of reaching freed provider state.

use wsk::NtStatus;

use crate::verifier::{Rule, violation};

/// A table of [`POISON_ENTRIES`] function pointers that a closed socket's `Dispatch` points at.
#[repr(C)]
pub(crate) struct Poison([unsafe extern "system" fn() -> NtStatus; POISON_ENTRIES]);

/// More entries than the largest socket dispatch table (the connection table has 13).
const POISON_ENTRIES: usize = 16;

/// Any WSK function reached through a closed socket's poisoned Dispatch.
///
/// # Safety
/// None beyond being called: it takes no arguments (the `system` ABI leaves whatever the caller
/// passed to the caller) and stops the process before it would return. It is `unsafe` only to
/// share the type of the dispatch entries it stands in for.
unsafe extern "system" fn poisoned_call() -> NtStatus {
    violation(
        Rule::SocketUsedAfterClose,
        "a WSK function called through the Dispatch of a closed socket (its WSK_SOCKET is \
         poisoned once its close completed)",
    )
}

/// WskCloseSocket (entry 1 of every table: WSK_PROVIDER_BASIC_DISPATCH) through a poisoned
/// Dispatch.
///
/// # Safety
/// None beyond being called: it takes no arguments (the `system` ABI leaves whatever the caller
/// passed to the caller) and stops the process before it would return. It is `unsafe` only to
/// share the type of the dispatch entries it stands in for.
unsafe extern "system" fn poisoned_close() -> NtStatus {
    violation(
        Rule::SocketClosedTwice,
        "WskCloseSocket through the Dispatch of a socket whose close already completed",
    )
}

/// The poison table: every entry is a violation. The callers pass arguments the entries ignore;
/// with the `system` ABI the caller owns its argument registers and stack, and every entry stops
/// the process before it would return.
pub(crate) static POISON: Poison = {
    let mut table: [unsafe extern "system" fn() -> NtStatus; POISON_ENTRIES] =
        [poisoned_call; POISON_ENTRIES];
    table[1] = poisoned_close;
    Poison(table)
};
