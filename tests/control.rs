//! The IOCTL dispatcher: every validation answer, and a property test that no input makes it
//! panic (at least 100,000 cases in CI; set PROPTEST_CASES for more).

mod common;

use std::mem::offset_of;
use std::net::SocketAddr;

use common::*;
use hostkernel::schedule::Schedule;
use ioctl::*;
use proptest::prelude::*;
use wsk::NtStatus;
use wskaccept::control::dispatch;
use wskaccept::engine::Engine;
use zerocopy::{Immutable, IntoBytes};

/// `message`'s bytes with the `u32` at `offset` replaced by `value` (how a test writes an enum
/// value the typed field cannot hold).
fn patched<M: IntoBytes + Immutable>(message: &M, offset: usize, value: u32) -> Vec<u8> {
    let mut bytes = message.as_bytes().to_vec();
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

fn call(engine: &Engine, code: u32, input: &[u8], output_len: usize) -> (NtStatus, Vec<u8>) {
    let mut output = vec![0u8; output_len];
    let (status, written) = dispatch(engine, code, input, &mut output);
    assert!(written <= output_len);
    if !status.is_success() {
        assert_eq!(written, 0, "a failure writes nothing");
    }
    output.truncate(written);
    (status, output)
}

fn start_request(address: &str) -> StartListener {
    StartListener {
        version: VERSION,
        flags: 0,
        address: address.parse::<SocketAddr>().unwrap().into(),
        mode: Mode::Both,
        depth: 0,
        capacity: 8,
        service: Service::Hold,
        decision_timeout_ms: 0,
        buffer: 0,
        reserved: [0; 2],
    }
}

const RECORD: usize = size_of::<ListenerRecord>();

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one table of every validation answer reads best in one place"
)]
fn every_validation_answer() {
    let engine = load(Schedule::from_seed(1));
    let status = |code, input: &[u8], out| call(&engine, code, input, out).0;
    // Unknown codes; a known code with a different access or method is unknown too.
    assert_eq!(
        status(0x1234_5678, &[], 64),
        NtStatus::INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        status(IOCTL_GET_VERSION | 0x3, &[], 64),
        NtStatus::INVALID_DEVICE_REQUEST
    );
    // GET_VERSION takes no input; output too small.
    assert_eq!(
        status(IOCTL_GET_VERSION, &[1], 64),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(IOCTL_GET_VERSION, &[], 8),
        NtStatus::BUFFER_TOO_SMALL
    );
    let (ok, bytes) = call(&engine, IOCTL_GET_VERSION, &[], 64);
    assert_eq!(ok, NtStatus::SUCCESS);
    let version: VersionInfo = ioctl::read(&bytes).unwrap();
    assert_eq!(
        version.bytes_per_entry as usize,
        wskaccept::listener::BYTES_PER_ENTRY
    );
    // START_LISTENER: short, long, version, enums, reserved, flags, address, output size.
    let good = start_request("127.0.0.1:0");
    assert_eq!(
        status(IOCTL_START_LISTENER, &good.as_bytes()[..63], RECORD),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(
            IOCTL_START_LISTENER,
            &[good.as_bytes(), &[0]].concat(),
            RECORD
        ),
        NtStatus::INVALID_PARAMETER
    );
    let bad = |f: fn(&mut StartListener)| {
        let mut m = good;
        f(&mut m);
        call(&engine, IOCTL_START_LISTENER, m.as_bytes(), RECORD).0
    };
    assert_eq!(bad(|m| m.version = 0), NtStatus::REVISION_MISMATCH);
    // Unknown enum values cannot be written through the typed fields: patch the bytes.
    for offset in [
        offset_of!(StartListener, mode),
        offset_of!(StartListener, service),
    ] {
        assert_eq!(
            status(IOCTL_START_LISTENER, &patched(&good, offset, 9), RECORD),
            NtStatus::INVALID_PARAMETER,
            "enum at {offset}"
        );
    }
    assert_eq!(bad(|m| m.reserved[0] = 1), NtStatus::INVALID_PARAMETER);
    assert_eq!(bad(|m| m.flags = 0x80), NtStatus::INVALID_PARAMETER);
    assert_eq!(bad(|m| m.address.family = 10), NtStatus::INVALID_PARAMETER);
    assert_eq!(bad(|m| m.depth = 65), NtStatus::INVALID_PARAMETER);
    assert_eq!(bad(|m| m.depth = 70_000), NtStatus::INVALID_PARAMETER);
    assert_eq!(bad(|m| m.capacity = 65_537), NtStatus::INVALID_PARAMETER);
    // The data buffer: 512..=65,536 bytes (0: the default), or STATUS_INVALID_BUFFER_SIZE.
    assert_eq!(bad(|m| m.buffer = 511), NtStatus::INVALID_BUFFER_SIZE);
    assert_eq!(bad(|m| m.buffer = 65_537), NtStatus::INVALID_BUFFER_SIZE);
    assert_eq!(bad(|m| m.buffer = u32::MAX), NtStatus::INVALID_BUFFER_SIZE);
    // capacity × buffer is capped (nonpaged pool is the whole system's), checked before any
    // allocation.
    assert_eq!(
        bad(|m| {
            m.capacity = 65_536;
            m.buffer = 65_536;
        }),
        NtStatus::INVALID_BUFFER_SIZE
    );
    assert_eq!(bad(|m| m.reserved[1] = 1), NtStatus::INVALID_PARAMETER);
    assert_eq!(
        bad(|m| m.decision_timeout_ms = 700_000),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(IOCTL_START_LISTENER, good.as_bytes(), RECORD - 1),
        NtStatus::BUFFER_TOO_SMALL
    );
    assert_eq!(
        engine.stats().listeners,
        0,
        "a too-small output started nothing"
    );
    // A real start, then the same port again: address in use.
    let (ok, bytes) = call(&engine, IOCTL_START_LISTENER, good.as_bytes(), RECORD);
    assert_eq!(ok, NtStatus::SUCCESS);
    let record: ListenerRecord = ioctl::read(&bytes).unwrap();
    let bound = record.address.to_socket_addr().unwrap();
    assert_ne!(bound.port(), 0, "the port actually bound is reported");
    let again = start_request(&bound.to_string());
    assert_eq!(
        status(IOCTL_START_LISTENER, again.as_bytes(), RECORD),
        NtStatus::ADDRESS_ALREADY_ASSOCIATED
    );
    // Too many listeners.
    for _ in 1..wskaccept::engine::MAX_LISTENERS {
        assert_eq!(
            status(IOCTL_START_LISTENER, good.as_bytes(), RECORD),
            NtStatus::SUCCESS
        );
    }
    assert_eq!(
        status(IOCTL_START_LISTENER, good.as_bytes(), RECORD),
        NtStatus::QUOTA_EXCEEDED
    );
    // Unknown listener and connection ids.
    let unknown = ListenerRequest {
        version: VERSION,
        listener: 0x00AB_CD0F,
        reserved: [0; 2],
    };
    assert_eq!(
        status(IOCTL_STOP_LISTENER, unknown.as_bytes(), 512),
        NtStatus::NOT_FOUND
    );
    assert_eq!(
        status(IOCTL_QUERY_STATS, unknown.as_bytes(), 512),
        NtStatus::NOT_FOUND
    );
    let list = ListConnections {
        version: VERSION,
        listener: 0x00AB_CD0F,
        cursor: 0,
        reserved: [0; 2],
    };
    assert_eq!(
        status(IOCTL_LIST_CONNECTIONS, list.as_bytes(), 4096),
        NtStatus::NOT_FOUND
    );
    let close = CloseConnection {
        version: VERSION,
        flags: 0,
        id: 0x0000_0001_0000_0003,
        reserved: [0; 2],
    };
    assert_eq!(
        status(IOCTL_CLOSE_CONNECTION, close.as_bytes(), 0),
        NtStatus::NOT_FOUND
    );
    // Reserved fields and flags of the other messages.
    let bad_request = ListenerRequest {
        reserved: [0, 1],
        ..unknown
    };
    assert_eq!(
        status(IOCTL_QUERY_STATS, bad_request.as_bytes(), 512),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(
            IOCTL_CLOSE_CONNECTION,
            CloseConnection { flags: 2, ..close }.as_bytes(),
            0
        ),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(
            IOCTL_QUERY_LISTENERS,
            QueryHeader {
                version: VERSION,
                reserved: 7
            }
            .as_bytes(),
            4096
        ),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        status(
            IOCTL_QUERY_LISTENERS,
            QueryHeader {
                version: VERSION + 1,
                reserved: 0
            }
            .as_bytes(),
            4096
        ),
        NtStatus::REVISION_MISMATCH
    );
    // Listing: header only is too small; all listeners with a big buffer.
    let all = ListConnections {
        listener: ALL_LISTENERS,
        ..list
    };
    assert_eq!(
        status(
            IOCTL_LIST_CONNECTIONS,
            all.as_bytes(),
            size_of::<ListHeader>()
        ),
        NtStatus::BUFFER_TOO_SMALL
    );
    let (ok, bytes) = call(
        &engine,
        IOCTL_QUERY_LISTENERS,
        QueryHeader {
            version: VERSION,
            reserved: 0,
        }
        .as_bytes(),
        8192,
    );
    assert_eq!(ok, NtStatus::SUCCESS);
    let header: ListHeader = ioctl::read(&bytes).unwrap();
    assert_eq!(header.count as usize, wskaccept::engine::MAX_LISTENERS);
    conditional_answers(&engine, record.id);
    // Stop everything.
    let everything = ListenerRequest {
        listener: ALL_LISTENERS,
        ..unknown
    };
    assert_eq!(
        status(IOCTL_STOP_LISTENER, everything.as_bytes(), 512),
        NtStatus::SUCCESS
    );
    assert_eq!(engine.stats().listeners, 0);
    unload(engine);
}

