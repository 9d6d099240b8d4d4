//! Fuzzes `control::dispatch` with arbitrary codes, inputs and output sizes against the driver
//! loaded in the host kernel. The first four bytes pick the code (biased towards the real ones),
//! the next two the output size, the rest is the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wskaccept::control::dispatch;
use wskaccept::engine::Engine;
use wskaccept::kernel::PoolBox;

static ENGINE: OnceLock<PoolBox<Engine>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let engine = ENGINE.get_or_init(|| Engine::load().expect("driver load"));
    if data.len() < 6 {
        return;
    }
    let raw = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let code = if raw % 2 == 0 { ioctl::IMPLEMENTED[(raw as usize / 2) % ioctl::IMPLEMENTED.len()] } else { raw };
    let output_len = usize::from(u16::from_le_bytes([data[4], data[5]])) % 8192;
    let mut output = vec![0u8; output_len];
    let (status, written) = dispatch(engine, code, &data[6..], &mut output);
    assert!(written <= output_len);
    assert!(status.is_success() || written == 0);
    // Keep the listener count low so starts keep reaching the deep paths.
    if engine.stats().listeners > 8 {
        engine.stop_all();
    }
});
