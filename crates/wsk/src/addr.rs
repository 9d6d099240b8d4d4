//! Windows socket addresses (ws2def.h, ws2ipdef.h) and safe conversions to and from
//! `core::net::SocketAddr`. Ports and IPv4/IPv6 addresses are in network byte order; the address
//! family is Windows' (`AF_INET6` = 23).
#![allow(non_camel_case_types, non_snake_case)]

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::consts::{AF_INET, AF_INET6};

/// SOCKADDR (ws2def.h): the generic header every address starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR {
    /// Address family.
    pub sa_family: u16,
    /// Family-specific bytes.
    pub sa_data: [u8; 14],
}

/// SOCKADDR_IN (ws2def.h), 16 bytes, 4-aligned: in C `sin_addr` is an IN_ADDR, a union holding a
/// ULONG, which the byte array here does not carry by itself.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SOCKADDR_IN {
    /// `AF_INET`.
    pub sin_family: u16,
    /// Port, big-endian.
    pub sin_port: u16,
    /// IPv4 address, network order.
    pub sin_addr: [u8; 4],
    /// Zero.
    pub sin_zero: [u8; 8],
}

/// SOCKADDR_IN6 (ws2ipdef.h), 28 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SOCKADDR_IN6 {
    /// `AF_INET6` (23).
    pub sin6_family: u16,
    /// Port, big-endian.
    pub sin6_port: u16,
    /// Flow information, big-endian.
    pub sin6_flowinfo: u32,
    /// IPv6 address, network order.
    pub sin6_addr: [u8; 16],
    /// Scope id (host order).
    pub sin6_scope_id: u32,
}

/// SOCKADDR_STORAGE (ws2def.h), 128 bytes, 8-aligned: room for any address.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SOCKADDR_STORAGE {
    /// Address family.
    pub ss_family: u16,
    /// Padding.
    pub ss_pad1: [u8; 6],
    /// Forces 8-byte alignment.
    pub ss_align: i64,
    /// Padding.
    pub ss_pad2: [u8; 112],
}

/// Why a Windows socket address could not be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The family is neither `AF_INET` nor `AF_INET6` (the value is given).
    UnsupportedFamily(u16),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedFamily(family) => write!(f, "unsupported address family {family}"),
        }
    }
}

impl From<SocketAddrV4> for SOCKADDR_IN {
    fn from(addr: SocketAddrV4) -> Self {
        Self {
            sin_family: AF_INET,
            sin_port: addr.port().to_be(),
            sin_addr: addr.ip().octets(),
            sin_zero: [0; 8],
        }
    }
}

impl From<SOCKADDR_IN> for SocketAddrV4 {
    fn from(addr: SOCKADDR_IN) -> Self {
        SocketAddrV4::new(Ipv4Addr::from(addr.sin_addr), u16::from_be(addr.sin_port))
    }
}

impl From<SocketAddrV6> for SOCKADDR_IN6 {
    fn from(addr: SocketAddrV6) -> Self {
        Self {
            sin6_family: AF_INET6,
            sin6_port: addr.port().to_be(),
            sin6_flowinfo: addr.flowinfo().to_be(),
            sin6_addr: addr.ip().octets(),
            sin6_scope_id: addr.scope_id(),
        }
    }
}

impl From<SOCKADDR_IN6> for SocketAddrV6 {
    fn from(addr: SOCKADDR_IN6) -> Self {
        SocketAddrV6::new(
            Ipv6Addr::from(addr.sin6_addr),
            u16::from_be(addr.sin6_port),
            u32::from_be(addr.sin6_flowinfo),
            addr.sin6_scope_id,
        )
    }
}

impl SOCKADDR_STORAGE {
    /// An all-zero storage (family 0, "unspecified").
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            ss_family: 0,
            ss_pad1: [0; 6],
            ss_align: 0,
            ss_pad2: [0; 112],
        }
    }

    /// The generic pointer WSK functions take.
    pub fn as_mut_ptr(&mut self) -> *mut SOCKADDR {
        core::ptr::from_mut(self).cast()
    }

    /// Interprets the storage as an IPv4 or IPv6 address.
    ///
    /// # Errors
    /// [`AddressError::UnsupportedFamily`] when the family is neither `AF_INET` nor `AF_INET6`.
    pub fn to_socket_addr(&self) -> Result<SocketAddr, AddressError> {
        let ptr = core::ptr::from_ref(self).cast::<SOCKADDR>();
        // SAFETY: `self` is a live 128-byte, 8-aligned SOCKADDR_STORAGE, large and aligned enough
        // for every address `read_sockaddr` may read.
        unsafe { read_sockaddr(ptr) }
    }
}

