//! Inspections deferred to user mode (conditional accept, WSK-FACTS §6): a bounded, fixed-size
//! queue per listener, under the listener's spin lock. Every request ends exactly one way:
//! decided by user mode (DECIDE), withdrawn by the peer (WskAbortEvent), or timed out by the
//! driver — and WskInspectComplete is issued at most once for it.
//!
//! States: `Waiting` (not yet handed to user mode) → `Delivered` (GET_PENDING returned it) →
//! `Decided` (accept or reject chosen, WskInspectComplete not yet issued) → `InFlight` → free.

use core::net::SocketAddr;

use wsk::WSK_INSPECT_ID;

use crate::ids;

/// Requests one listener holds at most.
pub const PENDING_CAPACITY: usize = 64;
// Every queue index fits the id's index field.
const _: () = assert!(PENDING_CAPACITY as u64 <= 1 << crate::ids::INDEX_BITS);

/// A pending request's id for user mode: listener slot, serial (never 0, never reused by any
/// request or connection of the driver) and queue index, packed by [`crate::ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendingId(pub u64);

impl PendingId {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "index < PENDING_CAPACITY, asserted to fit in crate::ids"
    )]
    fn new(listener: u8, serial: u64, index: usize) -> Self {
        Self(ids::pack(listener, serial, index as u32))
    }

    /// The listener slot.
    #[must_use]
    pub fn listener(self) -> u8 {
        ids::listener(self.0)
    }

    fn parts(self) -> (u64, usize) {
        (ids::serial(self.0), ids::index(self.0) as usize)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Delivered,
    Decided {
        accept: bool,
        timed_out: bool,
    },
    InFlight {
        accept: bool,
        timed_out: bool,
        withdrawn: bool,
    },
}

/// How a request whose decision was sent ended, for the counters: each request is counted once,
/// under what actually happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// User mode accepted it (the connection then arrives through an accept path).
    Accepted,
    /// User mode rejected it.
    Rejected,
    /// The peer withdrew while the decision was on its way (it did nothing).
    Withdrawn,
    /// The driver rejected it at the decision timeout, counted then.
    TimedOut,
}

/// What user mode sees of a pending request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingInfo {
    /// The id DECIDE takes.
    pub id: PendingId,
    /// Peer.
    pub remote: SocketAddr,
    /// Local end.
    pub local: SocketAddr,
    /// KeQueryInterruptTime when it was pended, 100 ns units.
    pub arrived_at: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    /// The request's serial (its id); 0 while free.
    serial: u64,
    inspect: WSK_INSPECT_ID,
    remote: SocketAddr,
    local: SocketAddr,
    arrived_at: u64,
}

/// The queue is full: the request is refused, never waited for.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// A decision ready to be sent with WskInspectComplete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Slot index (for [`PendingQueue::complete`]).
    pub index: usize,
    /// The ID the provider gave.
    pub inspect: WSK_INSPECT_ID,
    /// Accept (true) or reject.
    pub accept: bool,
}

/// The fixed-size queue.
#[derive(Debug)]
pub struct PendingQueue {
    entries: [Entry; PENDING_CAPACITY],
    listener: u8,
    /// IDs of the last accept decisions completed, newest at `recent_next - 1`: a WskAbortEvent
    /// for one of them means the accept did nothing (the provider had dropped the request first;
    /// completing an aborted ID does nothing, WSK-FACTS §6), so the connection never arrives.
    recent_accepts: [Option<WSK_INSPECT_ID>; RECENT_ACCEPTS],
    recent_next: usize,
}

/// Completed accept decisions remembered for a late WskAbortEvent (it follows the provider's
/// drop within a few instructions).
const RECENT_ACCEPTS: usize = 16;

impl PendingQueue {
    /// An empty queue for listener slot `listener`.
    #[must_use]
    pub fn new(listener: u8, placeholder: SocketAddr) -> Self {
        let entry = Entry {
            state: State::Free,
            serial: 0,
            inspect: WSK_INSPECT_ID::default(),
            remote: placeholder,
            local: placeholder,
            arrived_at: 0,
        };
        Self {
            entries: [entry; PENDING_CAPACITY],
            listener,
            recent_accepts: [None; RECENT_ACCEPTS],
            recent_next: 0,
        }
    }

