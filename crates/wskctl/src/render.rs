//! Output: human-readable tables by default, JSON (a stable contract) with `--json`.

use std::fmt::Write as _;

use ioctl::{
    COUNTERS, ConnectionRecord, CounterGroup, ListenerRecord, StatsRecord, VersionInfo, WireAddress,
};
use serde_json::{Value, json};

fn address(a: &WireAddress) -> String {
    a.to_socket_addr()
        .map_or_else(|_| "?".to_owned(), |s| s.to_string())
}

pub fn started(record: &ListenerRecord, as_json: bool) -> String {
    if as_json {
        return json!({"listener": record.id, "address": address(&record.address), "mode": record.mode.name(), "capacity": record.capacity, "depth": record.depth, "service": record.service.name(), "buffer": record.buffer}).to_string();
    }
    format!(
        "listener {} on {} (mode {}, depth {}, capacity {}, service {}, buffer {})",
        record.id,
        address(&record.address),
        record.mode.name(),
        record.depth,
        record.capacity,
        record.service.name(),
        record.buffer
    )
}

fn stats_value(s: &StatsRecord) -> Value {
    let mut value = json!({
        "listeners": s.listeners,
        "active": s.active,
        "peak": s.peak,
        "accept_irps_pending": s.accept_irps_pending,
    });
    if let Value::Object(map) = &mut value {
        for (info, count) in COUNTERS.iter().zip(s.counters.values()) {
            map.insert(info.name.to_owned(), count.into());
        }
    }
    value
}

pub fn stats(s: &StatsRecord, as_json: bool) -> String {
    if as_json {
        return stats_value(s).to_string();
    }
    stats_table(s, None)
}

/// The counters in groups, one line each: what was accepted (by path), refused (by reason),
/// the conditional-accept outcomes, what closed connections (by who), errors, and the gauges.
/// With `rates` (the previous reading and the seconds since), each counter that moved also shows
/// its rate per second.
pub fn stats_table(s: &StatsRecord, rates: Option<(&StatsRecord, f64)>) -> String {
    let mut out = String::new();
    for (group, items) in stat_groups(s, rates) {
        let _ = writeln!(out, "{group:<12} {}", items.join(", "));
    }
    out
}

/// The groups of [`stats_table`], each a list of `name value` items (with a rate when it moved):
/// the gauges, then every counter group of `ioctl::COUNTERS` in display order.
fn stat_groups(
    s: &StatsRecord,
    rates: Option<(&StatsRecord, f64)>,
) -> Vec<(&'static str, Vec<String>)> {
    let now = s.counters.values();
    let before = rates.map(|(r, _)| r.counters.values());
    let seconds = rates.map_or(0.0, |(_, t)| t);
    let item = |index: usize| -> String {
        let (label, now) = (COUNTERS[index].label, now[index]);
        match before.map(|b| b[index]) {
            Some(then) if seconds > 0.0 && now > then => {
                #[allow(clippy::cast_precision_loss, reason = "a display rate")]
                let rate = (now - then) as f64 / seconds;
                format!("{label} {now} ({rate:.1}/s)")
            }
            _ => format!("{label} {now}"),
        }
    };
    let mut groups = vec![(
        "active",
        vec![
            format!("connections {}", s.active),
            format!("peak {}", s.peak),
            format!("listeners {}", s.listeners),
            format!("accept IRPs pending {}", s.accept_irps_pending),
        ],
    )];
    for group in CounterGroup::ALL {
        let items = (0..COUNTERS.len())
            .filter(|&i| COUNTERS[i].group == group)
            .map(item)
            .collect();
        groups.push((group.name(), items));
    }
    groups
}

pub fn listeners(records: &[ListenerRecord], as_json: bool) -> String {
    if as_json {
        let list: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({"id": r.id, "address": address(&r.address), "mode": r.mode.name(), "service": r.service.name(),
                       "depth": r.depth, "capacity": r.capacity, "buffer": r.buffer, "active": r.active, "peak": r.peak,
                       "accept_irps_pending": r.accept_irps_pending, "phase": r.phase.name()})
            })
            .collect();
        return Value::Array(list).to_string();
    }
    let mut out = format!(
        "{:<8} {:<42} {:<6} {:<7} {:>8} {:>8} {:>6}  {}\n",
        "ID", "ADDRESS", "MODE", "SERVE", "CAPACITY", "ACTIVE", "IRPS", "PHASE"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<8} {:<42} {:<6} {:<7} {:>8} {:>8} {:>6}  {}",
            r.id,
            address(&r.address),
            r.mode.name(),
            r.service.name(),
            r.capacity,
            r.active,
            r.accept_irps_pending,
            r.phase.name()
        );
    }
    out
}

pub fn connections(records: &[ConnectionRecord], as_json: bool) -> String {
    if as_json {
        let list: Vec<Value> = records
            .iter()
            .map(|r| json!({"id": r.id, "listener": r.listener, "remote": address(&r.remote), "local": address(&r.local), "path": r.path.name(), "age_ms": r.age_ms, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out}))
            .collect();
        return Value::Array(list).to_string();
    }
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            [
                ioctl::ids::short(r.id).to_string(),
                r.listener.to_string(),
                address(&r.remote),
                address(&r.local),
                r.path.name().to_owned(),
                age(r.age_ms),
                r.bytes_in.to_string(),
                r.bytes_out.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "LISTENER",
            "REMOTE",
            "LOCAL",
            "PATH",
            "AGE",
            "BYTES IN",
            "BYTES OUT",
        ],
        &rows,
        &[5, 6, 7],
    )
}

/// A duration for people: `850ms`, `12s`, `3m04s`, `2h05m`, `3d04h`.
#[must_use]
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{s}s"),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A table whose columns are as wide as their widest cell; the columns in `right` align right.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]], right: &[usize]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| -> String {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if right.contains(&i) {
                let _ = write!(text, "{cell:>width$}");
            } else if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}");
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = line(*header);
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
        out.push('\n');
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
