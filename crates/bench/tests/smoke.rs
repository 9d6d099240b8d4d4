//! The benchmark runs (smoke mode: a few connections per target). It checks that it works, not
//! how fast: nothing here measures time.
#![cfg(unix)]

#[test]
fn the_rate_benchmark_runs_every_target_in_smoke_mode() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wskbench"))
        .args(["rate", "--smoke", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    }
}

#[test]
fn the_held_benchmark_runs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wskbench"))
        .args(["held", "--count", "50", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"], 50);
    assert_eq!(report["unload"], "nothing outstanding");
}
