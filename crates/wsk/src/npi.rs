//! Registration (wsk.h): the client and provider NPIs that WskRegister and
//! WskCaptureProviderNPI exchange, WSK_REGISTRATION, and the netio.sys exports' PFN types. Above
//! [`crate::dispatch`]: the provider NPI carries the provider dispatch table.
#![allow(non_camel_case_types, non_snake_case)]

use core::ffi::c_void;

use crate::dispatch::WSK_PROVIDER_DISPATCH;
use crate::status::NtStatus;

/// PFN_WSK_CLIENT_EVENT (wsk.h).
pub type PfnWskClientEvent =
    unsafe extern "system" fn(*mut c_void, u32, *mut c_void, usize) -> NtStatus;

/// WSK_CLIENT_DISPATCH (wsk.h): the client's registration dispatch.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_DISPATCH {
    /// WSK version the client asks for (`WSK_VERSION_1_0`).
    pub Version: u16,
    /// Reserved, zero.
    pub Reserved: u16,
    /// Optional client-level event callback.
    pub WskClientEvent: Option<PfnWskClientEvent>,
}

/// WSK_CLIENT_NPI (wsk.h).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_NPI {
    /// Client context, passed back to `WskClientEvent`.
    pub ClientContext: *mut c_void,
    /// The client's dispatch; must stay resident until WskDeregister returns.
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}

/// WSK_REGISTRATION (wsk.h): opaque state filled by WskRegister; resident until WskDeregister.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_REGISTRATION {
    /// Reserved for the provider.
    pub ReservedRegistrationState: u64,
    /// Reserved for the provider.
    pub ReservedRegistrationContext: *mut c_void,
    /// Reserved for the provider (a KSPIN_LOCK).
    pub ReservedRegistrationLock: usize,
}

impl WSK_REGISTRATION {
    /// A zeroed registration, as WskRegister expects it.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            ReservedRegistrationState: 0,
            ReservedRegistrationContext: core::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        }
    }
}

/// WSK_PROVIDER_NPI (wsk.h): what WskCaptureProviderNPI returns.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_NPI {
    /// The provider's client object, the first argument of provider-level calls.
    pub Client: *mut c_void,
    /// The provider dispatch.
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}

/// WskRegister (netio.sys export), PASSIVE_LEVEL only.
pub type PfnWskRegister =
    unsafe extern "system" fn(*const WSK_CLIENT_NPI, *mut WSK_REGISTRATION) -> NtStatus;
/// WskCaptureProviderNPI (netio.sys export): `(Registration, WaitTimeout ms, ProviderNpi out)`.
pub type PfnWskCaptureProviderNpi =
    unsafe extern "system" fn(*mut WSK_REGISTRATION, u32, *mut WSK_PROVIDER_NPI) -> NtStatus;
/// WskReleaseProviderNPI (netio.sys export).
pub type PfnWskReleaseProviderNpi = unsafe extern "system" fn(*mut WSK_REGISTRATION);
/// WskDeregister (netio.sys export), PASSIVE_LEVEL only; blocks until everything is returned.
pub type PfnWskDeregister = unsafe extern "system" fn(*mut WSK_REGISTRATION);
