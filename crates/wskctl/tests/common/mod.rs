//! What the end-to-end tests of the real binary share: a `wskctl host` in its own process.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WSKCTL: &str = env!("CARGO_BIN_EXE_wskctl");

/// A running `wskctl host`; killed if the test ends without stopping it.
pub struct Host {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Host {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// A host started with extra `wskctl host` arguments.
    pub fn start_with(name: &str, host_args: &[&str]) -> Self {
        let socket =
            std::env::temp_dir().join(format!("wskctl-test-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(WSKCTL)
            .args(["host", "--control"])
            .arg(&socket)
            .args(host_args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "wskctl host did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            socket,
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(WSKCTL)
            .arg("--control")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "wskctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "wskctl {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn wait_active(&self, listener: Option<&str>, expect: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = match listener {
                Some(id) => self.json(&["stats", "--listener", id]),
                None => self.json(&["stats"]),
            };
            if stats["active"] == expect {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "active never reached {expect}: {stats}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then the exit status and what the host printed.
    pub fn interrupt(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
