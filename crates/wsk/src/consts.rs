//! Numeric constants from wsk.h, ws2def.h and ws2ipdef.h (WSK-FACTS §2). Windows values only:
//! the host kernel translates them to its own OS at its boundary.

use crate::types::GUID;

/// MAKE_WSK_VERSION(1, 0) (wsk.h).
pub const WSK_VERSION_1_0: u16 = 0x0100;
/// WSK_NO_WAIT for WskCaptureProviderNPI (wsk.h).
pub const WSK_NO_WAIT: u32 = 0;
/// WSK_INFINITE_WAIT for WskCaptureProviderNPI (wsk.h).
pub const WSK_INFINITE_WAIT: u32 = 0xFFFF_FFFF;

/// WskSocket flag WSK_FLAG_BASIC_SOCKET (wsk.h).
pub const WSK_FLAG_BASIC_SOCKET: u32 = 0x0000_0000;
/// WskSocket flag WSK_FLAG_LISTEN_SOCKET (wsk.h).
pub const WSK_FLAG_LISTEN_SOCKET: u32 = 0x0000_0001;
/// WskSocket flag WSK_FLAG_CONNECTION_SOCKET (wsk.h).
pub const WSK_FLAG_CONNECTION_SOCKET: u32 = 0x0000_0002;
/// WskSocket flag WSK_FLAG_DATAGRAM_SOCKET (wsk.h).
pub const WSK_FLAG_DATAGRAM_SOCKET: u32 = 0x0000_0004;
/// WskSocket flag WSK_FLAG_STREAM_SOCKET (wsk.h).
pub const WSK_FLAG_STREAM_SOCKET: u32 = 0x0000_0008;

/// Callback flag: the callback runs at exactly DISPATCH_LEVEL (wsk.h).
pub const WSK_FLAG_AT_DISPATCH_LEVEL: u32 = 0x0000_0008;
/// WskDisconnect / WskDisconnectEvent flag: abortive (RST) rather than graceful (wsk.h).
pub const WSK_FLAG_ABORTIVE: u32 = 0x0000_0001;

/// Event mask bit for WskSendBacklogEvent (wsk.h).
pub const WSK_EVENT_SEND_BACKLOG: u32 = 0x0000_0010;
/// Event mask bit for WskReceiveEvent (wsk.h).
pub const WSK_EVENT_RECEIVE: u32 = 0x0000_0040;
/// Event mask bit for WskDisconnectEvent (wsk.h).
pub const WSK_EVENT_DISCONNECT: u32 = 0x0000_0080;
/// Event mask bit for WskReceiveFromEvent (wsk.h).
pub const WSK_EVENT_RECEIVE_FROM: u32 = 0x0000_0100;
/// Event mask bit for WskAcceptEvent (wsk.h).
pub const WSK_EVENT_ACCEPT: u32 = 0x0000_0200;
/// OR'ed with one event bit to disable that event (wsk.h).
pub const WSK_EVENT_DISABLE: u32 = 0x8000_0000;

/// SOL_SOCKET on Windows (ws2def.h); Linux uses 1.
pub const SOL_SOCKET: u32 = 0xFFFF;
/// IPPROTO_TCP (ws2def.h).
pub const IPPROTO_TCP: u32 = 6;
/// IPPROTO_IPV6 (ws2def.h).
pub const IPPROTO_IPV6: u32 = 41;
/// IPV6_V6ONLY at IPPROTO_IPV6 (ws2ipdef.h).
pub const IPV6_V6ONLY: u32 = 27;
/// SO_REUSEADDR (ws2def.h).
pub const SO_REUSEADDR: u32 = 0x0004;
/// SO_EXCLUSIVEADDRUSE = ~SO_REUSEADDR (ws2def.h).
pub const SO_EXCLUSIVEADDRUSE: u32 = !SO_REUSEADDR;
/// SO_CONDITIONAL_ACCEPT (ws2def.h): set before bind, listening sockets only, needs an IRP.
pub const SO_CONDITIONAL_ACCEPT: u32 = 0x3002;
/// SO_WSK_SECURITY (wsk.h).
pub const SO_WSK_SECURITY: u32 = 0x4001;
/// SO_WSK_EVENT_CALLBACK (wsk.h): enable or disable event callbacks on a socket.
pub const SO_WSK_EVENT_CALLBACK: u32 = 0x4002;
/// WSK_SET_STATIC_EVENT_CALLBACKS control code for WskControlClient (wsk.h).
pub const WSK_SET_STATIC_EVENT_CALLBACKS: u32 = 7;

/// AF_INET (ws2def.h).
pub const AF_INET: u16 = 2;
/// AF_INET6 on Windows (ws2def.h) — 23, not Linux's 10.
pub const AF_INET6: u16 = 23;
/// SOCK_STREAM (ws2def.h).
pub const SOCK_STREAM: u16 = 1;

/// NPI_WSK_INTERFACE_ID {2227E803-8D8B-11D4-ABAD-009027719E09} (wsk.h; an extern const in
/// netio.lib). The value is confirmed only from third-party copies of the header: on Windows the
/// backend passes the address of the real netio.lib symbol, and this copy serves the host kernel.
pub static NPI_WSK_INTERFACE_ID: GUID = GUID {
    data1: 0x2227_E803,
    data2: 0x8D8B,
    data3: 0x11D4,
    data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09],
};

/// IRQL values (wdm.h).
pub mod irql {
    /// PASSIVE_LEVEL.
    pub const PASSIVE_LEVEL: u8 = 0;
    /// APC_LEVEL.
    pub const APC_LEVEL: u8 = 1;
    /// DISPATCH_LEVEL.
    pub const DISPATCH_LEVEL: u8 = 2;
}
