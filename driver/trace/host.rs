//! Host sink: one `tracing` event per driver event, target `wskaccept`, the event's name as the
//! message and its fields as tracing fields.

use super::{Event, Level};

/// Emits `event` through `tracing`.
pub(super) fn emit(event: &Event) {
    macro_rules! at {
        ($($field:tt)*) => {
            match event.level() {
                Level::Error => tracing::error!(target: "wskaccept", $($field)*),
                Level::Warn => tracing::warn!(target: "wskaccept", $($field)*),
                Level::Info => tracing::info!(target: "wskaccept", $($field)*),
                Level::Debug => tracing::debug!(target: "wskaccept", $($field)*),
            }
        };
    }
    let name = event.name();
    match *event {
        Event::ListenerStarted { listener, address } => {
            at!(listener, %address, "{name}");
        }
        Event::ListenerStopped {
            listener,
            connections,
        } => at!(listener, connections, "{name}"),
        Event::ListenerRestarted { listener } => at!(listener, "{name}"),
        Event::ListenerRestartFailed { listener, status }
        | Event::AcceptFailed { listener, status } => at!(listener, %status, "{name}"),
        Event::ListenerStartFailed { address, status } => at!(%address, %status, "{name}"),
        Event::Refused {
            listener,
            reason,
            remote,
        } => match remote {
            Some(remote) => at!(listener, reason = reason.name(), %remote, "{name}"),
            None => at!(listener, reason = reason.name(), "{name}"),
        },
        Event::StopTimedOut {
            listener,
            connections,
        } => at!(listener, connections, "{name}"),
        Event::UnloadOutstanding { listeners } => at!(listeners, "{name}"),
        Event::IoctlFailed { code, status } => {
            at!(code = format_args!("{code:#010x}"), %status, "{name}");
        }
    }
}
