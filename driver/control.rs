//! IOCTL dispatch: `(code, input bytes, output buffer) → (NTSTATUS, bytes written)`. The same
//! function serves the KMDF queue on Windows and the control socket of `wskctl host`. It never
//! panics on any input (property-tested with arbitrary codes and bytes), and it checks the output
//! size before it changes anything, so a too-small buffer never leaves a half-done change.
//! IRQL: PASSIVE_LEVEL.

use core::mem::size_of;
use core::net::{IpAddr, SocketAddr};

use ioctl::{
    ALL_LISTENERS, CLOSE_ABORTIVE, CloseConnection, ConnectionRecord, Decide, GetPending,
    LIST_MORE, ListConnections, ListHeader, ListenerRecord, ListenerRequest, MAX_RULES,
    PendingRecord, PolicyMessage, QueryHeader, START_DUAL_STACK, StartListener, StatsRecord,
    VERSION, VersionInfo, WireRule, emit, parse,
};
use wsk::NtStatus;

use crate::engine::{ConnRecord, Engine, MAX_LISTENERS};
use crate::kernel;
use crate::listener::{self, DEFAULT_CAPACITY, DEFAULT_DEPTH, ListenerConfig, ListenerInfo, Phase};
use crate::pending::PendingId;
use crate::policy::{Action, Policy, Prefix, Rule};
use crate::table::ConnId;
use crate::trace;

/// Dispatches one DeviceIoControl.
pub fn dispatch(engine: &Engine, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
    let result = match code {
        ioctl::IOCTL_GET_VERSION => version(input, output),
        ioctl::IOCTL_START_LISTENER => start(engine, input, output),
        ioctl::IOCTL_STOP_LISTENER => stop(engine, input, output),
        ioctl::IOCTL_QUERY_LISTENERS => listeners(engine, input, output),
        ioctl::IOCTL_QUERY_STATS => stats(engine, input, output),
        ioctl::IOCTL_LIST_CONNECTIONS => connections(engine, input, output),
        ioctl::IOCTL_CLOSE_CONNECTION => close(engine, input, output),
        ioctl::IOCTL_SET_POLICY => set_policy(engine, input),
        ioctl::IOCTL_QUERY_POLICY => query_policy(engine, input, output),
        ioctl::IOCTL_GET_PENDING => get_pending(engine, input, output),
        ioctl::IOCTL_DECIDE => decide(engine, input),
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    };
    match result {
        Ok(written) => (NtStatus::SUCCESS, written),
        Err(status) => {
            trace::emit(trace::Event::IoctlFailed { code, status });
            (status, 0)
        }
    }
}

fn room_for<T>(output: &[u8]) -> Result<(), NtStatus> {
    if output.len() < size_of::<T>() {
        Err(NtStatus::BUFFER_TOO_SMALL)
    } else {
        Ok(())
    }
}

fn version(input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    if !input.is_empty() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let info = VersionInfo {
        version: VERSION,
        major: 0,
        minor: 1,
        patch: 0,
        reserved0: 0,
        max_listeners: u32::try_from(MAX_LISTENERS).unwrap_or(u32::MAX),
        max_capacity: listener::MAX_CAPACITY,
        max_depth: u32::from(listener::MAX_DEPTH),
        bytes_per_entry: u32::try_from(listener::BYTES_PER_ENTRY).unwrap_or(u32::MAX),
        reserved: [0; 3],
    };
    emit(&info, output)
}

/// The listener's phase as user mode sees it: starting counts as restarting (not accepting
/// yet), stopped as stopping (about to go).
fn wire_phase(phase: Phase) -> ioctl::Phase {
    match phase {
        Phase::Running => ioctl::Phase::Running,
        Phase::Starting | Phase::Restarting => ioctl::Phase::Restarting,
        Phase::Failed => ioctl::Phase::Failed,
        Phase::Stopping | Phase::Stopped => ioctl::Phase::Stopping,
    }
}

fn record(info: &ListenerInfo) -> ListenerRecord {
    ListenerRecord {
        version: VERSION,
        id: info.id,
        address: info.address.into(),
        mode: info.config.mode,
        service: info.config.service,
        depth: u32::from(info.config.depth),
        capacity: info.config.capacity,
        phase: wire_phase(info.phase),
        active: info.active,
        peak: info.peak,
        accept_irps_pending: info.accept_irps_pending,
        last_error: info.last_error.0,
        flags: if info.config.dual_stack {
            START_DUAL_STACK
        } else {
            0
        },
        buffer: info.config.buffer,
        reserved: 0,
        counters: info.counters.to_wire(),
    }
}

