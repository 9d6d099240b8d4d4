//! The x64 layout of every C type in this crate — `sizeof`, alignment and every member offset, as
//! in the Windows headers (wsk.h, ws2def.h, ws2ipdef.h, guiddef.h) — and the header constants,
//! written once as data with two uses:
//!
//! - compile-time assertions: a Rust type that disagrees with its row fails the build, on the host
//!   and on `x86_64-pc-windows-msvc` alike (LLP64 and LP64 agree on every type used here: no
//!   `long`);
//! - the public tables [`LAYOUTS`] and [`CONSTANTS`], from which `examples/c_layout_check.rs`
//!   writes C `_Static_assert`s that check the same numbers against a C header
//!   (`scripts/windows-lane/wsk-layout.sh`).
//!
//! A row is `RustType [as CType]: size, align { rust_field [as c_field] @ offset, ... }`; the
//! `as` names the C spelling where it differs from the Rust one. The module exists only where
//! pointers are 64-bit, so every number in it is the x64 one.
#![cfg(target_pointer_width = "64")]

use core::mem::{align_of, offset_of, size_of, size_of_val};

use crate::addr::{SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE};
use crate::consts::{
    AF_INET, AF_INET6, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, SO_CONDITIONAL_ACCEPT,
    SO_EXCLUSIVEADDRUSE, SO_REUSEADDR, SO_WSK_EVENT_CALLBACK, SO_WSK_SECURITY, SOCK_STREAM,
    SOL_SOCKET, WSK_EVENT_ACCEPT, WSK_EVENT_DISABLE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE, WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_FLAG_BASIC_SOCKET, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET, WSK_INFINITE_WAIT, WSK_NO_WAIT,
    WSK_SET_STATIC_EVENT_CALLBACKS, WSK_VERSION_1_0, irql,
};
use crate::dispatch::{
    PfnIoCompletionRoutine, PfnWskAcceptEvent, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH, WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
};
use crate::npi::{WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION};
use crate::status::NtStatus;
use crate::types::{
    GUID, WSK_BUF, WSK_CONTROL_SOCKET_TYPE, WSK_DATA_INDICATION, WSK_EVENT_CALLBACK_CONTROL,
    WSK_INSPECT_ACTION, WSK_INSPECT_ID, WSK_SOCKET,
};

/// The x64 layout of one C type (a row of [`LAYOUTS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeLayout {
    /// The C type name (a typedef of the Windows headers).
    pub c_name: &'static str,
    /// The Rust type that mirrors it.
    pub rust_name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// Every member, in declaration order.
    pub fields: &'static [FieldLayout],
}

/// One member of a [`TypeLayout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    /// The C member name.
    pub c_name: &'static str,
    /// The Rust field name.
    pub rust_name: &'static str,
    /// `offsetof`.
    pub offset: usize,
    /// `sizeof` of the member, taken from the Rust field's type (not written in the table): the C
    /// check compares it too, which catches a wrong width that padding hides from the offsets.
    pub size: usize,
}

/// `size_of` of the field that `field` projects to; the closure is never called.
const fn member_size<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// A numeric constant of the Windows headers and the value this crate gives it (a row of
/// [`CONSTANTS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CConstant {
    /// The C macro or enumerator, or an expression (`MAKE_WSK_VERSION(1, 0)`).
    pub c_expr: &'static str,
    /// The Rust item that carries it.
    pub rust_name: &'static str,
    /// Its value; every constant here is at most 32 bits wide, so `i64` holds it exactly.
    pub value: i64,
}

macro_rules! pick_name {
    ($rust:ident) => {
        stringify!($rust)
    };
    ($rust:ident as $c:ident) => {
        stringify!($c)
    };
}

macro_rules! layouts {
    ($(
        $ty:ident $(as $cty:ident)?: size $size:literal, align $align:literal {
            $($field:ident $(as $cfield:ident)? @ $offset:literal),* $(,)?
        }
    )*) => {
        /// The x64 layout of every C type of this crate, as the Windows headers give it.
        pub const LAYOUTS: &[TypeLayout] = &[$(TypeLayout {
            c_name: pick_name!($ty $(as $cty)?),
            rust_name: stringify!($ty),
            size: $size,
            align: $align,
            fields: &[$(FieldLayout {
                c_name: pick_name!($field $(as $cfield)?),
                rust_name: stringify!($field),
                offset: $offset,
                size: member_size(|t: &$ty| &t.$field),
            }),*],
        }),*];

        const _: () = {$(
            assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            assert!(align_of::<$ty>() == $align, concat!("alignment of ", stringify!($ty)));
            $(assert!(
                offset_of!($ty, $field) == $offset,
                concat!("offset of ", stringify!($ty), ".", stringify!($field))
            );)*
        )*};
    };
}

