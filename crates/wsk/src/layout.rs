//! Compile-time layout assertions: `size_of`, `align_of` and every member offset, with the x64
//! values of the Windows headers (wsk.h, ws2def.h, ws2ipdef.h, guiddef.h). A mismatch fails the
//! build, on the host and on `x86_64-pc-windows-msvc` alike. LLP64 and LP64 agree on every type
//! used here (no `long`), so the same numbers hold on 64-bit Linux.
#![cfg(target_pointer_width = "64")]

use core::mem::{align_of, offset_of, size_of};

use crate::addr::{SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE};
use crate::dispatch::{
    PfnIoCompletionRoutine, PfnWskAcceptEvent, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH, WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
};
use crate::types::{
    GUID, WSK_BUF, WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_CONTROL_SOCKET_TYPE,
    WSK_DATA_INDICATION, WSK_EVENT_CALLBACK_CONTROL, WSK_INSPECT_ACTION, WSK_INSPECT_ID,
    WSK_PROVIDER_NPI, WSK_REGISTRATION, WSK_SOCKET,
};

macro_rules! assert_layout {
    ($ty:ty, size $size:expr, align $align:expr $(, $field:ident @ $offset:expr)* $(,)?) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            assert!(align_of::<$ty>() == $align, concat!("alignment of ", stringify!($ty)));
            $(assert!(
                offset_of!($ty, $field) == $offset,
                concat!("offset of ", stringify!($ty), ".", stringify!($field))
            );)*
        };
    };
}

assert_layout!(GUID, size 16, align 4, data1 @ 0, data2 @ 4, data3 @ 6, data4 @ 8);
assert_layout!(WSK_SOCKET, size 8, align 8, Dispatch @ 0);
assert_layout!(WSK_CLIENT_DISPATCH, size 16, align 8, Version @ 0, Reserved @ 2, WskClientEvent @ 8);
assert_layout!(WSK_CLIENT_NPI, size 16, align 8, ClientContext @ 0, Dispatch @ 8);
assert_layout!(
    WSK_REGISTRATION, size 24, align 8,
    ReservedRegistrationState @ 0, ReservedRegistrationContext @ 8, ReservedRegistrationLock @ 16,
);
assert_layout!(WSK_PROVIDER_NPI, size 16, align 8, Client @ 0, Dispatch @ 8);
assert_layout!(
    WSK_PROVIDER_DISPATCH, size 56, align 8,
    Version @ 0, Reserved @ 2, WskSocket @ 8, WskSocketConnect @ 16, WskControlClient @ 24,
    WskGetAddressInfo @ 32, WskFreeAddressInfo @ 40, WskGetNameInfo @ 48,
);
assert_layout!(WSK_PROVIDER_BASIC_DISPATCH, size 16, align 8, WskControlSocket @ 0, WskCloseSocket @ 8);
assert_layout!(
    WSK_PROVIDER_LISTEN_DISPATCH, size 48, align 8,
    Basic @ 0, WskBind @ 16, WskAccept @ 24, WskInspectComplete @ 32, WskGetLocalAddress @ 40,
);
assert_layout!(
    WSK_PROVIDER_CONNECTION_DISPATCH, size 104, align 8,
    Basic @ 0, WskBind @ 16, WskConnect @ 24, WskGetLocalAddress @ 32, WskGetRemoteAddress @ 40,
    WskSend @ 48, WskReceive @ 56, WskDisconnect @ 64, WskRelease @ 72, WskConnectEx @ 80,
    WskSendEx @ 88, WskReceiveEx @ 96,
);
assert_layout!(
    WSK_CLIENT_LISTEN_DISPATCH, size 24, align 8,
    WskAcceptEvent @ 0, WskInspectEvent @ 8, WskAbortEvent @ 16,
);
assert_layout!(
    WSK_CLIENT_CONNECTION_DISPATCH, size 24, align 8,
    WskReceiveEvent @ 0, WskDisconnectEvent @ 8, WskSendBacklogEvent @ 16,
);
assert_layout!(WSK_BUF, size 24, align 8, Mdl @ 0, Offset @ 8, Length @ 16);
assert_layout!(WSK_DATA_INDICATION, size 32, align 8, Next @ 0, Buffer @ 8);
assert_layout!(WSK_EVENT_CALLBACK_CONTROL, size 16, align 8, NpiId @ 0, EventMask @ 8);
assert_layout!(WSK_INSPECT_ID, size 16, align 8, Key @ 0, SerialNumber @ 8);
assert_layout!(WSK_INSPECT_ACTION, size 4, align 4);
assert_layout!(WSK_CONTROL_SOCKET_TYPE, size 4, align 4);
assert_layout!(SOCKADDR, size 16, align 2, sa_family @ 0, sa_data @ 2);
assert_layout!(SOCKADDR_IN, size 16, align 2, sin_family @ 0, sin_port @ 2, sin_addr @ 4, sin_zero @ 8);
assert_layout!(
    SOCKADDR_IN6, size 28, align 4,
    sin6_family @ 0, sin6_port @ 2, sin6_flowinfo @ 4, sin6_addr @ 8, sin6_scope_id @ 24,
);
assert_layout!(
    SOCKADDR_STORAGE, size 128, align 8,
    ss_family @ 0, ss_pad1 @ 2, ss_align @ 8, ss_pad2 @ 16,
);

// Function pointers and their Option are one pointer wide (the C ABI of a nullable PFN).
const _: () = assert!(size_of::<Option<PfnWskAcceptEvent>>() == 8);
const _: () = assert!(size_of::<Option<PfnIoCompletionRoutine>>() == 8);
const _: () = assert!(size_of::<crate::NtStatus>() == 4);
