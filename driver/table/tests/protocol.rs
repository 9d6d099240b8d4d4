//! The slot protocol of `listener/slots.rs` (`Listener::decide_slot_work` and the slot IRPs'
//! completion routines), one step at a time, so that proptest interleaves completions the way
//! the hardware can: a completion routine takes its IRP back (it is not busy any more)
//! *outside* the listener lock, and runs its locked part later, after any number of worker
//! steps and other completions.

use super::*;

const DISCONNECT: u8 = 1;
const CLOSE_OP: u8 = 2;
const RECEIVE_OP: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The provider holds the IRP (busy).
    InProvider,
    /// The completion routine took the IRP back and waits for the lock.
    TakenBack,
}

#[derive(Clone, Copy, Debug)]
struct Completion {
    index: u32,
    op: u8,
    generation: u32,
    phase: Phase,
    /// For receives: the peer closed (0 bytes) rather than sent data.
    peer_gone: bool,
}

#[derive(Default, Clone, Copy)]
struct Irps {
    recv_busy: bool,
    ctl_busy: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    Accept,
    UserClose(usize, bool),
    Worker,
    TakeBack(usize),
    Locked(usize),
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Accept),
        2 => (0usize..8, any::<bool>()).prop_map(|(i, a)| Step::UserClose(i, a)),
        3 => Just(Step::Worker),
        3 => (0usize..8).prop_map(Step::TakeBack),
        3 => (0usize..8).prop_map(Step::Locked),
    ]
}

pub(super) struct Model {
    table: Table<u32>,
    irps: Vec<Irps>,
    completions: Vec<Completion>,
    next: u32,
    peers_gone: bool,
}

impl Model {
    pub(super) fn new(capacity: u32) -> Self {
        Self {
            table: Table::with_capacity(0, capacity, placeholder()).unwrap(),
            irps: vec![Irps::default(); capacity as usize],
            completions: Vec::new(),
            next: 0,
            peers_gone: false,
        }
    }

    fn release_if_ready(&mut self, index: u32) {
        let irps = self.irps[index as usize];
        let ready = self
            .table
            .entry(index)
            .is_some_and(|e| e.state() == SlotState::Closing && e.close_done);
        if ready && !irps.recv_busy && !irps.ctl_busy {
            assert!(self.table.release(index));
        }
    }

    fn submit(&mut self, index: u32, op: u8, generation: u32) {
        let irps = &mut self.irps[index as usize];
        if op == RECEIVE_OP {
            irps.recv_busy = true;
        } else {
            irps.ctl_busy = true;
        }
        self.completions.push(Completion {
            index,
            op,
            generation,
            phase: Phase::InProvider,
            peer_gone: self.peers_gone || self.next.is_multiple_of(3),
        });
    }

    /// `Listener::decide_slot_work` and the submission that follows it. False when there
    /// was no work.
    fn worker(&mut self) -> bool {
        let Some((index, bits)) = self.table.pop_work() else {
            return false;
        };
        let irps = self.irps[index as usize];
        let Some(entry) = self.table.entry(index) else {
            return true;
        };
        if entry.state() != SlotState::Active {
            return true;
        }
        let generation = entry.generation();
        if bits & (work::CLOSE | work::ABORT) != 0 {
            if irps.ctl_busy {
                return true;
            }
            if bits & work::ABORT == 0 && !entry.disconnected {
                self.submit(index, DISCONNECT, generation);
            } else {
                assert!(self.table.begin_close(index).is_some());
                self.submit(index, CLOSE_OP, generation);
            }
        } else if bits & work::RECEIVE != 0 && !irps.recv_busy && !entry.peer_closed {
            self.submit(index, RECEIVE_OP, generation);
        }
        true
    }

    /// `receive_done` and `ctl_done` after the lock is taken.
    fn locked(&mut self, c: Completion) {
        let index = c.index;
        let current = self.table.entry(index).map(|e| (e.state(), e.generation()));
        if c.op == RECEIVE_OP {
            match current {
                Some((SlotState::Active, g)) if g == c.generation => {
                    if c.peer_gone {
                        self.table.entry_mut(index).unwrap().peer_closed = true;
                        self.table.request(index, work::CLOSE);
                    } else {
                        self.table.request(index, work::RECEIVE);
                    }
                }
                Some((SlotState::Closing, g)) if g == c.generation => {
                    self.release_if_ready(index);
                }
                _ => {}
            }
        } else if current.is_some_and(|(_, g)| g == c.generation) {
            if c.op == DISCONNECT {
                self.table.entry_mut(index).unwrap().disconnected = true;
                self.table.request(index, work::CLOSE);
            } else {
                self.table.entry_mut(index).unwrap().close_done = true;
                self.release_if_ready(index);
            }
        }
    }

    pub(super) fn run(&mut self, step: &Step) {
        match *step {
            Step::Accept => {
                self.next += 1;
                if let Ok(id) = self.table.insert(self.next, info(1)) {
                    self.table.request(id.index(), work::RECEIVE);
                }
            }
            Step::UserClose(i, abortive) => {
                let capacity = self.table.capacity();
                let index = u32::try_from(i).unwrap() % capacity;
                if let Some(id) = self.table.id_of(index)
                    && self
                        .table
                        .get(id)
                        .is_some_and(|e| e.state() == SlotState::Active)
                {
                    self.table
                        .request(index, if abortive { work::ABORT } else { work::CLOSE });
                }
            }
            Step::Worker => {
                self.worker();
            }
            Step::TakeBack(k) if !self.completions.is_empty() => {
                let k = k % self.completions.len();
                let c = &mut self.completions[k];
                if c.phase == Phase::InProvider {
                    c.phase = Phase::TakenBack;
                    let irps = &mut self.irps[c.index as usize];
                    if c.op == RECEIVE_OP {
                        irps.recv_busy = false;
                    } else {
                        irps.ctl_busy = false;
                    }
                }
            }
            Step::Locked(k) if !self.completions.is_empty() => {
                let k = k % self.completions.len();
                if self.completions[k].phase == Phase::TakenBack {
                    let c = self.completions.remove(k);
                    self.locked(c);
                }
            }
            _ => {}
        }
    }

    /// Lets every outstanding completion finish and the worker drain, peers gone (like a
    /// stop): the protocol must come to rest with intact lists.
    pub(super) fn settle(&mut self) {
        self.peers_gone = true;
        for c in &mut self.completions {
            c.peer_gone = true;
        }
        for _ in 0..10_000 {
            if self.completions.is_empty() {
                if !self.worker() {
                    return;
                }
            } else {
                self.run(&Step::TakeBack(0));
                self.run(&Step::Locked(0));
            }
            self.table.check().unwrap();
        }
        panic!("the protocol did not settle");
    }

    pub(super) fn table(&self) -> &Table<u32> {
        &self.table
    }
}
