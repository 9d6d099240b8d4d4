//! Where requests go: the driver's device on Windows, a `wskctl host` control socket elsewhere.

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

use std::path::PathBuf;

use wsk::NtStatus;

/// A failure to reach the driver (as opposed to the driver refusing a request).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Nothing answers at the control socket.
    #[cfg(unix)]
    #[error(
        "no wskaccept host is running at {path}: start one with `wskctl host` (or point --control / WSKACCEPT_CONTROL at it)"
    )]
    NoHost {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The driver's device interface is not present.
    #[cfg_attr(not(windows), allow(dead_code))]
    #[error(
        "the wskaccept device is not present: install the driver (scripts/vm/Install-WskAccept.ps1) and check Device Manager"
    )]
    NoDevice,
    /// The host closed the connection or sent a malformed reply.
    #[error("the control channel broke: {0}")]
    Broken(String),
}

/// One DeviceIoControl: `(status, output bytes)`.
pub trait Device {
    /// Sends `input`, offers `output_len` bytes of output.
    ///
    /// # Errors
    /// [`DeviceError`] when the driver cannot be reached.
    fn control(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<(NtStatus, Vec<u8>), DeviceError>;
}

#[cfg(unix)]
/// The control socket path: `--control`, else `WSKACCEPT_CONTROL` (both resolved by clap), else a
/// per-user default.
#[must_use]
pub fn control_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(default_control_path)
}

#[cfg(unix)]
fn default_control_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("wskaccept.sock");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("wskaccept-{uid}.sock"))
}

/// Opens the device: on Windows the driver's interface, or the device path `--control` names;
/// elsewhere the control socket.
///
/// # Errors
/// [`DeviceError::NoDevice`] on Windows when the interface is absent.
#[cfg_attr(unix, allow(clippy::unnecessary_wraps, reason = "fallible on Windows"))]
pub fn open(control: Option<PathBuf>) -> Result<Box<dyn Device>, DeviceError> {
    #[cfg(windows)]
    {
        Ok(Box::new(match control {
            Some(path) => windows::DriverDevice::open_path(&path)?,
            None => windows::DriverDevice::open()?,
        }))
    }
    #[cfg(unix)]
    {
        Ok(Box::new(unix::HostDevice::new(control_path(control))))
    }
}
