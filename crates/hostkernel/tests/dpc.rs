//! DPCs on the host's processors: a DPC runs at DISPATCH_LEVEL on its target processor, only once
//! that processor's IRQL dropped below DISPATCH_LEVEL — never inside the section that queued it —
//! and an idle processor's DPC runs at once (as that processor). The verifier's DPC checks are in
//! `verifier.rs`.

use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hostkernel::dpc::{Kdpc, flush_queued_dpcs};
use hostkernel::{irql, processor};

/// What a DPC saw when it ran: its thread, processor number and IRQL.
#[derive(Debug, Default)]
struct Seen {
    runs: Vec<(std::thread::ThreadId, u32, u8)>,
}

unsafe extern "system" fn record(
    _dpc: *mut Kdpc,
    context: *mut c_void,
    _argument1: *mut c_void,
    _argument2: *mut c_void,
) {
    // SAFETY: the tests pass a `Mutex<Seen>` that outlives the DPC (they flush before it goes).
    let seen = unsafe { &*context.cast::<Mutex<Seen>>() };
    seen.lock().unwrap().runs.push((
        std::thread::current().id(),
        processor::current(),
        irql::current(),
    ));
}

fn runs(seen: &Mutex<Seen>) -> usize {
    seen.lock().unwrap().runs.len()
}

#[test]
fn a_dpc_runs_only_after_the_dispatch_section_that_queued_it_on_the_target_thread() {
    let seen = Box::new(Mutex::new(Seen::default()));
    let dpc = Box::new(Kdpc::new());
    dpc.initialize(record, std::ptr::from_ref(&*seen).cast_mut().cast());
    let here = processor::current();
    irql::at_dispatch(|| {
        dpc.set_target(here);
        // SAFETY: the DPC is boxed (it does not move) and outlives its run (flushed below).
        assert!(unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) });
        // Queued twice: not queued again, and it still runs once, after this section.
        // SAFETY: as above.
        assert!(!unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) });
        // A nested section (a spin lock taken and released) does not lower below DISPATCH_LEVEL.
        irql::at_dispatch(|| {});
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            runs(&seen),
            0,
            "the DPC ran inside the DISPATCH_LEVEL section"
        );
    });
    // The section's end ran it, here, before anything else at PASSIVE_LEVEL.
    let seen_now = seen.lock().unwrap().runs.clone();
    assert_eq!(
        seen_now,
        vec![(std::thread::current().id(), here, irql::DISPATCH_LEVEL)],
        "the DPC runs once, on the thread that is its target, at DISPATCH_LEVEL"
    );
    assert_eq!(irql::current(), irql::PASSIVE_LEVEL);
    flush_queued_dpcs();
}

#[test]
fn a_dpc_for_another_processor_waits_for_that_processors_section_to_end() {
    let seen: &'static Mutex<Seen> = Box::leak(Box::new(Mutex::new(Seen::default())));
    let dpc: &'static Kdpc = Box::leak(Box::new(Kdpc::new()));
    dpc.initialize(record, std::ptr::from_ref(seen).cast_mut().cast());
    let (number_tx, number_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let release = &*Box::leak(Box::new(AtomicBool::new(false)));
    let target = std::thread::spawn(move || {
        irql::at_dispatch(|| {
            number_tx.send(processor::current()).unwrap();
            go_rx.recv().unwrap();
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        std::thread::current().id()
    });
    let number = number_rx.recv().unwrap();
    dpc.set_target(number);
    // SAFETY: the DPC is leaked: it never moves nor goes.
    assert!(unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) });
    go_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        runs(seen),
        0,
        "the DPC ran while its processor was at DISPATCH_LEVEL"
    );
    release.store(true, Ordering::SeqCst);
    let target_thread = target.join().unwrap();
    flush_queued_dpcs();
    let seen_now = seen.lock().unwrap().runs.clone();
    assert_eq!(seen_now.len(), 1);
    assert_eq!(
        seen_now[0].0, target_thread,
        "run by the target's own thread"
    );
    assert_eq!(seen_now[0].1, number);
    assert_eq!(seen_now[0].2, irql::DISPATCH_LEVEL);
}

#[test]
fn an_idle_processors_dpc_runs_at_once_as_that_processor() {
    let seen: &'static Mutex<Seen> = Box::leak(Box::new(Mutex::new(Seen::default())));
    let dpc: &'static Kdpc = Box::leak(Box::new(Kdpc::new()));
    dpc.initialize(record, std::ptr::from_ref(seen).cast_mut().cast());
    let (number_tx, number_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // A processor that stays idle (blocked at PASSIVE_LEVEL) until the test ends.
    let idle = std::thread::spawn(move || {
        number_tx.send(processor::current()).unwrap();
        done_rx.recv().unwrap();
    });
    let number = number_rx.recv().unwrap();
    dpc.set_target(number);
    // SAFETY: the DPC is leaked: it never moves nor goes.
    assert!(unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) });
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs(seen) == 0 {
        assert!(
            Instant::now() < deadline,
            "an idle processor's DPC never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, as_processor, level) = seen.lock().unwrap().runs[0];
    assert_eq!(as_processor, number, "it runs as its target processor");
    assert_eq!(level, irql::DISPATCH_LEVEL);
    done_tx.send(()).unwrap();
    idle.join().unwrap();
}

#[test]
fn flush_returns_after_every_queued_dpc_ran() {
    let seen: &'static Mutex<Seen> = Box::leak(Box::new(Mutex::new(Seen::default())));
    let dpcs: &'static [Kdpc] = Box::leak((0..8).map(|_| Kdpc::new()).collect());
    let (number_tx, number_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let busy = std::thread::spawn(move || {
        irql::at_dispatch(|| {
            number_tx.send(processor::current()).unwrap();
            go_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        });
    });
    let number = number_rx.recv().unwrap();
    for dpc in dpcs {
        dpc.initialize(record, std::ptr::from_ref(seen).cast_mut().cast());
        dpc.set_target(number);
        // SAFETY: the DPCs are leaked: they never move nor go.
        assert!(unsafe { dpc.insert(std::ptr::null_mut(), std::ptr::null_mut()) });
    }
    go_tx.send(()).unwrap();
    flush_queued_dpcs();
    assert_eq!(
        runs(seen),
        dpcs.len(),
        "KeFlushQueuedDpcs returned before a queued DPC ran"
    );
    busy.join().unwrap();
}
