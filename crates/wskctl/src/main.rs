//! wskctl: the control tool of wskaccept.
//!
//! On Windows it finds the driver's device by its interface GUID and drives it with
//! DeviceIoControl. Elsewhere, `wskctl host` loads the driver into the host kernel and serves the
//! same IOCTLs on a Unix socket, and every other subcommand talks to that socket.

mod client;
mod conditional;
mod device;
mod explain;
#[cfg(unix)]
mod frame;
#[cfg(unix)]
mod host;
mod render;
mod stop;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[cfg(unix)]
use clap::ValueEnum;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ioctl::{Action, Mode, START_DUAL_STACK, Service, StartListener, VERSION};

use client::{CallError, Client};

/// Exit statuses, documented in `--help`. 2 is clap's, for usage errors.
mod exit {
    /// The driver refused the request (its NTSTATUS is printed).
    pub const REFUSED: u8 = 1;
    /// A usage error found after parsing (a malformed policy rule), like clap's.
    pub const USAGE: u8 = 2;
    /// `wskctl host`: unload found something the driver left outstanding.
    #[cfg(unix)]
    pub const OUTSTANDING: u8 = 3;
    /// The driver cannot be reached (no device, no `wskctl host`, a broken transport).
    pub const UNREACHABLE: u8 = 69;
    /// `wskctl host` could not start (the driver failed to load, or the control socket).
    #[cfg(unix)]
    pub const HOST_FAILED: u8 = 71;
}

#[derive(Parser)]
#[command(
    name = "wskctl",
    version,
    about = "Control wskaccept, the WSK TCP server driver",
    propagate_version = true,
    after_help = "Exit status: 0 success; 1 the driver refused the request (its NTSTATUS is \
printed); 2 usage error; 3 `wskctl host` found something outstanding at unload; 69 the driver \
cannot be reached; 71 `wskctl host` could not start."
)]
struct Cli {
    /// Where requests go. Unix: the control socket of a `wskctl host` (default: a per-user
    /// path). Windows: a device path to open instead of the driver's device interface (the Wine
    /// lane's test build: `\\.\WskAcceptTest`).
    #[arg(long, global = true, env = "WSKACCEPT_CONTROL")]
    control: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// A clap parser for one of the contract's enumerations, from its names: the names, the values
/// and `--help`'s list all come from `ioctl` (one definition each).
fn wire_enum<T: Copy + Default + PartialEq + Send + Sync + 'static>(
    names: &'static [&'static str],
    aliases: &'static [(&'static str, T)],
    from_name: fn(&str) -> Option<T>,
) -> impl clap::builder::TypedValueParser<Value = T> {
    // The possible-values parser only lets the listed names (and their aliases) through.
    use clap::builder::{PossibleValue, TypedValueParser as _};
    let values = names.iter().map(move |&name| {
        let value = from_name(name);
        PossibleValue::new(name).aliases(
            aliases
                .iter()
                .filter(move |(_, v)| Some(*v) == value)
                .map(|(alias, _)| *alias),
        )
    });
    clap::builder::PossibleValuesParser::new(values)
        .map(move |name| from_name(&name).unwrap_or_default())
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Replace the policy (rules apply in the order given; first match wins).
    Set {
        /// Listener id.
        listener: u32,
        /// Allow a prefix, e.g. 127.0.0.0/8 or ::1/128 (repeatable).
        #[arg(long, value_name = "PREFIX")]
        allow: Vec<String>,
        /// Deny a prefix (repeatable).
        #[arg(long, value_name = "PREFIX")]
        deny: Vec<String>,
        /// `--allow` and `--deny` merged in command-line order (filled from clap's indices).
        #[arg(skip)]
        ordered: Vec<(bool, String)>,
        /// At most N active connections per source address (0: no limit).
        #[arg(long, default_value_t = 0)]
        per_source: u32,
        /// What rules do not settle (defer: ask `wskctl decide`; outside conditional mode, reject).
        #[arg(long, default_value = "accept", value_parser = wire_enum(Action::NAMES, Action::ALIASES, Action::from_name))]
        default: Action,
    },
    /// Show a listener's policy.
    Show {
        /// Listener id.
        listener: u32,
    },
}

