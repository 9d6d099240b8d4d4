//! The echo benchmark in smoke mode (1 MiB streamed at 1 and 4 connections, 100 ping-pongs, per
//! target): every target echoes every byte back, verified by the client, and the driver makes no
//! pool, IRP or MDL allocation during the traffic. It checks that it works, not how fast.
#![cfg(unix)]

#[test]
fn every_echo_target_echoes_and_the_driver_allocates_nothing_on_the_data_path() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wskbench"))
        .args(["echo", "--smoke", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    // `ok`: every connection of every target got back exactly what it sent, every ping its pong,
    // every server closed after the client's FIN, and the driver unloaded with nothing outstanding.
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(out.status.success());
    assert_eq!(report["unload"], "nothing outstanding");
    let rows = report["rows"].as_array().unwrap();
    let latency: Vec<&serde_json::Value> = rows.iter().filter_map(|r| r.get("latency")).collect();
    let names: Vec<&str> = latency
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "std",
            "tokio",
            "wskaccept-irp8",
            "wskaccept-irp1",
            "wskaccept-event",
            "wskaccept-both",
            "wskaccept-conditional"
        ]
    );
    for row in &latency {
        assert!(row["p50_us"].as_f64().unwrap() > 0.0, "{row}");
        if row["target"].as_str().unwrap().starts_with("wskaccept") {
            assert_eq!(
                row["driver_allocations_per_run"], 0,
                "the echo data path allocates nothing: {row}"
            );
        }
    }
    for row in rows.iter().filter(|r| r.get("latency").is_none()) {
        assert!(row["mb_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["ratio_to_std"].is_number(), "{row}");
    }
}
