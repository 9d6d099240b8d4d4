//! The contract between the wskaccept driver and user mode (`wskctl`): IOCTL codes, messages and
//! their validation. `no_std`, no `unsafe`: every message is a fixed-layout `#[repr(C)]` struct
//! with explicit padding, read and written with zerocopy, versioned, with reserved fields that must
//! be zero. Each malformed input maps to one precise NTSTATUS (see [`codes`] and [`wire`]).
#![no_std]
#![forbid(unsafe_code)]

pub mod codes;
pub mod counters;
pub mod enums;
pub mod ids;
pub mod wire;

pub use codes::*;
pub use counters::*;
pub use enums::*;
pub use wire::*;