/// SET_POLICY / QUERY_POLICY / GET_PENDING / DECIDE answers.
#[allow(
    clippy::too_many_lines,
    reason = "one table of every validation answer reads best in one place"
)]
fn conditional_answers(engine: &Engine, listener: u32) {
    let status = |code, input: &[u8], out| call(engine, code, input, out).0;
    let good = PolicyMessage {
        listener,
        ..PolicyMessage::default()
    };
    assert_eq!(
        status(IOCTL_SET_POLICY, good.as_bytes(), 0),
        NtStatus::SUCCESS
    );
    let rule = |length, address: &str| WireRule {
        action: Action::Accept,
        length,
        address: address.parse::<SocketAddr>().unwrap().into(),
    };
    let with = |f: &dyn Fn(&mut PolicyMessage)| {
        let mut m = good;
        f(&mut m);
        call(engine, IOCTL_SET_POLICY, m.as_bytes(), 0).0
    };
    let one = |r: WireRule| {
        move |m: &mut PolicyMessage| {
            m.rule_count = 1;
            m.rules[0] = r;
        }
    };
    assert_eq!(
        with(&|m| m.rule_count = 65),
        NtStatus::INVALID_PARAMETER,
        "too many rules"
    );
    assert_eq!(
        status(
            IOCTL_SET_POLICY,
            &patched(&good, offset_of!(PolicyMessage, default_action), 3),
            0
        ),
        NtStatus::INVALID_PARAMETER,
        "unknown action"
    );
    assert_eq!(
        with(&one(rule(33, "10.0.0.0:0"))),
        NtStatus::INVALID_PARAMETER,
        "prefix too long"
    );
    assert_eq!(
        with(&one(rule(8, "10.0.0.1:0"))),
        NtStatus::INVALID_PARAMETER,
        "host bits set"
    );
    assert_eq!(
        with(&one(rule(8, "10.0.0.0:80"))),
        NtStatus::INVALID_PARAMETER,
        "a port in a prefix"
    );
    let mut one_rule = good;
    one(rule(8, "10.0.0.0:0"))(&mut one_rule);
    assert_eq!(
        status(
            IOCTL_SET_POLICY,
            &patched(&one_rule, offset_of!(PolicyMessage, rules), 7),
            0
        ),
        NtStatus::INVALID_PARAMETER,
        "unknown rule action"
    );
    assert_eq!(
        with(&one(WireRule {
            action: Action::Defer,
            ..rule(8, "10.0.0.0:0")
        })),
        NtStatus::INVALID_PARAMETER,
        "a rule cannot defer"
    );
    assert_eq!(
        with(&|m| m.rules[5] = rule(8, "10.0.0.0:0")),
        NtStatus::INVALID_PARAMETER,
        "rules beyond the count must be zero"
    );
    assert_eq!(with(&|m| m.listener = 0x00AB_CD0F), NtStatus::NOT_FOUND);
    assert_eq!(with(&|m| m.version = 9), NtStatus::REVISION_MISMATCH);
    let two = |m: &mut PolicyMessage| {
        m.rule_count = 2;
        m.rules[0] = rule(8, "127.0.0.0:0");
        m.rules[1] = WireRule {
            action: Action::Reject,
            ..rule(0, "[::]:0")
        };
        m.default_action = Action::Defer;
        m.per_source = 4;
    };
    assert_eq!(with(&two), NtStatus::SUCCESS);
    let query = ListenerRequest {
        version: VERSION,
        listener,
        reserved: [0; 2],
    };
    let (ok, bytes) = call(
        engine,
        IOCTL_QUERY_POLICY,
        query.as_bytes(),
        size_of::<PolicyMessage>(),
    );
    assert_eq!(ok, NtStatus::SUCCESS);
    let mut expected = good;
    two(&mut expected);
    assert_eq!(
        ioctl::read::<PolicyMessage>(&bytes).unwrap(),
        expected,
        "QUERY_POLICY returns what SET_POLICY set"
    );
    let wait = |timeout_ms| GetPending {
        version: VERSION,
        listener: ALL_LISTENERS,
        timeout_ms,
        reserved: 0,
    };
    assert_eq!(
        status(IOCTL_GET_PENDING, wait(60_001).as_bytes(), 128),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        call(engine, IOCTL_GET_PENDING, wait(0).as_bytes(), 128),
        (NtStatus::SUCCESS, vec![]),
        "nothing pending"
    );
    assert_eq!(
        status(IOCTL_GET_PENDING, wait(0).as_bytes(), 8),
        NtStatus::BUFFER_TOO_SMALL
    );
    let decide = Decide {
        version: VERSION,
        action: Action::Accept,
        id: 0x0000_0001_0000_0000,
        reserved: [0; 2],
    };
    assert_eq!(
        status(IOCTL_DECIDE, decide.as_bytes(), 0),
        NtStatus::NOT_FOUND
    );
    assert_eq!(
        status(
            IOCTL_DECIDE,
            Decide {
                action: Action::Defer,
                ..decide
            }
            .as_bytes(),
            0
        ),
        NtStatus::INVALID_PARAMETER
    );
}

