//! IOCTL codes (CTL_CODE of winioctl.h) and the device interface GUID.

use wsk::GUID;

/// METHOD_BUFFERED.
pub const METHOD_BUFFERED: u32 = 0;
/// FILE_ANY_ACCESS.
pub const FILE_ANY_ACCESS: u32 = 0;
/// FILE_READ_DATA (queries).
pub const FILE_READ_DATA: u32 = 1;
/// FILE_WRITE_DATA (changes).
pub const FILE_WRITE_DATA: u32 = 2;

/// wskaccept's device type: custom types are 0x8000 and above.
pub const FILE_DEVICE_WSKACCEPT: u32 = 0x8A57;

/// CTL_CODE(DeviceType, Function, Method, Access).
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The device interface class wskctl opens (published by the driver with
/// WdfDeviceCreateDeviceInterface): {BB1809E0-F9BF-4BE8-AEEB-4C299BA43A18}.
pub const DEVICE_INTERFACE_GUID: GUID = GUID {
    data1: 0xBB18_09E0,
    data2: 0xF9BF,
    data3: 0x4BE8,
    data4: [0xAE, 0xEB, 0x4C, 0x29, 0x9B, 0xA4, 0x3A, 0x18],
};

const fn query(function: u32) -> u32 {
    ctl_code(
        FILE_DEVICE_WSKACCEPT,
        function,
        METHOD_BUFFERED,
        FILE_READ_DATA,
    )
}

const fn change(function: u32) -> u32 {
    ctl_code(
        FILE_DEVICE_WSKACCEPT,
        function,
        METHOD_BUFFERED,
        FILE_WRITE_DATA,
    )
}

/// In: nothing. Out: [`crate::VersionInfo`].
pub const IOCTL_GET_VERSION: u32 = query(0x800);
/// In: [`crate::StartListener`]. Out: [`crate::ListenerRecord`].
pub const IOCTL_START_LISTENER: u32 = change(0x801);
/// In: [`crate::ListenerRequest`]. Out: [`crate::StatsRecord`] (the listener's final counters).
pub const IOCTL_STOP_LISTENER: u32 = change(0x802);
/// In: [`crate::QueryHeader`]. Out: [`crate::ListHeader`] then up to `MAX_LISTENERS`
/// [`crate::ListenerRecord`]s.
pub const IOCTL_QUERY_LISTENERS: u32 = query(0x803);
/// In: [`crate::ListenerRequest`] (`ALL_LISTENERS` for the driver). Out: [`crate::StatsRecord`].
pub const IOCTL_QUERY_STATS: u32 = query(0x804);
/// In: [`crate::ListConnections`]. Out: [`crate::ListHeader`] then [`crate::ConnectionRecord`]s.
pub const IOCTL_LIST_CONNECTIONS: u32 = query(0x805);
/// In: [`crate::CloseConnection`]. Out: nothing.
pub const IOCTL_CLOSE_CONNECTION: u32 = change(0x806);
/// In: [`crate::PolicyMessage`]. Out: nothing. Replaces a listener's policy.
pub const IOCTL_SET_POLICY: u32 = change(0x807);
/// In: [`crate::ListenerRequest`]. Out: [`crate::PolicyMessage`].
pub const IOCTL_QUERY_POLICY: u32 = query(0x808);
/// In: [`crate::GetPending`]. Out: [`crate::PendingRecord`], or success with no output when none
/// came within the timeout (the WSAEWOULDBLOCK case). An
/// inverted call: waits until a request is deferred to user mode; STATUS_CANCELLED when the
/// listener stops or the driver unloads meanwhile.
pub const IOCTL_GET_PENDING: u32 = query(0x809);
/// In: [`crate::Decide`]. Out: nothing. STATUS_NOT_FOUND for an unknown, decided, timed-out or
/// withdrawn request.
pub const IOCTL_DECIDE: u32 = change(0x80A);

/// Every code the driver answers.
pub const IMPLEMENTED: [u32; 11] = [
    IOCTL_GET_VERSION,
    IOCTL_START_LISTENER,
    IOCTL_STOP_LISTENER,
    IOCTL_QUERY_LISTENERS,
    IOCTL_QUERY_STATS,
    IOCTL_LIST_CONNECTIONS,
    IOCTL_CLOSE_CONNECTION,
    IOCTL_SET_POLICY,
    IOCTL_QUERY_POLICY,
    IOCTL_GET_PENDING,
    IOCTL_DECIDE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_ctl_code_with_the_documented_access() {
        assert_eq!(
            ctl_code(0x22, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS),
            0x0022_2000
        );
        assert_eq!(IOCTL_GET_VERSION, 0x8A57_6000);
        assert_eq!(IOCTL_START_LISTENER, 0x8A57_A004);
        for code in IMPLEMENTED {
            assert_eq!(code >> 16, FILE_DEVICE_WSKACCEPT);
            assert_eq!(code & 3, METHOD_BUFFERED);
            assert!(
                (code >> 2) & 0xFFF >= 0x800,
                "custom function codes start at 0x800"
            );
        }
    }
}