impl From<SocketAddr> for SOCKADDR_STORAGE {
    fn from(addr: SocketAddr) -> Self {
        let mut storage = Self::zeroed();
        let dst = core::ptr::from_mut(&mut storage);
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: SOCKADDR_STORAGE is 128 bytes and 8-aligned; SOCKADDR_IN (16 bytes,
                // 2-aligned) fits at its start, which is what ws2def.h's storage is for.
                unsafe { dst.cast::<SOCKADDR_IN>().write(SOCKADDR_IN::from(v4)) };
            }
            SocketAddr::V6(v6) => {
                // SAFETY: SOCKADDR_STORAGE is 128 bytes and 8-aligned; SOCKADDR_IN6 (28 bytes,
                // 4-aligned) fits at its start, which is what ws2def.h's storage is for.
                unsafe { dst.cast::<SOCKADDR_IN6>().write(SOCKADDR_IN6::from(v6)) };
            }
        }
        storage
    }
}

impl fmt::Debug for SOCKADDR_STORAGE {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_socket_addr() {
            Ok(addr) => write!(f, "SOCKADDR_STORAGE({addr})"),
            Err(_) => write!(f, "SOCKADDR_STORAGE(family {})", self.ss_family),
        }
    }
}

/// Reads an IPv4 or IPv6 address from a Windows SOCKADDR.
///
/// # Safety
/// `ptr` must point to a readable SOCKADDR of at least the size its family implies
/// (16 bytes for `AF_INET`, 28 for `AF_INET6`). Alignment is not required.
///
/// # Errors
/// [`AddressError::UnsupportedFamily`] for any other family.
pub unsafe fn read_sockaddr(ptr: *const SOCKADDR) -> Result<SocketAddr, AddressError> {
    // SAFETY: the caller guarantees at least the 2-byte family is readable.
    let family = unsafe { ptr.cast::<u16>().read_unaligned() };
    match family {
        AF_INET => {
            // SAFETY: the family says AF_INET, and the caller guarantees 16 readable bytes.
            let v4 = unsafe { ptr.cast::<SOCKADDR_IN>().read_unaligned() };
            Ok(SocketAddr::V4(v4.into()))
        }
        AF_INET6 => {
            // SAFETY: the family says AF_INET6, and the caller guarantees 28 readable bytes.
            let v6 = unsafe { ptr.cast::<SOCKADDR_IN6>().read_unaligned() };
            Ok(SocketAddr::V6(v6.into()))
        }
        other => Err(AddressError::UnsupportedFamily(other)),
    }
}

/// Writes `addr` as a Windows SOCKADDR_IN or SOCKADDR_IN6.
///
/// # Safety
/// `ptr` must point to writable memory of at least `size_of::<SOCKADDR_STORAGE>()` bytes, or at
/// least the size of the family written. Alignment is not required.
pub unsafe fn write_sockaddr(ptr: *mut SOCKADDR, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: `ptr` has room for the family written (this function's # Safety): 16
            // bytes for SOCKADDR_IN; the write is unaligned, as allowed.
            unsafe { ptr.cast::<SOCKADDR_IN>().write_unaligned(v4.into()) };
        }
        SocketAddr::V6(v6) => {
            // SAFETY: `ptr` has room for the family written (this function's # Safety): 28
            // bytes for SOCKADDR_IN6; the write is unaligned, as allowed.
            unsafe { ptr.cast::<SOCKADDR_IN6>().write_unaligned(v6.into()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_with_big_endian_port() {
        let addr: SocketAddr = "192.0.2.7:7007".parse().unwrap();
        let storage = SOCKADDR_STORAGE::from(addr);
        assert_eq!(storage.ss_family, AF_INET);
        let raw: [u8; 4] = [storage.ss_pad1[0], storage.ss_pad1[1], 0, 0];
        assert_eq!(u16::from_be_bytes([raw[0], raw[1]]), 7007);
        assert_eq!(storage.to_socket_addr(), Ok(addr));
    }

    #[test]
    fn ipv6_round_trips_with_windows_family_23() {
        let addr: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let storage = SOCKADDR_STORAGE::from(addr);
        assert_eq!(storage.ss_family, 23);
        assert_eq!(storage.to_socket_addr(), Ok(addr));
    }

    #[test]
    fn linux_inet6_family_is_refused() {
        let mut storage = SOCKADDR_STORAGE::zeroed();
        storage.ss_family = 10;
        assert_eq!(
            storage.to_socket_addr(),
            Err(AddressError::UnsupportedFamily(10))
        );
    }
}
