//! The connection table: preallocated at listener start, O(1) insert, lookup and remove through
//! an intrusive free list, no allocation after creation. It lives under the listener's spin lock;
//! every method is a few instructions (safe at DISPATCH_LEVEL).
//!
//! User mode sees a 64-bit [`ConnId`] (listener slot, serial, slot index; packed by
//! [`crate::ids`]), never a pointer. Every connection gets a serial no other connection of the
//! driver ever had, so a stale id is refused for the life of the driver, whoever reuses the slot.
//! Separately, a slot's `generation` changes every time it is freed, so a completion submitted
//! for an earlier occupant of the slot recognises that it is late.
//!
//! The table also keeps an intrusive FIFO of slots with work for the worker (first receive,
//! re-arm, close) so completion routines can hand work over without allocating. The FIFO is
//! doubly linked and only [`Table::link_work`] and [`Table::unlink_work`] touch its links: a slot
//! is on it exactly when it has work bits, and every way out of a slot's life (pop, release)
//! unlinks it, so a freed or reused slot can never be left linked (issue 11, finding 3: a late
//! completion asked for work on a Closing slot, `release` freed it while linked, and its reuse cut
//! the list).

use core::net::SocketAddr;

use wsk::NtStatus;

use crate::ids;
use crate::kernel::{PoolSlice, tags};

const NIL: u32 = u32::MAX;

/// Slots one call of [`Table::active_from`] examines at most.
pub const SCAN_CHUNK: u32 = 256;

/// A connection id: listener slot, serial (never 0, never reused) and slot index, packed by
/// [`crate::ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Builds an id.
    #[must_use]
    pub const fn new(listener: u8, serial: u64, index: u32) -> Self {
        Self(ids::pack(listener, serial, index))
    }

    /// The listener slot.
    #[must_use]
    pub const fn listener(self) -> u8 {
        ids::listener(self.0)
    }

    /// The connection's serial.
    #[must_use]
    pub const fn serial(self) -> u64 {
        ids::serial(self.0)
    }

    /// The slot index.
    #[must_use]
    pub const fn index(self) -> u32 {
        ids::index(self.0)
    }
}

/// Which WSK path accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptPath {
    /// WskAccept with a caller-allocated IRP.
    Irp,
    /// The WskAcceptEvent callback.
    Event,
}

/// A slot's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// On the free list.
    Free,
    /// Holding an accepted connection.
    Active,
    /// Its socket is being closed; freed when every IRP of the slot is back.
    Closing,
}

/// Work a slot asks the worker for (bits).
pub mod work {
    /// Post (or re-post) the receive that notices the peer's close.
    pub const RECEIVE: u8 = 0x01;
    /// Close gracefully: disconnect (FIN), then close.
    pub const CLOSE: u8 = 0x02;
    /// Close abortively (RST) at once.
    pub const ABORT: u8 = 0x04;
}

/// What a slot records about its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Peer address.
    pub remote: SocketAddr,
    /// Local address.
    pub local: SocketAddr,
    /// The accepting path.
    pub path: AcceptPath,
    /// KeQueryInterruptTime at accept, 100 ns units.
    pub accepted_at: u64,
}

/// One slot. `S` is the owned socket type (a `ConnSocket` in the driver).
pub struct Entry<S> {
    /// Changes every time the slot is freed (completions compare it); wraps, never 0.
    generation: u32,
    /// The occupant's serial (its id); 0 while free.
    serial: u64,
    state: SlotState,
    next_free: u32,
    /// Work list links; touched only by `link_work` and `unlink_work`.
    prev_work: u32,
    next_work: u32,
    /// Work bits; non-zero exactly when the slot is on the work list.
    work: u8,
    socket: Option<S>,
    info: ConnInfo,
    /// The peer closed (or reset) the connection.
    pub peer_closed: bool,
    /// A graceful disconnect has completed.
    pub disconnected: bool,
    /// WskCloseSocket has completed for this slot.
    pub close_done: bool,
}

