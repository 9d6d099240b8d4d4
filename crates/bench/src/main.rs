//! wskbench: the accept-rate, latency, held-connection and memory benchmarks of BENCHMARKS.md.
//!
//! Every target is measured in the same run with the same load generator: wskaccept in the host
//! kernel (modes irp depth 1, irp depth 8, event, both; service `close`), a plain std accept loop,
//! and a tokio accept loop. Workload: N client threads, each `connect → read until EOF → close`
//! (the server closes first, so clients accumulate no TIME_WAIT), for a fixed number of
//! connections. Reported: accepted connections per second and the time from `connect()` returning
//! to the server's close being seen (p50/p99/max), each as a median over runs, and the rate as a
//! ratio to the std baseline of the same run.
#![cfg(unix)]

mod echo;
mod echo_client;
mod echo_targets;
mod held;
mod load;
mod summary;
mod targets;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(name = "wskbench", about = "wskaccept benchmarks (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept rate and latency of every target, with ratios to the std baseline.
    Rate {
        /// Connections per run and target.
        #[arg(long, default_value_t = 20_000)]
        connections: usize,
        /// Client thread counts to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "2")]
        threads: Vec<usize>,
        /// Runs per target (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these targets (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// A few connections per target: checks that everything works, not how fast.
        #[arg(long)]
        smoke: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Echo throughput and ping-pong latency of every echo target, with ratios to std.
    Echo(echo::Args),
    /// Accept N held connections from a client process; time and memory.
    Held {
        /// Connections to hold.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Internal: connect COUNT clients to ADDRESS and hold them until stdin closes.
    Clients {
        #[arg(long)]
        connect: std::net::SocketAddr,
        #[arg(long)]
        count: usize,
    },
    /// One target, one run, no output (for `valgrind --tool=callgrind`).
    Profile {
        /// Target name.
        #[arg(long, default_value = "wskaccept-irp1")]
        target: String,
        #[arg(long, default_value_t = 2_000)]
        connections: usize,
        /// Client threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn main() -> ExitCode {
    let _ = hostkernel::rlimit::raise_nofile_to_hard_limit();
    match Cli::parse().command {
        Command::Rate {
            connections,
            threads,
            runs,
            targets,
            smoke,
            json,
        } => {
            let (connections, runs) = if smoke { (50, 1) } else { (connections, runs) };
            let report = load::rate_report(connections, &threads, runs, &targets);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", load::render(&report));
            }
            if report["ok"] == json!(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Held { count, json } => match held::run(count) {
            Ok(report) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                } else {
                    println!("{report:#}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("wskbench held: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Echo(args) => echo::main(args),
        Command::Clients { connect, count } => held::clients(connect, count),
        Command::Profile {
            target,
            connections,
            threads,
        } => {
            let engine = targets::load_engine();
            let target = targets::Target::by_name(&target).expect("a known target");
            let server = target.start(&engine);
            let _ = load::generate(server.address, connections, threads);
            server.settle(&engine);
            server.stop(&engine);
            wskaccept::engine::Engine::unload(engine);
            ExitCode::SUCCESS
        }
    }
}
