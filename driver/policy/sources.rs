//! The per-source connection counts behind the policy's per-source limit: a bounded,
//! allocation-free map keyed by the peer's address (issue 11, finding 6).

use core::net::IpAddr;

use wsk::NtStatus;

use crate::kernel::{self, PoolSlice, tags};

/// Slots a lookup in [`SourceCounts`] examines at most: the window that starts at the key's home
/// slot. A source whose window is full cannot be counted (see [`SourceCounts::count`]). At most
/// 64 (a window is read as one word of occupancy bits).
pub const MAX_PROBE: usize = 32;
const _: () = assert!(MAX_PROBE <= 64);

/// Active connections per source address: a preallocated open-addressing map, so counting on the
/// accept path never allocates. Sized at twice the table capacity (rounded up to a power of two),
/// so it is at most half full.
///
/// It runs at DISPATCH_LEVEL under the listener's spin lock, where peers choose the keys, so
/// (issue 11, finding 6) every operation is bounded by construction: a key lives within
/// [`MAX_PROBE`] slots of its home, and a lookup examines that window and nothing else (no
/// probe chain, no shifting on removal: a removed entry just empties its slot). Homes come from
/// SipHash-1-3 keyed with a per-listener random key, so sources cannot be chosen to share a
/// window without knowing the key.
pub struct SourceCounts {
    slots: PoolSlice<(u128, u32)>,
    /// One bit per slot, set while the slot holds a source (count > 0): a lookup reads its
    /// window's bits and compares keys only where a source is.
    occupied: PoolSlice<u64>,
    mask: usize,
    key: (u64, u64),
}

impl core::fmt::Debug for SourceCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SourceCounts")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

