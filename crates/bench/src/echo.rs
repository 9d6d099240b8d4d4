//! `wskbench echo`: echo throughput (MB/s of bytes echoed back and verified) at several connection
//! counts and the p50/p99 of a 64-byte ping-pong, for the driver with service `echo` in every mode
//! and for a std and a tokio echo server, with the same client in the same run; ratios against std,
//! and the driver's pool/IRP/MDL allocations during the traffic (the goal is 0).
//!
//! Each run starts every target in turn (a fresh listening port each), streams at every
//! connection count, then runs the ping-pong, then stops it; the figures are medians over runs.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::echo_client::{self, Pattern};
use crate::echo_targets::{ALL, EchoTarget};
use crate::summary::{median, percentile};
use crate::targets;
use wskaccept::engine::Engine;

/// `wskbench echo` options.
#[derive(clap::Args)]
pub struct Args {
    /// Connection counts to stream with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    connections: Vec<usize>,
    /// KiB streamed per measurement, shared by its connections.
    #[arg(long, default_value_t = 262_144)]
    kib: u64,
    /// Bytes per client write.
    #[arg(long, default_value_t = 16_384)]
    write: usize,
    /// The driver's per-connection buffer (`--buffer` of `wskctl start`).
    #[arg(long, default_value_t = 4_096)]
    buffer: u32,
    /// 64-byte round trips per latency measurement (0: none).
    #[arg(long, default_value_t = 5_000)]
    round_trips: usize,
    /// Runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these targets (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// A little traffic per target: checks that everything echoes, not how fast.
    #[arg(long)]
    smoke: bool,
    /// One run of the first selected target and no output (for `valgrind --tool=callgrind`).
    #[arg(long)]
    profile: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Runs `wskbench echo`.
#[must_use]
pub fn main(mut args: Args) -> ExitCode {
    if args.smoke {
        (args.connections, args.kib, args.round_trips, args.runs) = (vec![1, 4], 1_024, 100, 1);
    }
    let selected: Vec<EchoTarget> = ALL
        .into_iter()
        .filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == t.name()))
        .collect();
    if selected.is_empty() || args.connections.contains(&0) {
        eprintln!("wskbench echo: no such target, or a connection count of 0");
        return ExitCode::FAILURE;
    }
    if args.profile {
        args.runs = 1;
        let ok = report(&args, &selected[..1])["ok"] == json!(true);
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let report = report(&args, &selected);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    if report["ok"] == json!(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What one run of one target measured.
#[derive(Default)]
struct Sample {
    /// MB/s per connection count, in `--connections` order.
    throughput: Vec<f64>,
    /// Ping-pong p50 and p99, µs.
    p50: f64,
    p99: f64,
    /// Driver pool + IRP + MDL allocations between the first connection and the last close.
    allocations: u64,
}

#[allow(clippy::cast_precision_loss)]
fn measure(
    engine: &Engine,
    args: &Args,
    target: EchoTarget,
    pattern: &Arc<Pattern>,
) -> (Sample, bool) {
    let server = target.start(engine, args.buffer);
    let mut ok = true;
    let mut sample = Sample::default();
    let before = hostkernel::accounting::allocations();
    for &connections in &args.connections {
        let per_connection = (args.kib * 1_024 / connections as u64).max(1);
        let run = echo_client::stream(
            server.address,
            connections,
            per_connection,
            args.write,
            pattern,
        );
        ok &= run.errors == 0 && run.verified == per_connection * connections as u64;
        sample
            .throughput
            .push(run.verified as f64 / run.elapsed.as_secs_f64() / 1e6);
    }
    if args.round_trips > 0 {
        match echo_client::ping_pong(server.address, args.round_trips, pattern) {
            Some(mut times) => {
                times.sort_unstable();
                sample.p50 = percentile(&times, 0.50);
                sample.p99 = percentile(&times, 0.99);
            }
            None => ok = false,
        }
    }
    // The server's closes follow the clients' FINs: give the driver's last disconnects time to
    // finish before the count (they allocate nothing either, but belong to the traffic).
    std::thread::sleep(Duration::from_millis(50));
    let after = hostkernel::accounting::allocations();
    if let Err(error) = server.stop(engine) {
        eprintln!("wskbench echo: {}: {error}", target.name());
        ok = false;
    }
    if target.is_driver() {
        sample.allocations =
            (after.pool - before.pool) + (after.irps - before.irps) + (after.mdls - before.mdls);
    }
    (sample, ok)
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Every run: every target in turn; then the medians and the ratios to std.
fn report(args: &Args, selected: &[EchoTarget]) -> Value {
    let pattern = Pattern::new();
    let engine = targets::load_engine();
    let mut samples: Vec<Vec<Sample>> = selected.iter().map(|_| Vec::new()).collect();
    let mut ok = true;
    for _ in 0..args.runs.max(1) {
        for (target, runs) in selected.iter().zip(&mut samples) {
            let (sample, fine) = measure(&engine, args, *target, &pattern);
            ok &= fine;
            runs.push(sample);
        }
    }
    let std_index = selected.iter().position(|t| *t == EchoTarget::Std);
    let medians: Vec<(Vec<f64>, f64, f64)> = samples
        .iter()
        .map(|runs| {
            let throughput = (0..args.connections.len())
                .map(|c| median(&mut runs.iter().map(|s| s.throughput[c]).collect::<Vec<_>>()))
                .collect();
            let p50 = median(&mut runs.iter().map(|s| s.p50).collect::<Vec<_>>());
            let p99 = median(&mut runs.iter().map(|s| s.p99).collect::<Vec<_>>());
            (throughput, p50, p99)
        })
        .collect();
    let mut rows = Vec::new();
    for (i, target) in selected.iter().enumerate() {
        let (throughput, p50, p99) = &medians[i];
        let base = std_index.map(|s| &medians[s]);
        let allocations = samples[i].iter().map(|s| s.allocations).max();
        for (c, &connections) in args.connections.iter().enumerate() {
            let runs: Vec<f64> = samples[i].iter().map(|s| s.throughput[c]).collect();
            rows.push(json!({
                "target": target.name(),
                "connections": connections,
                "mb_per_s": round(throughput[c], 1),
                "mb_per_s_min": round(runs.iter().copied().fold(f64::INFINITY, f64::min), 1),
                "mb_per_s_max": round(runs.iter().copied().fold(0.0, f64::max), 1),
                "ratio_to_std": base.map(|b| round(throughput[c] / b.0[c], 3)),
            }));
        }
        let latency = json!({
            "target": target.name(),
            "p50_us": round(*p50, 1),
            "p99_us": round(*p99, 1),
            "p50_ratio_to_std": base.map(|b| round(p50 / b.1, 3)),
            "driver_allocations_per_run": target.is_driver().then_some(allocations),
        });
        rows.push(json!({ "latency": latency }));
    }
    Engine::unload(engine);
    let leaks = hostkernel::accounting::outstanding();
    ok &= leaks.is_clean();
    json!({
        "ok": ok,
        "kib_per_measurement": args.kib,
        "write": args.write,
        "buffer": args.buffer,
        "round_trips": args.round_trips,
        "runs": args.runs.max(1),
        "rows": rows,
        "unload": leaks.to_string(),
    })
}

/// The human tables.
#[must_use]
pub fn render(report: &Value) -> String {
    let mut out = format!(
        "{:<22} {:>5} {:>10} {:>17} {:>7}\n",
        "target", "conns", "MB/s", "spread", "vs std"
    );
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let ratio = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
    };
    for row in rows.iter().filter(|r| r.get("latency").is_none()) {
        let _ = writeln!(
            out,
            "{:<22} {:>5} {:>10} {:>17} {:>7}",
            row["target"].as_str().unwrap_or("?"),
            row["connections"].to_string(),
            row["mb_per_s"].to_string(),
            format!("{}–{}", row["mb_per_s_min"], row["mb_per_s_max"]),
            ratio(&row["ratio_to_std"]),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:>9} {:>9} {:>10} {:>13}",
        "target", "p50 µs", "p99 µs", "p50 vs std", "driver allocs"
    );
    for row in rows.iter().filter_map(|r| r.get("latency")) {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>10} {:>13}",
            row["target"].as_str().unwrap_or("?"),
            row["p50_us"].to_string(),
            row["p99_us"].to_string(),
            ratio(&row["p50_ratio_to_std"]),
            row["driver_allocations_per_run"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        );
    }
    let _ = writeln!(
        out,
        "ok: {}; after unload: {}",
        report["ok"],
        report["unload"].as_str().unwrap_or("?")
    );
    out
}
