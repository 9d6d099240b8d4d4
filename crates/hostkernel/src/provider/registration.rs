//! WskRegister, WskCaptureProviderNPI, WskReleaseProviderNPI and WskDeregister (WSK-FACTS §7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wsk::{NtStatus, WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION};

use super::event_loop::{ensure_loop, stop_loop};
use super::provider_calls::PROVIDER_DISPATCH;
use super::state::{Registration, Slot, State, changed, state, wait_changed};
use crate::accounting::COUNTERS;
use crate::irql;
use crate::verifier::{Rule, violation};

static NO_INTERFACE: AtomicBool = AtomicBool::new(false);
static CAPTURE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Fault mode: WskCaptureProviderNPI fails at once with STATUS_NOINTERFACE (no WSK provider
/// matches the client's version), without waiting.
pub fn set_provider_no_interface(on: bool) {
    NO_INTERFACE.store(on, Ordering::SeqCst);
}

/// WskCaptureProviderNPI calls so far (all registrations), to see how hard a client retries.
#[must_use]
pub fn capture_calls() -> u64 {
    CAPTURE_CALLS.load(Ordering::SeqCst)
}

/// Makes the provider available or not: while it is not, WskCaptureProviderNPI answers
/// STATUS_DEVICE_NOT_READY (after its wait). Tests use this to model a slow netio start.
pub fn set_provider_ready(ready: bool) {
    let mut state = state();
    state.provider_ready = ready;
    changed(&state);
}

/// The registration id WskRegister wrote into `registration`; a NULL or unregistered
/// registration is a violation.
///
/// # Safety
/// `registration` must be NULL or point at a readable WSK_REGISTRATION (the one the driver gave
/// WskRegister stays resident until WskDeregister returns, WSK-FACTS §7).
unsafe fn registration_id(registration: *mut WSK_REGISTRATION, what: &str) -> u64 {
    if registration.is_null() {
        violation(
            Rule::RegistrationMisuse,
            format_args!("{what} with a NULL registration"),
        );
    }
    // SAFETY: non-NULL (checked above), so readable (this function's # Safety).
    let id = unsafe { (*registration).ReservedRegistrationState };
    if id == 0 || !state().registrations.contains_key(&id) {
        violation(
            Rule::RegistrationMisuse,
            format_args!("{what}: registration {registration:p} is not registered"),
        );
    }
    id
}

/// WskRegister. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `client_npi` must be valid; `registration` must stay resident until WskDeregister returns.
#[allow(non_snake_case)]
pub unsafe extern "system" fn WskRegister(
    client_npi: *const WSK_CLIENT_NPI,
    registration: *mut WSK_REGISTRATION,
) -> NtStatus {
    irql::assert_passive("WskRegister");
    if client_npi.is_null() || registration.is_null() {
        return NtStatus::INVALID_PARAMETER;
    }
    // SAFETY: checked non-NULL; the caller guarantees it points at a WSK_CLIENT_NPI.
    let dispatch = unsafe { (*client_npi).Dispatch };
    // SAFETY: a non-NULL dispatch must point at the client's WSK_CLIENT_DISPATCH.
    if dispatch.is_null() || unsafe { (*dispatch).Version } != wsk::WSK_VERSION_1_0 {
        return NtStatus::NOT_SUPPORTED;
    }
    let mut state = state();
    let id = state.next_registration;
    state.next_registration += 1;
    state.registrations.insert(
        id,
        Registration {
            captured: 0,
            sockets: 0,
        },
    );
    ensure_loop(&mut state);
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe {
        registration.write(WSK_REGISTRATION {
            ReservedRegistrationState: id,
            ReservedRegistrationContext: std::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        });
    }
    COUNTERS.registrations.fetch_add(1, Ordering::SeqCst);
    NtStatus::SUCCESS
}

/// WskCaptureProviderNPI(Registration, WaitTimeout ms, ProviderNpi). IRQL: PASSIVE_LEVEL unless
/// `wait_timeout` is WSK_NO_WAIT. Returns SUCCESS or DEVICE_NOT_READY.
///
/// # Safety
/// `registration` must be registered; `provider_npi` must be writable.
#[allow(non_snake_case)]
pub unsafe extern "system" fn WskCaptureProviderNPI(
    registration: *mut WSK_REGISTRATION,
    wait_timeout: u32,
    provider_npi: *mut WSK_PROVIDER_NPI,
) -> NtStatus {
    if wait_timeout == wsk::WSK_NO_WAIT {
        irql::assert_at_most_dispatch("WskCaptureProviderNPI(WSK_NO_WAIT)");
    } else {
        irql::assert_passive("WskCaptureProviderNPI with a wait");
    }
    // SAFETY: `registration` is the driver's registered, hence readable, WSK_REGISTRATION (this
    // function's # Safety).
    let id = unsafe { registration_id(registration, "WskCaptureProviderNPI") };
    CAPTURE_CALLS.fetch_add(1, Ordering::SeqCst);
    if NO_INTERFACE.load(Ordering::SeqCst) {
        return NtStatus::NOINTERFACE;
    }
    let deadline = (wait_timeout != wsk::WSK_INFINITE_WAIT)
        .then(|| Instant::now() + Duration::from_millis(u64::from(wait_timeout)));
    let mut state = state();
    while !state.provider_ready {
        let now = Instant::now();
        state = match deadline {
            Some(deadline) if now >= deadline => return NtStatus::DEVICE_NOT_READY,
            Some(deadline) => wait_changed(state, Some(deadline - now)),
            None => wait_changed(state, None),
        };
    }
    if let Some(reg) = state.registrations.get_mut(&id) {
        reg.captured += 1;
    }
    // SAFETY: the caller guarantees `provider_npi` is writable. The client pointer is the
    // registration id: provider-level calls receive it back as their first argument.
    unsafe {
        provider_npi.write(WSK_PROVIDER_NPI {
            Client: id as *mut std::ffi::c_void,
            Dispatch: &raw const PROVIDER_DISPATCH,
        });
    }
    COUNTERS.captured_npis.fetch_add(1, Ordering::SeqCst);
    NtStatus::SUCCESS
}

/// WskReleaseProviderNPI. IRQL: <= DISPATCH_LEVEL.
///
/// # Panics
/// A verifier violation when nothing was captured.
///
/// # Safety
/// `registration` must be registered and hold a captured NPI.
#[allow(non_snake_case)]
pub unsafe extern "system" fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION) {
    irql::assert_at_most_dispatch("WskReleaseProviderNPI");
    // SAFETY: `registration` is the driver's registered, hence readable, WSK_REGISTRATION (this
    // function's # Safety).
    let id = unsafe { registration_id(registration, "WskReleaseProviderNPI") };
    let mut state = state();
    let reg = state.registrations.get_mut(&id).expect("checked above");
    if reg.captured == 0 {
        drop(state);
        violation(
            Rule::RegistrationMisuse,
            "WskReleaseProviderNPI without a captured NPI",
        );
    }
    reg.captured -= 1;
    COUNTERS.captured_npis.fetch_sub(1, Ordering::SeqCst);
    changed(&state);
}

