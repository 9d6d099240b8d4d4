//! The echo servers being measured: a std thread-per-connection server, a tokio server, and the
//! driver in the host kernel with service `echo` in every mode. Each sends back every byte it
//! reads, in order, and closes its side once the peer has half-closed and everything is sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wskaccept::engine::Engine;
use wskaccept::listener::{ListenerConfig, Mode, Service};

/// Bytes the std and tokio servers read at a time (the driver's buffer is set per listener).
const BASELINE_BUFFER: usize = 64 * 1024;

/// An echo target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoTarget {
    /// A `std::net` accept loop, one thread per connection doing `read → write_all`.
    Std,
    /// A tokio accept loop (current-thread runtime), one task per connection.
    Tokio,
    /// wskaccept with service `echo`, `mode`, accept depth.
    Driver(Mode, u16),
}

/// Every target, in report order; the std baseline first.
pub const ALL: [EchoTarget; 7] = [
    EchoTarget::Std,
    EchoTarget::Tokio,
    EchoTarget::Driver(Mode::Irp, 8),
    EchoTarget::Driver(Mode::Irp, 1),
    EchoTarget::Driver(Mode::Event, 1),
    EchoTarget::Driver(Mode::Both, 8),
    EchoTarget::Driver(Mode::Conditional, 1),
];

impl EchoTarget {
    /// The name used in reports and `--targets`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Tokio => "tokio",
            Self::Driver(Mode::Irp, 1) => "wskaccept-irp1",
            Self::Driver(Mode::Irp, _) => "wskaccept-irp8",
            Self::Driver(Mode::Event, _) => "wskaccept-event",
            Self::Driver(Mode::Both, _) => "wskaccept-both",
            Self::Driver(Mode::Conditional, _) => "wskaccept-conditional",
        }
    }

    /// Whether it is the driver (its allocations are counted).
    #[must_use]
    pub fn is_driver(self) -> bool {
        matches!(self, Self::Driver(..))
    }

    /// Starts the server on a fresh loopback port; `buffer` is the driver's per-slot buffer.
    ///
    /// # Panics
    /// When the server cannot start (a benchmark has nothing to report then).
    #[must_use]
    pub fn start(self, engine: &Engine, buffer: u32) -> EchoServer {
        match self {
            Self::Driver(mode, depth) => {
                let mut config = ListenerConfig::new("127.0.0.1:0".parse().expect("address"));
                config.mode = mode;
                config.depth = depth;
                config.capacity = 1_024;
                config.service = Service::Echo;
                config.buffer = buffer;
                let info = engine
                    .start_listener(config)
                    .expect("wskaccept echo listener");
                EchoServer {
                    address: info.address,
                    kind: Kind::Driver(info.id),
                }
            }
            Self::Std => start_std(),
            Self::Tokio => start_tokio(),
        }
    }
}

fn start_std() -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in listener.incoming() {
            if flag.load(Ordering::Acquire) {
                break;
            }
            if let Ok(stream) = stream {
                connections.push(std::thread::spawn(move || echo_std(stream)));
            }
        }
        for connection in connections {
            let _ = connection.join();
        }
    });
    EchoServer {
        address,
        kind: Kind::Thread(stop, thread),
    }
}

/// `read → write_all` until the peer's FIN (then the drop closes) or an error.
fn echo_std(mut stream: TcpStream) {
    let mut buffer = vec![0u8; BASELINE_BUFFER];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn start_tokio() -> EchoServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let mut tasks = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                if flag.load(Ordering::Acquire) {
                    break;
                }
                tasks.push(tokio::spawn(async move {
                    let mut buffer = vec![0u8; BASELINE_BUFFER];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buffer[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    });
    EchoServer {
        address,
        kind: Kind::Thread(stop, thread),
    }
}

enum Kind {
    Driver(u32),
    Thread(Arc<AtomicBool>, JoinHandle<()>),
}

/// A running echo target.
pub struct EchoServer {
    /// Where clients connect.
    pub address: SocketAddr,
    kind: Kind,
}

impl EchoServer {
    /// Stops it once its clients have closed; `Err` when the driver's stop failed.
    ///
    /// # Errors
    /// The driver's stop status, as text.
    pub fn stop(self, engine: &Engine) -> Result<(), String> {
        match self.kind {
            Kind::Driver(id) => engine
                .stop_listener(id)
                .map(|_| ())
                .map_err(|status| format!("stop_listener: {status:?}")),
            Kind::Thread(stop, thread) => {
                stop.store(true, Ordering::Release);
                // Wake the accept loop.
                let _ = TcpStream::connect(self.address);
                thread
                    .join()
                    .map_err(|_| "server thread panicked".to_owned())
            }
        }
    }
}
