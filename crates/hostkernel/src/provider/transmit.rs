//! The sending side of a connection socket: a queued WskSend ([`Send`]), and whether the peer
//! acknowledged our FIN ([`fin_acknowledged`]: on Linux, TCP_INFO's state has left FIN_WAIT1, or
//! LAST_ACK / CLOSING), which is when a graceful WskDisconnect completes, not when `shutdown()`
//! returns. `connection` writes the sends, then the FIN.

use crate::irp::IrpRef;

/// Whether the peer has acknowledged our FIN: TCP_INFO's state is past FIN_WAIT1, LAST_ACK and
/// CLOSING (the states in which our FIN is still unacknowledged).
#[cfg(target_os = "linux")]
pub(super) fn fin_acknowledged(stream: &mio::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    const TCP_FIN_WAIT1: u8 = 4;
    const TCP_LAST_ACK: u8 = 9;
    const TCP_CLOSING: u8 = 11;
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).unwrap_or(0);
    // SAFETY: a live socket descriptor, and a buffer of `length` writable bytes.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut length,
        )
    };
    result != 0 || !matches!(info.tcpi_state, TCP_FIN_WAIT1 | TCP_LAST_ACK | TCP_CLOSING)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn fin_acknowledged(_stream: &mio::net::TcpStream) -> bool {
    true
}

/// A queued WskSend. Like Windows' transport, which reads a send's buffer until the send
/// completes, the bytes are read from the driver's buffer when they are written to the socket,
/// not copied at submission: a driver that rewrites a buffer whose send is pending sends the
/// rewritten bytes here too.
///
/// # Invariants
/// `pieces` are the ranges the WSK_BUF the driver passed describes (its MDL chain, walked at
/// submission), readable driver memory valid until `irp` completes (WskSend's # Safety:
/// PFN_WSK_SEND); `length` is their total; `written <= length`.
pub(super) struct Send {
    pub(super) irp: IrpRef,
    pub(super) pieces: Vec<(*mut u8, usize)>,
    pub(super) length: usize,
    pub(super) written: usize,
}

impl Send {
    /// The driver bytes not written yet, up to the end of the piece `written` falls in.
    pub(super) fn unwritten(&self) -> &[u8] {
        let mut skip = self.written;
        for &(ptr, len) in &self.pieces {
            if skip < len {
                // SAFETY: `skip < len`, so the pointer stays inside the piece.
                let start = unsafe { ptr.add(skip) };
                // SAFETY: `ptr..ptr+len` is readable driver memory until the IRP completes (type
                // invariant), and the IRP is still queued here.
                return unsafe { std::slice::from_raw_parts(start, len - skip) };
            }
            skip -= len;
        }
        &[]
    }
}
