//! The table's work list: which slots have work for the worker, in the order they asked, each
//! once (an intrusive doubly linked list through the entries; O(1) to queue, pop or remove).

use super::{NIL, SlotState, Table};

/// Work a slot asks the worker for (bits).
pub mod work {
    /// Post (or re-post) the receive: the data path's next read, which also notices the peer's
    /// close.
    pub const RECEIVE: u8 = 0x01;
    /// Close gracefully: disconnect (FIN), then close.
    pub const CLOSE: u8 = 0x02;
    /// Close abortively (RST) at once.
    pub const ABORT: u8 = 0x04;
    /// Send (the rest of) what the last receive brought (echo).
    pub const SEND: u8 = 0x08;
}

impl<S> Table<S> {
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

    /// Whether any slot has work queued. O(1).
    #[must_use]
    pub fn has_work(&self) -> bool {
        self.entries.get(self.work_head as usize).is_some()
    }

    /// The next slot with work, and the work. O(1). The head's unlink, written out: it has no
    /// previous slot (one look at the entry, not `unlink_work`'s general case).
    pub fn pop_work(&mut self) -> Option<(u32, u8)> {
        let index = self.work_head;
        let entry = self.entries.get_mut(index as usize)?;
        let (bits, next) = (entry.work, entry.next_work);
        entry.work = 0;
        entry.prev_work = NIL;
        entry.next_work = NIL;
        self.work_head = next;
        match self.entries.get_mut(next as usize) {
            Some(next) => next.prev_work = NIL,
            None => self.work_tail = NIL,
        }
        Some((index, bits))
    }

    /// Appends `index` to the work list. Only `request` calls it, for a slot that was not on the
    /// list (its work bits were zero).
    pub(super) fn link_work(&mut self, index: u32) {
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
    pub(super) fn unlink_work(&mut self, index: u32) {
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
}
