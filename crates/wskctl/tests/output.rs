//! What people read: grouped counters, a live view with rates (under tmux), listings that fit,
//! policy rules in the order given, exit statuses. Through the real binary.
#![cfg(unix)]

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Host, WSKCTL};

fn text(host: &Host, args: &[&str]) -> String {
    let out = host.ctl(args);
    assert!(
        out.status.success(),
        "wskctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start(host: &Host, capacity: &str) -> (String, String) {
    let started = host.json(&[
        "start",
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "irp",
        "--capacity",
        capacity,
    ]);
    (
        started["listener"].as_u64().unwrap().to_string(),
        started["address"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn stats_are_grouped_and_json_keeps_its_keys() {
    let host = Host::start("grouped");
    let (_, address) = start(&host, "2");
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    host.wait_active(None, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.json(&["stats"])["rejected_full"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the third client was never refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let table = text(&host, &["stats"]);
    let lines: Vec<&str> = table.lines().collect();
    let group = |name: &str| -> &str {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{table}"))
    };
    assert!(group("active").contains("connections 2"), "{table}");
    assert!(
        group("accepted").contains("irp 2") && group("accepted").contains("event 0"),
        "{table}"
    );
    assert!(
        group("refused").contains("full 1") && group("refused").contains("policy 0"),
        "{table}"
    );
    for name in ["conditional", "closed", "errors", "data"] {
        group(name);
    }
    // --json is the stable contract: the same flat keys as before.
    let json = host.json(&["stats"]);
    for key in [
        "accepted_irp",
        "rejected_full",
        "active",
        "peak",
        "peer_closed",
        "withdrawn",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    drop(clients);
}

#[test]
fn list_fits_its_content_and_shows_ages_for_people() {
    let host = Host::start("list");
    let (_, address) = start(&host, "8");
    let client = TcpStream::connect(&address).unwrap();
    host.wait_active(None, 1);
    let table = text(&host, &["list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("AGE"),
        "{table}"
    );
    assert!(!header.contains("AGE_MS"));
    let row = lines.next().unwrap();
    assert!(row.len() < 100, "a row of {} columns: {row}", row.len());
    // Ids are short (LISTENER.INDEX.SERIAL), and `close` takes them as `list` shows them.
    let short = row.split_whitespace().next().unwrap();
    let fields: Vec<&str> = short.split('.').collect();
    assert!(
        fields.len() == 3 && fields.iter().all(|f| f.parse::<u64>().is_ok()),
        "short id {short} in {row}"
    );
    let full = host.json(&["list"])[0]["id"].as_u64().unwrap();
    assert!(full >= 1 << 20, "the JSON keeps the full 64-bit id: {full}");
    // ID LISTENER REMOTE LOCAL PATH AGE BYTES-IN BYTES-OUT
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns.len(), 8, "{row}");
    assert!(
        header.ends_with("BYTES IN  BYTES OUT"),
        "bytes in and out are listed: {header}"
    );
    assert_eq!(
        columns[6..],
        ["0", "0"],
        "the discard service reads nothing here: {row}"
    );
    let age = columns[5];
    assert!(
        age.ends_with("ms") || age.ends_with('s'),
        "age {age} in {row}"
    );
    let closed = text(&host, &["close", short, "--abort"]);
    assert!(
        closed.contains(short) && closed.contains("reset"),
        "{closed}"
    );
    host.wait_active(None, 0);
    drop(client);
}

#[test]
fn policy_rules_keep_the_order_given_and_prefixes_are_checked() {
    let host = Host::start("policy");
    let (id, _) = start(&host, "8");
    let set = host.json(&[
        "policy",
        "set",
        &id,
        "--deny",
        "10.0.0.0/8",
        "--allow",
        "10.1.0.0/16",
        "--deny=::/0",
        "--allow",
        "127.0.0.1",
    ]);
    let rules = set["rules"].as_array().unwrap_or_else(|| panic!("{set}"));
    let seen: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["prefix"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("deny".to_owned(), "10.0.0.0/8".to_owned()),
            ("allow".to_owned(), "10.1.0.0/16".to_owned()),
            ("deny".to_owned(), "::/0".to_owned()),
            ("allow".to_owned(), "127.0.0.1/32".to_owned()),
        ],
        "{set}"
    );
    let host_bits = host.ctl(&["policy", "set", &id, "--allow", "10.1.2.3/8"]);
    assert_eq!(host_bits.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&host_bits.stderr);
    assert!(
        stderr.contains("host bits") && stderr.contains("10.0.0.0/8"),
        "{stderr}"
    );
}

#[test]
fn exit_statuses_are_documented() {
    let help = Command::new(WSKCTL).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for documented in [
        "Exit status",
        "1 the driver refused",
        "2 usage",
        "69 the driver cannot be reached",
    ] {
        assert!(
            help.contains(documented),
            "{documented} not in --help:\n{help}"
        );
    }
    let usage = Command::new(WSKCTL).arg("--no-such-flag").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    // The parameters the driver range-checks are checked first, naming the parameter.
    for (args, named) in [
        (
            &["start", "--listen", "127.0.0.1:0", "--capacity", "0"][..],
            "--capacity",
        ),
        (
            &[
                "start",
                "--listen",
                "127.0.0.1:0",
                "--decision-timeout-ms",
                "0",
            ][..],
            "--decision-timeout-ms",
        ),
        (
            &["start", "--listen", "127.0.0.1:0", "--dual-stack"][..],
            "--dual-stack",
        ),
    ] {
        let out = Command::new(WSKCTL)
            .args(["--control", "/nonexistent/wsk.sock"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

/// The live view, as a person sees it: `stats --watch 1` in a tmux pane, redrawn in place, with a
/// timestamp and a per-second rate once connections arrive between two frames.
#[test]
fn stats_watch_redraws_with_a_timestamp_and_rates() {
    let host = Host::start("watch");
    let (_, address) = start(&host, "64");
    let session = format!("wskctl-watch-{}", std::process::id());
    let command = format!(
        "{WSKCTL} --control {} stats --watch 1",
        host.socket.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux");
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let clients: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    host.wait_active(None, 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    let screen = loop {
        let pane = tmux(&["capture-pane", "-p", "-t", &session]);
        let screen = String::from_utf8_lossy(&pane.stdout).into_owned();
        if screen.contains("irp 20 (") || Instant::now() > deadline {
            break screen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("wskaccept stats"), "{screen}");
    assert!(screen.contains(" UTC"), "a timestamp: {screen}");
    assert!(
        screen.contains("irp 20 (") && screen.contains("/s)"),
        "a rate: {screen}"
    );
    assert_eq!(
        screen.matches("wskaccept stats").count(),
        1,
        "redrawn in place: {screen}"
    );
    drop(clients);
}

/// A stop that takes more than a second (here: a provider that completes closes 2.5 s late, the
/// host's hidden test knob) says on stderr what it is waiting for; stdout keeps the result.
#[test]
fn a_slow_stop_shows_what_it_waits_for() {
    let host = Host::start_with("slowstop", &["--slow-close-ms", "2500"]);
    let (id, address) = start(&host, "16");
    let clients: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    host.wait_active(Some(&id), 5);
    let began = Instant::now();
    let out = host.ctl(&["stop", &id]);
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        took >= Duration::from_secs(2),
        "the stop did not wait: {took:?}"
    );
    assert!(
        stderr.contains(&format!(
            "wskctl: waiting for listener {id} to stop: 5 connections still closing, 0 accept IRPs pending"
        )),
        "no progress on stderr: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("closed       total 5"), "{stdout}");
    drop(clients);
}