/// `wskctl host --log`.
#[cfg(unix)]
#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// `wskctl host --log-format`.
#[cfg(unix)]
#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sends the driver's trace (target `wskaccept`) to stderr. `RUST_LOG`, when set, is the filter.
#[cfg(unix)]
fn init_trace(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Subcommand)]
enum Command {
    /// Load the driver into the host kernel and serve the control socket until SIGINT/SIGTERM.
    /// The driver's trace goes to stderr: `--log LEVEL` (error, warn, info, debug; default
    /// info), or a `RUST_LOG` filter, which wins when set.
    #[cfg(unix)]
    Host {
        /// Least level of the driver's trace to print.
        #[arg(long, value_enum, default_value = "info")]
        log: LogLevel,
        /// How the trace is printed.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Test knob (hidden): the host kernel's provider completes every WskCloseSocket this
        /// many milliseconds late, like a slow provider, so that a stop has to wait.
        #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
        slow_close_ms: u64,
    },
    /// Start a listener.
    Start {
        /// Address to listen on, e.g. 127.0.0.1:7007 or [::]:0 (port 0 picks one).
        #[arg(long)]
        listen: SocketAddr,
        /// Accept path.
        #[arg(long, default_value = "both", value_parser = wire_enum(Mode::NAMES, Mode::ALIASES, Mode::from_name))]
        mode: Mode,
        /// Accept IRPs queued at once (1–64).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        depth: u32,
        /// Connection table capacity (1–65536).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
        capacity: u32,
        /// What to do with accepted connections: echo (send every byte back), discard (read and
        /// drop; `hold` is its old name), close (close at once).
        #[arg(long, default_value = "discard", value_parser = wire_enum(Service::NAMES, Service::ALIASES, Service::from_name))]
        service: Service,
        /// Bytes of each connection's data buffer, allocated for every table slot at start
        /// (512–65536).
        #[arg(long, value_name = "BYTES", default_value_t = ioctl::DEFAULT_BUFFER, value_parser = clap::value_parser!(u32).range(i64::from(ioctl::MIN_BUFFER)..=i64::from(ioctl::MAX_BUFFER)))]
        buffer: u32,
        /// For an IPv6 address: also accept IPv4.
        #[arg(long)]
        dual_stack: bool,
        /// Conditional mode: how long a deferred connection waits for `wskctl decide` (ms,
        /// 1–600000).
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=600_000))]
        decision_timeout_ms: Option<u32>,
    },
    /// A listener's condition function: ordered allow/deny rules, a default, a per-source limit.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Decide connections the policy deferred to user mode (conditional mode).
    Decide {
        /// Only this listener's.
        #[arg(long)]
        listener: Option<u32>,
        /// Accept every deferred connection.
        #[arg(long, conflicts_with_all = ["reject_all", "script"])]
        accept_all: bool,
        /// Reject every deferred connection.
        #[arg(long, conflicts_with = "script")]
        reject_all: bool,
        /// For each: one JSON line on stdout, one `accept` or `reject` line read from stdin.
        #[arg(long)]
        script: bool,
        /// Stop after this many decisions.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Stop one listener, or all of them (after a second, prints on stderr what it waits for).
    Stop {
        /// Listener id (all when omitted).
        listener: Option<u32>,
    },
    /// List listeners.
    Listeners,
    /// Show counters (driver-wide, or one listener's).
    Stats {
        /// Redraw every SECONDS (1–3600) with a timestamp and per-second rates, until
        /// interrupted.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
        /// One listener.
        #[arg(long)]
        listener: Option<u32>,
    },
    /// List connections.
    List {
        /// Only this listener's.
        #[arg(long)]
        listener: Option<u32>,
        /// Redraw every SECONDS (1–3600) with a timestamp, until interrupted.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
    /// Close one connection (gracefully unless --abort).
    Close {
        /// Connection id, as `wskctl list` shows it (LISTENER.INDEX.SERIAL) or the full number.
        #[arg(value_parser = parse_id)]
        connection: u64,
        /// Reset instead of a graceful close.
        #[arg(long)]
        abort: bool,
    },
    /// Show the driver's and wskctl's versions.
    Version,
}

fn fail(error: &CallError, port: Option<u16>) -> ExitCode {
    match error {
        CallError::Status(status) => {
            let name = status.name().unwrap_or("NTSTATUS");
            eprintln!(
                "wskctl: {name} (0x{:08X}): {}",
                status.as_u32(),
                explain::explain(*status, port)
            );
            ExitCode::from(exit::REFUSED)
        }
        CallError::Usage(sentence) => {
            eprintln!("wskctl: {sentence}");
            ExitCode::from(exit::USAGE)
        }
        CallError::Device(device) => {
            eprintln!("wskctl: {device}");
            ExitCode::from(exit::UNREACHABLE)
        }
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "the parsed command is consumed by this one call"
)]
/// The start parameters the driver checks in combination (each alone is range-checked by clap),
/// checked here first so that the message names them.
fn check_start(
    listen: SocketAddr,
    dual_stack: bool,
    capacity: u32,
    buffer: u32,
) -> Result<(), CallError> {
    if dual_stack && listen.is_ipv4() {
        return Err(CallError::Usage(
            "--dual-stack needs an IPv6 --listen address".to_owned(),
        ));
    }
    if u64::from(capacity) * u64::from(buffer) > ioctl::MAX_BUFFER_MEMORY {
        return Err(CallError::Usage(format!(
            "--capacity {capacity} × --buffer {buffer} is more than the {} MiB of buffer memory \
             a listener may have",
            ioctl::MAX_BUFFER_MEMORY >> 20
        )));
    }
    Ok(())
}

/// Runs one subcommand; `control` is where the driver was reached (for a second connection).
fn run(
    client: &Client,
    control: Option<&std::path::Path>,
    command: Command,
    json: bool,
) -> Result<(), (CallError, Option<u16>)> {
    let plain = |e| (e, None);
    match command {
        #[cfg(unix)]
        Command::Host { .. } => unreachable!("handled in main"),
        Command::Start {
            listen,
            mode: m,
            depth,
            capacity,
            service: s,
            buffer,
            dual_stack,
            decision_timeout_ms,
        } => {
            check_start(listen, dual_stack, capacity, buffer).map_err(|e| (e, None))?;
            let request = StartListener {
                version: VERSION,
                flags: if dual_stack { START_DUAL_STACK } else { 0 },
                address: listen.into(),
                mode: m,
                depth,
                capacity,
                service: s,
                decision_timeout_ms: decision_timeout_ms.unwrap_or(0),
                buffer,
                reserved: [0; 2],
            };
            let record = client
                .start(&request)
                .map_err(|e| (e, Some(listen.port())))?;
            println!("{}", render::started(&record, json));
        }
        Command::Stop { listener } => {
            let stats = stop::stop(client, control, listener.unwrap_or(ioctl::ALL_LISTENERS))
                .map_err(plain)?;
            println!("{}", render::stats(&stats, json).trim_end());
        }
        Command::Listeners => println!(
            "{}",
            render::listeners(&client.listeners().map_err(plain)?, json).trim_end()
        ),
        Command::Stats { watch, listener } => {
            stats(client, listener, watch, json).map_err(plain)?;
        }
        Command::List { listener, watch } => list(client, listener, watch, json).map_err(plain)?,
        Command::Close { connection, abort } => {
            client.close(connection, abort).map_err(plain)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"closed": connection, "abortive": abort})
                );
            } else {
                println!(
                    "connection {} {}",
                    ioctl::ids::short(connection),
                    if abort { "reset" } else { "closing" }
                );
            }
        }
        Command::Policy { command } => policy(client, command, json)?,
        Command::Decide {
            listener,
            accept_all,
            reject_all,
            script,
            count,
        } => {
            let answer = if accept_all {
                conditional::Answer::AcceptAll
            } else if reject_all {
                conditional::Answer::RejectAll
            } else if script {
                conditional::Answer::Script
            } else {
                conditional::Answer::Interactive
            };
            conditional::decide_loop(client, listener, answer, count).map_err(plain)?;
        }
        Command::Version => println!(
            "{}",
            render::version(&client.version().map_err(plain)?, json)
        ),
    }
    Ok(())
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "the parsed command is consumed by this one call"
)]
/// `wskctl stats [--watch SECONDS]`: once, or redrawn with per-second rates until interrupted.
fn stats(
    client: &Client,
    listener: Option<u32>,
    watch: Option<u64>,
    json: bool,
) -> Result<(), CallError> {
    let Some(seconds) = watch else {
        println!(
            "{}",
            render::stats(&client.stats(listener)?, json).trim_end()
        );
        return Ok(());
    };
    let every = Duration::from_secs(seconds);
    let mut previous: Option<(ioctl::StatsRecord, Instant)> = None;
    loop {
        let now = client.stats(listener)?;
        let at = Instant::now();
        if json {
            println!("{}", render::stats(&now, true));
        } else {
            let rates = previous
                .as_ref()
                .map(|(p, t)| (p, at.duration_since(*t).as_secs_f64()));
            watch::show("wskaccept stats", every, &render::stats_table(&now, rates));
        }
        previous = Some((now, at));
        std::thread::sleep(every);
    }
}

