//! The contract's enumerations, one definition each, shared by the driver (which uses them as its
//! own configuration types) and `wskctl` (which takes and prints their names). On the wire they
//! are `u32`s; messages hold them typed, so zerocopy's `TryFromBytes` refuses an unknown value
//! while reading the message (STATUS_INVALID_PARAMETER), before any field is looked at.

use zerocopy::{Immutable, IntoBytes, KnownLayout, TryFromBytes};

macro_rules! wire_enum {
    (
        $(#[$doc:meta])* $ty:ident {
            $($(#[$vdoc:meta])* $variant:ident = $value:literal, $name:literal $(| $alias:literal)*;)*
        }
    ) => {
        $(#[$doc])*
        #[repr(u32)]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, TryFromBytes, IntoBytes,
            KnownLayout, Immutable,
        )]
        pub enum $ty {
            $($(#[$vdoc])* $variant = $value,)*
        }

        impl $ty {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
            /// Every name, in wire order (what `wskctl` takes and prints).
            pub const NAMES: &'static [&'static str] = &[$($name),*];
            /// Other names `wskctl` also takes, each with the value it stands for.
            pub const ALIASES: &'static [(&'static str, Self)] = &[$($(($alias, Self::$variant),)*)*];

            /// Its name.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Its value on the wire.
            #[must_use]
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// The value with this name.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == name).or_else(|| {
                    Self::ALIASES.iter().find(|(alias, _)| *alias == name).map(|&(_, v)| v)
                })
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// How a listener accepts.
    Mode {
        /// WskAccept with caller-allocated IRPs only.
        #[default]
        Irp = 0, "irp";
        /// WskAcceptEvent only.
        Event = 1, "event";
        /// Both armed: either path may deliver any connection (WSK-FACTS §4).
        Both = 2, "both";
        /// SO_CONDITIONAL_ACCEPT: every request is inspected by the policy (WskInspectEvent),
        /// which may defer it to user mode; accepted requests then arrive through both paths as
        /// in `Both`.
        Conditional = 3, "conditional";
    }
}

impl Mode {
    /// Whether accept IRPs are queued.
    #[must_use]
    pub const fn uses_irps(self) -> bool {
        matches!(self, Self::Irp | Self::Both | Self::Conditional)
    }

    /// Whether WskAcceptEvent is enabled.
    #[must_use]
    pub const fn uses_events(self) -> bool {
        matches!(self, Self::Event | Self::Both | Self::Conditional)
    }
}

wire_enum! {
    /// What happens to an accepted connection.
    Service {
        /// Keep it open until the peer closes, a user closes it, or the listener stops, reading
        /// and dropping whatever the peer sends (`hold` is its old name, still taken).
        #[default]
        Discard = 0, "discard" | "hold";
        /// Close it gracefully at once (the accept-rate workload).
        Close = 1, "close";
        /// Send back every byte received, in order; on the peer's FIN, echo what is left, then
        /// disconnect gracefully.
        Echo = 2, "echo";
    }
}

impl Service {
    /// The old name of [`Service::Discard`] (what `hold` did: read and drop).
    #[allow(non_upper_case_globals)]
    pub const Hold: Self = Self::Discard;

    /// Whether the service reads what the peer sends (a receive is kept pending or, for echo,
    /// alternates with the send of what it read).
    #[must_use]
    pub const fn reads(self) -> bool {
        matches!(self, Self::Discard | Self::Echo)
    }
}

wire_enum! {
    /// A listener's phase, as user mode sees it.
    Phase {
        /// Accepting.
        #[default]
        Running = 0, "running";
        /// Recreating its listening socket.
        Restarting = 1, "restarting";
        /// Recreating failed; it accepts nothing until stopped.
        Failed = 2, "failed";
        /// Running down.
        Stopping = 3, "stopping";
    }
}

wire_enum! {
    /// The path that delivered a connection.
    AcceptPath {
        /// WskAccept with a caller-allocated IRP.
        #[default]
        Irp = 0, "irp";
        /// The WskAcceptEvent callback.
        Event = 1, "event";
    }
}

wire_enum! {
    /// A policy answer: a rule's (allow or deny), the default's, or a decision's.
    Action {
        /// Accept (default action, decision) / allow (rule).
        #[default]
        Accept = 0, "accept";
        /// Reject (default action, decision) / deny (rule).
        Reject = 1, "reject";
        /// Defer to user mode (default action only; reject outside conditional mode).
        Defer = 2, "defer";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_values_are_refused() {
        for &mode in Mode::ALL {
            assert_eq!(Mode::from_name(mode.name()), Some(mode));
            assert_eq!(Mode::try_read_from_bytes(mode.as_bytes()), Ok(mode));
        }
        assert!(Mode::try_read_from_bytes(4u32.as_bytes()).is_err());
        assert!(Service::try_read_from_bytes(3u32.as_bytes()).is_err());
        assert_eq!(Service::from_name("hold"), Some(Service::Discard));
        assert_eq!(Service::from_name("echo"), Some(Service::Echo));
        assert_eq!(Service::Hold.name(), "discard");
        assert!(Action::try_read_from_bytes(3u32.as_bytes()).is_err());
        assert_eq!(Mode::from_name("fast"), None);
    }
}
