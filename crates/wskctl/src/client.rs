//! Typed IOCTL calls over a [`Device`].

use ioctl::{
    ALL_LISTENERS, Action, CLOSE_ABORTIVE, CloseConnection, ConnectionRecord, Decide, GetPending,
    LIST_MORE, ListConnections, ListHeader, ListenerRecord, ListenerRequest, PendingRecord,
    PolicyMessage, QueryHeader, StartListener, StatsRecord, VERSION, VersionInfo,
};
use wsk::NtStatus;
use zerocopy::{Immutable, IntoBytes, KnownLayout, TryFromBytes};

use crate::device::{Device, DeviceError};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The driver could not be reached.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The driver refused the request.
    #[error("{0}")]
    Status(NtStatus),
    /// The command line asked for something malformed.
    #[error("{0}")]
    Usage(String),
}

/// The driver, through a device.
pub struct Client {
    device: Box<dyn Device>,
}

const PAGE: usize = 64;

fn parse<T: TryFromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> Result<T, CallError> {
    ioctl::read(bytes).map_err(CallError::Status)
}

impl Client {
    pub fn new(device: Box<dyn Device>) -> Self {
        Self { device }
    }

    /// One IOCTL; the output bytes on success.
    pub fn raw(&self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, CallError> {
        let (status, output) = self.device.control(code, input, output_len)?;
        if status.is_success() {
            Ok(output)
        } else {
            Err(CallError::Status(status))
        }
    }

    fn call<I: IntoBytes + Immutable, O: TryFromBytes + KnownLayout + Immutable>(
        &self,
        code: u32,
        input: &I,
    ) -> Result<O, CallError> {
        parse(&self.raw(code, input.as_bytes(), size_of::<O>())?)
    }

    pub fn version(&self) -> Result<VersionInfo, CallError> {
        parse(&self.raw(ioctl::IOCTL_GET_VERSION, &[], size_of::<VersionInfo>())?)
    }

    pub fn start(&self, request: &StartListener) -> Result<ListenerRecord, CallError> {
        self.call(ioctl::IOCTL_START_LISTENER, request)
    }

    pub fn stop(&self, listener: u32) -> Result<StatsRecord, CallError> {
        self.call(
            ioctl::IOCTL_STOP_LISTENER,
            &ListenerRequest {
                version: VERSION,
                listener,
                reserved: [0; 2],
            },
        )
    }

    pub fn stats(&self, listener: Option<u32>) -> Result<StatsRecord, CallError> {
        let listener = listener.unwrap_or(ALL_LISTENERS);
        self.call(
            ioctl::IOCTL_QUERY_STATS,
            &ListenerRequest {
                version: VERSION,
                listener,
                reserved: [0; 2],
            },
        )
    }

    pub fn listeners(&self) -> Result<Vec<ListenerRecord>, CallError> {
        let room = size_of::<ListHeader>() + 32 * size_of::<ListenerRecord>();
        let bytes = self.raw(
            ioctl::IOCTL_QUERY_LISTENERS,
            QueryHeader {
                version: VERSION,
                reserved: 0,
            }
            .as_bytes(),
            room,
        )?;
        let header: ListHeader = parse(&bytes)?;
        let records = bytes.get(size_of::<ListHeader>()..).unwrap_or_default();
        records
            .chunks_exact(size_of::<ListenerRecord>())
            .take(header.count as usize)
            .map(parse)
            .collect()
    }

    /// Every connection, paging through the driver's cursor with a small buffer.
    pub fn connections(&self, listener: Option<u32>) -> Result<Vec<ConnectionRecord>, CallError> {
        let mut all = Vec::new();
        let mut cursor = 0;
        loop {
            let request = ListConnections {
                version: VERSION,
                listener: listener.unwrap_or(ALL_LISTENERS),
                cursor,
                reserved: [0; 2],
            };
            let room = size_of::<ListHeader>() + PAGE * size_of::<ConnectionRecord>();
            let bytes = self.raw(ioctl::IOCTL_LIST_CONNECTIONS, request.as_bytes(), room)?;
            let header: ListHeader = parse(&bytes)?;
            let records = bytes.get(size_of::<ListHeader>()..).unwrap_or_default();
            for chunk in records
                .chunks_exact(size_of::<ConnectionRecord>())
                .take(header.count as usize)
            {
                all.push(parse(chunk)?);
            }
            if header.flags & LIST_MORE == 0 {
                return Ok(all);
            }
            cursor = header.next_cursor;
        }
    }

    pub fn set_policy(&self, policy: &PolicyMessage) -> Result<(), CallError> {
        self.raw(ioctl::IOCTL_SET_POLICY, policy.as_bytes(), 0)
            .map(|_| ())
    }

    pub fn policy(&self, listener: u32) -> Result<PolicyMessage, CallError> {
        self.call(
            ioctl::IOCTL_QUERY_POLICY,
            &ListenerRequest {
                version: VERSION,
                listener,
                reserved: [0; 2],
            },
        )
    }

    /// The next request deferred to user mode, waiting up to `timeout_ms`; `None` when none came.
    pub fn get_pending(
        &self,
        listener: Option<u32>,
        timeout_ms: u32,
    ) -> Result<Option<PendingRecord>, CallError> {
        let request = GetPending {
            version: VERSION,
            listener: listener.unwrap_or(ALL_LISTENERS),
            timeout_ms,
            reserved: 0,
        };
        let bytes = self.raw(
            ioctl::IOCTL_GET_PENDING,
            request.as_bytes(),
            size_of::<PendingRecord>(),
        )?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            parse(&bytes).map(Some)
        }
    }

    pub fn decide(&self, id: u64, accept: bool) -> Result<(), CallError> {
        let request = Decide {
            version: VERSION,
            action: if accept {
                Action::Accept
            } else {
                Action::Reject
            },
            id,
            reserved: [0; 2],
        };
        self.raw(ioctl::IOCTL_DECIDE, request.as_bytes(), 0)
            .map(|_| ())
    }

    pub fn close(&self, id: u64, abortive: bool) -> Result<(), CallError> {
        let request = CloseConnection {
            version: VERSION,
            flags: if abortive { CLOSE_ABORTIVE } else { 0 },
            id,
            reserved: [0; 2],
        };
        self.raw(ioctl::IOCTL_CLOSE_CONNECTION, request.as_bytes(), 0)
            .map(|_| ())
    }
}
