//! Safe wrappers over WSK, calling the provider through the crates/wsk dispatch tables — the same
//! code against netio.sys on Windows and the host kernel's provider elsewhere.

pub mod connection;
pub mod irp;
pub mod registration;
pub mod socket;
pub mod sync;

pub use connection::{ConnSocket, ConnSocketRef};
pub use irp::DriverIrp;
pub use registration::{Provider, WskClient};
pub use socket::ListenSocket;
