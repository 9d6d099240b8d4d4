//! Sentences a person understands for the NTSTATUS values the driver answers with.

use wsk::NtStatus;

/// What went wrong, in words; `port` names the port of a start request when there is one.
#[must_use]
pub fn explain(status: NtStatus, port: Option<u16>) -> String {
    match status {
        NtStatus::ADDRESS_ALREADY_ASSOCIATED => match port {
            Some(port) if port != 0 => format!("port {port} is already in use"),
            _ => "the address is already in use".into(),
        },
        NtStatus::NOT_FOUND => "no such listener or connection (it may have been closed already)".into(),
        NtStatus::QUOTA_EXCEEDED => "too many listeners: stop one first".into(),
        NtStatus::DEVICE_NOT_READY => "the WSK provider is not ready yet; try again in a moment".into(),
        NtStatus::INVALID_PARAMETER => "the driver refused a parameter (out of range, or malformed)".into(),
        NtStatus::INVALID_BUFFER_SIZE => "the per-connection buffer size is out of range (512 to 65536 bytes)".into(),
        NtStatus::REVISION_MISMATCH => "wskctl and the driver speak different message versions; use the wskctl built with this driver".into(),
        NtStatus::INVALID_DEVICE_REQUEST => "the driver does not know this request (is it an older driver?)".into(),
        NtStatus::BUFFER_TOO_SMALL => "the reply did not fit the buffer wskctl offered".into(),
        NtStatus::NOT_SUPPORTED => "not supported: the WSK provider does not offer a call the driver needs".into(),
        NtStatus::ACCESS_DENIED => "access denied: the device is for administrators only".into(),
        NtStatus::INSUFFICIENT_RESOURCES => "the driver is out of memory or IRPs".into(),
        other => format!("the driver answered {other}"),
    }
}
