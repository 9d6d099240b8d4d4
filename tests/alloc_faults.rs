//! Allocation failure on every path (issue 11, host item 2): every pool, IRP and MDL allocation
//! the driver makes — at load, listener start, accept, IOCTL dispatch and listing — fails once,
//! alone, in an exhaustive sweep over a scenario (`schedule::fail_nth_allocation`), and the
//! driver answers with a clear status, breaks no verifier rule and leaks nothing.

mod common;

use std::time::{Duration, Instant};

use common::scenario::{self, Plan};
use hostkernel::schedule::{self, Fault, Schedule};
use ioctl::*;
use wsk::NtStatus;
use zerocopy::IntoBytes;

fn sweep(plan: Plan, seed: u64) -> u32 {
    let started = Instant::now();
    let mut nth = 1;
    let mut restarts = 0;
    loop {
        schedule::configure(Schedule::from_seed(seed));
        schedule::fail_nth_allocation(nth);
        let _watchdog = scenario::Watchdog::arm(
            format!("{plan:?} with allocation #{nth} failing"),
            Duration::from_secs(20),
        );
        let engine = scenario::try_load();
        if let Some(engine) = &engine {
            scenario::run(engine, plan);
            restarts += engine.stats().counters.listener_restarts;
        }
        let allocations = schedule::allocations_seen();
        scenario::unload_clean(engine);
        if std::env::var_os("CAMPAIGN_TRACE").is_some() {
            eprintln!("  nth {nth}: at {:?}", started.elapsed());
        }
        if allocations < u64::from(nth) {
            eprintln!(
                "{plan:?}: {} allocations, each failed alone, in {:?}; {restarts} restarts",
                nth - 1,
                started.elapsed()
            );
            return nth - 1;
        }
        nth += 1;
    }
}

#[test]
fn every_allocation_of_load_start_accept_ioctls_and_stop_can_fail_alone() {
    for (mode, seed, restart) in [
        (Mode::Irp, 1, false),
        (Mode::Event, 2, false),
        (Mode::Both, 3, false),
        (Mode::Conditional, 4, false),
        // The listening socket breaks: the restart's allocations fail in turn too.
        (Mode::Both, 5, true),
    ] {
        let allocations = sweep(
            Plan {
                mode,
                capacity: 2,
                depth: 1,
                clients: 2,
                restart,
                close_one: Some(false),
                defer: mode == Mode::Conditional,
            },
            seed,
        );
        assert!(
            allocations > 10,
            "the sweep covered {allocations} allocations"
        );
    }
}

#[test]
fn listing_connections_allocates_nothing_so_no_allocation_failure_can_fail_it() {
    // On Windows every allocation is a pool allocation that can fail; one from the Rust heap
    // (which has no global allocator in the driver's Windows build) would be a bug check. The
    // listing works in fixed batches on the stack: with the next pool allocation set to fail, it
    // still answers, and nothing fired. (tests/control_memory.rs checks the heap side.)
    schedule::configure(Schedule::from_seed(8));
    let engine = scenario::try_load().unwrap();
    let mut config = wskaccept::listener::ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.capacity = 4;
    let info = engine.start_listener(config).unwrap();
    let _client = std::net::TcpStream::connect(info.address).unwrap();
    common::wait_until("accepted", std::time::Duration::from_secs(5), || {
        engine.stats().active == 1
    });
    let list = ListConnections {
        version: VERSION,
        listener: ALL_LISTENERS,
        cursor: 0,
        reserved: [0; 2],
    };
    schedule::fail_nth(Fault::PoolAllocation, 1);
    let (status, bytes) = scenario::call(&engine, IOCTL_LIST_CONNECTIONS, list.as_bytes(), 4096);
    assert_eq!(
        schedule::fired(Fault::PoolAllocation),
        0,
        "the listing allocated from the pool"
    );
    assert_eq!(status, NtStatus::SUCCESS);
    let header: ListHeader = ioctl::read(&bytes).unwrap();
    assert_eq!(header.count, 1);
    schedule::fail_nth(Fault::PoolAllocation, 0);
    scenario::unload_clean(Some(engine));
}
