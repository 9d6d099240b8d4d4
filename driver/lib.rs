//! wskaccept: a Winsock Kernel (WSK) TCP server foundation.
//!
//! The driver logic is written once against the kernel facade ([`kernel`]): on Windows it runs on
//! wdk-sys and netio.sys; everywhere else on the host kernel (`crates/hostkernel`), which is what
//! the tests use. Layout: [`net`] (WSK wrappers), [`table`] (connection table), [`listener`]
//! (listeners and both accept paths), [`conn`] (per-connection IO), [`policy`], [`engine`] (the
//! driver object and its API).
// The Windows build is no_std and has no global allocator: every allocation goes through the
// kernel facade's fallible pool calls, so an infallible `Box::new` cannot even be written there.
// (Unit tests of the portable modules may still be compiled for Windows, with std.)
#![cfg_attr(all(target_os = "windows", not(test)), no_std)]

pub mod conn;
pub mod control;
pub mod engine;
#[cfg(all(target_os = "windows", not(feature = "wine-test")))]
mod entry;
pub mod ids;
pub mod kernel;
pub mod listener;
pub mod net;
pub mod pending;
pub mod policy;
pub mod rundown;
pub mod table;
pub mod trace;
#[cfg(all(target_os = "windows", feature = "wine-test"))]
mod wine_entry;
