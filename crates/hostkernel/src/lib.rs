//! The host kernel: a user-mode emulation, over real OS sockets, of the NT kernel pieces and the
//! WSK provider that wskaccept uses (see `shared/DESIGN.md` and `shared/WSK-FACTS.md`).
//!
//! It is the kernel the tests run the driver on, so it is strict where Windows is strict and never
//! more forgiving: misuse that Driver Verifier (or a bug check) would catch is a *violation* here —
//! the verifier prints the rule it names and the process stops, like a blue screen
//! ([`verifier`]). Everything the driver leaves behind at unload is reported by [`accounting`].
//!
//! Pieces:
//! - [`irql`]: a per-thread IRQL; [`spinlock`]: a spin lock that raises to DISPATCH_LEVEL;
//!   [`event`]: notification and synchronization events; [`thread`]: system threads;
//!   [`pool`]: tagged nonpaged pool; [`irp`]: IRPs with the Windows lifecycle; [`mdl`]: MDLs;
//!   [`random`]: BCryptGenRandom (PASSIVE_LEVEL); [`time`]; [`processor`]: processor numbers;
//!   [`dpc`]: DPCs, run on their target processor when its IRQL drops below DISPATCH_LEVEL.
//! - [`provider`]: the WSK provider (WskRegister … WskDeregister and the socket dispatch tables),
//!   driven by one event-loop thread over mio whatever the number of sockets.
//! - [`schedule`]: a seed that decides inline or deferred completion and injects races, resets
//!   and failures, so a failing run can be replayed.
//! - [`wsk_calls`]: how many WSK calls the driver made (benchmarks).
#![allow(unsafe_code)]
// Not in [workspace.lints] yet: the driver crate has types without Debug.
#![warn(missing_debug_implementations)]

pub mod accounting;
pub mod dpc;
pub mod event;
pub mod irp;
pub mod irql;
pub mod mdl;
pub mod pool;
pub mod processor;
pub mod provider;
pub mod random;
pub mod rlimit;
pub mod schedule;
pub mod spinlock;
pub mod thread;
pub mod time;
pub mod verifier;
pub mod wsk_calls;