/// `wskctl list [--watch SECONDS]`.
fn list(
    client: &Client,
    listener: Option<u32>,
    watch: Option<u64>,
    json: bool,
) -> Result<(), CallError> {
    loop {
        let rows = render::connections(&client.connections(listener)?, json);
        match watch {
            Some(seconds) if !json => {
                watch::show("wskaccept connections", Duration::from_secs(seconds), &rows);
            }
            _ => println!("{}", rows.trim_end()),
        }
        match watch {
            Some(seconds) => std::thread::sleep(Duration::from_secs(seconds)),
            None => return Ok(()),
        }
    }
}

fn policy(
    client: &Client,
    command: PolicyCommand,
    json: bool,
) -> Result<(), (CallError, Option<u16>)> {
    let plain = |e| (e, None);
    let listener = match command {
        PolicyCommand::Set {
            listener,
            per_source,
            default,
            ordered,
            ..
        } => {
            let message = conditional::policy_message(listener, &ordered, default, per_source)
                .map_err(|sentence| (CallError::Usage(sentence), None))?;
            client.set_policy(&message).map_err(plain)?;
            listener
        }
        PolicyCommand::Show { listener } => listener,
    };
    println!(
        "{}",
        conditional::render_policy(&client.policy(listener).map_err(plain)?, json).trim_end()
    );
    Ok(())
}

