//! What the driver tells whoever is watching: a fixed set of events, each with a level and a
//! fixed set of fields, emitted at any IRQL.
//!
//! An [`Event`] is a small `Copy` record (integers, addresses, static strings): emitting one
//! allocates nothing and formats nothing before the backend needs to, so completion routines and
//! event callbacks at DISPATCH_LEVEL may emit. Two sinks, chosen by target like the kernel facade:
//! - host: the `tracing` crate (`wskctl host --log LEVEL`, `RUST_LOG`, `--log-format json`);
//! - Windows: DbgPrintEx with component DPFLTR_IHVNETWORK_ID and a level per event (README: how
//!   to see it in DbgView or WinDbg).

use core::net::SocketAddr;

use wsk::NtStatus;

#[cfg(not(target_os = "windows"))]
mod host;
#[cfg(target_os = "windows")]
mod windows;

/// How much an event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed that the driver could not work around.
    Error,
    /// Something was refused or degraded.
    Warn,
    /// The life of listeners.
    Info,
    /// Per-connection detail.
    Debug,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The connection table is full (`rejected_full`).
    Full,
    /// The condition function's policy said no, or user mode decided reject (`rejected_policy`).
    Policy,
    /// The source has as many connections as the per-source limit allows
    /// (`rejected_source_limit`).
    SourceLimit,
    /// Too many connections wait for a user-mode decision (`rejected_pending_full`).
    PendingFull,
    /// The listener was not running (`rejected_not_running`).
    NotRunning,
}

impl Refusal {
    /// The name the counters and the trace use.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Policy => "policy",
            Self::SourceLimit => "source_limit",
            Self::PendingFull => "pending_full",
            Self::NotRunning => "not_running",
        }
    }
}

/// One thing worth telling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A listener is running.
    ListenerStarted {
        /// Its id.
        listener: u32,
        /// The bound address.
        address: SocketAddr,
    },
    /// A listener stopped; `connections` were closed by the stop.
    ListenerStopped {
        /// Its id.
        listener: u32,
        /// Connections the stop closed.
        connections: u32,
    },
    /// The worker recreated a listening socket after the provider broke it.
    ListenerRestarted {
        /// Its id.
        listener: u32,
    },
    /// Recreating a broken listening socket failed: the listener is Failed.
    ListenerRestartFailed {
        /// Its id.
        listener: u32,
        /// What failed.
        status: NtStatus,
    },
    /// A listener start failed.
    ListenerStartFailed {
        /// The requested address.
        address: SocketAddr,
        /// What failed.
        status: NtStatus,
    },
    /// An accept IRP completed with an error.
    AcceptFailed {
        /// The listener.
        listener: u32,
        /// The IRP's status.
        status: NtStatus,
    },
    /// A connection was refused.
    Refused {
        /// The listener.
        listener: u32,
        /// Why.
        reason: Refusal,
        /// The peer, when the path that refused knows it.
        remote: Option<SocketAddr>,
    },
    /// A stop gave up waiting for the provider and parked the listener.
    StopTimedOut {
        /// The listener.
        listener: u32,
        /// Connections still open when it gave up.
        connections: u32,
    },
    /// Unload found something still outstanding.
    UnloadOutstanding {
        /// Listeners still held (parked) at unload.
        listeners: u32,
    },
    /// An IOCTL failed.
    IoctlFailed {
        /// The control code.
        code: u32,
        /// The status it was answered with.
        status: NtStatus,
    },
}

impl Event {
    /// The event's level.
    #[must_use]
    pub const fn level(&self) -> Level {
        match self {
            Self::ListenerStarted { .. } | Self::ListenerStopped { .. } => Level::Info,
            Self::ListenerRestarted { .. }
            | Self::AcceptFailed { .. }
            | Self::Refused { .. }
            | Self::StopTimedOut { .. }
            | Self::IoctlFailed { .. } => Level::Warn,
            Self::ListenerStartFailed { .. }
            | Self::ListenerRestartFailed { .. }
            | Self::UnloadOutstanding { .. } => Level::Error,
        }
    }

    /// The event's name, as the trace prints it.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ListenerStarted { .. } => "listener_started",
            Self::ListenerStopped { .. } => "listener_stopped",
            Self::ListenerRestarted { .. } => "listener_restarted",
            Self::ListenerRestartFailed { .. } => "listener_restart_failed",
            Self::ListenerStartFailed { .. } => "listener_start_failed",
            Self::AcceptFailed { .. } => "accept_failed",
            Self::Refused { .. } => "refused",
            Self::StopTimedOut { .. } => "stop_timed_out",
            Self::UnloadOutstanding { .. } => "unload_outstanding",
            Self::IoctlFailed { .. } => "ioctl_failed",
        }
    }
}

/// Emits an event to the backend's sink. IRQL: any (nothing is allocated; the Windows sink's
/// DbgPrintEx formats integers and static ANSI strings only, which any IRQL allows).
pub fn emit(event: Event) {
    #[cfg(not(target_os = "windows"))]
    host::emit(&event);
    #[cfg(target_os = "windows")]
    windows::emit(&event);
}
