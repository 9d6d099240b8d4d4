//! The benchmark runs (smoke mode: a few connections per target). It checks that it works, not
//! how fast: nothing here measures time.
#![cfg(unix)]

/// Runs wskbench with `args`; it must succeed and print JSON.
fn run(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wskbench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_rate_benchmark_runs_every_target_in_smoke_mode() {
    let report = run(&["rate", "--smoke", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "std",
            "tokio",
            "wskaccept-irp1",
            "wskaccept-irp8",
            "wskaccept-event",
            "wskaccept-both"
        ]
    );
    for row in rows
        .iter()
        .filter(|r| r["target"].as_str().unwrap().starts_with("wskaccept"))
    {
        assert!(row["ratio_to_std"].is_number());
        assert_eq!(
            row["driver_allocations_per_run"], 0,
            "the accept path allocates nothing"
        );
        // Service close: one graceful WskDisconnect and one WskCloseSocket per connection (the
        // host kernel counts every WSK call), no more: a close alone would reset the client.
        let calls = &row["wsk_calls_by_function"];
        assert_eq!(calls["WskDisconnect"], 1.0, "{row}");
        assert_eq!(calls["WskCloseSocket"], 1.0, "{row}");
        assert!(row["worker_passes_per_connection"].is_number(), "{row}");
    }
}

#[test]
fn the_held_benchmark_runs() {
    let report = run(&["held", "--count", "50", "--json"]);
    assert_eq!(report["connections"], 50);
    assert_eq!(report["unload"], "nothing outstanding");
}
