//! Messages. Each is `#[repr(C)]` with explicit padding, starts with (or, for records, carries) a
//! version, and has reserved fields that must be zero. [`parse`] and [`emit`] give the precise
//! answers: wrong size → STATUS_INVALID_PARAMETER, wrong version → STATUS_REVISION_MISMATCH,
//! bad enum / flag / reserved field / address → STATUS_INVALID_PARAMETER, output too small →
//! STATUS_BUFFER_TOO_SMALL.

use core::mem::{offset_of, size_of};
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk::{AF_INET, AF_INET6, NtStatus};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, TryFromBytes};

use crate::counters::WireCounters;
use crate::enums::{AcceptPath, Action, Mode, Phase, Service};

/// The message version this build speaks.
pub const VERSION: u32 = 3;
/// `listener` value meaning "all listeners / the whole driver".
pub const ALL_LISTENERS: u32 = u32::MAX;
/// Largest input any IOCTL accepts.
pub const MAX_INPUT: usize = 4096;

/// A socket address on the wire: Windows family numbers (AF_INET 2, AF_INET6 23), port in host
/// order, IPv4 in the first four address bytes (the other twelve zero).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct WireAddress {
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Port.
    pub port: u16,
    /// IPv6 scope id (zero for IPv4).
    pub scope_id: u32,
    /// Address bytes, network order.
    pub address: [u8; 16],
}

impl From<SocketAddr> for WireAddress {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => {
                let mut address = [0; 16];
                address[..4].copy_from_slice(&v4.ip().octets());
                Self {
                    family: AF_INET,
                    port: v4.port(),
                    scope_id: 0,
                    address,
                }
            }
            SocketAddr::V6(v6) => Self {
                family: AF_INET6,
                port: v6.port(),
                scope_id: v6.scope_id(),
                address: v6.ip().octets(),
            },
        }
    }
}

impl WireAddress {
    /// The address, checked.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for an unknown family or non-zero unused bytes.
    pub fn to_socket_addr(&self) -> Result<SocketAddr, NtStatus> {
        match self.family {
            AF_INET => {
                if self.scope_id != 0 || self.address[4..].iter().any(|&b| b != 0) {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                let ip = Ipv4Addr::new(
                    self.address[0],
                    self.address[1],
                    self.address[2],
                    self.address[3],
                );
                Ok(SocketAddr::V4(SocketAddrV4::new(ip, self.port)))
            }
            AF_INET6 => Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(self.address),
                self.port,
                0,
                self.scope_id,
            ))),
            _ => Err(NtStatus::INVALID_PARAMETER),
        }
    }
}

/// [`StartListener::flags`]: IPv6 listener also takes IPv4 (IPV6_V6ONLY off).
pub const START_DUAL_STACK: u32 = 0x1;
/// [`CloseConnection::flags`]: abortive close (RST) instead of graceful.
pub const CLOSE_ABORTIVE: u32 = 0x1;
/// [`ListHeader::flags`]: more records follow; continue at `next_cursor`.
pub const LIST_MORE: u32 = 0x1;

/// IOCTL_GET_VERSION output.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VersionInfo {
    /// [`VERSION`].
    pub version: u32,
    /// Driver version, major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
    /// Zero.
    pub reserved0: u16,
    /// Most listeners at once.
    pub max_listeners: u32,
    /// Largest table capacity.
    pub max_capacity: u32,
    /// Most accept IRPs per listener.
    pub max_depth: u32,
    /// Driver memory per table entry, bytes.
    pub bytes_per_entry: u32,
    /// Zero.
    pub reserved: [u32; 3],
}

/// IOCTL_START_LISTENER input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct StartListener {
    /// [`VERSION`].
    pub version: u32,
    /// [`START_DUAL_STACK`] or 0.
    pub flags: u32,
    /// Address to bind (port 0: ephemeral).
    pub address: WireAddress,
    /// How it accepts.
    pub mode: Mode,
    /// Accept IRPs (0: default 1).
    pub depth: u32,
    /// Table capacity (0: default 1024).
    pub capacity: u32,
    /// What it does with connections.
    pub service: Service,
    /// Conditional mode: how long a deferred request may wait for DECIDE (0: default 5000 ms).
    pub decision_timeout_ms: u32,
    /// Bytes of each connection's data buffer, [`MIN_BUFFER`]..=[`MAX_BUFFER`] (0: default
    /// [`DEFAULT_BUFFER`]); out of range: STATUS_INVALID_BUFFER_SIZE (from the driver).
    pub buffer: u32,
    /// Zero.
    pub reserved: [u32; 2],
}

