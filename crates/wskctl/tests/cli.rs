//! End to end through the real binaries: `wskctl host` as a separate process, every other
//! subcommand as the user runs it, real TCP clients.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{Host, WSKCTL};

/// One mode: start, connect, stats, list, close by id, listeners, stop.
fn exercise_mode(host: &Host, mode: &str, listen: &str) {
    let started = host.json(&[
        "start",
        "--listen",
        listen,
        "--mode",
        mode,
        "--capacity",
        "64",
    ]);
    let id = started["listener"].as_u64().unwrap().to_string();
    let address = started["address"].as_str().unwrap().to_owned();
    assert!(
        !address.ends_with(":0"),
        "the port bound is reported: {address}"
    );
    let clients: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    host.wait_active(Some(&id), 5);
    let list_json = host.json(&["list", "--listener", &id]);
    let records = list_json.as_array().unwrap();
    assert_eq!(records.len(), 5);
    for connection in records {
        for field in ["id", "listener", "remote", "local", "path"] {
            assert!(connection.get(field).is_some(), "list --json lacks {field}");
        }
        assert_eq!(connection["local"], address.as_str());
        match mode {
            "irp" => assert_eq!(connection["path"], "irp"),
            "event" => assert_eq!(connection["path"], "event"),
            _ => {}
        }
    }
    let listeners = host.json(&["listeners"]);
    let this = listeners
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id.as_str()))
        .unwrap()
        .clone();
    assert_eq!(
        (
            this["mode"].as_str(),
            this["capacity"].as_u64(),
            this["active"].as_u64()
        ),
        (Some(mode), Some(64), Some(5))
    );
    let victim = records[0]["id"].as_u64().unwrap().to_string();
    let closed = host.ctl(&["close", &victim]);
    assert!(closed.status.success());
    host.wait_active(Some(&id), 4);
    let stats = host.json(&["stats"]);
    for field in [
        "listeners",
        "active",
        "peak",
        "accepted_irp",
        "accepted_event",
        "rejected_full",
        "closed",
        "listener_restarts",
        "accept_irps_pending",
    ] {
        assert!(stats.get(field).is_some(), "stats --json lacks {field}");
    }
    let stopped = host.ctl(&["stop", &id]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    drop(clients);
}

#[test]
fn every_mode_end_to_end_through_the_binary() {
    let host = Host::start("modes");
    let mode_bits = std::fs::metadata(&host.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode_bits, 0o600, "the control socket is private");
    let version = host.json(&["version"]);
    assert_eq!(
        version["protocol"], 3,
        "contract version 3: the data path (buffer, bytes per connection, data counters)"
    );
    for (mode, listen) in [
        ("irp", "127.0.0.1:0"),
        ("event", "[::1]:0"),
        ("both", "127.0.0.1:0"),
    ] {
        exercise_mode(&host, mode, listen);
    }
    assert!(host.json(&["listeners"]).as_array().unwrap().is_empty());
    let stats = host.json(&["stats"]);
    assert_eq!(
        stats["accepted_irp"].as_u64().unwrap() + stats["accepted_event"].as_u64().unwrap(),
        15
    );
    // Leave a listener with open connections for unload to clean up.
    let started = host.json(&["start", "--listen", "127.0.0.1:0"]);
    let _held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(started["address"].as_str().unwrap()).unwrap())
        .collect();
    host.wait_active(None, 3);
    let (code, stderr) = host.interrupt();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("nothing outstanding"), "{stderr}");
}