pub(super) fn key(peer: IpAddr) -> u128 {
    match peer {
        // IPv4 and its IPv4-mapped IPv6 form are one source.
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// SipHash with `c` compression and `d` finalisation rounds of a 16-byte message (two
/// little-endian words), keyed with `(k0, k1)`.
pub(super) fn siphash(k0: u64, k1: u64, m0: u64, m1: u64, c: usize, d: usize) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    // The two message words, then the final block: the length (16) in the top byte.
    for m in [m0, m1, 16u64 << 56] {
        v[3] ^= m;
        for _ in 0..c {
            round(&mut v);
        }
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..d {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The slot that counts one connection in a [`SourceCounts`] (from [`SourceCounts::add_at`]), kept
/// with the connection so that its release decrements that slot directly, with no hash
/// ([`SourceCounts::release`]). [`SourceSlot::NONE`] for a connection that was not counted.
///
/// A slot stays the source's while the connection lives: slots never move (no shifting on
/// removal), and a slot empties only when its count reaches 0, which it cannot while this
/// connection's 1 is still in it (every decrement of a slot is the release of a connection that
/// was counted there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSlot(u32);

impl SourceSlot {
    /// Not counted: the source's window was full (see [`SourceCounts::count`]).
    pub const NONE: Self = Self(u32::MAX);

    /// The slot as a plain number, to keep in a table entry.
    #[must_use]
    pub const fn to_raw(self) -> u32 {
        self.0
    }

    /// The slot a [`SourceSlot::to_raw`] gave. Any number is safe to release with: a slot that
    /// does not hold the source is left alone (see [`SourceCounts::release`]).
    #[must_use]
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
}

/// Where a source is counted, or would be (from [`SourceCounts::locate`]).
#[derive(Debug)]
pub struct Spot {
    key: u128,
    probe: Probe,
}

/// Where a key is, or where it would go.
#[derive(Debug)]
enum Probe {
    /// The key's slot.
    Found(usize),
    /// The first empty slot of the key's window.
    Vacant(usize),
    /// The window is full and the key is not in it.
    Untracked,
}

impl SourceCounts {
    /// A map for `capacity` connections, keyed with fresh random bytes from the kernel.
    /// IRQL: PASSIVE_LEVEL (BCryptGenRandom).
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES, or what the kernel's random generator returns.
    pub fn with_capacity(capacity: u32) -> Result<Self, NtStatus> {
        let mut key = [0u8; 16];
        kernel::random_bytes(&mut key)?;
        Self::with_key(capacity, key)
    }

    /// A map for `capacity` connections with a given hash key (tests and benchmarks; the driver
    /// uses [`SourceCounts::with_capacity`]). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub fn with_key(capacity: u32, key: [u8; 16]) -> Result<Self, NtStatus> {
        let size = (capacity as usize * 2).next_power_of_two().max(2);
        // Every slot index fits a `SourceSlot`, below its NONE.
        if size > SourceSlot::NONE.0 as usize {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let word = |half: usize| {
            let mut bytes = [0u8; 8];
            for (to, from) in bytes.iter_mut().zip(key.iter().skip(half * 8)) {
                *to = *from;
            }
            u64::from_le_bytes(bytes)
        };
        Ok(Self {
            slots: PoolSlice::try_new(tags::TABLE, size, |_| Ok((0, 0)))?,
            occupied: PoolSlice::try_new(tags::TABLE, size.div_ceil(64), |_| Ok(0))?,
            mask: size - 1,
            key: (word(0), word(1)),
        })
    }

    /// Slots in a window: [`MAX_PROBE`], or the whole map when it is smaller.
    fn window_len(&self) -> usize {
        MAX_PROBE.min(self.slots.len())
    }

    /// The occupancy bits of the window at `home`: bit k is slot `(home + k) & mask`.
    fn window(&self, home: usize) -> u64 {
        let len = self.window_len();
        let (mut bits, mut k) = (0u64, 0);
        // A few words at most: the window may wrap around the end of the map.
        while k < len {
            let index = (home + k) & self.mask;
            let shift = index % 64;
            // Within this word, within the window, and not past the end of the map.
            let take = (64 - shift).min(len - k).min(self.slots.len() - index);
            let word = self.occupied[index / 64] >> shift;
            let low = if take == 64 {
                u64::MAX
            } else {
                (1u64 << take) - 1
            };
            bits |= (word & low) << k;
            k += take;
        }
        bits
    }

    fn set_occupied(&mut self, index: usize, occupied: bool) {
        let bit = 1u64 << (index % 64);
        if occupied {
            self.occupied[index / 64] |= bit;
        } else {
            self.occupied[index / 64] &= !bit;
        }
    }

    /// Looks in the key's window, and only there: at most [`MAX_PROBE`] slots, keys compared
    /// only where the occupancy bits say a source is.
    fn probe(&self, key: u128) -> Probe {
        let home = self.home(key);
        let bits = self.window(home);
        let mut held = bits;
        while held != 0 {
            let index = (home + held.trailing_zeros() as usize) & self.mask;
            if self.slots[index].0 == key {
                return Probe::Found(index);
            }
            held &= held - 1;
        }
        let len = self.window_len();
        let all = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        let free = !bits & all;
        if free == 0 {
            Probe::Untracked
        } else {
            Probe::Vacant((home + free.trailing_zeros() as usize) & self.mask)
        }
    }

    /// Active connections from `peer` now; `u32::MAX` when `peer` cannot be counted because its
    /// window is full (with a keyed hash at most half full, not something a peer can arrange),
    /// so that a per-source limit refuses it rather than let it in uncounted.
    #[must_use]
    pub fn count(&self, peer: IpAddr) -> u32 {
        match self.probe(key(peer)) {
            Probe::Found(index) => self.slots[index].1,
            Probe::Vacant(_) => 0,
            Probe::Untracked => u32::MAX,
        }
    }

    /// One more connection from `peer` (nothing, for a peer that cannot be counted); the slot that
    /// counts it, as [`SourceCounts::add_at`].
    pub fn add(&mut self, peer: IpAddr) -> SourceSlot {
        let (_, spot) = self.locate(peer);
        self.add_at(&spot)
    }

    /// [`SourceCounts::count`] and where [`SourceCounts::add_at`] would count one more, with one
    /// lookup (the accept path asks both: one SipHash and window read fewer per connection). The
    /// spot is valid until the map next changes: the caller holds the listener's lock from here to
    /// `add_at`.
    #[must_use]
    pub fn locate(&self, peer: IpAddr) -> (u32, Spot) {
        let key = key(peer);
        let probe = self.probe(key);
        let count = match probe {
            Probe::Found(index) => self.slots[index].1,
            Probe::Vacant(_) => 0,
            Probe::Untracked => u32::MAX,
        };
        (count, Spot { key, probe })
    }

    /// One more connection at a spot [`SourceCounts::locate`] found, with no change to the map in
    /// between (nothing, for a peer that cannot be counted). Returns the slot that counts it, for
    /// its [`SourceCounts::release`] ([`SourceSlot::NONE`] when not counted).
    pub fn add_at(&mut self, spot: &Spot) -> SourceSlot {
        let index = match spot.probe {
            Probe::Found(index) => {
                self.slots[index].1 = self.slots[index].1.saturating_add(1);
                index
            }
            Probe::Vacant(index) => {
                self.slots[index] = (spot.key, 1);
                self.set_occupied(index, true);
                index
            }
            Probe::Untracked => return SourceSlot::NONE,
        };
        // Below NONE: `with_key` refuses a map with more slots.
        u32::try_from(index).map_or(SourceSlot::NONE, SourceSlot)
    }

    /// One fewer connection from `peer`, counted at `slot` by [`SourceCounts::add_at`]: no hash,
    /// no window read. Nothing for [`SourceSlot::NONE`] (the connection was not counted, so it
    /// takes nothing off another connection from the same source counted since), nor for a slot
    /// that does not hold `peer` with a count above 0 (impossible for a slot `add_at` returned to
    /// a connection not yet released; checked, not trusted). An entry that reaches zero empties
    /// its slot.
    pub fn release(&mut self, slot: SourceSlot, peer: IpAddr) {
        if slot == SourceSlot::NONE {
            return;
        }
        let index = slot.0 as usize;
        let Some(entry) = self.slots.get_mut(index) else {
            return;
        };
        if entry.0 != key(peer) || entry.1 == 0 {
            return;
        }
        entry.1 -= 1;
        if entry.1 == 0 {
            *entry = (0, 0);
            self.set_occupied(index, false);
        }
    }

    /// One fewer connection from `peer`, found by key (a SipHash and a window read); an entry that
    /// reaches zero empties its slot. The driver releases by slot ([`SourceCounts::release`]);
    /// this is the keyed form, for callers that kept no slot (tests, benchmarks).
    pub fn remove(&mut self, peer: IpAddr) {
        if let Probe::Found(index) = self.probe(key(peer)) {
            self.slots[index].1 -= 1;
            if self.slots[index].1 == 0 {
                self.slots[index] = (0, 0);
                self.set_occupied(index, false);
            }
        }
    }

    /// The slot counting `peer` now, if any (tests: a slot `add_at` returned stays the source's).
    #[cfg(test)]
    pub(super) fn slot_of(&self, peer: IpAddr) -> SourceSlot {
        match self.probe(key(peer)) {
            Probe::Found(index) => u32::try_from(index).map_or(SourceSlot::NONE, SourceSlot),
            Probe::Vacant(_) | Probe::Untracked => SourceSlot::NONE,
        }
    }

    /// How many slots a lookup of `peer` examines (tests of the bound).
    #[cfg(test)]
    pub(super) fn probes(&self, peer: IpAddr) -> usize {
        let home = self.home(key(peer));
        match self.probe(key(peer)) {
            Probe::Found(index) => ((index.wrapping_sub(home)) & self.mask) + 1,
            Probe::Vacant(_) | Probe::Untracked => self.window_len(),
        }
    }

    /// The key's home slot: SipHash-1-3 of the address under the map's key.
    pub(super) fn home(&self, key: u128) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the low and high halves of the address"
        )]
        let (low, high) = (key as u64, (key >> 64) as u64);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "masked to the table size, which is a usize"
        )]
        let home = siphash(self.key.0, self.key.1, low, high, 1, 3) as usize & self.mask;
        home
    }
}