/// Smallest per-connection data buffer ([`StartListener::buffer`]).
pub const MIN_BUFFER: u32 = 512;
/// Largest per-connection data buffer.
pub const MAX_BUFFER: u32 = 65_536;
/// Default per-connection data buffer.
pub const DEFAULT_BUFFER: u32 = 4096;
/// Most data-buffer memory one listener may ask for, capacity × buffer (256 MiB: nonpaged pool
/// is shared by the whole system, so no single listener may take all of it); more:
/// STATUS_INVALID_BUFFER_SIZE. The largest table with the default buffer fits exactly.
pub const MAX_BUFFER_MEMORY: u64 = 256 << 20;

/// IOCTL_STOP_LISTENER and IOCTL_QUERY_STATS input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct ListenerRequest {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id, or [`ALL_LISTENERS`] (QUERY_STATS only).
    pub listener: u32,
    /// Zero.
    pub reserved: [u32; 2],
}

/// IOCTL_QUERY_LISTENERS input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct QueryHeader {
    /// [`VERSION`].
    pub version: u32,
    /// Zero.
    pub reserved: u32,
}

/// One listener (IOCTL_START_LISTENER output, IOCTL_QUERY_LISTENERS records).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct ListenerRecord {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id.
    pub id: u32,
    /// Address bound (with the port actually bound).
    pub address: WireAddress,
    /// How it accepts.
    pub mode: Mode,
    /// What it does with connections.
    pub service: Service,
    /// Accept IRPs.
    pub depth: u32,
    /// Table capacity.
    pub capacity: u32,
    /// Its phase.
    pub phase: Phase,
    /// Connections in the table.
    pub active: u32,
    /// Highest `active`.
    pub peak: u32,
    /// Accept IRPs pending now.
    pub accept_irps_pending: u32,
    /// Last restart error (NTSTATUS), or 0.
    pub last_error: i32,
    /// [`START_DUAL_STACK`] if dual-stack.
    pub flags: u32,
    /// Bytes of each connection's data buffer.
    pub buffer: u32,
    /// Zero.
    pub reserved: u32,
    /// Counters.
    pub counters: WireCounters,
}

/// IOCTL_QUERY_STATS / IOCTL_STOP_LISTENER output.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct StatsRecord {
    /// [`VERSION`].
    pub version: u32,
    /// Listeners running (driver-wide) or 1.
    pub listeners: u32,
    /// Connections in the table(s).
    pub active: u32,
    /// Highest `active`.
    pub peak: u32,
    /// Accept IRPs pending.
    pub accept_irps_pending: u32,
    /// Zero.
    pub reserved: u32,
    /// Counters (driver-wide: including stopped listeners).
    pub counters: WireCounters,
}

/// Header of list outputs.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct ListHeader {
    /// [`VERSION`].
    pub version: u32,
    /// Records that follow.
    pub count: u32,
    /// [`LIST_MORE`] when the list continues.
    pub flags: u32,
    /// Zero.
    pub reserved: u32,
    /// Where to continue (IOCTL_LIST_CONNECTIONS).
    pub next_cursor: u64,
}

/// IOCTL_LIST_CONNECTIONS input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct ListConnections {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id or [`ALL_LISTENERS`].
    pub listener: u32,
    /// 0 to start, then the previous [`ListHeader::next_cursor`].
    pub cursor: u64,
    /// Zero.
    pub reserved: [u32; 2],
}