#[test]
fn errors_print_the_status_and_a_sentence() {
    let host = Host::start("errors");
    let started = host.json(&["start", "--listen", "127.0.0.1:0"]);
    let address = started["address"].as_str().unwrap();
    let port = address.rsplit(':').next().unwrap();
    let again = host.ctl(&["start", "--listen", address]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("STATUS_ADDRESS_ALREADY_ASSOCIATED")
            && stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
    let unknown = host.ctl(&["close", "77"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("STATUS_NOT_FOUND"));
    // Out-of-range parameters are refused by the argument parser, naming the parameter.
    let bad = host.ctl(&["start", "--listen", "127.0.0.1:0", "--depth", "99"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--depth") && stderr.contains("1..=64"),
        "{stderr}"
    );
    let bad = host.ctl(&["start", "--listen", "127.0.0.1:0", "--buffer", "511"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--buffer") && stderr.contains("512..=65536"),
        "{stderr}"
    );
    // capacity × buffer is capped (256 MiB), both named.
    let bad = host.ctl(&[
        "start",
        "--listen",
        "127.0.0.1:0",
        "--capacity",
        "65536",
        "--buffer",
        "65536",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--capacity 65536") && stderr.contains("--buffer 65536"),
        "{stderr}"
    );
    // `hold` is the old name of `discard`; the buffer's bounds are accepted.
    for (service, buffer) in [("hold", "512"), ("echo", "65536")] {
        let started = host.json(&[
            "start",
            "--listen",
            "127.0.0.1:0",
            "--service",
            service,
            "--buffer",
            buffer,
        ]);
        let expected = if service == "hold" {
            "discard"
        } else {
            service
        };
        assert_eq!(started["service"], expected, "{started}");
        assert_eq!(started["buffer"].to_string(), buffer, "{started}");
    }
    let nobody = Command::new(WSKCTL)
        .args(["--control", "/nonexistent/wsk.sock", "stats"])
        .output()
        .unwrap();
    assert_eq!(
        nobody.status.code(),
        Some(69),
        "the driver cannot be reached"
    );
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("wskctl host"),
        "says how to start one"
    );
    // The environment variable names the socket too.
    let via_env = Command::new(WSKCTL)
        .env("WSKACCEPT_CONTROL", &host.socket)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    assert!(via_env.status.success());
    let (code, _) = host.interrupt();
    assert_eq!(code, 0);
}

fn frame(
    stream: &mut UnixStream,
    code: u32,
    input: &[u8],
    output_len: u32,
) -> Option<(i32, Vec<u8>)> {
    let mut header = Vec::new();
    header.extend_from_slice(&code.to_le_bytes());
    header.extend_from_slice(&u32::try_from(input.len()).unwrap().to_le_bytes());
    header.extend_from_slice(&output_len.to_le_bytes());
    stream.write_all(&header).ok()?;
    stream.write_all(input).ok()?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).ok()?;
    let status = i32::from_le_bytes(reply[..4].try_into().unwrap());
    let mut out = vec![0u8; u32::from_le_bytes(reply[4..].try_into().unwrap()) as usize];
    stream.read_exact(&mut out).ok()?;
    Some((status, out))
}

fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn malformed_frames_get_an_error_or_a_closed_connection_never_a_crash() {
    let host = Host::start("frames");
    // A header cut short, then gone.
    connect(&host.socket).write_all(&[1, 2, 3, 4, 5]).unwrap();
    // Input shorter than announced, then gone.
    let mut s = connect(&host.socket);
    s.write_all(&[0, 0x60, 0x57, 0x8A, 100, 0, 0, 0, 40, 0, 0, 0, 9, 9])
        .unwrap();
    drop(s);
    // Lengths above 1 MiB: an error reply and a closed connection.
    let mut s = connect(&host.socket);
    let mut header = vec![0, 0x60, 0x57, 0x8A];
    header.extend_from_slice(&(2u32 << 20).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    s.write_all(&header).unwrap();
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(
        i32::from_le_bytes(reply[..4].try_into().unwrap()),
        wsk::NtStatus::INVALID_PARAMETER.0
    );
    assert_eq!(s.read(&mut reply).unwrap(), 0, "closed after the error");
    // Little-endian header fields: the driver reads the code it was sent.
    let mut s = connect(&host.socket);
    let (status, out) = frame(&mut s, 0x8A57_6000, &[], 64).unwrap();
    assert_eq!(
        (status, out.len()),
        (0, 40),
        "0x8A576000 is GET_VERSION, little endian on the wire"
    );
    // An unknown code on a good frame; then the same connection keeps working.
    let mut s = connect(&host.socket);
    let (status, _) = frame(&mut s, 0xDEAD_BEEF, &[], 16).unwrap();
    assert_eq!(status, wsk::NtStatus::INVALID_DEVICE_REQUEST.0);
    let (status, out) = frame(&mut s, ioctl::IOCTL_GET_VERSION, &[], 64).unwrap();
    assert_eq!((status, out.len()), (0, 40));
    // Many clients at once.
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let path = host.socket.clone();
            std::thread::spawn(move || {
                let mut s = connect(&path);
                for _ in 0..20 {
                    let (status, _) = frame(&mut s, ioctl::IOCTL_GET_VERSION, &[], 64).unwrap();
                    assert_eq!(status, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(host.ctl(&["version"]).status.success(), "the host survived");
    let (code, stderr) = host.interrupt();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_condition_function_workflow_through_the_binary() {
    use std::io::{BufRead, BufReader};
    let host = Host::start("conditional");
    let started = host.json(&[
        "start",
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "conditional",
        "--decision-timeout-ms",
        "10000",
    ]);
    let id = started["listener"].as_u64().unwrap().to_string();
    let address = started["address"].as_str().unwrap().to_owned();
    // Rules in the order given: ::1 allowed, the rest of IPv6 denied; IPv4 left to the default.
    let policy = host.json(&[
        "policy",
        "set",
        &id,
        "--allow",
        "::1/128",
        "--deny",
        "::/0",
        "--per-source",
        "10",
        "--default",
        "defer",
    ]);
    assert_eq!(policy["default"], "defer");
    assert_eq!(policy["rules"][0]["action"], "allow");
    assert_eq!(policy["rules"][1]["prefix"], "::/0");
    assert_eq!(host.json(&["policy", "show", &id]), policy);
    // A prefix with host bits set is refused before it reaches the driver (which refuses it
    // too: tests/control.rs).
    let bad = host.ctl(&["policy", "set", &id, "--allow", "10.0.0.1/8"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("host bits"));
    // A script decides: accept the first deferred connection, reject the second.
    let mut decider = Command::new(WSKCTL)
        .arg("--control")
        .arg(&host.socket)
        .args(["decide", "--script", "--count", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(decider.stdout.take().unwrap()).lines();
    let mut answers = decider.stdin.take().unwrap();
    let mut first = TcpStream::connect(&address).unwrap();
    let request: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    for field in ["id", "listener", "remote", "local", "waited_ms"] {
        assert!(
            request.get(field).is_some(),
            "decide --script line lacks {field}: {request}"
        );
    }
    assert_eq!(request["remote"], first.local_addr().unwrap().to_string());
    writeln!(answers, "accept").unwrap();
    host.wait_active(Some(&id), 1);
    let mut second = TcpStream::connect(&address).unwrap();
    let _request: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    writeln!(answers, "reject").unwrap();
    assert!(decider.wait().unwrap().success());
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let error = second.read(&mut [0u8; 1]).expect_err("rejected");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    first
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        first.read(&mut [0u8; 1]).is_err(),
        "the accepted connection is held open"
    );
    let stats = host.json(&["stats"]);
    assert_eq!(
        (
            stats["inspect_pended"].as_u64(),
            stats["accepted_conditional"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // A denied IPv6 peer never reaches user mode.
    let (code, stderr) = host.interrupt();
    assert_eq!(code, 0, "{stderr}");
}
