//! Held connections: time to accept N connections held by a client process, and this process's
//! resident memory before and after.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wskaccept::listener::{ListenerConfig, Mode, Service};

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Accepts `count` held connections in event mode and reports time and memory.
///
/// # Errors
/// A sentence when the client process or the listener fails.
pub fn run(count: usize) -> Result<Value, String> {
    let engine = crate::targets::load_engine();
    let mut config = ListenerConfig::new("127.0.0.1:0".parse().map_err(|_| "address")?);
    config.mode = Mode::Event;
    config.capacity = u32::try_from(count).map_err(|_| "count")?.max(1);
    config.service = Service::Hold;
    let rss_before = status_kb("VmRSS:");
    let info = engine
        .start_listener(config)
        .map_err(|s| format!("start: {s}"))?;
    let rss_listener = status_kb("VmRSS:");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args([
            "clients",
            "--connect",
            &info.address.to_string(),
            "--count",
            &count.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let target = u32::try_from(count).unwrap_or(u32::MAX);
    while engine.stats().active < target {
        if started.elapsed() > Duration::from_mins(2) {
            return Err(format!(
                "only {} of {count} accepted",
                engine.stats().active
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let accepted_in = started.elapsed();
    let rss_held = status_kb("VmRSS:");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    drop(child.stdin.take());
    let _ = child.wait();
    let stop_started = Instant::now();
    engine
        .stop_listener(info.id)
        .map_err(|s| format!("stop: {s}"))?;
    let stopped_in = stop_started.elapsed();
    wskaccept::engine::Engine::unload(engine);
    let per_connection = (rss_held.saturating_sub(rss_listener) * 1024) / count as u64;
    Ok(json!({
        "connections": count,
        "accept_all_ms": accepted_in.as_millis(),
        "client_connect_ms": line.trim().parse::<u64>().ok(),
        "stop_ms": stopped_in.as_millis(),
        "rss_kb_before_listener": rss_before,
        "rss_kb_listener_started": rss_listener,
        "rss_kb_holding": rss_held,
        "rss_bytes_per_held_connection": per_connection,
        "driver_bytes_per_table_entry": wskaccept::listener::BYTES_PER_ENTRY,
        "peak_rss_kb": status_kb("VmHWM:"),
        "unload": hostkernel::accounting::outstanding().to_string(),
    }))
}

/// The client process: connect `count` times, print the ms it took, hold until stdin closes.
#[must_use]
pub fn clients(address: SocketAddr, count: usize) -> ExitCode {
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match TcpStream::connect(address) {
            Ok(stream) => held.push(stream),
            Err(error) => {
                eprintln!("wskbench clients: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", started.elapsed().as_millis());
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    ExitCode::SUCCESS
}
