//! loom models of the two concurrent protocols: the listener's rundown (completion routines racing
//! a stop) and the connection table under concurrent accept, close and lookup. loom explores every
//! interleaving of the threads below (bounded by `LOOM_MAX_PREEMPTIONS`, default 2 here).

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use wskaccept::rundown::Rundown;
use wskaccept::table::{AcceptPath, ConnInfo, Table};

fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder
}

/// The listener's lock-protected state: the rundown, the worker's "queued" flag (a kick), and the
/// worker's verdict (the `stopped` event).
struct State {
    rundown: Rundown,
    kicked: bool,
    stopped: bool,
}

struct Model {
    shared: Mutex<State>,
    wake: Condvar,
    /// Threads inside the lock right now (any touch of the listener's memory).
    touching: AtomicUsize,
    freed: AtomicBool,
}

impl Model {
    fn enter(&self) {
        self.touching.fetch_add(1, Ordering::SeqCst);
        assert!(
            !self.freed.load(Ordering::SeqCst),
            "a thread touched a freed listener"
        );
    }

    fn leave(&self) {
        self.touching.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn completions_racing_stop_never_touch_a_freed_listener_and_stop_always_finishes() {
    builder().check(|| {
        let mut rundown = Rundown::new();
        // Two IRPs are out when the stop begins.
        rundown.submitted();
        rundown.submitted();
        let model = Arc::new(Model {
            shared: Mutex::new(State {
                rundown,
                kicked: false,
                stopped: false,
            }),
            wake: Condvar::new(),
            touching: AtomicUsize::new(0),
            freed: AtomicBool::new(false),
        });
        // Completion routines: decrement and kick the worker under the lock.
        let completions: Vec<_> = (0..2)
            .map(|_| {
                let model = model.clone();
                thread::spawn(move || {
                    let mut s = model.shared.lock().unwrap();
                    model.enter();
                    s.rundown.completed();
                    s.kicked = true;
                    model.wake.notify_all();
                    model.leave();
                })
            })
            .collect();
        // The worker: runs when kicked; only it declares the rundown finished.
        let worker = {
            let model = model.clone();
            thread::spawn(move || {
                let mut s = model.shared.lock().unwrap();
                loop {
                    model.enter();
                    if std::mem::take(&mut s.kicked) && s.rundown.try_finish(true) {
                        s.stopped = true;
                        model.wake.notify_all();
                    }
                    let done = s.rundown.is_finished();
                    model.leave();
                    if done {
                        return;
                    }
                    s = model.wake.wait(s).unwrap();
                }
            })
        };
        // The stopper: request, wait for the worker's verdict, flush the worker, free.
        {
            let mut s = model.shared.lock().unwrap();
            s.rundown.request_stop();
            s.kicked = true;
            model.wake.notify_all();
            while !s.stopped {
                s = model.wake.wait(s).unwrap();
            }
        }
        worker.join().unwrap();
        assert_eq!(
            model.touching.load(Ordering::SeqCst),
            0,
            "freeing while a completion is inside"
        );
        model.freed.store(true, Ordering::SeqCst);
        for completion in completions {
            completion.join().unwrap();
        }
    });
}

fn info() -> ConnInfo {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    ConnInfo {
        remote: addr,
        local: addr,
        path: AcceptPath::Irp,
        accepted_at: 0,
    }
}

#[test]
fn table_under_concurrent_accept_close_and_lookup_keeps_its_invariants() {
    builder().check(|| {
        let table = Arc::new(Mutex::new(
            Table::<u32>::with_capacity(0, 2, std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
                .unwrap(),
        ));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        // Completion routines / accept callbacks insert.
        let inserters: Vec<_> = (0..2u32)
            .map(|socket| {
                let (table, accepted) = (table.clone(), accepted.clone());
                thread::spawn(move || {
                    let id = table.lock().unwrap().insert(socket, info());
                    if let Ok(id) = id {
                        accepted.lock().unwrap().push(id);
                    }
                })
            })
            .collect();
        // The worker closes whatever it finds, exactly once each.
        let closer = {
            let (table, accepted) = (table.clone(), accepted.clone());
            thread::spawn(move || {
                let found = accepted.lock().unwrap().first().copied();
                if let Some(id) = found {
                    let mut table = table.lock().unwrap();
                    let socket = table.begin_close(id.index());
                    assert!(
                        socket.is_some(),
                        "an accepted connection is closed exactly once"
                    );
                    assert!(table.begin_close(id.index()).is_none());
                    assert!(table.release(id.index()));
                    assert!(table.get(id).is_none(), "a closed id is stale");
                }
            })
        };
        for t in inserters {
            t.join().unwrap();
        }
        closer.join().unwrap();
        let table = table.lock().unwrap();
        let accepted = accepted.lock().unwrap();
        assert_eq!(accepted.len(), 2, "capacity 2 takes both");
        let live = accepted
            .iter()
            .filter(|id| table.get(**id).is_some())
            .count();
        assert_eq!(table.occupancy().in_use as usize, live);
        assert_ne!(accepted[0], accepted[1]);
    });
}

/// The pending queue of conditional accept: the peer's abort (WskAbortEvent), user mode's DECIDE
/// and the worker's timeout race for one deferred request; the worker then sends at most one
/// WskInspectComplete. Whatever the interleaving, the request is counted exactly once in the
/// counters of the accounting invariant: a withdrawal when the abort wins (also an abort that
/// overtakes a completed accept, which then never arrives), the timeout when it fires, and
/// otherwise the completion of the decision (a DECIDE alone counts nothing: the peer may still
/// withdraw; an accept counts when its connection arrives).
#[test]
fn a_deferred_request_ends_once_whatever_races_abort_timeout_and_decide() {
    // The queue is a few KB by value: run the model in a loom thread with a stack large enough.
    builder().check(|| {
        thread::Builder::new()
            .stack_size(1 << 22)
            .spawn(deferred_request_model)
            .unwrap()
            .join()
            .unwrap();
    });
}

fn deferred_request_model() {
    use wsk::WSK_INSPECT_ID;
    use wskaccept::pending::{Outcome, PendingQueue};
    {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let inspect = WSK_INSPECT_ID {
            Key: 1,
            SerialNumber: 7,
        };
        let mut queue = PendingQueue::new(0, addr);
        let id = queue.push(inspect, addr, addr, 0).unwrap();
        let queue = Arc::new(Mutex::new(queue));
        let outcomes = Arc::new(AtomicUsize::new(0));
        let withdrawn = Arc::new(AtomicUsize::new(0));
        let aborter = {
            let (queue, withdrawn) = (queue.clone(), withdrawn.clone());
            thread::spawn(move || {
                if queue.lock().unwrap().abort(&inspect) {
                    withdrawn.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let accepted = Arc::new(AtomicUsize::new(0));
        let decider = {
            let queue = queue.clone();
            thread::spawn(move || {
                let _ = queue.lock().unwrap().decide(id, true);
            })
        };
        let counted = |outcome: Option<Outcome>| {
            if outcome == Some(Outcome::Accepted) {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
            usize::from(matches!(
                outcome,
                Some(Outcome::Rejected | Outcome::Withdrawn)
            ))
        };
        // The worker: a timeout tick, then send whatever was decided.
        let expired = queue.lock().unwrap().expire(1_000, 1);
        outcomes.fetch_add(expired as usize, Ordering::SeqCst);
        let mut sent = 0;
        for _ in 0..2 {
            let outgoing = queue.lock().unwrap().next_outgoing();
            if let Some(outgoing) = outgoing {
                sent += 1;
                let outcome = queue.lock().unwrap().complete(outgoing.index);
                assert!(outcome.is_some());
                outcomes.fetch_add(counted(outcome), Ordering::SeqCst);
            }
        }
        aborter.join().unwrap();
        decider.join().unwrap();
        // A decision that arrived after the worker's pass is sent by the next pass.
        while let Some(outgoing) = queue.lock().unwrap().next_outgoing() {
            sent += 1;
            let outcome = queue.lock().unwrap().complete(outgoing.index);
            outcomes.fetch_add(counted(outcome), Ordering::SeqCst);
        }
        let withdrawn = withdrawn.load(Ordering::SeqCst);
        // An accepted connection arrives (and is counted) unless an abort said it never will.
        let arrived = usize::from(accepted.load(Ordering::SeqCst) == 1 && withdrawn == 0);
        assert_eq!(
            outcomes.load(Ordering::SeqCst) + withdrawn + arrived,
            1,
            "counted exactly once: withdrawn, timed out, or decided"
        );
        assert!(sent <= 1, "WskInspectComplete at most once");
        assert!(queue.lock().unwrap().is_empty(), "the slot is free again");
    }
}