layouts! {
    GUID: size 16, align 4 {
        data1 as Data1 @ 0, data2 as Data2 @ 4, data3 as Data3 @ 6, data4 as Data4 @ 8,
    }
    NtStatus as NTSTATUS: size 4, align 4 {}
    WSK_SOCKET: size 8, align 8 { Dispatch @ 0 }
    WSK_CLIENT_DISPATCH: size 16, align 8 { Version @ 0, Reserved @ 2, WskClientEvent @ 8 }
    WSK_CLIENT_NPI: size 16, align 8 { ClientContext @ 0, Dispatch @ 8 }
    WSK_REGISTRATION: size 24, align 8 {
        ReservedRegistrationState @ 0, ReservedRegistrationContext @ 8,
        ReservedRegistrationLock @ 16,
    }
    WSK_PROVIDER_NPI: size 16, align 8 { Client @ 0, Dispatch @ 8 }
    WSK_PROVIDER_DISPATCH: size 56, align 8 {
        Version @ 0, Reserved @ 2, WskSocket @ 8, WskSocketConnect @ 16, WskControlClient @ 24,
        WskGetAddressInfo @ 32, WskFreeAddressInfo @ 40, WskGetNameInfo @ 48,
    }
    WSK_PROVIDER_BASIC_DISPATCH: size 16, align 8 { WskControlSocket @ 0, WskCloseSocket @ 8 }
    WSK_PROVIDER_LISTEN_DISPATCH: size 48, align 8 {
        Basic @ 0, WskBind @ 16, WskAccept @ 24, WskInspectComplete @ 32, WskGetLocalAddress @ 40,
    }
    WSK_PROVIDER_CONNECTION_DISPATCH: size 104, align 8 {
        Basic @ 0, WskBind @ 16, WskConnect @ 24, WskGetLocalAddress @ 32, WskGetRemoteAddress @ 40,
        WskSend @ 48, WskReceive @ 56, WskDisconnect @ 64, WskRelease @ 72, WskConnectEx @ 80,
        WskSendEx @ 88, WskReceiveEx @ 96,
    }
    WSK_CLIENT_LISTEN_DISPATCH: size 24, align 8 {
        WskAcceptEvent @ 0, WskInspectEvent @ 8, WskAbortEvent @ 16,
    }
    WSK_CLIENT_CONNECTION_DISPATCH: size 24, align 8 {
        WskReceiveEvent @ 0, WskDisconnectEvent @ 8, WskSendBacklogEvent @ 16,
    }
    WSK_BUF: size 24, align 8 { Mdl @ 0, Offset @ 8, Length @ 16 }
    WSK_DATA_INDICATION: size 32, align 8 { Next @ 0, Buffer @ 8 }
    WSK_EVENT_CALLBACK_CONTROL: size 16, align 8 { NpiId @ 0, EventMask @ 8 }
    WSK_INSPECT_ID: size 16, align 8 { Key @ 0, SerialNumber @ 8 }
    WSK_INSPECT_ACTION: size 4, align 4 {}
    WSK_CONTROL_SOCKET_TYPE: size 4, align 4 {}
    SOCKADDR: size 16, align 2 { sa_family @ 0, sa_data @ 2 }
    SOCKADDR_IN: size 16, align 4 { sin_family @ 0, sin_port @ 2, sin_addr @ 4, sin_zero @ 8 }
    SOCKADDR_IN6: size 28, align 4 {
        sin6_family @ 0, sin6_port @ 2, sin6_flowinfo @ 4, sin6_addr @ 8, sin6_scope_id @ 24,
    }
    SOCKADDR_STORAGE: size 128, align 8 {
        ss_family @ 0, ss_pad1 as __ss_pad1 @ 2, ss_align as __ss_align @ 8,
        ss_pad2 as __ss_pad2 @ 16,
    }
}

// Function pointers and their Option are one pointer wide (the C ABI of a nullable PFN).
const _: () = assert!(size_of::<Option<PfnWskAcceptEvent>>() == 8);
const _: () = assert!(size_of::<Option<PfnIoCompletionRoutine>>() == 8);

macro_rules! constants {
    ($($rust:expr $(=> $c:literal)?),* $(,)?) => {
        /// The numeric constants of the Windows headers that this crate defines, with their values
        /// here (NTSTATUS values are in [`NtStatus::ALL`]).
        pub const CONSTANTS: &[CConstant] = &[$(CConstant {
            c_expr: pick_c_expr!($rust $(=> $c)?),
            rust_name: stringify!($rust),
            value: {
                assert!(size_of_val(&$rust) <= 4, concat!(stringify!($rust), " is over 32 bits"));
                $rust as i64
            },
        }),*];
    };
}

macro_rules! pick_c_expr {
    ($rust:expr => $c:literal) => {
        $c
    };
    ($rust:expr) => {
        stringify!($rust)
    };
}

constants! {
    WSK_VERSION_1_0 => "MAKE_WSK_VERSION(1, 0)",
    WSK_NO_WAIT, WSK_INFINITE_WAIT,
    WSK_FLAG_BASIC_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_STREAM_SOCKET,
    WSK_FLAG_AT_DISPATCH_LEVEL, WSK_FLAG_ABORTIVE,
    WSK_EVENT_SEND_BACKLOG, WSK_EVENT_RECEIVE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE_FROM,
    WSK_EVENT_ACCEPT, WSK_EVENT_DISABLE,
    SO_WSK_SECURITY, SO_WSK_EVENT_CALLBACK, WSK_SET_STATIC_EVENT_CALLBACKS,
    WSK_INSPECT_ACTION::REJECT.0 => "WskInspectReject",
    WSK_INSPECT_ACTION::ACCEPT.0 => "WskInspectAccept",
    WSK_INSPECT_ACTION::PEND.0 => "WskInspectPend",
    WSK_CONTROL_SOCKET_TYPE::SET_OPTION.0 => "WskSetOption",
    WSK_CONTROL_SOCKET_TYPE::GET_OPTION.0 => "WskGetOption",
    WSK_CONTROL_SOCKET_TYPE::IOCTL.0 => "WskIoctl",
    SOL_SOCKET, IPPROTO_TCP, IPPROTO_IPV6, IPV6_V6ONLY, SO_REUSEADDR, SO_EXCLUSIVEADDRUSE,
    SO_CONDITIONAL_ACCEPT, AF_INET, AF_INET6, SOCK_STREAM,
    irql::PASSIVE_LEVEL => "PASSIVE_LEVEL",
    irql::APC_LEVEL => "APC_LEVEL",
    irql::DISPATCH_LEVEL => "DISPATCH_LEVEL",
}
