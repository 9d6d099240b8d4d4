//! The echo client: streams (every connection writes and reads back at once, verifying every
//! byte) and a 64-byte ping-pong for request/response latency. The same client runs against every
//! target.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Bytes a client writes or reads at a time, at most.
pub const MAX_IO: usize = 64 * 1024;
/// The pattern repeats every this many bytes (prime, so it does not line up with I/O sizes).
const PERIOD: usize = 65_521;
/// How long a read may wait before the connection counts as failed.
const STALL: Duration = Duration::from_secs(30);
/// Bytes of a ping (and of its pong).
pub const PING: usize = 64;

/// The byte stream every connection sends: `pattern[(offset + shift) % PERIOD]`, stored with
/// `MAX_IO` bytes of overhang so that any I/O-sized window is one contiguous slice.
pub struct Pattern(Vec<u8>);

impl Pattern {
    /// A fixed pseudo-random pattern (xorshift), the same in every run.
    #[must_use]
    pub fn new() -> Arc<Self> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let period: Vec<u8> = (0..PERIOD)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect();
        Arc::new(Self(
            (0..PERIOD + MAX_IO).map(|i| period[i % PERIOD]).collect(),
        ))
    }

    /// The `len` (<= `MAX_IO`) bytes at stream offset `offset` of the stream shifted by `shift`.
    #[must_use]
    pub fn window(&self, offset: u64, shift: usize, len: usize) -> &[u8] {
        #[allow(clippy::cast_possible_truncation)]
        let start = ((offset % PERIOD as u64) as usize + shift) % PERIOD;
        &self.0[start..start + len.min(MAX_IO)]
    }
}

/// One streaming measurement.
pub struct StreamRun {
    /// From the moment every connection was open to the last connection's EOF.
    pub elapsed: Duration,
    /// Bytes that came back and matched what was sent, all connections.
    pub verified: u64,
    /// Connections that failed: connect or I/O error, a mismatch, or a short echo.
    pub errors: usize,
}

/// `connections` connections each send `per_connection` bytes in writes of `write_size` while
/// reading the echo back and comparing it, then half-close and read until the server's EOF.
#[must_use]
pub fn stream(
    address: SocketAddr,
    connections: usize,
    per_connection: u64,
    write_size: usize,
    pattern: &Arc<Pattern>,
) -> StreamRun {
    let write_size = write_size.clamp(1, MAX_IO);
    let mut streams = Vec::with_capacity(connections);
    let mut errors = 0;
    for _ in 0..connections {
        match TcpStream::connect(address) {
            // A stalled echo fails the connection instead of hanging the benchmark.
            Ok(stream) if stream.set_read_timeout(Some(STALL)).is_ok() => {
                match stream.try_clone() {
                    Ok(writer) => streams.push((stream, writer)),
                    Err(_) => errors += 1,
                }
            }
            _ => errors += 1,
        }
    }
    // Every writer, every reader and this thread start together.
    let barrier = Arc::new(Barrier::new(2 * streams.len() + 1));
    let mut readers = Vec::with_capacity(streams.len());
    for (index, (stream, mut writer)) in streams.into_iter().enumerate() {
        let shift = (index * 4_099) % PERIOD;
        let (pattern_w, barrier_w) = (pattern.clone(), barrier.clone());
        let written = std::thread::spawn(move || {
            barrier_w.wait();
            let started = Instant::now();
            let mut offset = 0u64;
            while offset < per_connection {
                #[allow(clippy::cast_possible_truncation)]
                let len = (per_connection - offset).min(write_size as u64) as usize;
                if writer
                    .write_all(pattern_w.window(offset, shift, len))
                    .is_err()
                {
                    return (started, false);
                }
                offset += len as u64;
            }
            (started, writer.shutdown(Shutdown::Write).is_ok())
        });
        let (pattern_r, barrier_r) = (pattern.clone(), barrier.clone());
        readers.push(std::thread::spawn(move || {
            barrier_r.wait();
            let verified = read_back(stream, &pattern_r, shift);
            let finished = Instant::now();
            let (started, wrote) = written.join().unwrap_or((finished, false));
            (verified, wrote, started, finished)
        }));
    }
    // The clock runs from the first write to the last EOF, as the clients saw them (this thread
    // may be scheduled long after the barrier opens when there are many clients).
    let ready = Instant::now();
    barrier.wait();
    let (mut first, mut last) = (None::<Instant>, ready);
    let mut verified = 0;
    for reader in readers {
        let Ok((read, wrote, started, finished)) = reader.join() else {
            errors += 1;
            continue;
        };
        first = Some(first.map_or(started, |f| f.min(started)));
        last = last.max(finished);
        match read {
            Some(bytes) if wrote && bytes == per_connection => verified += bytes,
            Some(bytes) => {
                verified += bytes;
                errors += 1;
            }
            None => errors += 1,
        }
    }
    StreamRun {
        elapsed: last.saturating_duration_since(first.unwrap_or(ready)),
        verified,
        errors,
    }
}

/// Reads until EOF, checking every byte against the pattern; `None` on an error or a mismatch.
fn read_back(mut stream: TcpStream, pattern: &Pattern, shift: usize) -> Option<u64> {
    let mut buffer = vec![0u8; MAX_IO];
    let mut offset = 0u64;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(offset),
            Ok(n) => {
                if buffer[..n] != *pattern.window(offset, shift, n) {
                    return None;
                }
                offset += n as u64;
            }
            Err(_) => return None,
        }
    }
}

/// `round_trips` 64-byte pings on one connection (`TCP_NODELAY`), each answered by its echo
/// before the next is sent; the round-trip times, or `None` when any echo was wrong or the server
/// did not close after the client's FIN.
#[must_use]
pub fn ping_pong(
    address: SocketAddr,
    round_trips: usize,
    pattern: &Pattern,
) -> Option<Vec<Duration>> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(STALL)).ok()?;
    let mut echoed = [0u8; PING];
    let mut times = Vec::with_capacity(round_trips);
    for trip in 0..round_trips {
        let request = pattern.window(trip as u64 * PING as u64, 0, PING);
        let sent = Instant::now();
        stream.write_all(request).ok()?;
        stream.read_exact(&mut echoed).ok()?;
        times.push(sent.elapsed());
        if echoed != *request {
            return None;
        }
    }
    stream.shutdown(Shutdown::Write).ok()?;
    (stream.read(&mut echoed).ok()? == 0).then_some(times)
}