impl<S> Entry<S> {
    /// The slot's state.
    #[must_use]
    pub fn state(&self) -> SlotState {
        self.state
    }

    /// The slot's current generation (for completions; ids use the serial).
    #[must_use]
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// What was recorded at accept.
    #[must_use]
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The socket, while the slot is Active.
    #[must_use]
    pub fn socket(&self) -> Option<&S> {
        self.socket.as_ref()
    }
}

/// Occupancy figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Slots Active or Closing.
    pub in_use: u32,
    /// Highest `in_use` seen.
    pub peak: u32,
    /// Slots in all.
    pub capacity: u32,
}

/// The table.
///
/// Invariants: every index on the free list is `Free`; every other slot is `Active` or `Closing`;
/// `in_use` counts the latter; a slot is on the work list exactly when its `work` bits are non-zero,
/// and then it is not `Free` (checked by [`Table::check`]).
pub struct Table<S> {
    entries: PoolSlice<Entry<S>>,
    listener: u8,
    free_head: u32,
    work_head: u32,
    work_tail: u32,
    in_use: u32,
    peak: u32,
}

/// The table is full: the socket comes back to the caller, who rejects it.
#[derive(Debug)]
pub struct Full<S>(pub S);

impl<S> Table<S> {
    /// Bytes of driver memory per slot (the table's own; kernel objects per slot are extra).
    pub const BYTES_PER_ENTRY: usize = size_of::<Entry<S>>();

