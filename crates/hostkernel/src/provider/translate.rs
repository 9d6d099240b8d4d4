//! Translation between the driver's Windows values and the host OS.

use std::io;
use std::net::SocketAddr;

use wsk::{AF_INET, AF_INET6, NtStatus, SOCKADDR};

/// The Windows address family of a socket, and its socket2 domain.
pub(crate) fn domain(family: u16) -> Option<socket2::Domain> {
    match family {
        AF_INET => Some(socket2::Domain::IPV4),
        AF_INET6 => Some(socket2::Domain::IPV6),
        _ => None,
    }
}

/// Reads a Windows SOCKADDR the driver passed.
///
/// # Safety
/// `addr` must be NULL or point at a readable SOCKADDR_IN/SOCKADDR_IN6 of its family.
pub(crate) unsafe fn read(addr: *const SOCKADDR) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller guarantees it is readable for its family.
    unsafe { wsk::addr::read_sockaddr(addr) }.ok()
}

/// Writes `addr` where the driver asked for it (NULL: not asked).
///
/// # Safety
/// `out` must be NULL or point at writable memory of SOCKADDR_STORAGE size.
pub(crate) unsafe fn write(out: *mut SOCKADDR, addr: SocketAddr) {
    if !out.is_null() {
        // SAFETY: non-NULL, so writable for SOCKADDR_STORAGE's size (this function's # Safety),
        // which is write_sockaddr's requirement.
        unsafe { wsk::addr::write_sockaddr(out, addr) };
    }
}

/// The NTSTATUS netio reports for an OS socket error.
pub(crate) fn status_of(error: &io::Error) -> NtStatus {
    match error.kind() {
        io::ErrorKind::AddrInUse => NtStatus::ADDRESS_ALREADY_ASSOCIATED,
        io::ErrorKind::PermissionDenied => NtStatus::ACCESS_DENIED,
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::InvalidInput => {
            NtStatus::INVALID_PARAMETER
        }
        io::ErrorKind::ConnectionReset => NtStatus::CONNECTION_RESET,
        io::ErrorKind::ConnectionAborted => NtStatus::CONNECTION_ABORTED,
        io::ErrorKind::OutOfMemory => NtStatus::INSUFFICIENT_RESOURCES,
        _ if error.raw_os_error() == Some(libc::EMFILE)
            || error.raw_os_error() == Some(libc::ENFILE) =>
        {
            NtStatus::INSUFFICIENT_RESOURCES
        }
        _ => NtStatus::UNSUCCESSFUL,
    }
}
