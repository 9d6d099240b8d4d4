//! Windows sink: DbgPrintEx with component DPFLTR_IHVNETWORK_ID and a DPFLTR level per event,
//! one line per event, prefixed `wskaccept:`. Only integers and static ANSI strings are formatted,
//! which DbgPrintEx allows at any IRQL (the Unicode conversions are the PASSIVE-only ones).
//!
//! To see the lines: enable the component (`ed nt!Kd_IHVNETWORK_Mask 0xF` in WinDbg, or the
//! `IHVNETWORK` value under `HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print
//! Filter`) and watch in WinDbg or DbgView (Capture Kernel).

use core::ffi::{CStr, c_char};
use core::net::SocketAddr;

use wdk_sys::_DPFLTR_TYPE::DPFLTR_IHVNETWORK_ID;
use wdk_sys::ntddk::DbgPrintEx;

use super::{Event, Level};

/// The DPFLTR level (dpfilter.h: ERROR 0, WARNING 1, TRACE 2, INFO 3).
const fn dpfltr_level(level: Level) -> u32 {
    match level {
        Level::Error => 0,
        Level::Warn => 1,
        Level::Info => 2,
        Level::Debug => 3,
    }
}

/// An address as DbgPrintEx arguments: eight 16-bit groups (IPv4 in the last two) and a port.
struct Parts {
    v6: bool,
    groups: [u32; 8],
    port: u32,
}

fn parts(address: SocketAddr) -> Parts {
    match address {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            Parts {
                v6: false,
                groups: [
                    0,
                    0,
                    0,
                    0,
                    u32::from(o[0]),
                    u32::from(o[1]),
                    u32::from(o[2]),
                    u32::from(o[3]),
                ],
                port: u32::from(a.port()),
            }
        }
        SocketAddr::V6(a) => Parts {
            v6: true,
            groups: a.ip().segments().map(u32::from),
            port: u32::from(a.port()),
        },
    }
}

/// DbgPrintEx(DPFLTR_IHVNETWORK_ID, level, format, args...).
macro_rules! print {
    ($level:expr, $format:expr $(, $arg:expr)* $(,)?) => {{
        let format: &CStr = $format;
        // SAFETY: a NUL-terminated static format whose conversions match the arguments: %u and
        // %x take u32, %s takes a NUL-terminated static string; no Unicode conversion, so any
        // IRQL is allowed.
        unsafe { DbgPrintEx(DPFLTR_IHVNETWORK_ID as u32, $level, format.as_ptr() $(, $arg)*) };
    }};
}

/// A static C string made at compile time from string literals (`concat!` takes no `c"..."`).
macro_rules! cstr {
    ($($text:expr),+) => {
        const {
            match CStr::from_bytes_with_nul(concat!($($text),+, "\0").as_bytes()) {
                Ok(text) => text,
                Err(_) => panic!("a NUL inside a trace format"),
            }
        }
    };
}

/// One line that ends with an address: `$head` (its conversions filled by `$arg`s), then the
/// address as `a.b.c.d:port` or `[x:x:x:x:x:x:x:x]:port`, then a newline. The two formats are
/// written once, here.
macro_rules! print_with_address {
    ($level:expr, $head:literal, $parts:expr $(, $arg:expr)* $(,)?) => {{
        let p: Parts = $parts;
        let g = p.groups;
        if p.v6 {
            print!(
                $level,
                cstr!($head, "[%x:%x:%x:%x:%x:%x:%x:%x]:%u\n")
                $(, $arg)*, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], p.port
            );
        } else {
            print!(
                $level,
                cstr!($head, "%u.%u.%u.%u:%u\n")
                $(, $arg)*, g[4], g[5], g[6], g[7], p.port
            );
        }
    }};
}

/// A NUL-terminated static string for %s.
fn c(text: &'static CStr) -> *const c_char {
    text.as_ptr()
}

/// Emits `event` to the kernel debugger.
pub(super) fn emit(event: &Event) {
    let level = dpfltr_level(event.level());
    match *event {
        Event::ListenerStarted { listener, address } => started(level, listener, address),
        Event::ListenerStopped {
            listener,
            connections,
        } => {
            print!(
                level,
                c"wskaccept: listener_stopped listener=%u connections=%u\n", listener, connections
            );
        }
        Event::ListenerRestarted { listener } => {
            print!(
                level,
                c"wskaccept: listener_restarted listener=%u\n", listener
            );
        }
        Event::ListenerRestartFailed { listener, status } => {
            print!(
                level,
                c"wskaccept: listener_restart_failed listener=%u status=0x%08x\n",
                listener,
                status.as_u32()
            );
        }
        Event::ListenerStartFailed { address, status } => {
            let p = parts(address);
            print!(
                level,
                c"wskaccept: listener_start_failed port=%u status=0x%08x\n",
                p.port,
                status.as_u32()
            );
        }
        Event::AcceptFailed { listener, status } => {
            print!(
                level,
                c"wskaccept: accept_failed listener=%u status=0x%08x\n",
                listener,
                status.as_u32()
            );
        }
        Event::Refused {
            listener,
            reason,
            remote,
        } => refused(level, listener, reason, remote),
        Event::StopTimedOut {
            listener,
            connections,
        } => {
            print!(
                level,
                c"wskaccept: stop_timed_out listener=%u connections=%u\n", listener, connections
            );
        }
        Event::UnloadOutstanding { listeners } => {
            print!(
                level,
                c"wskaccept: unload_outstanding listeners=%u\n", listeners
            );
        }
        Event::IoctlFailed { code, status } => {
            print!(
                level,
                c"wskaccept: ioctl_failed code=0x%08x status=0x%08x\n",
                code,
                status.as_u32()
            );
        }
    }
}

fn started(level: u32, listener: u32, address: SocketAddr) {
    print_with_address!(
        level,
        "wskaccept: listener_started listener=%u address=",
        parts(address),
        listener
    );
}

fn refused(level: u32, listener: u32, reason: super::Refusal, remote: Option<SocketAddr>) {
    let reason = c(match reason {
        super::Refusal::Full => c"full",
        super::Refusal::Policy => c"policy",
        super::Refusal::SourceLimit => c"source_limit",
        super::Refusal::PendingFull => c"pending_full",
        super::Refusal::NotRunning => c"not_running",
    });
    if let Some(remote) = remote {
        print_with_address!(
            level,
            "wskaccept: refused listener=%u reason=%s remote=",
            parts(remote),
            listener,
            reason
        );
    } else {
        print!(
            level,
            c"wskaccept: refused listener=%u reason=%s\n", listener, reason
        );
    }
}
