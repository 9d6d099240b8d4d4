//! The verifier: rules the driver must keep, checked the way Driver Verifier and the kernel's own
//! bug checks would. A broken rule is fatal: the message names the rule, then the process panics
//! (inside a provider entry point an `extern "system"` frame turns that panic into an abort, just
//! as a bug check stops the machine).

use std::cell::Cell;
use std::fmt;

/// A rule the driver broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// An IRP was freed while a provider still owned it (pending).
    FreePendingIrp,
    /// An IRP was reused while a provider still owned it (pending).
    ReusePendingIrp,
    /// An IRP was handed to a provider while it was already pending.
    ResubmitPendingIrp,
    /// An IRP was handed to a provider again without IoReuseIrp after its completion.
    SubmitCompletedIrp,
    /// An IRP was completed twice.
    CompleteTwice,
    /// A pointer that is not a live IRP was passed as one.
    InvalidIrp,
    /// A completion routine of a driver-allocated IRP returned something other than
    /// STATUS_MORE_PROCESSING_REQUIRED.
    CompletionMustReturnMoreProcessing,
    /// IoSetCompletionRoutine on an IRP from IoAllocateIrp with InvokeOnSuccess, InvokeOnError or
    /// InvokeOnCancel FALSE: the driver owns that IRP, so its routine must always run to take it
    /// back (WSK-FACTS §3).
    CompletionRoutineMustAlwaysRun,
    /// A WSK function was called from inside an IRP completion routine (WSK-FACTS §3).
    WskCallInCompletionRoutine,
    /// A call that may block, or that is documented PASSIVE_LEVEL only, ran above PASSIVE_LEVEL.
    IrqlNotPassive,
    /// A call was made above DISPATCH_LEVEL or IRQL was lowered below where it was raised from.
    IrqlMismatch,
    /// A socket was used after WskCloseSocket.
    SocketUsedAfterClose,
    /// WskCloseSocket was called twice on one socket.
    SocketClosedTwice,
    /// WskCloseSocket was called while another call on that socket was in progress (WSK-FACTS §7).
    CloseWhileCallInProgress,
    /// A pointer that is not a socket of this provider was passed as one.
    InvalidSocket,
    /// A call that needs an IRP was made without one.
    IrpRequired,
    /// A pool block was freed twice, freed with the wrong tag, or was never allocated.
    BadPoolFree,
    /// WskDeregister or registration misuse (e.g. releasing an NPI that was not captured).
    RegistrationMisuse,
    /// A WSK or kernel argument the documentation forbids.
    InvalidArgument,
    /// A socket handed over by WskAcceptEvent was closed, or used from another thread, before
    /// that callback returned: the provider has not recorded it as accepted yet.
    SocketUsedBeforeAcceptEventReturned,
    /// A kernel object (a spin lock) was used after the memory holding it was freed — typically
    /// a completion that arrived after its owner gave up waiting and freed what it reaches.
    ObjectUsedAfterFree,
    /// KeInsertQueueDpc or KeSetTargetProcessorDpcEx on a KDPC that KeInitializeDpc did not
    /// initialise.
    DpcNotInitialized,
    /// Memory holding a queued KDPC was freed: the DPC would run on freed memory.
    FreeQueuedDpc,
}

impl Rule {
    /// The rule's name, as printed in the violation message.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::FreePendingIrp => "free-pending-irp",
            Self::ReusePendingIrp => "reuse-pending-irp",
            Self::ResubmitPendingIrp => "resubmit-pending-irp",
            Self::SubmitCompletedIrp => "submit-completed-irp-without-reuse",
            Self::CompleteTwice => "complete-irp-twice",
            Self::InvalidIrp => "invalid-irp",
            Self::CompletionMustReturnMoreProcessing => {
                "completion-routine-must-return-more-processing-required"
            }
            Self::CompletionRoutineMustAlwaysRun => "completion-routine-must-always-run",
            Self::WskCallInCompletionRoutine => "wsk-call-in-completion-routine",
            Self::IrqlNotPassive => "irql-not-passive",
            Self::IrqlMismatch => "irql-mismatch",
            Self::SocketUsedAfterClose => "socket-used-after-close",
            Self::SocketClosedTwice => "socket-closed-twice",
            Self::CloseWhileCallInProgress => "close-while-call-in-progress",
            Self::InvalidSocket => "invalid-socket",
            Self::IrpRequired => "irp-required",
            Self::BadPoolFree => "bad-pool-free",
            Self::RegistrationMisuse => "registration-misuse",
            Self::InvalidArgument => "invalid-argument",
            Self::ObjectUsedAfterFree => "object-used-after-free",
            Self::DpcNotInitialized => "dpc-not-initialized",
            Self::FreeQueuedDpc => "free-queued-dpc",
            Self::SocketUsedBeforeAcceptEventReturned => "socket-used-before-accept-event-returned",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The prefix of every violation message; tests look for it.
pub const VIOLATION_PREFIX: &str = "HOSTKERNEL VERIFIER VIOLATION";

/// Reports a broken rule and stops.
///
/// # Panics
/// Always: that is its job.
#[track_caller]
pub fn violation(rule: Rule, detail: impl fmt::Display) -> ! {
    let message = format!("{VIOLATION_PREFIX} [{rule}]: {detail}");
    eprintln!("{message}");
    eprintln!("(schedule seed {})", crate::schedule::current_seed());
    if BUG_CHECK_THREAD.with(Cell::get) {
        // On the provider thread nobody would see the panic: stop everything, as a bug check does.
        std::process::abort();
    }
    panic!("{message}");
}

thread_local! {
    static IN_COMPLETION_ROUTINE: Cell<u32> = const { Cell::new(0) };
    static BUG_CHECK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one whose panics nobody would see (the provider's event-loop
/// thread): a violation there aborts the process at once, as a bug check stops the machine.
pub(crate) fn abort_on_violation_in_this_thread() {
    BUG_CHECK_THREAD.with(|on| on.set(true));
}

/// Marks the current thread as running a completion routine for the guard's lifetime.
pub(crate) struct CompletionRoutineScope(());

impl CompletionRoutineScope {
    pub(crate) fn enter() -> Self {
        IN_COMPLETION_ROUTINE.with(|depth| depth.set(depth.get() + 1));
        Self(())
    }
}

impl Drop for CompletionRoutineScope {
    fn drop(&mut self) {
        IN_COMPLETION_ROUTINE.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Whether the current thread is inside an IRP completion routine.
#[must_use]
pub fn in_completion_routine() -> bool {
    IN_COMPLETION_ROUTINE.with(Cell::get) > 0
}