/// One connection.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct ConnectionRecord {
    /// The id CLOSE_CONNECTION takes.
    pub id: u64,
    /// Listener id.
    pub listener: u32,
    /// How it was accepted.
    pub path: AcceptPath,
    /// Peer.
    pub remote: WireAddress,
    /// Local end.
    pub local: WireAddress,
    /// Milliseconds since accept.
    pub age_ms: u64,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer (echoed).
    pub bytes_out: u64,
}

/// IOCTL_CLOSE_CONNECTION input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct CloseConnection {
    /// [`VERSION`].
    pub version: u32,
    /// [`CLOSE_ABORTIVE`] or 0.
    pub flags: u32,
    /// Connection id.
    pub id: u64,
    /// Zero.
    pub reserved: [u32; 2],
}

/// Most rules in a policy.
pub const MAX_RULES: usize = 64;

/// One policy rule: allow or deny a prefix.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct WireRule {
    /// [`Action::Accept`] (allow) or [`Action::Reject`] (deny).
    pub action: Action,
    /// Prefix length in bits.
    pub length: u32,
    /// Network address (port must be 0).
    pub address: WireAddress,
}

/// IOCTL_SET_POLICY input and IOCTL_QUERY_POLICY output.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PolicyMessage {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id.
    pub listener: u32,
    /// What no rule settles.
    pub default_action: Action,
    /// Most active connections per source address (0: no limit).
    pub per_source: u32,
    /// Rules used (the rest must be zero).
    pub rule_count: u32,
    /// Zero.
    pub reserved: [u32; 3],
    /// Rules, first match wins.
    pub rules: [WireRule; MAX_RULES],
}

impl Default for PolicyMessage {
    fn default() -> Self {
        Self {
            version: VERSION,
            listener: 0,
            default_action: Action::Accept,
            per_source: 0,
            rule_count: 0,
            reserved: [0; 3],
            rules: [WireRule::default(); MAX_RULES],
        }
    }
}

/// IOCTL_GET_PENDING input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct GetPending {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id or [`ALL_LISTENERS`].
    pub listener: u32,
    /// How long to wait for a request (0: do not wait; at most 60000). Success with no output when
    /// none came.
    pub timeout_ms: u32,
    /// Zero.
    pub reserved: u32,
}

/// IOCTL_GET_PENDING output.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PendingRecord {
    /// [`VERSION`].
    pub version: u32,
    /// Listener id.
    pub listener: u32,
    /// The id DECIDE takes.
    pub id: u64,
    /// Peer.
    pub remote: WireAddress,
    /// Local end.
    pub local: WireAddress,
    /// How long it has waited, ms.
    pub waited_ms: u64,
}

/// IOCTL_DECIDE input.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct Decide {
    /// [`VERSION`].
    pub version: u32,
    /// [`Action::Accept`] or [`Action::Reject`].
    pub action: Action,
    /// The pending request's id.
    pub id: u64,
    /// Zero.
    pub reserved: [u32; 2],
}

macro_rules! layout {
    ($ty:ty, $size:expr, $align:expr $(, $field:ident @ $offset:expr)*) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size);
            assert!(core::mem::align_of::<$ty>() == $align);
            $(assert!(offset_of!($ty, $field) == $offset);)*
        };
    };
}

layout!(WireAddress, 24, 4, family @ 0, port @ 2, scope_id @ 4, address @ 8);
layout!(VersionInfo, 40, 4, bytes_per_entry @ 24);
layout!(StartListener, 64, 4, address @ 8, mode @ 32, depth @ 36, capacity @ 40, service @ 44, decision_timeout_ms @ 48, buffer @ 52, reserved @ 56);
layout!(ListenerRequest, 16, 4, listener @ 4);
layout!(QueryHeader, 8, 4);
layout!(WireCounters, 8 * crate::counters::WIRE_COUNTER_SLOTS, 8);
layout!(ListenerRecord, 80 + 8 * crate::counters::WIRE_COUNTER_SLOTS, 8, address @ 8, mode @ 32, last_error @ 64, buffer @ 72, counters @ 80);
layout!(StatsRecord, 24 + 8 * crate::counters::WIRE_COUNTER_SLOTS, 8, counters @ 24);
layout!(ListHeader, 24, 8, next_cursor @ 16);
layout!(ListConnections, 24, 8, cursor @ 8);
layout!(ConnectionRecord, 88, 8, remote @ 16, local @ 40, age_ms @ 64, bytes_in @ 72, bytes_out @ 80);
layout!(CloseConnection, 24, 8, id @ 8);
layout!(WireRule, 32, 4, length @ 4, address @ 8);
layout!(PolicyMessage, 32 + 32 * MAX_RULES, 4, rule_count @ 16, rules @ 32);
layout!(GetPending, 16, 4, timeout_ms @ 8);
layout!(PendingRecord, 72, 8, id @ 8, remote @ 16, local @ 40, waited_ms @ 64);
layout!(Decide, 24, 8, id @ 8);

