//! `wskctl host`: loads the driver into the host kernel and serves its IOCTLs on a Unix socket
//! (mode 0600 — the host counterpart of an admin-only device ACL) until SIGINT or SIGTERM, then
//! unloads it and reports anything the driver left outstanding.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wsk::NtStatus;
use wskaccept::control;
use wskaccept::engine::Engine;

use crate::frame::{REQUEST_HEADER, Reply, Request};

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The driver failed to load.
    #[error("the driver failed to load: {0}")]
    Load(NtStatus),
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    Socket {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Client connections being served, so that shutdown can wake their threads.
#[derive(Default)]
struct Clients {
    next: u64,
    open: HashMap<u64, UnixStream>,
}

fn clients(registry: &Mutex<Clients>) -> std::sync::MutexGuard<'_, Clients> {
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves one client, then closes the connection and leaves the registry.
fn serve_and_close(engine: &Engine, stream: UnixStream, registry: &Mutex<Clients>, id: u64) {
    let closer = stream.try_clone();
    serve(engine, stream);
    if let Ok(closer) = closer {
        let _ = closer.shutdown(Shutdown::Both);
    }
    clients(registry).open.remove(&id);
}

/// Serves one client until it disconnects. A malformed frame gets an error reply (lengths above
/// the limit) or a closed connection (a header or input cut short); never a crash.
fn serve(engine: &Engine, mut stream: UnixStream) {
    loop {
        let mut header = [0u8; REQUEST_HEADER];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let request = Request::decode(&header);
        if !request.is_within_limits() {
            let _ = stream.write_all(
                &Reply {
                    status: NtStatus::INVALID_PARAMETER.0,
                    information: 0,
                }
                .encode(),
            );
            return;
        }
        let mut input = vec![0u8; request.input_len as usize];
        if stream.read_exact(&mut input).is_err() {
            return;
        }
        let mut output = vec![0u8; request.output_len as usize];
        let (status, written) = control::dispatch(engine, request.code, &input, &mut output);
        let reply = Reply {
            status: status.0,
            information: u32::try_from(written).unwrap_or(0),
        };
        if stream
            .write_all(&reply.encode())
            .and_then(|()| stream.write_all(&output[..written]))
            .is_err()
        {
            return;
        }
    }
}

fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        // A live host answers; a stale socket file from a crashed one is replaced.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                ErrorKind::AddrInUse,
                "another wskctl host is serving this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    // SAFETY: umask only changes this process's file-creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: umask has no preconditions and cannot fail; this restores the mask saved above.
    unsafe { libc::umask(old) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Runs the host until SIGINT/SIGTERM. Returns whether the driver unloaded clean.
///
/// # Errors
/// [`HostError`] when the driver or the socket cannot be set up.
pub fn run(path: &Path) -> Result<bool, HostError> {
    let limit = hostkernel::rlimit::raise_nofile_to_hard_limit();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let socket_error = |source| HostError::Socket {
        path: path.display().to_string(),
        source,
    };
    let listener = bind_private(path).map_err(socket_error)?;
    listener.set_nonblocking(true).map_err(socket_error)?;
    let engine = Engine::load().map_err(HostError::Load)?;
    eprintln!(
        "wskaccept: driver loaded in the host kernel (file descriptors: {limit}); control socket {}",
        path.display()
    );
    let registry = Mutex::new(Clients::default());
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let id = {
                        let mut open = clients(&registry);
                        open.next += 1;
                        let id = open.next;
                        if let Ok(clone) = stream.try_clone() {
                            open.open.insert(id, clone);
                        }
                        id
                    };
                    let (engine, registry) = (&*engine, &registry);
                    scope.spawn(move || serve_and_close(engine, stream, registry, id));
                }
                // Nothing to accept (or a transient error): look at the stop flag again soon.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // A GET_PENDING in progress (an inverted call) returns STATUS_CANCELLED, then every client
        // thread is woken so the scope can end.
        engine.cancel_waits();
        for client in clients(&registry).open.values() {
            let _ = client.shutdown(Shutdown::Both);
        }
    });
    let _ = std::fs::remove_file(path);
    eprintln!("wskaccept: stopping every listener and unloading");
    Engine::unload(engine);
    let outstanding = hostkernel::accounting::outstanding();
    eprintln!("wskaccept: unloaded; {outstanding}");
    Ok(outstanding.is_clean())
}
