//! The load generator and the rate report.

use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::summary::{median, percentile};
use crate::targets::{self, ALL, Target};

/// One run of the generator.
pub struct Run {
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Per connection: `connect()` returned → the server's close was seen.
    pub latencies: Vec<Duration>,
    /// Connections that failed (connect error, or a reset instead of a close).
    pub errors: usize,
}

/// `threads` clients share `connections`: each connects, reads until EOF, closes.
#[must_use]
pub fn generate(address: SocketAddr, connections: usize, threads: usize) -> Run {
    let threads = threads.max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = connections / threads + usize::from(t < connections % threads);
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(share);
                let mut errors = 0;
                let mut sink = [0u8; 64];
                for _ in 0..share {
                    let Ok(mut stream) = TcpStream::connect(address) else {
                        errors += 1;
                        continue;
                    };
                    let connected = Instant::now();
                    // The server closes first: read until EOF.
                    loop {
                        match stream.read(&mut sink) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    latencies.push(connected.elapsed());
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(connections);
    let mut errors = 0;
    for handle in handles {
        let (l, e) = handle.join().unwrap_or_default();
        latencies.extend(l);
        errors += e;
    }
    Run {
        elapsed: start.elapsed(),
        latencies,
        errors,
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn as_int(value: f64) -> u64 {
    value.max(0.0) as u64
}

/// The driver-side counts of a run (cumulative, process-wide): work-queue passes and wake-ups
/// (the driver's own figures) and WSK calls (counted by the host kernel at every provider entry).
#[derive(Debug)]
struct Counted {
    queue: wskaccept::kernel::QueueFigures,
    calls: hostkernel::wsk_calls::WskCalls,
}

/// What one accepted connection cost the driver, over a run.
#[derive(Clone, Debug)]
struct PerConnection {
    passes: f64,
    wakeups: f64,
    wsk_calls: f64,
    by_function: Value,
}

fn per(count: u64, connections: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let ratio = count as f64 / connections.max(1) as f64;
    (ratio * 1000.0).round() / 1000.0
}

impl Counted {
    fn now() -> Self {
        Self {
            queue: wskaccept::kernel::queue_figures(),
            calls: hostkernel::wsk_calls::snapshot(),
        }
    }

    fn per_connection(&self, earlier: &Self, connections: usize) -> PerConnection {
        let by_function = self
            .calls
            .since(&earlier.calls)
            .into_iter()
            .map(|(name, n)| (name.to_owned(), json!(per(n, connections))))
            .collect::<serde_json::Map<_, _>>();
        PerConnection {
            passes: per(self.queue.passes - earlier.queue.passes, connections),
            wakeups: per(self.queue.wakeups - earlier.queue.wakeups, connections),
            wsk_calls: per(self.calls.total() - earlier.calls.total(), connections),
            by_function: Value::Object(by_function),
        }
    }
}

impl PerConnection {
    /// The run with the median number of worker passes (its other figures with it).
    fn median(runs: &mut [Self]) -> Option<Self> {
        runs.sort_by(|a, b| a.passes.total_cmp(&b.passes));
        runs.get(runs.len() / 2).cloned()
    }
}

/// Runs every selected target at every thread count, `runs` times each.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn rate_report(connections: usize, threads: &[usize], runs: usize, only: &[String]) -> Value {
    let engine = targets::load_engine();
    let selected: Vec<Target> = ALL
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|n| n == t.name()))
        .collect();
    let mut rows = Vec::new();
    let mut ok = true;
    for &threads in threads {
        let mut baseline = None;
        for target in &selected {
            let mut rates = Vec::new();
            let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
            let mut allocations = 0u64;
            let mut costs = Vec::new();
            for _ in 0..runs.max(1) {
                let server = target.start(&engine);
                // Counted over the traffic only: the listener's table, accept IRPs and per-slot
                // IRPs/MDLs are preallocated at start.
                let before = hostkernel::accounting::allocations();
                let counted = Counted::now();
                let run = generate(server.address, connections, threads);
                // The last closes may complete after the last client saw its EOF.
                server.settle(&engine);
                let cost = Counted::now().per_connection(&counted, connections);
                let after = hostkernel::accounting::allocations();
                server.stop(&engine);
                if matches!(target, Target::Wskaccept(..)) {
                    allocations = allocations.max(
                        (after.pool - before.pool)
                            + (after.irps - before.irps)
                            + (after.mdls - before.mdls),
                    );
                    costs.push(cost);
                }
                ok &= run.errors == 0 && run.latencies.len() == connections;
                let mut sorted = run.latencies;
                sorted.sort_unstable();
                rates.push(connections as f64 / run.elapsed.as_secs_f64());
                p50s.push(percentile(&sorted, 0.50));
                p99s.push(percentile(&sorted, 0.99));
                maxes.push(percentile(&sorted, 1.0));
            }
            let spread = (
                rates.iter().copied().fold(f64::INFINITY, f64::min),
                rates.iter().copied().fold(0.0, f64::max),
            );
            let rate = median(&mut rates);
            let cost = PerConnection::median(&mut costs);
            if *target == Target::Std {
                baseline = Some(rate);
            }
            rows.push(json!({
                "target": target.name(),
                "threads": threads,
                "connections": connections,
                "runs": runs.max(1),
                "rate": as_int(rate.round()),
                "rate_min": as_int(spread.0.round()),
                "rate_max": as_int(spread.1.round()),
                "ratio_to_std": baseline.map(|b| (rate / b * 1000.0).round() / 1000.0),
                "p50_us": as_int(median(&mut p50s).round()),
                "p99_us": as_int(median(&mut p99s).round()),
                "max_us": as_int(median(&mut maxes).round()),
                "driver_allocations_per_run": matches!(target, Target::Wskaccept(..)).then_some(allocations),
                "worker_passes_per_connection": cost.as_ref().map(|c| c.passes),
                "worker_wakeups_per_connection": cost.as_ref().map(|c| c.wakeups),
                "wsk_calls_per_connection": cost.as_ref().map(|c| c.wsk_calls),
                "wsk_calls_by_function": cost.as_ref().map(|c| c.by_function.clone()),
            }));
        }
    }
    wskaccept::engine::Engine::unload(engine);
    let leaks = hostkernel::accounting::outstanding();
    ok &= leaks.is_clean();
    json!({ "ok": ok, "rows": rows, "unload": leaks.to_string() })
}

/// The human table.
#[must_use]
pub fn render(report: &Value) -> String {
    let mut out = format!(
        "{:<16} {:>7} {:>10} {:>17} {:>8} {:>9} {:>9} {:>9} {:>13} {:>7} {:>7} {:>7}\n",
        "target",
        "threads",
        "conn/s",
        "spread",
        "vs std",
        "p50 µs",
        "p99 µs",
        "max µs",
        "driver allocs",
        "passes",
        "wakeups",
        "WSK"
    );
    let figure = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
    };
    for row in report["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>10} {:>17} {:>8} {:>9} {:>9} {:>9} {:>13} {:>7} {:>7} {:>7}",
            row["target"].as_str().unwrap_or("?"),
            row["threads"].to_string(),
            row["rate"].to_string(),
            format!("{}–{}", row["rate_min"], row["rate_max"]),
            row["ratio_to_std"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
            row["p50_us"].to_string(),
            row["p99_us"].to_string(),
            row["max_us"].to_string(),
            row["driver_allocations_per_run"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            figure(&row["worker_passes_per_connection"]),
            figure(&row["worker_wakeups_per_connection"]),
            figure(&row["wsk_calls_per_connection"]),
        );
    }
    out.push_str(
        "passes, wakeups, WSK: per accepted connection, the driver's work-queue routines run, its \
         worker thread's wake-ups, and WSK calls (median run)\n",
    );
    let _ = writeln!(
        out,
        "ok: {}; after unload: {}",
        report["ok"],
        report["unload"].as_str().unwrap_or("?")
    );
    out
}
