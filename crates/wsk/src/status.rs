//! NTSTATUS values used by the driver and the provider (ntstatus.h), as a newtype.

use core::fmt;

/// An NTSTATUS (ntstatus.h): a signed 32-bit value whose two top bits give the severity.
/// Success and informational codes are `>= 0`; warnings and errors are negative.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NtStatus(pub i32);

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl NtStatus {
            $($(#[$doc])* pub const $name: NtStatus = NtStatus(($value as u32).cast_signed());)*

            /// Every value named here, in declaration order ([`NtStatus::name`] gives its name).
            pub const ALL: &[NtStatus] = &[$(NtStatus::$name),*];

            /// The ntstatus.h name of a known value, or `None`.
            #[must_use]
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(x if x == ($value as u32).cast_signed() => Some(concat!("STATUS_", stringify!($name))),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    /// STATUS_SUCCESS.
    SUCCESS = 0x0000_0000u32;
    /// STATUS_TIMEOUT: a wait ended without the event (a success code).
    TIMEOUT = 0x0000_0102u32;
    /// STATUS_PENDING: the request will complete later through its IRP.
    PENDING = 0x0000_0103u32;
    /// STATUS_EVENT_PENDING: an event callback is still running (disable without an IRP).
    EVENT_PENDING = 0x4000_0013u32;
    /// STATUS_BUFFER_OVERFLOW: a warning; partial data was returned.
    BUFFER_OVERFLOW = 0x8000_0005u32;
    /// STATUS_UNSUCCESSFUL.
    UNSUCCESSFUL = 0xC000_0001u32;
    /// STATUS_INVALID_PARAMETER.
    INVALID_PARAMETER = 0xC000_000Du32;
    /// STATUS_INVALID_DEVICE_REQUEST.
    INVALID_DEVICE_REQUEST = 0xC000_0010u32;
    /// STATUS_MORE_PROCESSING_REQUIRED: returned by a completion routine that keeps the IRP.
    MORE_PROCESSING_REQUIRED = 0xC000_0016u32;
    /// STATUS_ACCESS_DENIED.
    ACCESS_DENIED = 0xC000_0022u32;
    /// STATUS_BUFFER_TOO_SMALL.
    BUFFER_TOO_SMALL = 0xC000_0023u32;
    /// STATUS_QUOTA_EXCEEDED.
    QUOTA_EXCEEDED = 0xC000_0044u32;
    /// STATUS_REVISION_MISMATCH.
    REVISION_MISMATCH = 0xC000_0059u32;
    /// STATUS_INSUFFICIENT_RESOURCES.
    INSUFFICIENT_RESOURCES = 0xC000_009Au32;
    /// STATUS_DEVICE_NOT_READY.
    DEVICE_NOT_READY = 0xC000_00A3u32;
    /// STATUS_FILE_FORCED_CLOSED.
    FILE_FORCED_CLOSED = 0xC000_00B6u32;
    /// STATUS_NOT_SUPPORTED.
    NOT_SUPPORTED = 0xC000_00BBu32;
    /// STATUS_REQUEST_NOT_ACCEPTED: an accept event callback declines the connection.
    REQUEST_NOT_ACCEPTED = 0xC000_00D0u32;
    /// STATUS_CANCELLED.
    CANCELLED = 0xC000_0120u32;
    /// STATUS_INVALID_DEVICE_STATE.
    INVALID_DEVICE_STATE = 0xC000_0184u32;
    /// STATUS_INVALID_BUFFER_SIZE: a buffer size out of the allowed range.
    INVALID_BUFFER_SIZE = 0xC000_0206u32;
    /// STATUS_CONNECTION_REFUSED.
    CONNECTION_REFUSED = 0xC000_0236u32;
    /// STATUS_CONNECTION_RESET.
    CONNECTION_RESET = 0xC000_020Du32;
    /// STATUS_DATA_NOT_ACCEPTED.
    DATA_NOT_ACCEPTED = 0xC000_021Bu32;
    /// STATUS_NOT_FOUND.
    NOT_FOUND = 0xC000_0225u32;
    /// STATUS_NOT_IMPLEMENTED (what Wine 8.0's stubbed WSK functions return).
    NOT_IMPLEMENTED = 0xC000_0002u32;
    /// STATUS_ADDRESS_ALREADY_ASSOCIATED: the local address is in use.
    ADDRESS_ALREADY_ASSOCIATED = 0xC000_0238u32;
    /// STATUS_CONNECTION_ABORTED.
    CONNECTION_ABORTED = 0xC000_0241u32;
    /// STATUS_NOINTERFACE: the WSK provider does not support the requested NPI.
    NOINTERFACE = 0xC000_02B9u32;
}

impl NtStatus {
    /// NT_SUCCESS(): true for success and informational values (`>= 0`).
    #[must_use]
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// NT_ERROR(): true for error values (severity 3).
    #[must_use]
    pub const fn is_error(self) -> bool {
        self.0.cast_unsigned() >> 30 == 3
    }

    /// The value as the unsigned number the documentation prints.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0.cast_unsigned()
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:08X})", self.as_u32()),
            None => write!(f, "NTSTATUS 0x{:08X}", self.as_u32()),
        }
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::NtStatus;

    #[test]
    fn severity_classes_follow_ntstatus_h() {
        assert!(NtStatus::SUCCESS.is_success());
        assert!(NtStatus::PENDING.is_success());
        assert!(NtStatus::EVENT_PENDING.is_success());
        assert!(!NtStatus::BUFFER_OVERFLOW.is_success());
        assert!(!NtStatus::BUFFER_OVERFLOW.is_error());
        assert!(NtStatus::CANCELLED.is_error());
        assert_eq!(NtStatus::MORE_PROCESSING_REQUIRED.as_u32(), 0xC000_0016);
    }

    #[test]
    fn display_names_known_values_and_shows_hex_for_others() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{}", NtStatus::REQUEST_NOT_ACCEPTED),
            "STATUS_REQUEST_NOT_ACCEPTED (0xC00000D0)"
        );
        assert_eq!(format!("{}", NtStatus(0x1234)), "NTSTATUS 0x00001234");
    }
}
