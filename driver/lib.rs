//! wskaccept: a Winsock Kernel (WSK) TCP server foundation.
//!
//! The driver logic is written once against the kernel facade ([`kernel`]): on Windows it runs on
//! wdk-sys and netio.sys; everywhere else on the host kernel (`crates/hostkernel`), which is what
//! the tests use. Layout: [`net`] (WSK wrappers), [`table`] (connection table), [`listener`]
//! (listeners and both accept paths), [`conn`] (per-connection IO), [`policy`], [`engine`] (the
//! driver object and its API).
#![cfg_attr(target_os = "windows", no_std)]

extern crate alloc;

pub mod conn;
pub mod control;
pub mod engine;
#[cfg(target_os = "windows")]
mod entry;
pub mod ids;
pub mod kernel;
pub mod listener;
pub mod net;
pub mod pending;
pub mod policy;
pub mod rundown;
pub mod table;
