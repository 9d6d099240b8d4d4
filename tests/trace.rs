//! The driver's trace on the host: each refusal reason shows as a `refused` event with that
//! reason and the peer, and the life of a listener and failed IOCTLs show too. The events are
//! captured by a `tracing` layer of this test, from the real accept paths with real clients.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};
use wskaccept::control::dispatch;
use wskaccept::engine::Engine;
use wskaccept::listener::{ListenerConfig, ListenerInfo, Mode};
use wskaccept::pending::PENDING_CAPACITY;
use wskaccept::policy::{Action, Policy, Prefix, Rule};

/// One captured event: its message and fields, as text.
type Record = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Record>>>);

struct Fields<'a>(&'a mut Record);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "wskaccept" {
            return;
        }
        let mut record = Record::new();
        record.insert("level".into(), event.metadata().level().to_string());
        event.record(&mut Fields(&mut record));
        self.0.lock().unwrap().push(record);
    }
}

impl Capture {
    /// The process's capture, installed once (events come from the provider's and the worker's
    /// threads too, so the subscriber is the global one), emptied for the calling test: under
    /// `cargo test` the tests of this binary share the process, one at a time.
    fn install() -> Self {
        static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        let capture = CAPTURE.get_or_init(|| {
            let capture = Self::default();
            tracing::subscriber::set_global_default(Registry::default().with(capture.clone()))
                .expect("the only subscriber of this test process");
            capture
        });
        capture.0.lock().unwrap().clear();
        capture.clone()
    }

    fn events(&self, message: &str) -> Vec<Record> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.get("message").is_some_and(|m| m == message))
            .cloned()
            .collect()
    }

    /// Waits until a `refused` event with `reason` has been traced, and returns it.
    fn refused(&self, reason: &str) -> Record {
        let mut found = None;
        wait_until(
            &format!("a refused event, reason {reason}"),
            Duration::from_secs(10),
            || {
                found = self
                    .events("refused")
                    .into_iter()
                    .find(|r| r.get("reason").is_some_and(|v| v == reason));
                found.is_some()
            },
        );
        found.unwrap()
    }
}

fn start_with(engine: &Engine, mode: Mode, capacity: u32, policy: &Policy) -> ListenerInfo {
    let mut config = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.mode = mode;
    config.capacity = capacity;
    engine
        .start_listener_with_policy(config, *policy)
        .expect("listener start")
}

fn deny_loopback() -> Policy {
    let prefix = Prefix::new("127.0.0.0".parse().unwrap(), 8).unwrap();
    Policy::new(
        &[Rule {
            allow: false,
            prefix,
        }],
        Action::Accept,
        0,
    )
    .unwrap()
}

#[test]
fn every_refusal_reason_is_traced_with_its_reason_and_peer() {
    let capture = Capture::install();
    let engine = load(Schedule::from_seed(21));

    // Full: capacity 1, two clients.
    let full = start_with(&engine, Mode::Irp, 1, &Policy::default());
    let held = TcpStream::connect(full.address).unwrap();
    let refused = TcpStream::connect(full.address).unwrap();
    let record = capture.refused("full");
    assert_eq!(record["listener"], full.id.to_string());
    assert_eq!(record["level"], "WARN");
    assert!(record["remote"].starts_with("127.0.0.1:"), "{record:?}");
    let refused_port = refused.local_addr().unwrap().port().to_string();
    assert!(
        record["remote"].ends_with(&refused_port),
        "the refused client: {record:?}"
    );

    // Policy: the condition function denies loopback.
    let policy = start_with(&engine, Mode::Conditional, 8, &deny_loopback());
    let _denied = TcpStream::connect(policy.address);
    assert_eq!(capture.refused("policy")["listener"], policy.id.to_string());

    // Source limit: one connection per source.
    let limited = start_with(
        &engine,
        Mode::Both,
        8,
        &Policy::new(&[], Action::Accept, 1).unwrap(),
    );
    let first = TcpStream::connect(limited.address).unwrap();
    let _second = TcpStream::connect(limited.address).unwrap();
    assert_eq!(
        capture.refused("source_limit")["listener"],
        limited.id.to_string()
    );

    // Pending full: every connection deferred, one more than the queue holds.
    let deferring = start_with(
        &engine,
        Mode::Conditional,
        128,
        &Policy::new(&[], Action::Defer, 0).unwrap(),
    );
    let waiting: Vec<_> = (0..=PENDING_CAPACITY)
        .map(|_| TcpStream::connect(deferring.address).unwrap())
        .collect();
    assert_eq!(
        capture.refused("pending_full")["listener"],
        deferring.id.to_string()
    );

    drop((held, refused, first, waiting));
    unload(engine);
}

#[test]
fn listener_life_and_failed_ioctls_are_traced() {
    let capture = Capture::install();
    let engine = load(Schedule::from_seed(22));
    let info = start_with(&engine, Mode::Both, 8, &Policy::default());
    let started = capture.events("listener_started");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["listener"], info.id.to_string());
    assert_eq!(started[0]["address"], info.address.to_string());
    assert_eq!(started[0]["level"], "INFO");

    // A second listener on the same port fails to start.
    let mut config = ListenerConfig::new(info.address);
    config.mode = Mode::Both;
    assert!(engine.start_listener(config).is_err());
    let failed = capture.events("listener_start_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["status"].contains("STATUS_ADDRESS_ALREADY_ASSOCIATED"),
        "{failed:?}"
    );

    // An IOCTL the driver refuses.
    let mut output = [0u8; 64];
    let (status, _) = dispatch(&engine, 0x1234_5678, &[], &mut output);
    assert!(!status.is_success());
    let ioctl = capture.events("ioctl_failed");
    assert_eq!(ioctl.len(), 1, "{ioctl:?}");
    assert_eq!(ioctl[0]["code"], "0x12345678");

    engine.stop_listener(info.id).unwrap();
    let stopped = capture.events("listener_stopped");
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0]["listener"], info.id.to_string());
    unload(engine);
}