#[test]
fn listing_pages_through_any_table_size_with_a_small_buffer() {
    let engine = load(Schedule::from_seed(2));
    let (_, bytes) = call(
        &engine,
        IOCTL_START_LISTENER,
        start_request("127.0.0.1:0").as_bytes(),
        RECORD,
    );
    let record: ListenerRecord = ioctl::read(&bytes).unwrap();
    let address = record.address.to_socket_addr().unwrap();
    let _clients = connect_all(address, 7);
    wait_until("accepted", std::time::Duration::from_secs(5), || {
        engine.stats().active == 7
    });
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let request = ListConnections {
            version: VERSION,
            listener: record.id,
            cursor,
            reserved: [0; 2],
        };
        // Room for two records per call.
        let (ok, bytes) = call(
            &engine,
            IOCTL_LIST_CONNECTIONS,
            request.as_bytes(),
            size_of::<ListHeader>() + 2 * size_of::<ConnectionRecord>() + 5,
        );
        assert_eq!(ok, NtStatus::SUCCESS);
        let header: ListHeader = ioctl::read(&bytes).unwrap();
        assert!(header.count <= 2);
        for chunk in bytes[size_of::<ListHeader>()..].chunks_exact(size_of::<ConnectionRecord>()) {
            let conn: ConnectionRecord = ioctl::read(chunk).unwrap();
            assert_eq!(conn.local.to_socket_addr().unwrap(), address);
            seen.push(conn.id);
        }
        if header.flags & LIST_MORE == 0 {
            break;
        }
        cursor = header.next_cursor;
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 7);
    let close = CloseConnection {
        version: VERSION,
        flags: CLOSE_ABORTIVE,
        id: seen[0],
        reserved: [0; 2],
    };
    assert_eq!(
        call(&engine, IOCTL_CLOSE_CONNECTION, close.as_bytes(), 0).0,
        NtStatus::SUCCESS
    );
    wait_until("closed", std::time::Duration::from_secs(2), || {
        engine.stats().active == 6
    });
    assert_eq!(
        call(&engine, IOCTL_CLOSE_CONNECTION, close.as_bytes(), 0).0,
        NtStatus::NOT_FOUND,
        "stale"
    );
    unload(engine);
}

