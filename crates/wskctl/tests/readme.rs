//! Runs the README's commands as written (the only substitutions: the built binary for
//! `cargo run … -p wskctl --`, a free port for 7007 (7008 in the echo example), and
//! WSKACCEPT_CONTROL for a private socket). The echo example runs the stock clients it names:
//! python3 and socat.
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WSKCTL: &str = env!("CARGO_BIN_EXE_wskctl");
const MARKER: &str = "<!-- readme-commands:";

fn readme_commands(marker: &str) -> (String, Vec<String>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let host = readme
        .lines()
        .find(|l| l.trim().ends_with("-p wskctl -- host"))
        .expect("README names the host command")
        .trim()
        .to_owned();
    let after = &readme[readme.find(marker).expect("README marks its commands")..];
    let block = after
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    (
        host,
        block
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty())
            .collect(),
    )
}

fn substitute(line: &str, readme_port: &str, port: u16) -> String {
    line.replace("cargo run -q --release -p wskctl --", WSKCTL)
        .replace("cargo run --release -p wskctl --", WSKCTL)
        .replace(readme_port, &port.to_string())
}

/// Runs a README block against a `wskctl host` of its own; returns each foreground command's
/// standard output.
fn run_block(marker: &str, readme_port: &str) -> (u16, Vec<String>) {
    let (host_line, commands) = readme_commands(marker);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = std::env::temp_dir().join(format!(
        "wskctl-readme-{}-{readme_port}.sock",
        std::process::id()
    ));
    let run = |line: &str| {
        let mut command = Command::new("sh");
        // `exec`: signals and kills reach the command itself, not a shell around it.
        command
            .arg("-c")
            .arg(format!("exec {line}"))
            .env("WSKACCEPT_CONTROL", &socket);
        command
    };
    let mut host: Child = run(&substitute(&host_line, readme_port, port))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the host command did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut background = Vec::new();
    let mut outputs = Vec::new();
    for command in &commands {
        let line = substitute(command, readme_port, port);
        if let Some(job) = line.trim().strip_suffix('&') {
            background.push(run(job).spawn().unwrap());
            // The README's background jobs are clients that stay connected: a person types the
            // next command once theirs is up. Wait for that rather than guess how long a Python
            // start takes on a loaded machine.
            wait_for_active(&socket, background.len());
            continue;
        }
        // `sh -c "exec a | b"` would exec only into the first command's shell: run pipelines
        // as they are.
        let out = if line.contains('|') {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(&line)
                .env("WSKACCEPT_CONTROL", &socket);
            command.output().unwrap()
        } else {
            run(&line).output().unwrap()
        };
        assert!(
            out.status.success(),
            "README command failed: {command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    for mut job in background {
        let _ = job.kill();
        let _ = job.wait();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(host.id()).unwrap(), libc::SIGINT) };
    let _ = host.wait();
    let _ = std::fs::remove_file(&socket);
    (port, outputs)
}

/// Waits (at most 20 s) until the host's driver has at least `clients` active connections.
fn wait_for_active(socket: &std::path::Path, clients: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(WSKCTL)
            .env("WSKACCEPT_CONTROL", socket)
            .args(["stats", "--json"])
            .output()
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let active = stats["active"].as_u64().unwrap_or(0);
        if active >= u64::try_from(clients).unwrap() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the README's background client did not connect: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_commands_work_as_written() {
    let (port, outputs) = run_block(MARKER, "7007");
    assert!(
        outputs.iter().any(|o| o.contains("connections 1,")),
        "stats shows the client: {outputs:?}"
    );
    assert!(
        outputs
            .last()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "list shows the connection: {outputs:?}"
    );
}

#[test]
fn the_readme_echo_example_works_as_written_with_python_and_socat() {
    let (_, outputs) = run_block("<!-- readme-commands: echo", "7008");
    assert!(
        outputs[0].contains("service echo, buffer 4096"),
        "{outputs:?}"
    );
    assert_eq!(outputs[1], "hello, kernel\n", "python's echo");
    assert_eq!(outputs[2], "hello from socat\n", "socat's echo");
    let stats = &outputs[3];
    let expected = "hello, kernel\nhello from socat\n".len();
    assert!(
        stats.contains(&format!("bytes in {expected}, bytes out {expected}")),
        "stats counts the echoed bytes: {stats}"
    );
    assert!(stats.contains("by peer FIN 2"), "{stats}");
}
