//! The servers being measured: wskaccept in the host kernel (several modes) and two baselines
//! doing the same bookkeeping a trivial server would (push the accepted stream into a Vec, close
//! it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wskaccept::engine::Engine;
use wskaccept::kernel::PoolBox;
use wskaccept::listener::{ListenerConfig, Mode, Service};

/// A target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// wskaccept, `mode`, `depth`.
    Wskaccept(Mode, u16),
    /// `std::net::TcpListener` accept loop on one thread.
    Std,
    /// tokio (current-thread runtime) accept loop.
    Tokio,
}

/// Every target, in report order; the std baseline first.
pub const ALL: [Target; 6] = [
    Target::Std,
    Target::Tokio,
    Target::Wskaccept(Mode::Irp, 1),
    Target::Wskaccept(Mode::Irp, 8),
    Target::Wskaccept(Mode::Event, 1),
    Target::Wskaccept(Mode::Both, 1),
];

impl Target {
    /// The name used in reports and `--targets`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Tokio => "tokio",
            Self::Wskaccept(Mode::Irp, 1) => "wskaccept-irp1",
            Self::Wskaccept(Mode::Irp, _) => "wskaccept-irp8",
            Self::Wskaccept(Mode::Event, _) => "wskaccept-event",
            Self::Wskaccept(Mode::Both, _) => "wskaccept-both",
            Self::Wskaccept(Mode::Conditional, _) => "wskaccept-conditional",
        }
    }

    /// By name.
    #[must_use]
    pub fn by_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|t| t.name() == name)
    }

    /// Starts the server on a fresh loopback port.
    ///
    /// # Panics
    /// When the server cannot start (a benchmark has nothing to report then).
    #[must_use]
    pub fn start(self, engine: &Engine) -> Server {
        match self {
            Self::Wskaccept(mode, depth) => {
                let mut config = ListenerConfig::new("127.0.0.1:0".parse().expect("address"));
                config.mode = mode;
                config.depth = depth;
                config.capacity = 4_096;
                config.service = Service::Close;
                let info = engine.start_listener(config).expect("wskaccept listener");
                Server {
                    address: info.address,
                    kind: Kind::Wskaccept(info.id),
                }
            }
            Self::Std => {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let address = listener.local_addr().expect("address");
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let thread = std::thread::spawn(move || {
                    let mut streams: Vec<TcpStream> = Vec::with_capacity(1);
                    for stream in listener.incoming() {
                        if flag.load(Ordering::Acquire) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            streams.push(stream);
                            // Close at once (the server closes first).
                            streams.clear();
                        }
                    }
                });
                Server {
                    address,
                    kind: Kind::Thread(stop, thread),
                }
            }
            Self::Tokio => {
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
                        let listener =
                            tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                        let mut streams = Vec::with_capacity(1);
                        while let Ok((stream, _)) = listener.accept().await {
                            if flag.load(Ordering::Acquire) {
                                break;
                            }
                            streams.push(stream);
                            streams.clear();
                        }
                    });
                });
                Server {
                    address,
                    kind: Kind::Thread(stop, thread),
                }
            }
        }
    }
}

enum Kind {
    Wskaccept(u32),
    Thread(Arc<AtomicBool>, JoinHandle<()>),
}

/// A running target.
pub struct Server {
    /// Where clients connect.
    pub address: SocketAddr,
    kind: Kind,
}

impl Server {
    /// Waits (at most a second) until a wskaccept listener holds no connection: every close of
    /// the run has completed. Returns at once for the baselines.
    pub fn settle(&self, engine: &Engine) {
        if let Kind::Wskaccept(id) = self.kind {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while engine.listener_info(id).is_ok_and(|info| info.active > 0)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Stops it (and checks the wskaccept listener stopped cleanly).
    pub fn stop(self, engine: &Engine) {
        match self.kind {
            Kind::Wskaccept(id) => {
                let _ = engine.stop_listener(id);
            }
            Kind::Thread(stop, thread) => {
                stop.store(true, Ordering::Release);
                // Wake the accept loop.
                let _ = TcpStream::connect(self.address);
                let _ = thread.join();
            }
        }
    }
}

/// The driver, loaded into the host kernel.
///
/// # Panics
/// When the driver cannot load.
#[must_use]
pub fn load_engine() -> PoolBox<Engine> {
    Engine::load().expect("driver load")
}
