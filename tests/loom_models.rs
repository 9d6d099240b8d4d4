//! loom models of the driver's concurrent protocols: the listener's rundown (completion routines
//! racing a stop), the connection table under concurrent accept, close and lookup, a deferred
//! request's end, a late disconnect completion racing a close, skipped kicks, a worker pass in one
//! or several lock holds, the hand-over of event-accepted sockets across processors (by a later
//! callback, and by the hand-over DPC), and the lock-free work queue. loom explores every
//! interleaving of the threads
//! below (bounded by `LOOM_MAX_PREEMPTIONS`, default 2 here).

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
                    table.check().unwrap();
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
        table.check().unwrap();
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

/// One slot's ctl IRP as `conn::SlotIo` keeps it: the IRP's busy flag (cleared by `take_back`
/// in the completion routine, *before* the listener lock is taken), the operation and the slot
/// generation it was submitted for.
struct CtlIrp {
    busy: AtomicBool,
    op: loom::sync::atomic::AtomicU8,
    generation: loom::sync::atomic::AtomicU32,
}

const DISCONNECT: u8 = 1;
const CLOSE: u8 = 2;

/// The worker's part of `Listener::decide_slot_work` for close work, under the lock: start the
/// close (or the graceful disconnect) unless the ctl IRP is busy. Returns whether a close was
/// submitted.
fn worker_decides(table: &mut Table<u32>, ctl: &CtlIrp, index: u32, bits: u8) -> bool {
    use wskaccept::table::{SlotState, work};
    let Some(entry) = table.entry(index) else {
        return false;
    };
    if entry.state() != SlotState::Active || bits & (work::CLOSE | work::ABORT) == 0 {
        return false;
    }
    if ctl.busy.load(Ordering::SeqCst) {
        // A disconnect is in flight; its completion asks for the close again.
        return false;
    }
    let generation = entry.generation();
    ctl.busy.store(true, Ordering::SeqCst);
    ctl.generation.store(generation, Ordering::SeqCst);
    ctl.op.store(CLOSE, Ordering::SeqCst);
    table.begin_close(index).is_some()
}

/// `conn::ctl_done`, with its real window: the generation and operation are read and the IRP is
/// taken back (not busy any more) *before* the listener lock is taken. The locked part mirrors
/// the driver's, including `Listener::try_release` (the receive IRP is idle in this model).
fn ctl_completion(table: &Mutex<Table<u32>>, ctl: &CtlIrp, index: u32) {
    use wskaccept::table::work;
    let generation = ctl.generation.load(Ordering::SeqCst);
    let op = ctl.op.load(Ordering::SeqCst);
    ctl.busy.store(false, Ordering::SeqCst);
    let mut table = table.lock().unwrap();
    if table
        .entry(index)
        .is_some_and(|e| e.generation() == generation)
    {
        if op == DISCONNECT {
            if let Some(entry) = table.entry_mut(index) {
                entry.disconnected = true;
            }
            table.request(index, work::CLOSE);
        } else {
            if let Some(entry) = table.entry_mut(index) {
                entry.close_done = true;
            }
            let ready = table.entry(index).is_some_and(|e| e.close_done);
            if ready && !ctl.busy.load(Ordering::SeqCst) {
                table.release(index);
            }
        }
    }
    table.check().unwrap();
}

/// Slots the modelled worker decides per lock hold (`listener::slots`'s `SLOT_WORK_CHUNK` is 16;
/// 2 here covers both slots of the model in one hold, the widest decide-then-perform window).
const MODEL_CHUNK: usize = 2;

