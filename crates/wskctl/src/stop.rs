//! `wskctl stop` with progress: a stop normally takes milliseconds (every connection is closed
//! abortively, nothing waits for a peer), but a provider slow to complete its closes can hold it
//! up to the driver's stop timeout. After a second, a second connection to the driver (the
//! driver answers queries while a stop waits) reports what the stop is waiting for, on stderr, so
//! stdout keeps only the result.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ioctl::{ALL_LISTENERS, StatsRecord};

use crate::client::{CallError, Client};
use crate::device;

/// How long a stop runs before `wskctl` says what it is waiting for, and how often after that.
const QUIET: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(500);

/// Stops `listener` (or all), reporting progress on stderr while it takes more than [`QUIET`].
/// `control` is where to open the second connection for the progress queries.
pub fn stop(
    client: &Client,
    control: Option<&Path>,
    listener: u32,
) -> Result<StatsRecord, CallError> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| watch(control, listener, &done));
        let result = client.stop(listener);
        done.store(true, Ordering::Release);
        result
    })
}

/// Prints, every [`EVERY`] after the first [`QUIET`], how many connections and accept IRPs the
/// stopping listener(s) still have, until `done`.
fn watch(control: Option<&Path>, listener: u32, done: &AtomicBool) {
    let started = Instant::now();
    let mut next = started + QUIET;
    let mut watcher = None;
    while !done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next || done.load(Ordering::Acquire) {
            continue;
        }
        next += EVERY;
        if watcher.is_none() {
            // Its own connection: on Windows, a second handle (calls on one synchronous handle
            // would wait behind the stop).
            watcher = device::open(control.map(Path::to_path_buf))
                .ok()
                .map(Client::new);
        }
        let Some(records) = watcher.as_ref().and_then(|w| w.listeners().ok()) else {
            continue;
        };
        let (connections, irps) = records
            .iter()
            .filter(|r| listener == ALL_LISTENERS || r.id == listener)
            .fold((0u64, 0u64), |(c, i), r| {
                (
                    c + u64::from(r.active),
                    i + u64::from(r.accept_irps_pending),
                )
            });
        let what = if listener == ALL_LISTENERS {
            "the listeners".to_owned()
        } else {
            format!("listener {listener}")
        };
        eprintln!(
            "wskctl: waiting for {what} to stop: {connections} connections still closing, \
             {irps} accept IRPs pending ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
}
