//! The Winsock Kernel (WSK) ABI that a listening TCP server needs, written by hand from wsk.h,
//! ws2def.h, ws2ipdef.h and ntstatus.h (see `shared/WSK-FACTS.md` §1–§2).
//!
//! wdk-sys has no WSK bindings, so these definitions are the contract between the driver and the
//! WSK provider: netio.sys on Windows, the host kernel's emulated provider everywhere else. Every
//! struct and dispatch table carries compile-time assertions of its size, alignment and member
//! offsets with the x64 values of the Windows headers (`layout.rs`); the same assertions are
//! checked for `x86_64-pc-windows-msvc` in CI where that target can be installed, and the same
//! numbers, exported as [`LAYOUTS`] and [`CONSTANTS`], are checked against an independent C
//! header by `scripts/windows-lane/wsk-layout.sh`.
//!
//! Modules, lowest first (each imports only the ones before it;
//! `scripts/check-module-cycles.sh` checks): [`status`] and [`types`] (plain structs, opaque
//! objects), [`consts`], [`addr`] (SOCKADDRs), [`dispatch`] (PFN types and socket dispatch tables),
//! [`npi`] (registration and the NPIs, which carry the dispatch tables), [`layout`].
//!
//! Type rules (LLP64): ULONG is `u32` (never `c_ulong`), SIZE_T/ULONG_PTR are `usize`, NTSTATUS is
//! [`NtStatus`], C enums are 4 bytes, and every callback is `extern "system"`.
#![no_std]
// Not in [workspace.lints] yet: the driver crate has types without Debug.
#![warn(missing_debug_implementations)]

pub mod addr;
pub mod consts;
pub mod dispatch;
pub mod layout;
pub mod npi;
pub mod status;
pub mod types;

pub use addr::{AddressError, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE};
pub use consts::*;
pub use dispatch::*;
#[cfg(target_pointer_width = "64")]
pub use layout::{CConstant, CONSTANTS, FieldLayout, LAYOUTS, TypeLayout};
pub use npi::*;
pub use status::NtStatus;
pub use types::*;
