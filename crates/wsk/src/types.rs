//! Plain structs of wsk.h and friends, and the opaque kernel object types.
#![allow(non_camel_case_types, non_snake_case)]

use core::ffi::c_void;
use core::marker::{PhantomData, PhantomPinned};

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            _data: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// An I/O request packet (wdm.h). Opaque here: each kernel backend casts at its boundary.
    IRP;
    /// A memory descriptor list (wdm.h). Opaque here.
    MDL;
    /// A device object (wdm.h). Opaque here; WSK completion routines receive NULL.
    DEVICE_OBJECT;
}

/// A GUID (guiddef.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GUID {
    /// Data1.
    pub data1: u32,
    /// Data2.
    pub data2: u16,
    /// Data3.
    pub data3: u16,
    /// Data4.
    pub data4: [u8; 8],
}

/// WSK_SOCKET (wsk.h): what the provider hands out; `Dispatch` points at the basic, listen or
/// connection dispatch table according to the socket's category.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_SOCKET {
    /// The provider's dispatch table for this socket's category.
    pub Dispatch: *const c_void,
}

/// WSK_BUF (wsk.h): a byte range of an MDL chain.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_BUF {
    /// First MDL of the chain.
    pub Mdl: *mut MDL,
    /// Offset into the first MDL.
    pub Offset: u32,
    /// Bytes described.
    pub Length: usize,
}

/// WSK_DATA_INDICATION (wsk.h): one element of the chain given to WskReceiveEvent.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_DATA_INDICATION {
    /// Next indication or NULL.
    pub Next: *mut WSK_DATA_INDICATION,
    /// The data.
    pub Buffer: WSK_BUF,
}

/// WSK_EVENT_CALLBACK_CONTROL (wsk.h): the SO_WSK_EVENT_CALLBACK option value.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_EVENT_CALLBACK_CONTROL {
    /// `&NPI_WSK_INTERFACE_ID`.
    pub NpiId: *const GUID,
    /// One or more `WSK_EVENT_*` bits, or one bit with `WSK_EVENT_DISABLE`.
    pub EventMask: u32,
}

/// WSK_INSPECT_ID (wsk.h): identifies one inspected connection request. Compare contents,
/// never addresses (WSK-FACTS §1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct WSK_INSPECT_ID {
    /// Provider key.
    pub Key: usize,
    /// Provider serial number.
    pub SerialNumber: u32,
}

/// WSK_INSPECT_ACTION (wsk.h), a 4-byte C enum. The numbers do NOT match WSAAccept's CF_* values;
/// never cast between them.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WSK_INSPECT_ACTION(pub i32);

impl WSK_INSPECT_ACTION {
    /// WskInspectReject.
    pub const REJECT: Self = Self(0);
    /// WskInspectAccept.
    pub const ACCEPT: Self = Self(1);
    /// WskInspectPend.
    pub const PEND: Self = Self(2);
}

/// WSK_CONTROL_SOCKET_TYPE (wsk.h), a 4-byte C enum.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WSK_CONTROL_SOCKET_TYPE(pub i32);

impl WSK_CONTROL_SOCKET_TYPE {
    /// WskSetOption.
    pub const SET_OPTION: Self = Self(0);
    /// WskGetOption.
    pub const GET_OPTION: Self = Self(1);
    /// WskIoctl.
    pub const IOCTL: Self = Self(2);
}
