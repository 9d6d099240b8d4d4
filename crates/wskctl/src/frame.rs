//! The host control socket's frame format (DESIGN.md "Host mode for users"): one request is one
//! DeviceIoControl. Request: `{code: u32, input_len: u32, output_len: u32}` little endian, then
//! `input_len` bytes. Reply: `{status: i32, information: u32}`, then `information` bytes.

/// Bytes in a request header.
pub const REQUEST_HEADER: usize = 12;
/// Bytes in a reply header.
pub const REPLY_HEADER: usize = 8;
/// Largest input or output length a frame may carry.
pub const MAX_LENGTH: u32 = 1 << 20;

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// IOCTL code.
    pub code: u32,
    /// Input bytes that follow.
    pub input_len: u32,
    /// Output buffer size the caller offers.
    pub output_len: u32,
}

impl Request {
    /// Little-endian bytes.
    #[must_use]
    pub fn encode(self) -> [u8; REQUEST_HEADER] {
        let mut out = [0; REQUEST_HEADER];
        out[..4].copy_from_slice(&self.code.to_le_bytes());
        out[4..8].copy_from_slice(&self.input_len.to_le_bytes());
        out[8..].copy_from_slice(&self.output_len.to_le_bytes());
        out
    }

    /// From little-endian bytes.
    #[must_use]
    pub fn decode(bytes: &[u8; REQUEST_HEADER]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            code: word(0),
            input_len: word(4),
            output_len: word(8),
        }
    }

    /// Whether both lengths are within [`MAX_LENGTH`].
    #[must_use]
    pub fn is_within_limits(self) -> bool {
        self.input_len <= MAX_LENGTH && self.output_len <= MAX_LENGTH
    }
}

/// A reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// NTSTATUS.
    pub status: i32,
    /// Output bytes that follow.
    pub information: u32,
}

impl Reply {
    /// Little-endian bytes.
    #[must_use]
    pub fn encode(self) -> [u8; REPLY_HEADER] {
        let mut out = [0; REPLY_HEADER];
        out[..4].copy_from_slice(&self.status.to_le_bytes());
        out[4..].copy_from_slice(&self.information.to_le_bytes());
        out
    }

    /// From little-endian bytes.
    #[must_use]
    pub fn decode(bytes: [u8; REPLY_HEADER]) -> Self {
        Self {
            status: i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            information: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}
