//! BCryptGenRandom(NULL, buffer, length, BCRYPT_USE_SYSTEM_PREFERRED_RNG): the kernel's
//! system-preferred random number generator, which the documentation supports at PASSIVE_LEVEL
//! only (asserted, like Driver Verifier would catch a call at DISPATCH_LEVEL).
//!
//! The bytes come from a stream keyed by the schedule's seed, so that a run replays with
//! `HOSTKERNEL_SEED` like everything else the host kernel decides. They are not secret: the host
//! kernel is a test environment.

use std::sync::atomic::{AtomicU64, Ordering};

use wsk::NtStatus;

use crate::irql;
use crate::schedule;

static DRAWS: AtomicU64 = AtomicU64::new(0);

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buffer` with random bytes. IRQL: PASSIVE_LEVEL. STATUS_SUCCESS (the real call also
/// documents STATUS_INVALID_PARAMETER and STATUS_INVALID_HANDLE, which a correct call never sees).
pub fn gen_random(buffer: &mut [u8]) -> NtStatus {
    irql::assert_passive("BCryptGenRandom(BCRYPT_USE_SYSTEM_PREFERRED_RNG)");
    let seed = splitmix64(schedule::current().seed ^ 0x5241_4E44_4F4D_0000);
    for chunk in buffer.chunks_mut(8) {
        let draw = DRAWS.fetch_add(1, Ordering::Relaxed);
        let word = splitmix64(seed ^ splitmix64(draw)).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    NtStatus::SUCCESS
}