fn any_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(IMPLEMENTED.to_vec()),
        1 => prop::sample::select(vec![IOCTL_GET_VERSION | 0x3, IOCTL_START_LISTENER | 0x2, 0]),
        1 => any::<u32>(),
    ]
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    // Random bytes of the message sizes (to get past the size check), with a valid version half the
    // time (to get past the version check), and of any other size.
    let sizes = prop::sample::select(vec![0usize, 8, 16, 24, 40, 64, 72, 2080]);
    prop_oneof![
        3 => (sizes.prop_flat_map(|size| prop::collection::vec(any::<u8>(), size)), any::<bool>()).prop_map(|(mut bytes, versioned)| {
            if versioned && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&VERSION.to_le_bytes());
            }
            bytes
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        // Nearly-valid starts on loopback with a small table.
        1 => (0u32..5, 0u32..3, 0u32..80, 0u32..32, any::<bool>()).prop_map(|(mode, service, depth, capacity, v6)| {
            let address = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
            let request = StartListener { depth, capacity: capacity.max(1), ..start_request(address) };
            let bytes = patched(&request, offset_of!(StartListener, mode), mode);
            let mut bytes = bytes;
            bytes[offset_of!(StartListener, service)..][..4].copy_from_slice(&service.to_le_bytes());
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(100_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the code and the bytes, the dispatcher answers with a status and never writes
    /// more than it was given (the test harness would report a panic).
    #[test]
    fn the_dispatcher_never_panics(code in any_code(), input in any_input(), output_len in 0usize..2048) {
        static ENGINE: std::sync::OnceLock<wskaccept::kernel::PoolBox<Engine>> = std::sync::OnceLock::new();
        let engine = ENGINE.get_or_init(|| load(Schedule::from_seed(3)));
        let (status, _) = call(engine, code, &input, output_len);
        if status.is_success() && code == IOCTL_START_LISTENER && engine.stats().listeners > 8 {
            // Keep the listener count low so starts keep reaching the deep paths.
            let all = ListenerRequest { version: VERSION, listener: ALL_LISTENERS, reserved: [0; 2] };
            call(engine, IOCTL_STOP_LISTENER, all.as_bytes(), 512);
        }
    }
}
