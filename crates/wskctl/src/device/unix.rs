//! The client side of the control socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use wsk::NtStatus;

use super::{Device, DeviceError};
use crate::frame::{REPLY_HEADER, Reply, Request};

/// A `wskctl host` reached through its Unix socket (one connection per request).
pub struct HostDevice {
    path: PathBuf,
}

impl HostDevice {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Device for HostDevice {
    fn control(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<(NtStatus, Vec<u8>), DeviceError> {
        let broken = |e: std::io::Error| DeviceError::Broken(e.to_string());
        let mut stream = UnixStream::connect(&self.path).map_err(|_| DeviceError::NoHost {
            path: self.path.clone(),
        })?;
        let request = Request {
            code,
            input_len: u32::try_from(input.len())
                .map_err(|_| DeviceError::Broken("input too large".into()))?,
            output_len: u32::try_from(output_len)
                .map_err(|_| DeviceError::Broken("output too large".into()))?,
        };
        stream.write_all(&request.encode()).map_err(broken)?;
        stream.write_all(input).map_err(broken)?;
        let mut header = [0u8; REPLY_HEADER];
        stream.read_exact(&mut header).map_err(broken)?;
        let reply = Reply::decode(header);
        let mut output = vec![0u8; reply.information as usize];
        stream.read_exact(&mut output).map_err(broken)?;
        Ok((NtStatus(reply.status), output))
    }
}
