//! The dispatcher's memory does not follow the caller's buffer sizes: in the kernel a failed
//! allocation sized from OutputBufferLength was a bug check (issue: caller-sized allocations).
//! This binary counts every heap allocation made while the dispatcher runs, with a global
//! allocator of its own, and lists connections into a 256 MiB output buffer.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hostkernel::schedule::Schedule;
use ioctl::{
    ALL_LISTENERS, ConnectionRecord, IOCTL_LIST_CONNECTIONS, LIST_MORE, ListConnections,
    ListHeader, VERSION,
};
use wskaccept::control::dispatch;
use wskaccept::listener::{Mode, Service};
use zerocopy::IntoBytes;

/// The system allocator, counting the largest single request while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: GlobalAlloc's contract, passed on as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract, passed on as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn listing_into_a_huge_output_buffer_allocates_nothing_sized_by_it() {
    let engine = load(Schedule::from_seed(3));
    let info = start(&engine, "127.0.0.1:0", Mode::Irp, 64, Service::Hold);
    let clients: Vec<TcpStream> = connect_all(info.address, 40);
    wait_until("40 connections accepted", Duration::from_secs(10), || {
        engine.stats().active == 40
    });
    let mut output = vec![0u8; 256 << 20];
    let request = ListConnections {
        version: VERSION,
        listener: ALL_LISTENERS,
        cursor: 0,
        reserved: [0; 2],
    };

    LARGEST.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let (status, written) = dispatch(
        &engine,
        IOCTL_LIST_CONNECTIONS,
        request.as_bytes(),
        &mut output,
    );
    COUNTING.store(false, Ordering::Relaxed);

    assert!(status.is_success(), "{status:?}");
    let header: ListHeader = ioctl::read(&output[..written]).unwrap();
    assert_eq!(header.count, 40, "every connection listed in one call");
    assert_eq!(header.flags & LIST_MORE, 0);
    assert_eq!(
        written,
        size_of::<ListHeader>() + 40 * size_of::<ConnectionRecord>()
    );
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 64 * 1024,
        "the dispatcher made a {largest}-byte allocation for a 256 MiB output buffer"
    );
    drop(clients);
    unload(engine);
}