/// An input message: versioned, with fields to check.
pub trait Input: TryFromBytes + IntoBytes + KnownLayout + Immutable + Sized {
    /// Its version field.
    fn version(&self) -> u32;
    /// Enum, flag and reserved-field checks.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER.
    fn check(&self) -> Result<(), NtStatus>;
}

fn zero(ok: bool) -> Result<(), NtStatus> {
    if ok {
        Ok(())
    } else {
        Err(NtStatus::INVALID_PARAMETER)
    }
}

impl Input for StartListener {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == [0; 2] && self.flags & !START_DUAL_STACK == 0)?;
        let address = self.address.to_socket_addr()?;
        zero(self.flags & START_DUAL_STACK == 0 || address.is_ipv6())
    }
}

impl Input for ListenerRequest {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == [0; 2])
    }
}

impl Input for QueryHeader {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == 0)
    }
}

impl Input for ListConnections {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == [0; 2])
    }
}

impl Input for CloseConnection {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == [0; 2] && self.flags & !CLOSE_ABORTIVE == 0)
    }
}

impl WireRule {
    /// The prefix, checked: family, length within the address, port zero, host bits zero (the
    /// last is checked by the driver's policy).
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER.
    pub fn prefix(&self) -> Result<(core::net::IpAddr, u8), NtStatus> {
        let address = self.address.to_socket_addr()?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        zero(self.action != Action::Defer && address.port() == 0 && self.length <= bits)?;
        Ok((
            address.ip(),
            u8::try_from(self.length).map_err(|_| NtStatus::INVALID_PARAMETER)?,
        ))
    }
}

impl Input for PolicyMessage {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        let count = self.rule_count as usize;
        zero(self.reserved == [0; 3] && count <= MAX_RULES)?;
        zero(
            self.rules[count..]
                .iter()
                .all(|r| *r == WireRule::default()),
        )?;
        for rule in &self.rules[..count] {
            rule.prefix()?;
        }
        Ok(())
    }
}

impl Input for GetPending {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == 0 && self.timeout_ms <= 60_000)
    }
}

impl Input for Decide {
    fn version(&self) -> u32 {
        self.version
    }
    fn check(&self) -> Result<(), NtStatus> {
        zero(self.reserved == [0; 2] && self.action != Action::Defer)
    }
}

/// Reads and validates an input message.
///
/// # Errors
/// STATUS_INVALID_PARAMETER when the size is not exactly the message's, or a field is invalid;
/// STATUS_REVISION_MISMATCH for another version.
pub fn parse<M: Input>(input: &[u8]) -> Result<M, NtStatus> {
    if input.len() != size_of::<M>() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    // An unknown enum value is refused here, by TryFromBytes.
    let message = M::try_read_from_bytes(input).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    if message.version() != VERSION {
        return Err(NtStatus::REVISION_MISMATCH);
    }
    message.check()?;
    Ok(message)
}

