//! WSK client registration: WskRegister at load, the provider NPI captured on the worker (never
//! blocking driver load, WSK-FACTS §7), released and deregistered at unload.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, Ordering};

use wsk::{
    NtStatus, WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_PROVIDER_DISPATCH, WSK_PROVIDER_NPI,
    WSK_REGISTRATION, WSK_VERSION_1_0,
};

use crate::kernel::{self, PoolBox, tags};

/// The client dispatch WskRegister keeps a pointer to: resident (static) until WskDeregister.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: WSK_VERSION_1_0,
    Reserved: 0,
    WskClientEvent: None,
};

/// The captured provider: what WskSocket needs.
///
/// # Invariants
/// `client` and `dispatch` come from a successful WskCaptureProviderNPI that is not
/// released while this value is used (the registration releases it only at unload, after every
/// listener stopped).
#[derive(Clone, Copy, Debug)]
pub struct Provider {
    client: *mut c_void,
    dispatch: *const WSK_PROVIDER_DISPATCH,
}

// SAFETY: the provider NPI is usable from any thread while captured.
unsafe impl Send for Provider {}
// SAFETY: the type's invariant: the NPI stays captured while the value is used, and the provider's
// dispatch routines may be called concurrently from any thread (WSK-FACTS §1), so sharing
// `&Provider` is sound.
unsafe impl Sync for Provider {}

impl Provider {
    /// The provider's client pointer (first argument of WskSocket).
    #[must_use]
    pub fn client(&self) -> *mut c_void {
        self.client
    }

    /// The provider dispatch table.
    #[must_use]
    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: captured and not released (type invariant); the table is the provider's.
        unsafe { &*self.dispatch }
    }
}

/// A WSK client registration.
///
/// # Invariants
/// Lives pinned in pool (`register` returns a PoolBox) because WskRegister keeps
/// pointers to `registration` until WskDeregister; `captured` is true exactly while a capture is
/// held; `provider` is written only by `capture` before `captured` becomes true.
pub struct WskClient {
    registration: UnsafeCell<WSK_REGISTRATION>,
    client_npi: WSK_CLIENT_NPI,
    provider: UnsafeCell<WSK_PROVIDER_NPI>,
    captured: AtomicBool,
    registered: AtomicBool,
}

impl core::fmt::Debug for WskClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WskClient")
            .field("registered", &self.registered)
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

// SAFETY: the cells are written only under the protocol above (register once; capture once before
// `captured` is published; deregister once at drop), so shared access is sound.
unsafe impl Sync for WskClient {}
// SAFETY: no field is tied to the creating thread: the registration and the NPIs are plain kernel
// data usable from any thread (WSK-FACTS §1), and the cells follow the write-once protocol above.
unsafe impl Send for WskClient {}

impl WskClient {
    /// WskRegister. IRQL: PASSIVE_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES, or what WskRegister returns.
    pub fn register() -> Result<PoolBox<Self>, NtStatus> {
        // INVARIANT: pinned in pool from here (the PoolBox) before WskRegister sees
        // `registration`; nothing is captured yet, so `captured` starts false.
        let client = PoolBox::new(
            tags::DRIVER,
            Self {
                registration: UnsafeCell::new(WSK_REGISTRATION::zeroed()),
                client_npi: WSK_CLIENT_NPI {
                    ClientContext: core::ptr::null_mut(),
                    Dispatch: &raw const CLIENT_DISPATCH,
                },
                provider: UnsafeCell::new(WSK_PROVIDER_NPI {
                    Client: core::ptr::null_mut(),
                    Dispatch: core::ptr::null(),
                }),
                captured: AtomicBool::new(false),
                registered: AtomicBool::new(false),
            },
        )?;
        // SAFETY: the NPI and the registration live pinned in pool until drop, which deregisters.
        let status =
            unsafe { kernel::WskRegister(&raw const client.client_npi, client.registration.get()) };
        if !status.is_success() {
            return Err(status);
        }
        client.registered.store(true, Ordering::Release);
        Ok(client)
    }

    /// WskCaptureProviderNPI with a wait in milliseconds (`WSK_NO_WAIT` polls).
    /// IRQL: PASSIVE_LEVEL (any <= DISPATCH_LEVEL with WSK_NO_WAIT). Call from one thread only.
    #[must_use]
    pub fn capture(&self, wait_ms: u32) -> NtStatus {
        if self.captured.load(Ordering::Acquire) {
            return NtStatus::SUCCESS;
        }
        // SAFETY: registered; `provider` is not read by anyone until `captured` is published.
        let status = unsafe {
            kernel::WskCaptureProviderNPI(self.registration.get(), wait_ms, self.provider.get())
        };
        if status.is_success() {
            self.captured.store(true, Ordering::Release);
        }
        status
    }

    /// The captured provider, if any.
    #[must_use]
    pub fn provider(&self) -> Option<Provider> {
        if !self.captured.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: written before `captured` was published and never again while captured.
        let npi = unsafe { &*self.provider.get() };
        // INVARIANT: from the capture that `captured` says is held; it is released only at
        // unload, after every listener (every user of a Provider) stopped.
        Some(Provider {
            client: npi.Client,
            dispatch: npi.Dispatch,
        })
    }
}

impl Drop for WskClient {
    /// Releases the NPI and deregisters. WskDeregister blocks until every socket is closed and
    /// every IRP completed (WSK-FACTS §7): the owner stops every listener first. IRQL: PASSIVE.
    fn drop(&mut self) {
        if self.captured.swap(false, Ordering::AcqRel) {
            // SAFETY: one release per successful capture.
            unsafe { kernel::WskReleaseProviderNPI(self.registration.get()) };
        }
        if self.registered.swap(false, Ordering::AcqRel) {
            // SAFETY: registered once; deregistered once.
            unsafe { kernel::WskDeregister(self.registration.get()) };
        }
    }
}
