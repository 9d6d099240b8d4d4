//! How a connection or pending-request id is laid out: the one statement of the widths, which the
//! driver packs ids with (`driver/ids.rs`) and tools read them with, to show ids short.
//!
//! Bits 0–15: the slot index; bits 16–19: the listener slot; bits 20–63: a 44-bit serial that the
//! driver never gives twice. The short form is `LISTENER.INDEX.SERIAL` (`0.3.1042`): unambiguous,
//! stable for the life of the connection, and accepted wherever an id is.

/// Bits of the slot index.
pub const INDEX_BITS: u32 = 16;
/// Bits of the listener slot.
pub const LISTENER_BITS: u32 = 4;
/// Bits of the serial.
pub const SERIAL_BITS: u32 = 64 - INDEX_BITS - LISTENER_BITS;

/// An id's three fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdParts {
    /// The listener slot.
    pub listener: u8,
    /// The slot index.
    pub index: u32,
    /// The serial.
    pub serial: u64,
}

/// Splits an id into its fields.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    reason = "each field is masked to its width first"
)]
pub const fn split(id: u64) -> IdParts {
    IdParts {
        listener: ((id >> INDEX_BITS) & ((1 << LISTENER_BITS) - 1)) as u8,
        index: (id & ((1 << INDEX_BITS) - 1)) as u32,
        serial: id >> (INDEX_BITS + LISTENER_BITS),
    }
}

/// Joins fields into an id; `None` when one does not fit its field.
#[must_use]
pub const fn join(parts: IdParts) -> Option<u64> {
    if (parts.listener as u64) >= 1 << LISTENER_BITS
        || (parts.index as u64) >= 1 << INDEX_BITS
        || parts.serial >= 1 << SERIAL_BITS
    {
        return None;
    }
    Some(
        (parts.serial << (INDEX_BITS + LISTENER_BITS))
            | ((parts.listener as u64) << INDEX_BITS)
            | parts.index as u64,
    )
}

/// The short form `LISTENER.INDEX.SERIAL`.
#[must_use]
pub fn short(id: u64) -> ShortId {
    ShortId(split(id))
}

/// An id shown in its short form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortId(pub IdParts);

impl core::fmt::Display for ShortId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.0.listener, self.0.index, self.0.serial)
    }
}

/// Reads an id in its short form (`0.3.1042`) or as the full 64-bit number.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse(text: &str) -> Result<u64, &'static str> {
    let mut fields = text.split('.');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(whole), None, None, None) => whole
            .parse()
            .map_err(|_| "an id is LISTENER.INDEX.SERIAL (as `wskctl list` shows) or a number"),
        (Some(l), Some(i), Some(s), None) => {
            let parts = IdParts {
                listener: l
                    .parse()
                    .map_err(|_| "the listener field is not a number")?,
                index: i.parse().map_err(|_| "the index field is not a number")?,
                serial: s.parse().map_err(|_| "the serial field is not a number")?,
            };
            join(parts).ok_or("a field is too large for an id")
        }
        _ => Err("an id is LISTENER.INDEX.SERIAL (as `wskctl list` shows) or a number"),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn the_short_form_round_trips() {
        for id in [0, 1, 0x0001_0003, (1042 << 20) | (3 << 16) | 7, u64::MAX] {
            let text = short(id).to_string();
            assert_eq!(parse(&text), Ok(id), "{text}");
            assert_eq!(parse(&id.to_string()), Ok(id));
        }
        assert_eq!(short((1042 << 20) | (3 << 16) | 7).to_string(), "3.7.1042");
        assert!(parse("16.0.1").is_err(), "listener field too wide");
        assert!(parse("0.65536.1").is_err(), "index field too wide");
        assert!(parse("1.2").is_err());
        assert!(parse("a.b.c").is_err());
    }
}