    /// Pends a request (from WskInspectEvent). O(capacity), bounded, no allocation.
    ///
    /// # Errors
    /// [`QueueFull`] (also after 2^44 serials in the life of the driver: no id is ever reused).
    pub fn push(
        &mut self,
        inspect: WSK_INSPECT_ID,
        remote: SocketAddr,
        local: SocketAddr,
        now: u64,
    ) -> Result<PendingId, QueueFull> {
        let (index, entry) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, e)| e.state == State::Free)
            .ok_or(QueueFull)?;
        let serial = ids::next_serial().ok_or(QueueFull)?;
        *entry = Entry {
            state: State::Waiting,
            serial,
            inspect,
            remote,
            local,
            arrived_at: now,
        };
        Ok(PendingId::new(self.listener, serial, index))
    }

    /// The oldest request not yet handed to user mode, now marked delivered.
    pub fn deliver(&mut self) -> Option<PendingInfo> {
        let listener = self.listener;
        let (index, entry) = self
            .entries
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.state == State::Waiting)
            .min_by_key(|(_, e)| e.arrived_at)?;
        entry.state = State::Delivered;
        Some(PendingInfo {
            id: PendingId::new(listener, entry.serial, index),
            remote: entry.remote,
            local: entry.local,
            arrived_at: entry.arrived_at,
        })
    }

    /// Whether anything is pending at all (for the timeout ticker).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.state == State::Free)
    }

    fn lookup(&mut self, id: PendingId) -> Option<&mut Entry> {
        let (serial, index) = id.parts();
        if id.listener() != self.listener {
            return None;
        }
        self.entries
            .get_mut(index)
            .filter(|e| e.serial == serial && e.state != State::Free)
    }

    /// User mode's decision. False when the id is unknown, already decided, timed out or withdrawn.
    pub fn decide(&mut self, id: PendingId, accept: bool) -> bool {
        match self.lookup(id) {
            Some(entry) if matches!(entry.state, State::Waiting | State::Delivered) => {
                entry.state = State::Decided {
                    accept,
                    timed_out: false,
                };
                true
            }
            _ => false,
        }
    }

    /// The peer withdrew (WskAbortEvent; the ID's contents, not its address, identify it). True
    /// when the withdrawal is the request's outcome, to count now: it was waiting for user mode,
    /// or user mode's decision had not been sent (it is dropped: completing an aborted ID does
    /// nothing, WSK-FACTS §6). False for a request that timed out (counted then), and for one
    /// whose WskInspectComplete is in flight: that one is marked, and its completion reports
    /// [`Outcome::Withdrawn`].
    ///
    /// An abort for an accept decision that completed already (the provider dropped the request
    /// just before the decision reached it) is the outcome too: true, and the connection that
    /// accept would have let in never arrives.
    pub fn abort(&mut self, inspect: &WSK_INSPECT_ID) -> bool {
        let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.state != State::Free && e.inspect == *inspect)
        else {
            return match self
                .recent_accepts
                .iter_mut()
                .find(|r| **r == Some(*inspect))
            {
                Some(recent) => {
                    *recent = None;
                    true
                }
                None => false,
            };
        };
        match entry.state {
            State::Free => false,
            State::InFlight {
                accept, timed_out, ..
            } => {
                entry.state = State::InFlight {
                    accept,
                    timed_out,
                    withdrawn: true,
                };
                false
            }
            State::Decided { timed_out, .. } => {
                Self::free(entry);
                !timed_out
            }
            State::Waiting | State::Delivered => {
                Self::free(entry);
                true
            }
        }
    }

    /// Rejects every request older than `timeout` (100 ns units) that user mode has not decided.
    /// Returns how many timed out.
    pub fn expire(&mut self, now: u64, timeout: u64) -> u32 {
        let mut expired = 0;
        for entry in &mut self.entries {
            if matches!(entry.state, State::Waiting | State::Delivered)
                && now.saturating_sub(entry.arrived_at) >= timeout
            {
                entry.state = State::Decided {
                    accept: false,
                    timed_out: true,
                };
                expired += 1;
            }
        }
        expired
    }

    /// The next decision to send (now in flight).
    pub fn next_outgoing(&mut self) -> Option<Outgoing> {
        let (index, entry) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, e)| matches!(e.state, State::Decided { .. }))?;
        let State::Decided { accept, timed_out } = entry.state else {
            return None;
        };
        entry.state = State::InFlight {
            accept,
            timed_out,
            withdrawn: false,
        };
        Some(Outgoing {
            index,
            inspect: entry.inspect,
            accept,
        })
    }

    /// WskInspectComplete for slot `index` completed: the slot is free again. Returns how the
    /// request ended (`None`: it had ended already).
    pub fn complete(&mut self, index: usize) -> Option<Outcome> {
        let entry = self.entries.get_mut(index)?;
        let State::InFlight {
            accept,
            timed_out,
            withdrawn,
        } = entry.state
        else {
            return None;
        };
        Self::free(entry);
        let inspect = entry.inspect;
        Some(if timed_out {
            Outcome::TimedOut
        } else if withdrawn {
            Outcome::Withdrawn
        } else if accept {
            self.recent_accepts[self.recent_next % RECENT_ACCEPTS] = Some(inspect);
            self.recent_next = (self.recent_next + 1) % RECENT_ACCEPTS;
            Outcome::Accepted
        } else {
            Outcome::Rejected
        })
    }

    fn free(entry: &mut Entry) {
        entry.state = State::Free;
        entry.serial = 0;
    }

    /// Drops every request (listener stop or restart: the provider forgets them with the
    /// listening socket and resets their peers). Returns how many had no counted outcome yet
    /// (all but the timed-out ones): the caller counts them as refused.
    pub fn clear(&mut self) -> u32 {
        self.recent_accepts = [None; RECENT_ACCEPTS];
        let mut uncounted = 0;
        for entry in &mut self.entries {
            let counted = matches!(
                entry.state,
                State::Decided {
                    timed_out: true,
                    ..
                } | State::InFlight {
                    timed_out: true,
                    ..
                }
            );
            if entry.state != State::Free {
                if !counted {
                    uncounted += 1;
                }
                Self::free(entry);
            }
        }
        uncounted
    }
}

#[cfg(test)]
mod tests;