    /// A table of `capacity` free slots. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INVALID_PARAMETER for a zero capacity, STATUS_INSUFFICIENT_RESOURCES for no memory.
    pub fn with_capacity(
        listener: u8,
        capacity: u32,
        placeholder: SocketAddr,
    ) -> Result<Self, NtStatus> {
        if capacity == 0 || capacity == NIL {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let entries = PoolSlice::try_new(tags::TABLE, capacity as usize, |index| {
            let next = u32::try_from(index + 1).unwrap_or(NIL);
            Ok(Entry {
                generation: 1,
                serial: 0,
                state: SlotState::Free,
                next_free: if next == capacity { NIL } else { next },
                prev_work: NIL,
                next_work: NIL,
                work: 0,
                socket: None,
                info: ConnInfo {
                    remote: placeholder,
                    local: placeholder,
                    path: AcceptPath::Irp,
                    accepted_at: 0,
                },
                peer_closed: false,
                disconnected: false,
                close_done: false,
            })
        })?;
        Ok(Self {
            entries,
            listener,
            free_head: 0,
            work_head: NIL,
            work_tail: NIL,
            in_use: 0,
            peak: 0,
        })
    }

    /// Occupancy now.
    #[must_use]
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            in_use: self.in_use,
            peak: self.peak,
            capacity: u32::try_from(self.entries.len()).unwrap_or(NIL),
        }
    }

    /// Inserts an accepted connection; O(1), no allocation.
    ///
    /// # Errors
    /// [`Full`] with the socket when no slot is free (or, after 2^44 connections in the life of
    /// the driver, no serial is left).
    pub fn insert(&mut self, socket: S, info: ConnInfo) -> Result<ConnId, Full<S>> {
        let index = self.free_head;
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return Err(Full(socket));
        };
        let Some(serial) = ids::next_serial() else {
            return Err(Full(socket));
        };
        entry.serial = serial;
        self.free_head = entry.next_free;
        entry.next_free = NIL;
        entry.state = SlotState::Active;
        entry.socket = Some(socket);
        entry.info = info;
        entry.peer_closed = false;
        entry.disconnected = false;
        entry.close_done = false;
        self.in_use += 1;
        self.peak = self.peak.max(self.in_use);
        Ok(ConnId::new(self.listener, serial, index))
    }

    /// The entry an id names, if the id is current (right listener slot, index and serial, slot
    /// not free). O(1).
    #[must_use]
    pub fn get(&self, id: ConnId) -> Option<&Entry<S>> {
        if id.listener() != self.listener {
            return None;
        }
        let entry = self.entries.get(id.index() as usize)?;
        (entry.state != SlotState::Free && entry.serial == id.serial()).then_some(entry)
    }

    /// The entry at `index` whatever its state.
    #[must_use]
    pub fn entry(&self, index: u32) -> Option<&Entry<S>> {
        self.entries.get(index as usize)
    }

    /// The entry at `index`, mutable.
    pub fn entry_mut(&mut self, index: u32) -> Option<&mut Entry<S>> {
        self.entries.get_mut(index as usize)
    }

    /// The id of the slot at `index` as it is now.
    #[must_use]
    pub fn id_of(&self, index: u32) -> Option<ConnId> {
        self.entry(index)
            .filter(|e| e.state != SlotState::Free)
            .map(|e| ConnId::new(self.listener, e.serial, index))
    }

    /// Asks the worker for `bits` on a slot that is not free; queues it once. O(1).
    pub fn request(&mut self, index: u32, bits: u8) {
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        if entry.state == SlotState::Free || bits == 0 {
            return;
        }
        let was_queued = entry.work != 0;
        entry.work |= bits;
        if !was_queued {
            self.link_work(index);
        }
    }

    /// The next slot with work, and the work. O(1).
    pub fn pop_work(&mut self) -> Option<(u32, u8)> {
        let index = self.work_head;
        let bits = self.entries.get(index as usize)?.work;
        self.unlink_work(index);
        Some((index, bits))
    }

    /// Appends `index` to the work list. Only `request` calls it, for a slot that was not on the
    /// list (its work bits were zero).
    fn link_work(&mut self, index: u32) {
        let tail = self.work_tail;
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        entry.prev_work = tail;
        entry.next_work = NIL;
        match self.entries.get_mut(tail as usize) {
            Some(tail) => tail.next_work = index,
            None => self.work_head = index,
        }
        self.work_tail = index;
    }

    /// Takes `index` off the work list (wherever it is) and clears its work. O(1). Its work bits
    /// say whether it is on the list at all.
    fn unlink_work(&mut self, index: u32) {
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        let linked = entry.work != 0;
        let (prev, next) = (entry.prev_work, entry.next_work);
        entry.work = 0;
        entry.prev_work = NIL;
        entry.next_work = NIL;
        if !linked {
            return;
        }
        match self.entries.get_mut(prev as usize) {
            Some(prev) => prev.next_work = next,
            None => self.work_head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(next) => next.prev_work = prev,
            None => self.work_tail = prev,
        }
    }

    /// Active → Closing: takes the socket out to close it (exactly once). O(1).
    pub fn begin_close(&mut self, index: u32) -> Option<S> {
        let entry = self.entries.get_mut(index as usize)?;
        if entry.state != SlotState::Active {
            return None;
        }
        entry.state = SlotState::Closing;
        entry.socket.take()
    }

    /// Closing → Free: the slot leaves the work list (work asked for a closing slot is moot), its
    /// id goes stale (the serial is never given again), and its generation moves on, so a late
    /// completion for this occupant is recognised. O(1).
    pub fn release(&mut self, index: u32) -> bool {
        if self
            .entry(index)
            .is_none_or(|e| e.state != SlotState::Closing)
        {
            return false;
        }
        self.unlink_work(index);
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return false;
        };
        entry.state = SlotState::Free;
        entry.socket = None;
        entry.serial = 0;
        entry.generation = match entry.generation.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        entry.next_free = self.free_head;
        self.free_head = index;
        self.in_use -= 1;
        true
    }

    /// The Active slots among the [`SCAN_CHUNK`] slots from `start`, in index order (for paged
    /// listing: the caller continues at `start + SCAN_CHUNK`). Bounded, so that a listing step
    /// under the spin lock never walks a sparse 65,536-slot table to its end.
    pub fn active_from(&self, start: u32) -> impl Iterator<Item = (u32, &Entry<S>)> {
        let start = start as usize;
        let end = start
            .saturating_add(SCAN_CHUNK as usize)
            .min(self.entries.len());
        self.entries
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .zip(start..)
            .filter(|(e, _)| e.state == SlotState::Active)
            .filter_map(|(e, i)| u32::try_from(i).ok().map(|i| (i, e)))
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(NIL)
    }

    /// Checks the table's invariants (free list, work list, counters) by walking both lists.
    /// O(capacity): for tests and models, never on a driver path.
    ///
    /// # Errors
    /// What is broken.
    pub fn check(&self) -> Result<(), &'static str> {
        let capacity = self.entries.len();
        // The free list: every index on it is Free, each once, and every Free slot is on it.
        let (mut index, mut free) = (self.free_head, 0usize);
        while index != NIL {
            let entry = self
                .entries
                .get(index as usize)
                .ok_or("free list: bad index")?;
            if entry.state != SlotState::Free {
                return Err("free list: a slot in use is on it");
            }
            free += 1;
            if free > capacity {
                return Err("free list: a cycle");
            }
            index = entry.next_free;
        }
        let free_slots = self
            .entries
            .iter()
            .filter(|e| e.state == SlotState::Free)
            .count();
        if free != free_slots || capacity - free != self.in_use as usize {
            return Err("free list: count does not match");
        }
        // The work list: every index on it is in use with work to do, each once, ends at the
        // tail; every slot with work is on it.
        let (mut index, mut last, mut listed) = (self.work_head, NIL, 0usize);
        while index != NIL {
            let entry = self
                .entries
                .get(index as usize)
                .ok_or("work list: bad index")?;
            if entry.state == SlotState::Free {
                return Err("work list: a free slot is on it");
            }
            if entry.work == 0 {
                return Err("work list: a slot without work is on it");
            }
            listed += 1;
            if listed > capacity {
                return Err("work list: a cycle");
            }
            if entry.prev_work != last {
                return Err("work list: a back link is wrong");
            }
            last = index;
            index = entry.next_work;
        }
        if last != self.work_tail {
            return Err("work list: the tail is not its last slot");
        }
        let with_work = self.entries.iter().filter(|e| e.work != 0).count();
        if with_work != listed {
            return Err("work list: a slot with work is not on it");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn info(port: u16) -> ConnInfo {
        let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        ConnInfo {
            remote: addr,
            local: addr,
            path: AcceptPath::Event,
            accepted_at: 0,
        }
    }

    fn placeholder() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }

    #[test]
    fn full_table_gives_the_socket_back() {
        let mut table = Table::with_capacity(3, 2, placeholder()).unwrap();
        let a = table.insert(10u32, info(1)).unwrap();
        let b = table.insert(11u32, info(2)).unwrap();
        assert_eq!(a.listener(), 3);
        assert_ne!(a, b);
        assert_eq!(table.insert(12u32, info(3)).unwrap_err().0, 12);
        assert_eq!(
            table.occupancy(),
            Occupancy {
                in_use: 2,
                peak: 2,
                capacity: 2
            }
        );
    }

    #[test]
    fn a_freed_slot_comes_back_with_a_new_generation_and_the_old_id_is_stale() {
        let mut table = Table::with_capacity(0, 1, placeholder()).unwrap();
        let first = table.insert(1u32, info(1)).unwrap();
        assert_eq!(table.begin_close(first.index()), Some(1));
        assert!(
            table.get(first).is_some(),
            "closing slots are still visible"
        );
        assert!(table.release(first.index()));
        assert!(table.get(first).is_none());
        let second = table.insert(2u32, info(2)).unwrap();
        assert_eq!(second.index(), first.index());
        assert_ne!(second.serial(), first.serial());
        assert_ne!(
            table.entry(first.index()).unwrap().generation(),
            1,
            "the slot's generation moved on"
        );
        assert!(table.get(first).is_none(), "the stale id is refused");
        assert_eq!(table.get(second).unwrap().socket(), Some(&2));
    }

    #[test]
    fn work_requests_are_queued_once_in_fifo_order() {
        let mut table = Table::with_capacity(0, 4, placeholder()).unwrap();
        let ids: Vec<_> = (0..3).map(|i| table.insert(i, info(1)).unwrap()).collect();
        table.request(ids[2].index(), work::RECEIVE);
        table.request(ids[0].index(), work::RECEIVE);
        table.request(ids[2].index(), work::CLOSE);
        assert_eq!(
            table.pop_work(),
            Some((ids[2].index(), work::RECEIVE | work::CLOSE))
        );
        assert_eq!(table.pop_work(), Some((ids[0].index(), work::RECEIVE)));
        assert_eq!(table.pop_work(), None);
    }

    #[test]
    fn a_released_slot_leaves_the_work_list_wherever_it_is() {
        // Finding 3 of issue 11, deterministically: work asked for a Closing slot, then the slot
        // is released and reused while slots behind it still wait.
        let mut table = Table::with_capacity(0, 3, placeholder()).unwrap();
        let ids: Vec<_> = (0..3).map(|i| table.insert(i, info(1)).unwrap()).collect();
        assert_eq!(table.begin_close(ids[1].index()), Some(1));
        table.request(ids[0].index(), work::RECEIVE);
        table.request(ids[1].index(), work::CLOSE);
        table.request(ids[2].index(), work::RECEIVE);
        assert!(table.release(ids[1].index()));
        table.check().unwrap();
        let reused = table.insert(9, info(2)).unwrap();
        assert_eq!(reused.index(), ids[1].index());
        table.request(reused.index(), work::RECEIVE);
        table.check().unwrap();
        let popped: Vec<_> = core::iter::from_fn(|| table.pop_work()).collect();
        assert_eq!(
            popped,
            [
                (ids[0].index(), work::RECEIVE),
                (ids[2].index(), work::RECEIVE),
                (reused.index(), work::RECEIVE)
            ]
        );
        table.check().unwrap();
    }

    #[test]
    fn a_stale_id_stays_refused_however_often_its_slot_is_reused() {
        // Finding 5 of issue 11: LIFO reuse puts every connection in the same slot; 2^24 reuses
        // (28 minutes at 10,000 connections/s) must not bring an old id back to life.
        let mut table = Table::with_capacity(0, 1, placeholder()).unwrap();
        let first = table.insert(0u32, info(1)).unwrap();
        table.begin_close(first.index());
        table.release(first.index());
        for _ in 1..(1u32 << 24) {
            let id = table.insert(0u32, info(1)).unwrap();
            assert_ne!(id, first, "an id was given twice");
            table.begin_close(id.index());
            table.release(id.index());
        }
        let last = table.insert(1u32, info(1)).unwrap();
        assert!(table.get(first).is_none(), "the stale id is refused");
        assert!(table.get(last).is_some());
    }

    #[test]
    fn a_listing_scan_stays_within_its_chunk_of_a_sparse_table() {
        // Finding 6 of issue 11: one Active slot at the end of a 65,536-slot table; a listing
        // step from slot 0 must not walk the whole table under the spin lock to find it.
        let mut table = Table::with_capacity(0, 65_536, placeholder()).unwrap();
        let ids: Vec<_> = (0..65_536)
            .map(|i| table.insert(i, info(1)).unwrap())
            .collect();
        for id in &ids[..65_535] {
            table.begin_close(id.index());
            table.release(id.index());
        }
        let last = ids[65_535].index();
        assert!(
            table.active_from(0).size_hint().1 <= Some(SCAN_CHUNK as usize),
            "a scan is bounded by a chunk"
        );
        assert_eq!(
            table.active_from(0).next().map(|(i, _)| i),
            None,
            "nothing Active in the first chunk"
        );
        assert_eq!(table.active_from(last).next().map(|(i, _)| i), Some(last));
    }

    #[test]
    fn generation_is_never_zero_after_wrapping() {
        let mut table = Table::with_capacity(0, 1, placeholder()).unwrap();
        table.entries[0].generation = u32::MAX;
        let id = table.insert(1u32, info(1)).unwrap();
        table.begin_close(id.index());
        table.release(id.index());
        assert_eq!(table.entries[0].generation, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert,
        Close(usize),
        Lookup(usize),
        Request(usize),
        PopWork,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Insert),
            2 => (0usize..64).prop_map(Op::Close),
            2 => (0usize..64).prop_map(Op::Lookup),
            1 => (0usize..64).prop_map(Op::Request),
            1 => Just(Op::PopWork),
        ]
    }

    proptest! {
        /// The table behaves like a bounded map from live ids to sockets: inserts succeed exactly
        /// while there is room, ids are unique among live entries, closed ids go stale, and the
        /// counters match.
        #[test]
        fn table_matches_a_model(capacity in 1u32..16, ops in prop::collection::vec(op(), 1..200)) {
            let mut table = Table::with_capacity(1, capacity, placeholder()).unwrap();
            let mut live: HashMap<u64, u32> = HashMap::new();
            let mut order: Vec<ConnId> = Vec::new();
            let mut dead: Vec<ConnId> = Vec::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert => {
                        next += 1;
                        match table.insert(next, info(1)) {
                            Ok(id) => {
                                prop_assert!(live.len() < capacity as usize);
                                prop_assert!(live.insert(id.0, next).is_none(), "duplicate live id");
                                order.push(id);
                            }
                            Err(Full(s)) => {
                                prop_assert_eq!(s, next);
                                prop_assert_eq!(live.len(), capacity as usize);
                            }
                        }
                    }
                    Op::Close(i) if !order.is_empty() => {
                        let id = order.remove(i % order.len());
                        prop_assert_eq!(table.begin_close(id.index()), live.remove(&id.0));
                        prop_assert!(table.release(id.index()));
                        dead.push(id);
                    }
                    Op::Lookup(i) if !order.is_empty() => {
                        let id = order[i % order.len()];
                        prop_assert_eq!(table.get(id).and_then(|e| e.socket().copied()), live.get(&id.0).copied());
                    }
                    Op::Request(i) if !order.is_empty() => table.request(order[i % order.len()].index(), work::RECEIVE),
                    Op::PopWork => { let _ = table.pop_work(); }
                    _ => {}
                }
                for id in &dead {
                    prop_assert!(table.get(*id).is_none(), "stale id accepted");
                }
                prop_assert_eq!(table.occupancy().in_use as usize, live.len());
            }
        }
    }

    /// The slot protocol of `conn.rs` and `Listener::decide_slot_work`, one step at a time, so
    /// that proptest interleaves completions the way the hardware can: a completion routine
    /// takes its IRP back (it is not busy any more) *outside* the listener lock, and runs its
    /// locked part later, after any number of worker steps and other completions.
    mod protocol {
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
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// The slot protocol with completions interleaved outside the lock (finding 3 of issue
        /// 11): after every step the free list and the work list are intact — no freed slot is
        /// linked, no slot with work is lost, no cycle.
        #[test]
        fn work_list_survives_completions_outside_the_lock(
            capacity in 1u32..5,
            steps in prop::collection::vec(protocol::step(), 1..120),
        ) {
            let mut model = protocol::Model::new(capacity);
            for step in &steps {
                model.run(step);
                prop_assert_eq!(model.table().check(), Ok(()), "after {:?}", step);
            }
            model.settle();
            prop_assert_eq!(model.table().check(), Ok(()));
        }
    }
}
