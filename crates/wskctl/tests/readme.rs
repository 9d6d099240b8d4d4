//! Runs the README's commands as written (the only substitutions: the built binary for
//! `cargo run … -p wskctl --`, a free port for 7007, and WSKACCEPT_CONTROL for a private socket).
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WSKCTL: &str = env!("CARGO_BIN_EXE_wskctl");
const MARKER: &str = "<!-- readme-commands:";

fn readme_commands() -> (String, Vec<String>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let host = readme
        .lines()
        .find(|l| l.trim().ends_with("-p wskctl -- host"))
        .expect("README names the host command")
        .trim()
        .to_owned();
    let after = &readme[readme.find(MARKER).expect("README marks its commands")..];
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

fn substitute(line: &str, port: u16) -> String {
    line.replace("cargo run -q --release -p wskctl --", WSKCTL)
        .replace("cargo run --release -p wskctl --", WSKCTL)
        .replace("7007", &port.to_string())
}

#[test]
fn the_readme_commands_work_as_written() {
    let (host_line, commands) = readme_commands();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = std::env::temp_dir().join(format!("wskctl-readme-{}.sock", std::process::id()));
    let run = |line: &str| {
        let mut command = Command::new("sh");
        // `exec`: signals and kills reach the command itself, not a shell around it.
        command
            .arg("-c")
            .arg(format!("exec {line}"))
            .env("WSKACCEPT_CONTROL", &socket);
        command
    };
    let mut host: Child = run(&substitute(&host_line, port))
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
        let line = substitute(command, port);
        if let Some(job) = line.trim().strip_suffix('&') {
            background.push(run(job).spawn().unwrap());
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        let out = run(&line).output().unwrap();
        assert!(
            out.status.success(),
            "README command failed: {command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("active") && o.contains(" 1")),
        "stats shows the client: {outputs:?}"
    );
    assert!(
        outputs
            .last()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "list shows the connection: {outputs:?}"
    );
    for mut job in background {
        let _ = job.kill();
        let _ = job.wait();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(host.id()).unwrap(), libc::SIGINT) };
    let _ = host.wait();
    let _ = std::fs::remove_file(&socket);
}