/// The worker, as `Listener::run_slot_work` runs: each lock hold pops up to a chunk of queued
/// slots and decides what they ask for; the calls are made after the lock is released (a close it
/// starts completes inline, as the provider may complete before WskCloseSocket returns); repeat
/// while a hold fills its chunk (work asked for after a hold is taken by the pass its kick
/// queues: the caller runs this again for each kick).
fn worker_run(table: &Mutex<Table<u32>>, ctl: &CtlIrp) {
    loop {
        let (popped, closing) = {
            let mut guard = table.lock().unwrap();
            let mut closing = Vec::new();
            let mut popped = 0;
            while popped < MODEL_CHUNK {
                let Some((index, bits)) = guard.pop_work() else {
                    break;
                };
                popped += 1;
                if index == 0 && worker_decides(&mut guard, ctl, index, bits) {
                    closing.push(index);
                }
            }
            guard.check().unwrap();
            (popped, closing)
        };
        if popped == 0 {
            return;
        }
        for index in closing {
            ctl_completion(table, ctl, index);
        }
        if popped < MODEL_CHUNK {
            return;
        }
    }
}

/// Finding 3 of issue 11, as it happens in the driver: slot 0 has a graceful disconnect in
/// flight and a user ABORT queued. The disconnect's completion takes its IRP back and then waits
/// for the lock while the worker starts (and completes) the close on the now idle IRP; the late
/// disconnect completion then asks for CLOSE on the Closing slot. Whatever the interleaving, the
/// table's free and work lists stay intact, a freed slot is never on the work list, and work
/// asked for a reused slot and for another slot is popped exactly once each.
#[test]
fn late_disconnect_completion_racing_a_close_never_corrupts_the_work_list() {
    use wskaccept::table::work;
    builder().check(|| {
        let mut table =
            Table::<u32>::with_capacity(0, 2, std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
                .unwrap();
        let a = table.insert(1, info()).unwrap();
        let b = table.insert(2, info()).unwrap();
        let ctl = Arc::new(CtlIrp {
            busy: AtomicBool::new(true),
            op: loom::sync::atomic::AtomicU8::new(DISCONNECT),
            generation: loom::sync::atomic::AtomicU32::new(
                table.entry(a.index()).unwrap().generation(),
            ),
        });
        // The user's ABORT (close_connection) for the slot whose disconnect is in flight.
        table.request(a.index(), work::ABORT);
        let table = Arc::new(Mutex::new(table));
        let disconnect_done = {
            let (table, ctl) = (table.clone(), ctl.clone());
            thread::spawn(move || ctl_completion(&table, &ctl, a.index()))
        };
        worker_run(&table, &ctl);
        disconnect_done.join().unwrap();
        // The kick of the disconnect completion: the worker runs again.
        worker_run(&table, &ctl);
        let mut guard = table.lock().unwrap();
        guard.check().unwrap();
        assert!(guard.get(a).is_none(), "slot 0's connection is closed");
        // A new connection reuses the slot; it and slot 1 both ask for work.
        let c = guard.insert(3, info()).unwrap();
        guard.request(c.index(), work::RECEIVE);
        guard.request(b.index(), work::RECEIVE);
        guard.check().unwrap();
        let mut popped = Vec::new();
        while let Some((index, bits)) = guard.pop_work() {
            assert!(popped.len() < 2, "the work list loops");
            popped.push((index, bits));
        }
        popped.sort_unstable();
        let mut expected = vec![(c.index(), work::RECEIVE), (b.index(), work::RECEIVE)];
        expected.sort_unstable();
        assert_eq!(popped, expected, "each queued slot is popped once");
        guard.check().unwrap();
    });
}

/// The listener's lock-protected state as `Listener::worker_needed` reads it: slot work queued and
/// whether every accept IRP is pending.
struct KickState {
    work: u32,
    accepts_pending: bool,
}

/// The work queue as `kernel::workqueue` runs one item: `queued` (cleared before the routine runs)
/// and the list with its wake-up. `queued` is the item's atomic flag; it is modelled as a tiny
/// mutex-guarded bool (its swap and store are linearizable either way) because loom 0.7 let a
/// swap read a value older than a store that happened before it through the listener lock.
struct WorkItem {
    queued: Mutex<bool>,
    /// (the item is on the list, the queue's thread is told to stop)
    list: Mutex<(bool, bool)>,
    wake: Condvar,
}

impl WorkItem {
    /// An item already queued (a pass is due when the model starts).
    fn queued() -> Self {
        Self {
            queued: Mutex::new(true),
            list: Mutex::new((true, false)),
            wake: Condvar::new(),
        }
    }

    /// `WorkQueue::queue`: on the list unless it is already queued.
    fn queue(&self) {
        if !std::mem::replace(&mut *self.queued.lock().unwrap(), true) {
            self.list.lock().unwrap().0 = true;
            self.wake.notify_all();
        }
    }

    /// The queue's thread: runs `process` while the item is queued (its flag cleared first), until
    /// told to stop.
    fn run(&self, process: impl Fn()) {
        loop {
            {
                let mut list = self.list.lock().unwrap();
                while !list.0 && !list.1 {
                    list = self.wake.wait(list).unwrap();
                }
                if !list.0 {
                    return;
                }
                list.0 = false;
            }
            *self.queued.lock().unwrap() = false;
            process();
        }
    }

    /// Tells the queue's thread to stop once the list is empty.
    fn stop(&self) {
        self.list.lock().unwrap().1 = true;
        self.wake.notify_all();
    }
}

struct KickModel {
    shared: Mutex<KickState>,
    item: WorkItem,
}

impl KickModel {
    /// `Listener::kick_locked`, called with the listener lock held: queue the item unless the
    /// worker would find nothing (`worker_needed`), and not twice.
    fn kick_locked(&self, state: &KickState) {
        if state.work == 0 && state.accepts_pending {
            return;
        }
        self.item.queue();
    }

    /// `Listener::process`: re-arm the accept IRP and take every slot's work (the calls follow
    /// outside the lock).
    fn process(&self) {
        let mut state = self.shared.lock().unwrap();
        state.work = 0;
        state.accepts_pending = true;
    }
}

/// Kicks that find nothing for the worker are skipped (`Listener::worker_needed`): a close
/// completing, an accept callback whose socket waits for its hand-over. Whatever the
/// interleaving with a worker pass in progress (the item's `queued` flag is cleared before the
/// routine runs), work asked for by a completion and an accept IRP to re-arm are never left
/// behind with no pass queued to take them.
#[test]
fn skipped_kicks_never_strand_work_for_the_worker() {
    builder().check(|| {
        let model = Arc::new(KickModel {
            shared: Mutex::new(KickState {
                work: 1,
                accepts_pending: true,
            }),
            item: WorkItem::queued(),
        });
        let worker = {
            let model = model.clone();
            thread::spawn(move || model.item.run(|| model.process()))
        };
        // A disconnect completing (asks for the close), an accept completing (its IRP is idle
        // now), and a close completing (nothing for the worker: its kick is skipped).
        let completions: Vec<_> = [0u8, 1, 2]
            .into_iter()
            .map(|kind| {
                let model = model.clone();
                thread::spawn(move || {
                    let mut state = model.shared.lock().unwrap();
                    match kind {
                        0 => state.work += 1,
                        1 => state.accepts_pending = false,
                        _ => {}
                    }
                    model.kick_locked(&state);
                })
            })
            .collect();
        for completion in completions {
            completion.join().unwrap();
        }
        model.item.stop();
        worker.join().unwrap();
        let state = model.shared.lock().unwrap();
        assert_eq!(state.work, 0, "slot work was left with no pass queued");
        assert!(
            state.accepts_pending,
            "an idle accept IRP was left with no pass queued"
        );
    });
}

/// What proves that an earlier accept callback returned, in the hand-over model (the driver's
/// `listener::admission::Returned`).
#[derive(Clone, Copy)]
enum Proof {
    /// The driver's rule: a later callback on the same processor.
    SameProcessor,
    /// The rule before it: any later callback (it assumed one listener's callbacks come one at a
    /// time, which Windows does not say).
    AnyLaterCallback,
}

/// The listener's hand-over list and what the worker was handed, under the listener lock.
#[derive(Default)]
struct HandOverState {
    /// (socket, processor its callback ran on, its callback reached its last statement)
    awaiting: Vec<(usize, usize, bool)>,
    handed: Vec<usize>,
}

struct HandOverModel {
    shared: Mutex<HandOverState>,
    /// The provider has recorded that the callback handing over socket `i` returned: only then
    /// may another thread use the socket.
    recorded: [AtomicBool; 3],
    proof: Proof,
}

impl HandOverModel {
    /// `accept_event` on `processor` for `socket`: at its entry, hand over what earlier callbacks
    /// proved returned; admit; its last statement marks the socket's callback finished; then the
    /// provider records the return.
    fn callback(&self, processor: usize, socket: usize) {
        {
            let mut state = self.shared.lock().unwrap();
            let proof = self.proof;
            let (ready, waiting): (Vec<_>, Vec<_>) =
                state.awaiting.drain(..).partition(|&(_, on, returned)| {
                    returned
                        && match proof {
                            Proof::SameProcessor => on == processor,
                            Proof::AnyLaterCallback => true,
                        }
                });
            state.awaiting = waiting;
            state.handed.extend(ready.into_iter().map(|(s, _, _)| s));
            state.awaiting.push((socket, processor, false));
        }
        {
            // `accept_event_returning`: the last statement.
            let mut state = self.shared.lock().unwrap();
            if let Some(entry) = state.awaiting.iter_mut().find(|e| e.0 == socket) {
                entry.2 = true;
            }
        }
        self.recorded[socket].store(true, Ordering::SeqCst);
    }

    /// The worker: uses every socket handed over so far.
    fn work(&self) -> usize {
        use_handed_over(&self.shared, &self.recorded)
    }
}

/// The worker of the hand-over models: uses every socket handed over so far, each of which must
/// be recorded (its callback returned).
fn use_handed_over(shared: &Mutex<HandOverState>, recorded: &[AtomicBool]) -> usize {
    let handed: Vec<usize> = shared.lock().unwrap().handed.drain(..).collect();
    for &socket in &handed {
        assert!(
            recorded[socket].load(Ordering::SeqCst),
            "the worker used socket {socket} before its callback returned"
        );
    }
    handed.len()
}

fn hand_over_model(proof: Proof) {
    builder().check(move || {
        let model = Arc::new(HandOverModel {
            shared: Mutex::new(HandOverState::default()),
            recorded: [
                AtomicBool::new(false),
                AtomicBool::new(false),
                AtomicBool::new(false),
            ],
            proof,
        });
        // Processor 0 indicates sockets 0 then 1; processor 1 indicates socket 2.
        let first = {
            let model = model.clone();
            thread::spawn(move || {
                model.callback(0, 0);
                model.callback(0, 1);
            })
        };
        let second = {
            let model = model.clone();
            thread::spawn(move || model.callback(1, 2))
        };
        let worker = {
            let model = model.clone();
            thread::spawn(move || model.work() + model.work())
        };
        first.join().unwrap();
        second.join().unwrap();
        let mut used = worker.join().unwrap();
        // The listening socket's close completed: every callback returned; hand over the rest.
        {
            let mut state = model.shared.lock().unwrap();
            let rest: Vec<usize> = state.awaiting.drain(..).map(|e| e.0).collect();
            state.handed.extend(rest);
        }
        used += model.work();
        assert_eq!(used, 3, "every socket is handed over once");
    });
}

/// The hand-over of event-accepted sockets (`listener::admission`): accept callbacks on two
/// processors (threads: sequential, as a processor is at DISPATCH_LEVEL), each followed by the
/// provider recording its return, and a worker using what was handed over. A callback's entry
/// hands over only the sockets of earlier callbacks on its own processor. Whatever the
/// interleaving, no socket is used before its callback returned, and each is handed over once.
#[test]
fn an_event_accepted_socket_reaches_the_worker_only_after_its_callback_returned() {
    hand_over_model(Proof::SameProcessor);
}

/// The model is not vacuous: the old rule (any later callback proves the earlier ones returned)
/// is caught.
#[test]
#[should_panic(expected = "before its callback returned")]
fn handing_over_at_any_later_callback_is_caught() {
    hand_over_model(Proof::AnyLaterCallback);
}

/// When the modelled hand-over DPC may run (the driver's `listener::handover_dpc`).
#[derive(Clone, Copy)]
enum DpcRule {
    /// As on Windows (and in the host kernel): only while its processor is not at
    /// DISPATCH_LEVEL, so after the section of every callback that queued it.
    AfterSection,
    /// At any time once queued: inside the queueing callback's section, before the provider
    /// recorded the callback's return.
    AnyTime,
}

/// Accept callbacks at DISPATCH_LEVEL on two processors, each queueing its processor's hand-over
/// DPC as its last statement, and the DPCs handing the sockets over.
struct DpcModel {
    shared: Mutex<HandOverState>,
    /// The provider has recorded that the callback handing over socket `i` returned.
    recorded: [AtomicBool; 3],
    /// Held while processor `p` is at DISPATCH_LEVEL: a callback's whole section (the callback,
    /// then the provider's recording of its return).
    section: [Mutex<()>; 2],
    /// Processor `p`'s DPC is queued.
    queued: [AtomicBool; 2],
    rule: DpcRule,
}

impl DpcModel {
    /// `accept_event` on `processor` for `socket`, at DISPATCH_LEVEL: admit, the last statement
    /// (`accept_event_returning`: returned, then the DPC queued), then the provider records the
    /// return before the processor leaves DISPATCH_LEVEL.
    fn callback(&self, processor: usize, socket: usize) {
        let _section = self.section[processor].lock().unwrap();
        self.shared
            .lock()
            .unwrap()
            .awaiting
            .push((socket, processor, false));
        {
            let mut state = self.shared.lock().unwrap();
            if let Some(entry) = state.awaiting.iter_mut().find(|e| e.0 == socket) {
                entry.2 = true;
            }
        }
        self.queued[processor].store(true, Ordering::SeqCst);
        self.recorded[socket].store(true, Ordering::SeqCst);
    }

    /// Processor `processor`'s DPC, if queued: hands over what callbacks on that processor
    /// finished (`Returned::OnProcessor`).
    fn dpc(&self, processor: usize) {
        let _section = match self.rule {
            DpcRule::AfterSection => Some(self.section[processor].lock().unwrap()),
            DpcRule::AnyTime => None,
        };
        if !self.queued[processor].swap(false, Ordering::SeqCst) {
            return;
        }
        let mut state = self.shared.lock().unwrap();
        let (ready, waiting): (Vec<_>, Vec<_>) = state
            .awaiting
            .drain(..)
            .partition(|&(_, on, returned)| returned && on == processor);
        state.awaiting = waiting;
        state.handed.extend(ready.into_iter().map(|(s, _, _)| s));
    }

    /// The worker: uses every socket handed over so far.
    fn work(&self) -> usize {
        use_handed_over(&self.shared, &self.recorded)
    }
}

fn dpc_model(rule: DpcRule) {
    builder().check(move || {
        let model = Arc::new(DpcModel {
            shared: Mutex::new(HandOverState::default()),
            recorded: [
                AtomicBool::new(false),
                AtomicBool::new(false),
                AtomicBool::new(false),
            ],
            section: [Mutex::new(()), Mutex::new(())],
            queued: [AtomicBool::new(false), AtomicBool::new(false)],
            rule,
        });
        // Processor 0 indicates sockets 0 then 1 and runs its DPCs when it leaves DISPATCH_LEVEL;
        // processor 1 indicates socket 2 and goes idle: the host's DPC thread runs its DPC.
        let first = {
            let model = model.clone();
            thread::spawn(move || {
                model.callback(0, 0);
                model.dpc(0);
                model.callback(0, 1);
                model.dpc(0);
            })
        };
        let second = {
            let model = model.clone();
            thread::spawn(move || model.callback(1, 2))
        };
        let dpc_thread = {
            let model = model.clone();
            thread::spawn(move || model.dpc(1))
        };
        let worker = {
            let model = model.clone();
            thread::spawn(move || model.work())
        };
        first.join().unwrap();
        second.join().unwrap();
        dpc_thread.join().unwrap();
        let mut used = worker.join().unwrap();
        // The DPC thread runs an idle processor's queued DPC (KeFlushQueuedDpcs waits for it).
        model.dpc(1);
        used += model.work();
        // No waited disable, no listening-socket close: the DPCs alone hand every socket over.
        assert_eq!(
            used, 3,
            "every socket is handed over once, by the DPCs alone"
        );
    });
}

/// The hand-over DPC (`listener::handover_dpc`): each callback queues its processor's DPC as
/// its last statement; a DPC runs only when its processor is not at DISPATCH_LEVEL, so after
/// the provider recorded the return of every callback that queued it. Whatever the interleaving,
/// no socket is used before its callback returned, and the DPCs alone hand each over once.
#[test]
fn a_hand_over_dpc_hands_over_only_after_the_callback_returned() {
    dpc_model(DpcRule::AfterSection);
}

/// The model is not vacuous: a DPC that could run inside its processor's DISPATCH_LEVEL section
/// (before the provider recorded the callback's return) is caught.
#[test]
#[should_panic(expected = "before its callback returned")]
fn a_dpc_running_inside_the_section_is_caught() {
    dpc_model(DpcRule::AnyTime);
}

/// The listener's state for [`PassModel`]: slot work queued (under the lock), and the accept
/// IRP's state, written under the lock and read by the worker's first look without it (as
/// `Listener::service_accepts` reads its `AtomicState`s).
struct PassModel {
    work: Mutex<u32>,
    accept_idle: AtomicBool,
    item: WorkItem,
}

/// `run_slot_work`'s chunk in [`PassModel`]: small, so that a round that fills it is explored.
const PASS_CHUNK: u32 = 2;

impl PassModel {
    /// `Listener::kick_locked` with the lock (`work`) held: as [`KickModel::kick_locked`].
    fn kick_locked(&self, work: u32) {
        if work == 0 && !self.accept_idle.load(Ordering::Acquire) {
            return;
        }
        self.item.queue();
    }

    /// `Listener::process` in several holds of the lock (a pass after a hand-over tick, or outside
    /// phase Running; the usual pass is `process_in_one_hold`): the phase hold notes
    /// whether slot work is queued; `run_slot_work` runs only then, a chunk per hold, and stops
    /// after a round that did not fill its chunk; `service_accepts` looks at the accept state
    /// without the lock and claims it under the lock only when it saw it idle.
    fn process(&self) {
        let queued = *self.work.lock().unwrap() > 0;
        if queued {
            loop {
                let popped = {
                    let mut work = self.work.lock().unwrap();
                    let popped = (*work).min(PASS_CHUNK);
                    *work -= popped;
                    popped
                };
                if popped < PASS_CHUNK {
                    break;
                }
            }
        }
        if self.accept_idle.load(Ordering::Acquire) {
            let _work = self.work.lock().unwrap();
            self.accept_idle.store(false, Ordering::Release);
        }
    }
}

/// `Listener::process`'s usual pass (phase Running, no hand-over tick) in [`PassModel`]: one hold
/// takes the first chunk of slot work and claims the idle accept IRP; further rounds, each in a
/// hold of its own, only after a round that filled its chunk.
fn process_in_one_hold(model: &PassModel) {
    let popped = {
        let mut work = model.work.lock().unwrap();
        let popped = (*work).min(PASS_CHUNK);
        *work -= popped;
        // Claimed under the same hold: the accept state is written under the lock.
        if model.accept_idle.load(Ordering::Acquire) {
            model.accept_idle.store(false, Ordering::Release);
        }
        popped
    };
    if popped == PASS_CHUNK {
        loop {
            let popped = {
                let mut work = model.work.lock().unwrap();
                let popped = (*work).min(PASS_CHUNK);
                *work -= popped;
                popped
            };
            if popped < PASS_CHUNK {
                break;
            }
        }
    }
}

/// As `a_pass_in_several_holds_never_strands_work`, for the usual pass started in one hold
/// (`process_in_one_hold`): the first chunk and the accept claim in the phase hold. Two
/// disconnect completions and an accept completion race the pass; nothing is left with no pass
/// queued.
#[test]
fn a_pass_started_in_one_hold_never_strands_work() {
    builder().check(|| race_completions_against_a_pass(process_in_one_hold));
}

/// As `skipped_kicks_never_strand_work_for_the_worker`, for a pass made of several lock holds
/// (the phase hold, the slot work's chunks, the accept claim) with the shortcuts that save holds:
/// no slot work looked for when the phase hold saw none, no further round after one that did not
/// fill its chunk, no accept hold when the unlocked look saw the IRP pending. Two disconnect
/// completions and an accept completion race the pass; nothing is left with no pass queued.
#[test]
fn a_pass_in_several_holds_never_strands_work() {
    builder().check(|| race_completions_against_a_pass(PassModel::process));
}

/// One slot-work item queued, a pass (`pass`) on the worker, and three completions racing it: two
/// disconnects (each asks for a close: with the one queued at the start, a full chunk and one
/// more) and an accept (its IRP is idle). Nothing may be left with no pass queued.
fn race_completions_against_a_pass(pass: fn(&PassModel)) {
    let model = Arc::new(PassModel {
        work: Mutex::new(1),
        accept_idle: AtomicBool::new(false),
        item: WorkItem::queued(),
    });
    let worker = {
        let model = model.clone();
        thread::spawn(move || model.item.run(|| pass(&model)))
    };
    let completions: Vec<_> = [0u8, 0, 1]
        .into_iter()
        .map(|kind| {
            let model = model.clone();
            thread::spawn(move || {
                let mut work = model.work.lock().unwrap();
                if kind == 0 {
                    *work += 1;
                } else {
                    model.accept_idle.store(true, Ordering::Release);
                }
                model.kick_locked(*work);
            })
        })
        .collect();
    for completion in completions {
        completion.join().unwrap();
    }
    model.item.stop();
    worker.join().unwrap();
    assert_eq!(
        *model.work.lock().unwrap(),
        0,
        "slot work was left with no pass queued"
    );
    assert!(
        !model.accept_idle.load(Ordering::Acquire),
        "an idle accept IRP was left with no pass queued"
    );
}

/// `kernel::workqueue` as it runs: items pushed on an atomic stack with a compare-and-swap (after
/// the item's `queued` swap), the wake-up event set after every push; the thread takes the whole
/// stack with one swap, reverses it, and runs each item oldest first, reading its link before it
/// clears `queued` (a kick may push it again from then on); it waits on the event only after a
/// swap found the stack empty. Items are indexes (`NIL`: null); the event is an auto-reset flag.
/// As in the driver, work is asked under its owner's lock, the kick is made with that lock held
/// (`Listener::kick_locked`), and the routine takes the lock after `queued` was cleared; `queued`
/// is a mutex-guarded flag for the reason given at [`WorkItem`].
struct LockFreeQueue {
    pushed: AtomicUsize,
    next: [AtomicUsize; 3],
    queued: [Mutex<bool>; 3],
    /// Work asked of each item's routine and not yet taken by a run of it (the owners' state,
    /// under their locks).
    asked: [Mutex<usize>; 3],
    /// Routines run, in order.
    ran: Mutex<Vec<usize>>,
    wake: (Mutex<bool>, Condvar),
    stopping: AtomicBool,
}

const NIL: usize = usize::MAX;

impl LockFreeQueue {
    fn new() -> Self {
        Self {
            pushed: AtomicUsize::new(NIL),
            next: std::array::from_fn(|_| AtomicUsize::new(NIL)),
            queued: std::array::from_fn(|_| Mutex::new(false)),
            asked: std::array::from_fn(|_| Mutex::new(0)),
            ran: Mutex::new(Vec::new()),
            wake: (Mutex::new(false), Condvar::new()),
            stopping: AtomicBool::new(false),
        }
    }

    fn set_event(&self) {
        *self.wake.0.lock().unwrap() = true;
        self.wake.1.notify_all();
    }

    /// A kick: under the owner's lock, ask the routine for work, then `WorkQueueHandle::queue`.
    fn kick(&self, item: usize) {
        let mut asked = self.asked[item].lock().unwrap();
        *asked += 1;
        if std::mem::replace(&mut *self.queued[item].lock().unwrap(), true) {
            return;
        }
        let mut head = self.pushed.load(Ordering::Relaxed);
        loop {
            self.next[item].store(head, Ordering::Relaxed);
            match self.pushed.compare_exchange_weak(
                head,
                item,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        self.set_event();
        drop(asked);
    }

    /// The queue's thread (`workqueue::run`).
    fn run(&self) {
        loop {
            let mut taken = self.pushed.swap(NIL, Ordering::Acquire);
            if taken == NIL {
                if self.stopping.load(Ordering::Acquire) {
                    if self.pushed.load(Ordering::Acquire) == NIL {
                        return;
                    }
                    continue;
                }
                let mut set = self.wake.0.lock().unwrap();
                while !*set {
                    set = self.wake.1.wait(set).unwrap();
                }
                *set = false;
                continue;
            }
            let (mut batch, mut linked) = (NIL, 0);
            while taken != NIL {
                linked += 1;
                assert!(linked <= 3, "an item is linked twice");
                let next = self.next[taken].load(Ordering::Relaxed);
                self.next[taken].store(batch, Ordering::Relaxed);
                batch = taken;
                taken = next;
            }
            while batch != NIL {
                let item = batch;
                batch = self.next[item].load(Ordering::Relaxed);
                *self.queued[item].lock().unwrap() = false;
                // The routine takes, under the owner's lock, every piece of work asked so far.
                *self.asked[item].lock().unwrap() = 0;
                self.ran.lock().unwrap().push(item);
            }
        }
    }
}

/// The lock-free work queue loses no kick: two threads kick three items (one item from both,
/// racing its own run), then the queue is stopped; every piece of work asked was taken by a later
/// run of its routine, no item was ever linked twice, and one thread's kicks of two items not yet
/// queued run in the order they were made.
#[test]
fn the_lock_free_work_queue_loses_no_kick_and_keeps_order() {
    builder().check(|| {
        let queue = Arc::new(LockFreeQueue::new());
        let thread = {
            let queue = queue.clone();
            thread::spawn(move || queue.run())
        };
        let first = {
            let queue = queue.clone();
            thread::spawn(move || {
                queue.kick(0);
                queue.kick(1);
            })
        };
        let second = {
            let queue = queue.clone();
            thread::spawn(move || {
                queue.kick(2);
                queue.kick(0);
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        queue.stopping.store(true, Ordering::Release);
        queue.set_event();
        thread.join().unwrap();
        for item in 0..3 {
            assert_eq!(
                *queue.asked[item].lock().unwrap(),
                0,
                "item {item}: a kick was lost"
            );
        }
        let ran = queue.ran.lock().unwrap();
        let at = |item| ran.iter().position(|&i| i == item).unwrap();
        // Item 1 was queued only by the first thread, after its kick of item 0.
        assert!(at(0) < at(1), "kicks ran out of order: {ran:?}");
    });
}