/// Writes `message` at the start of `output`, returns its size.
///
/// # Errors
/// STATUS_BUFFER_TOO_SMALL when it does not fit.
pub fn emit<M: IntoBytes + Immutable>(message: &M, output: &mut [u8]) -> Result<usize, NtStatus> {
    let bytes = message.as_bytes();
    let slot = output
        .get_mut(..bytes.len())
        .ok_or(NtStatus::BUFFER_TOO_SMALL)?;
    slot.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// Reads an output message (user mode).
///
/// # Errors
/// STATUS_BUFFER_TOO_SMALL when `bytes` is shorter than the message; STATUS_INVALID_PARAMETER
/// when it holds an unknown enum value.
pub fn read<M: TryFromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> Result<M, NtStatus> {
    M::try_read_from_prefix(bytes)
        .map(|(m, _)| m)
        .map_err(|e| match e {
            zerocopy::TryReadError::Validity(_) => NtStatus::INVALID_PARAMETER,
            _ => NtStatus::BUFFER_TOO_SMALL,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(address: SocketAddr) -> StartListener {
        StartListener {
            version: VERSION,
            address: address.into(),
            ..StartListener::default()
        }
    }

    type Mutation = (fn(&mut StartListener), NtStatus);

    #[test]
    fn every_malformed_start_gets_its_precise_answer() {
        let good = start("127.0.0.1:0".parse().unwrap());
        assert_eq!(parse::<StartListener>(good.as_bytes()), Ok(good));
        assert_eq!(
            parse::<StartListener>(&good.as_bytes()[..10]),
            Err(NtStatus::INVALID_PARAMETER),
            "short"
        );
        let mut long = [0u8; 65];
        long[..64].copy_from_slice(good.as_bytes());
        assert_eq!(
            parse::<StartListener>(&long),
            Err(NtStatus::INVALID_PARAMETER),
            "long"
        );
        // Unknown enum values: refused while reading (TryFromBytes), whatever else is right.
        for (offset, value) in [
            (offset_of!(StartListener, mode), 4u32),
            (offset_of!(StartListener, service), 3),
        ] {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(good.as_bytes());
            bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
            assert_eq!(
                parse::<StartListener>(&bytes),
                Err(NtStatus::INVALID_PARAMETER),
                "{offset}"
            );
        }
        let cases: [Mutation; 5] = [
            (|m| m.version = VERSION + 1, NtStatus::REVISION_MISMATCH),
            (|m| m.reserved[1] = 1, NtStatus::INVALID_PARAMETER),
            (|m| m.flags = 2, NtStatus::INVALID_PARAMETER),
            (|m| m.address.family = 10, NtStatus::INVALID_PARAMETER),
            (|m| m.flags = START_DUAL_STACK, NtStatus::INVALID_PARAMETER),
        ];
        for (mutate, expected) in cases {
            let mut m = good;
            mutate(&mut m);
            assert_eq!(parse::<StartListener>(m.as_bytes()), Err(expected), "{m:?}");
        }
    }

    #[test]
    fn addresses_round_trip_and_junk_is_refused() {
        for text in ["192.0.2.1:7007", "[2001:db8::1]:443", "[::]:0"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(WireAddress::from(addr).to_socket_addr(), Ok(addr));
        }
        let mut v4 = WireAddress::from("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        v4.address[9] = 1;
        assert_eq!(v4.to_socket_addr(), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn output_too_small_is_buffer_too_small() {
        let mut out = [0u8; 10];
        assert_eq!(
            emit(&VersionInfo::default(), &mut out),
            Err(NtStatus::BUFFER_TOO_SMALL)
        );
        let mut out = [0u8; 40];
        assert_eq!(
            emit(
                &VersionInfo {
                    version: VERSION,
                    ..VersionInfo::default()
                },
                &mut out
            ),
            Ok(40)
        );
    }

    #[test]
    fn close_and_list_check_reserved_fields_and_flags() {
        let close = CloseConnection {
            version: VERSION,
            flags: CLOSE_ABORTIVE,
            id: 5,
            reserved: [0; 2],
        };
        assert!(parse::<CloseConnection>(close.as_bytes()).is_ok());
        let bad = CloseConnection { flags: 4, ..close };
        assert_eq!(
            parse::<CloseConnection>(bad.as_bytes()),
            Err(NtStatus::INVALID_PARAMETER)
        );
        let list = ListConnections {
            version: VERSION,
            listener: ALL_LISTENERS,
            cursor: 0,
            reserved: [0, 1],
        };
        assert_eq!(
            parse::<ListConnections>(list.as_bytes()),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }
}
