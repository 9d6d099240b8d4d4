//! Output: human-readable tables by default, JSON (a stable contract) with `--json`.

use std::fmt::Write as _;

use ioctl::{
    ConnectionRecord, ListenerRecord, StatsRecord, VersionInfo, WireAddress, mode, path, phase,
    service,
};
use serde_json::{Value, json};

fn address(a: &WireAddress) -> String {
    a.to_socket_addr()
        .map_or_else(|_| "?".to_owned(), |s| s.to_string())
}

fn mode_name(m: u32) -> &'static str {
    match m {
        mode::IRP => "irp",
        mode::EVENT => "event",
        mode::BOTH => "both",
        mode::CONDITIONAL => "conditional",
        _ => "?",
    }
}

fn service_name(s: u32) -> &'static str {
    if s == service::CLOSE { "close" } else { "hold" }
}

fn phase_name(p: u32) -> &'static str {
    match p {
        phase::RUNNING => "running",
        phase::RESTARTING => "restarting",
        phase::FAILED => "failed",
        _ => "stopping",
    }
}

fn path_name(p: u32) -> &'static str {
    if p == path::EVENT { "event" } else { "irp" }
}

pub fn started(record: &ListenerRecord, as_json: bool) -> String {
    if as_json {
        return json!({"listener": record.id, "address": address(&record.address), "mode": mode_name(record.mode), "capacity": record.capacity, "depth": record.depth}).to_string();
    }
    format!(
        "listener {} on {} (mode {}, depth {}, capacity {}, service {})",
        record.id,
        address(&record.address),
        mode_name(record.mode),
        record.depth,
        record.capacity,
        service_name(record.service)
    )
}

fn stats_value(s: &StatsRecord) -> Value {
    let c = &s.counters;
    json!({
        "listeners": s.listeners,
        "active": s.active,
        "peak": s.peak,
        "accept_irps_pending": s.accept_irps_pending,
        "accepted_irp": c.accepted_irp,
        "accepted_event": c.accepted_event,
        "rejected_full": c.rejected_full,
        "rejected_not_running": c.rejected_not_running,
        "closed": c.closed,
        "peer_closed": c.peer_closed,
        "user_closed": c.user_closed,
        "listener_restarts": c.listener_restarts,
        "accept_errors": c.accept_errors,
        "bytes_discarded": c.bytes_discarded,
        "accepted_conditional": c.accepted_conditional,
        "inspect_pended": c.inspect_pended,
        "withdrawn": c.withdrawn,
        "decision_timeouts": c.decision_timeouts,
        "rejected_policy": c.rejected_policy,
        "rejected_source_limit": c.rejected_source_limit,
        "rejected_pending_full": c.rejected_pending_full,
    })
}

pub fn stats(s: &StatsRecord, as_json: bool) -> String {
    let value = stats_value(s);
    if as_json {
        return value.to_string();
    }
    let mut out = String::new();
    if let Value::Object(map) = value {
        for (key, v) in map {
            let _ = writeln!(out, "{key:<22} {v}");
        }
    }
    out
}

pub fn listeners(records: &[ListenerRecord], as_json: bool) -> String {
    if as_json {
        let list: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({"id": r.id, "address": address(&r.address), "mode": mode_name(r.mode), "service": service_name(r.service),
                       "depth": r.depth, "capacity": r.capacity, "active": r.active, "peak": r.peak,
                       "accept_irps_pending": r.accept_irps_pending, "phase": phase_name(r.phase)})
            })
            .collect();
        return Value::Array(list).to_string();
    }
    let mut out = format!(
        "{:<8} {:<42} {:<6} {:<6} {:>8} {:>8} {:>6}  {}\n",
        "ID", "ADDRESS", "MODE", "SERVE", "CAPACITY", "ACTIVE", "IRPS", "PHASE"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<8} {:<42} {:<6} {:<6} {:>8} {:>8} {:>6}  {}",
            r.id,
            address(&r.address),
            mode_name(r.mode),
            service_name(r.service),
            r.capacity,
            r.active,
            r.accept_irps_pending,
            phase_name(r.phase)
        );
    }
    out
}

pub fn connections(records: &[ConnectionRecord], as_json: bool) -> String {
    if as_json {
        let list: Vec<Value> = records
            .iter()
            .map(|r| json!({"id": r.id, "listener": r.listener, "remote": address(&r.remote), "local": address(&r.local), "path": path_name(r.path), "age_ms": r.age_ms}))
            .collect();
        return Value::Array(list).to_string();
    }
    let mut out = format!(
        "{:<20} {:<8} {:<42} {:<42} {:<5} {:>10}\n",
        "ID", "LISTENER", "REMOTE", "LOCAL", "PATH", "AGE_MS"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<42} {:<42} {:<5} {:>10}",
            r.id,
            r.listener,
            address(&r.remote),
            address(&r.local),
            path_name(r.path),
            r.age_ms
        );
    }
    out
}

pub fn version(v: &VersionInfo, as_json: bool) -> String {
    if as_json {
        return json!({"protocol": v.version, "driver": format!("{}.{}.{}", v.major, v.minor, v.patch), "max_listeners": v.max_listeners, "max_capacity": v.max_capacity, "max_depth": v.max_depth, "bytes_per_entry": v.bytes_per_entry, "wskctl": env!("CARGO_PKG_VERSION")}).to_string();
    }
    format!(
        "wskctl {}; driver {}.{}.{} (protocol {}): up to {} listeners, capacity {}, depth {}, {} bytes per table entry",
        env!("CARGO_PKG_VERSION"),
        v.major,
        v.minor,
        v.patch,
        v.version,
        v.max_listeners,
        v.max_capacity,
        v.max_depth,
        v.bytes_per_entry
    )
}