fn start(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: StartListener = parse(input)?;
    room_for::<ListenerRecord>(output)?;
    let address: SocketAddr = request.address.to_socket_addr()?;
    let mut config = ListenerConfig::new(address);
    config.dual_stack = request.flags & START_DUAL_STACK != 0;
    config.mode = request.mode;
    config.service = request.service;
    config.depth = match request.depth {
        0 => DEFAULT_DEPTH,
        depth => u16::try_from(depth).map_err(|_| NtStatus::INVALID_PARAMETER)?,
    };
    if request.decision_timeout_ms != 0 {
        config.decision_timeout_ms = request.decision_timeout_ms;
    }
    config.capacity = if request.capacity == 0 {
        DEFAULT_CAPACITY
    } else {
        request.capacity
    };
    if request.buffer != 0 {
        config.buffer = request.buffer;
    }
    let info = engine.start_listener(config)?;
    emit(&record(&info), output)
}

fn stop(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: ListenerRequest = parse(input)?;
    room_for::<StatsRecord>(output)?;
    let counters = if request.listener == ALL_LISTENERS {
        // One at a time through `stop_listener`, which waits without the control lock, so that
        // `wskctl stop` can watch (a listener that went away meanwhile is not an error).
        let mut ids = [0u32; MAX_LISTENERS];
        let mut count = 0;
        engine.listeners_info(|info| {
            if let Some(id) = ids.get_mut(count) {
                *id = info.id;
                count += 1;
            }
        });
        for &id in &ids[..count] {
            let _ = engine.stop_listener(id);
        }
        engine.stats().counters
    } else {
        engine.stop_listener(request.listener)?
    };
    let stats = StatsRecord {
        version: VERSION,
        counters: counters.to_wire(),
        ..StatsRecord::default()
    };
    emit(&stats, output)
}

fn listeners(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let _: QueryHeader = parse(input)?;
    room_for::<ListHeader>(output)?;
    let (header_bytes, mut rest) = output.split_at_mut(size_of::<ListHeader>());
    let mut header = ListHeader {
        version: VERSION,
        ..ListHeader::default()
    };
    let mut written = size_of::<ListHeader>();
    engine.listeners_info(|info| {
        if let Ok(n) = emit(&record(&info), rest) {
            rest = &mut core::mem::take(&mut rest)[n..];
            header.count += 1;
            written += n;
        } else {
            header.flags |= LIST_MORE;
        }
    });
    emit(&header, header_bytes)?;
    Ok(written)
}

fn stats(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: ListenerRequest = parse(input)?;
    room_for::<StatsRecord>(output)?;
    let stats = if request.listener == ALL_LISTENERS {
        let s = engine.stats();
        StatsRecord {
            version: VERSION,
            listeners: s.listeners,
            active: s.active,
            peak: s.peak,
            accept_irps_pending: s.accept_irps_pending,
            reserved: 0,
            counters: s.counters.to_wire(),
        }
    } else {
        let info = engine.listener_info(request.listener)?;
        StatsRecord {
            version: VERSION,
            listeners: 1,
            active: info.active,
            peak: info.peak,
            accept_irps_pending: info.accept_irps_pending,
            reserved: 0,
            counters: info.counters.to_wire(),
        }
    };
    emit(&stats, output)
}

/// Records fetched from the engine per call while listing: the listing allocates nothing, so
/// its cost in memory is this fixed stack buffer whatever OutputBufferLength the caller names.
const LIST_BATCH: usize = 16;

