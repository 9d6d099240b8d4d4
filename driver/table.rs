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
//! doubly linked and only `Table::link_work` and `Table::unlink_work` touch its links: a slot
//! is on it exactly when it has work bits, and every way out of a slot's life (pop, release)
//! unlinks it, so a freed or reused slot can never be left linked (issue 11, finding 3: a late
//! completion asked for work on a Closing slot, `release` freed it while linked, and its reuse cut
//! the list).

use core::net::SocketAddr;

use wsk::NtStatus;

use crate::ids;
use crate::kernel::{PoolSlice, tags};

mod record;
mod work_list;
pub use record::{AcceptPath, ConnId, ConnInfo, Occupancy};
pub use work_list::work;

const NIL: u32 = u32::MAX;

/// Slots one call of [`Table::active_from`] examines at most.
pub const SCAN_CHUNK: u32 = 256;

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

/// One slot. `S` is the owned socket type (a `ConnSocket` in the driver).
#[allow(clippy::struct_excessive_bools)] // independent facts about the connection
#[derive(Debug)]
pub struct Entry<S> {
    /// Changes every time the slot is freed (completions compare it); wraps, never 0.
    generation: u32,
    /// The occupant's serial (its id); 0 while free.
    serial: u64,
    state: SlotState,
    /// While Free: the next slot on the free list (NIL ends it). While in use: the owner's tag
    /// ([`Entry::owner_tag`]). One field for both, as a slot is never both: the tag costs no
    /// memory.
    free_or_tag: u32,
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
    /// The peer's close was a reset (or a receive or send failed), not a FIN.
    pub peer_reset: bool,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
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

    /// A number the owner keeps with the connection, opaque to the table (the listener: where its
    /// per-source map counts the connection, set at admission, used at release). `u32::MAX` from
    /// insert until the owner sets it, and while the slot is free.
    #[must_use]
    pub fn owner_tag(&self) -> u32 {
        if self.state == SlotState::Free {
            NIL
        } else {
            self.free_or_tag
        }
    }

    /// Sets [`Entry::owner_tag`] (nothing for a free slot, whose field is the free list's link).
    pub fn set_owner_tag(&mut self, tag: u32) {
        if self.state != SlotState::Free {
            self.free_or_tag = tag;
        }
    }

    /// The socket, while the slot is Active.
    #[must_use]
    pub fn socket(&self) -> Option<&S> {
        self.socket.as_ref()
    }
}

/// The table.
///
/// # Invariants
/// Every index on the free list is `Free`; every other slot is `Active` or `Closing`;
/// `in_use` counts the latter; a slot is on the work list exactly when its `work` bits are
/// non-zero, and then it is not `Free` (checked by [`Table::check`]).
#[derive(Debug)]
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
                free_or_tag: if next == capacity { NIL } else { next },
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
                peer_reset: false,
                bytes_in: 0,
                bytes_out: 0,
            })
        })?;
        // INVARIANT: every slot is Free and chained on the free list from 0 (the last one ends it);
        // nothing is in use and the work list is empty.
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
        self.free_head = entry.free_or_tag;
        // No owner tag yet.
        entry.free_or_tag = NIL;
        entry.state = SlotState::Active;
        entry.socket = Some(socket);
        entry.info = info;
        entry.peer_closed = false;
        entry.disconnected = false;
        entry.close_done = false;
        entry.peer_reset = false;
        entry.bytes_in = 0;
        entry.bytes_out = 0;
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
        let Some(entry) = self.entry(index) else {
            return false;
        };
        if entry.state != SlotState::Closing {
            return false;
        }
        // Off the list already (no work bits) is the usual case: its links are NIL.
        if entry.work != 0 {
            self.unlink_work(index);
        }
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
        entry.free_or_tag = self.free_head;
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
            index = entry.free_or_tag;
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
mod tests;