/// A connection id in its short form or as a number (clap value parser).
fn parse_id(text: &str) -> Result<u64, String> {
    ioctl::ids::parse(text).map_err(str::to_owned)
}

/// The parsed command line, with `policy set`'s rules in the order they were given.
fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Command::Policy {
        command: PolicyCommand::Set { ordered, .. },
    } = &mut cli.command
    {
        let set = matches
            .subcommand_matches("policy")
            .and_then(|m| m.subcommand_matches("set"));
        let positioned = |name: &str| -> Vec<(usize, String)> {
            set.and_then(|m| {
                Some(
                    m.indices_of(name)?
                        .zip(m.get_many::<String>(name)?.cloned()),
                )
            })
            .into_iter()
            .flatten()
            .collect()
        };
        *ordered = conditional::ordered_rules(positioned("allow"), positioned("deny"));
    }
    cli
}

fn main() -> ExitCode {
    let cli = parse();
    #[cfg(unix)]
    if let Command::Host {
        log,
        log_format,
        slow_close_ms,
    } = cli.command
    {
        init_trace(log, log_format);
        hostkernel::provider::set_close_delay(Duration::from_millis(slow_close_ms));
        let path = device::control_path(cli.control);
        return match host::run(&path) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(exit::OUTSTANDING),
            Err(error) => {
                eprintln!("wskctl host: {error}");
                ExitCode::from(exit::HOST_FAILED)
            }
        };
    }
    let device = match device::open(cli.control.clone()) {
        Ok(device) => device,
        Err(error) => {
            eprintln!("wskctl: {error}");
            return ExitCode::from(exit::UNREACHABLE);
        }
    };
    match run(
        &Client::new(device),
        cli.control.as_deref(),
        cli.command,
        cli.json,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err((error, port)) => fail(&error, port),
    }
}