fn connections(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: ListConnections = parse(input)?;
    room_for::<ListHeader>(output)?;
    let room = (output.len() - size_of::<ListHeader>()) / size_of::<ConnectionRecord>();
    if room == 0 {
        // Room for the header only would answer "more" forever.
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    let listener = (request.listener != ALL_LISTENERS).then_some(request.listener);
    let now = kernel::interrupt_time();
    let (header_bytes, mut rest) = output.split_at_mut(size_of::<ListHeader>());
    let mut count = 0;
    let mut cursor = Some(request.cursor);
    while let Some(from) = cursor {
        if count == room {
            break;
        }
        let mut batch: [Option<ConnRecord>; LIST_BATCH] = [None; LIST_BATCH];
        let want = (room - count).min(LIST_BATCH);
        let (found, next) = engine.list_connections(listener, from, &mut batch[..want])?;
        for record in batch.iter().take(found).flatten() {
            let wire = ConnectionRecord {
                id: record.id.0,
                listener: record.listener,
                path: record.info.path,
                remote: record.info.remote.into(),
                local: record.info.local.into(),
                age_ms: now.saturating_sub(record.info.accepted_at) / 10_000,
                bytes_in: record.bytes_in,
                bytes_out: record.bytes_out,
            };
            let n = emit(&wire, rest)?;
            rest = &mut core::mem::take(&mut rest)[n..];
        }
        count += found;
        cursor = next;
    }
    let header = ListHeader {
        version: VERSION,
        count: u32::try_from(count).unwrap_or(u32::MAX),
        flags: if cursor.is_some() { LIST_MORE } else { 0 },
        reserved: 0,
        next_cursor: cursor.unwrap_or(0),
    };
    emit(&header, header_bytes)?;
    Ok(size_of::<ListHeader>() + count * size_of::<ConnectionRecord>())
}

fn close(engine: &Engine, input: &[u8], _output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: CloseConnection = parse(input)?;
    engine.close_connection(ConnId(request.id), request.flags & CLOSE_ABORTIVE != 0)?;
    Ok(0)
}

fn policy_of(message: &PolicyMessage) -> Result<Policy, NtStatus> {
    let mut rules = [Rule {
        allow: true,
        prefix: Prefix::new(IpAddr::from([0u8; 4]), 0)?,
    }; MAX_RULES];
    let count = message.rule_count as usize;
    for (slot, wire) in rules.iter_mut().zip(&message.rules[..count]) {
        let (address, length) = wire.prefix()?;
        *slot = Rule {
            allow: wire.action == Action::Accept,
            prefix: Prefix::new(address, length)?,
        };
    }
    Policy::new(&rules[..count], message.default_action, message.per_source)
}

fn set_policy(engine: &Engine, input: &[u8]) -> Result<usize, NtStatus> {
    let message: PolicyMessage = parse(input)?;
    engine.set_policy(message.listener, policy_of(&message)?)?;
    Ok(0)
}

fn query_policy(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: ListenerRequest = parse(input)?;
    room_for::<PolicyMessage>(output)?;
    let policy = engine.policy(request.listener)?;
    let mut message = PolicyMessage {
        listener: request.listener,
        default_action: policy.default,
        per_source: policy.per_source,
        ..PolicyMessage::default()
    };
    for (wire, rule) in message.rules.iter_mut().zip(policy.rules()) {
        *wire = WireRule {
            action: if rule.allow {
                Action::Accept
            } else {
                Action::Reject
            },
            length: u32::from(rule.prefix.length),
            address: SocketAddr::new(rule.prefix.address, 0).into(),
        };
        message.rule_count += 1;
    }
    emit(&message, output)
}

fn get_pending(engine: &Engine, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
    let request: GetPending = parse(input)?;
    let timeout = core::time::Duration::from_millis(u64::from(request.timeout_ms));
    // A success code with no output when none came: the WSAEWOULDBLOCK case.
    Ok(answer_pending(engine, &request, timeout, output)?.unwrap_or(0))
}

/// GET_PENDING without waiting, for the KMDF inverted call: `Some(bytes written)` when a request
/// was handed over, `None` when the caller should park the IOCTL in its manual queue and retry
/// when the driver signals a new deferral. IRQL: PASSIVE_LEVEL.
///
/// # Errors
/// The validation answers of GET_PENDING, STATUS_CANCELLED when the listener stopped or the driver
/// is unloading, STATUS_NOT_FOUND for an unknown listener.
pub fn try_get_pending(
    engine: &Engine,
    input: &[u8],
    output: &mut [u8],
) -> Result<Option<usize>, NtStatus> {
    let request: GetPending = parse(input)?;
    answer_pending(engine, &request, core::time::Duration::ZERO, output)
}

fn answer_pending(
    engine: &Engine,
    request: &GetPending,
    timeout: core::time::Duration,
    output: &mut [u8],
) -> Result<Option<usize>, NtStatus> {
    room_for::<PendingRecord>(output)?;
    let listener = (request.listener != ALL_LISTENERS).then_some(request.listener);
    let (listener, info) = match engine.get_pending(listener, timeout) {
        Ok(found) => found,
        Err(NtStatus::TIMEOUT) => return Ok(None),
        Err(status) => return Err(status),
    };
    let record = PendingRecord {
        version: VERSION,
        listener,
        id: info.id.0,
        remote: info.remote.into(),
        local: info.local.into(),
        waited_ms: kernel::interrupt_time().saturating_sub(info.arrived_at) / 10_000,
    };
    emit(&record, output).map(Some)
}

fn decide(engine: &Engine, input: &[u8]) -> Result<usize, NtStatus> {
    let request: Decide = parse(input)?;
    engine.decide(PendingId(request.id), request.action == Action::Accept)?;
    Ok(0)
}