/// WskDeregister: blocks until every captured NPI is released and every socket of the
/// registration is closed (and so every IRP completed). It closes nothing itself (WSK-FACTS §7).
/// IRQL: PASSIVE_LEVEL.
///
/// # Panics
/// A verifier violation when the registration is not registered.
///
/// # Safety
/// `registration` must be registered.
#[allow(non_snake_case)]
pub unsafe extern "system" fn WskDeregister(registration: *mut WSK_REGISTRATION) {
    irql::assert_passive("WskDeregister");
    // SAFETY: `registration` is the driver's registered, hence readable, WSK_REGISTRATION (this
    // function's # Safety).
    let id = unsafe { registration_id(registration, "WskDeregister") };
    let mut state = state();
    loop {
        let reg = state.registrations.get(&id).expect("checked above");
        if reg.captured == 0 && reg.sockets == 0 {
            break;
        }
        state = wait_changed(state, None);
    }
    state.registrations.remove(&id);
    // Tombstones of this registration can go now: the client promised not to use them again.
    let dead: Vec<usize> = state
        .sockets
        .iter()
        .filter(|(_, slot)| matches!(slot, Slot::Closed { registration } if *registration == id))
        .map(|(key, _)| *key)
        .collect();
    for key in dead {
        state.sockets.remove(&key);
        // SAFETY: every key is the address of a leaked Box<WSK_SOCKET> (Sock invariant) whose
        // socket is closed and now forgotten, so it is freed exactly once.
        drop(unsafe { Box::from_raw(key as *mut wsk::WSK_SOCKET) });
    }
    {
        let State {
            sockets,
            quarantine,
            ..
        } = &mut *state;
        quarantine.retain(|key| sockets.contains_key(key));
    }
    let last = state.registrations.is_empty();
    drop(state);
    if last {
        stop_loop();
    }
    // SAFETY: the caller's registration is still resident; zero it as netio would.
    unsafe { registration.write(WSK_REGISTRATION::zeroed()) };
    COUNTERS.registrations.fetch_sub(1, Ordering::SeqCst);
}
