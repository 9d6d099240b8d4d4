//! The kernel facade: the small surface of NT the driver uses, with two backends.
//!
//! - `host` (every non-Windows target): re-exports the host kernel (`crates/hostkernel`).
//! - `windows` (`target_os = "windows"`): thin wrappers over wdk-sys and netio.sys, no logic.
//!
//! Both provide the same names: [`Irql`] and its levels, [`current_irql`],
//! [`current_processor`], [`SpinLock`] (raises to
//! DISPATCH_LEVEL), [`Event`], [`SystemThread`], the IRP calls (`irp_allocate`, `irp_free`,
//! `irp_reuse`, `irp_set_completion`, `irp_status`), pool (`pool_allocate`, `pool_free`), MDLs
//! (`mdl_allocate`, `mdl_free`), [`interrupt_time`], `random_bytes` (BCryptGenRandom,
//! PASSIVE_LEVEL), [`Dpc`] and [`flush_queued_dpcs`] (a KDPC queued for the current processor;
//! KeFlushQueuedDpcs), and the four netio exports
//! (`WskRegister`, `WskCaptureProviderNPI`, `WskReleaseProviderNPI`, `WskDeregister`).
//!
//! What is built on top of that surface is portable and lives here too: [`PoolBox`] (tagged,
//! fallible, accounted allocations) and the ordered [`WorkQueue`].

#[cfg(not(target_os = "windows"))]
mod dpc_host;
#[cfg(not(target_os = "windows"))]
mod host;
#[cfg(not(target_os = "windows"))]
pub use dpc_host::{Dpc, flush_queued_dpcs};
#[cfg(not(target_os = "windows"))]
pub use host::*;

#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
pub use windows::*;

mod pool;
mod workqueue;

pub use pool::{PoolBox, PoolSlice};
pub use workqueue::{QueueFigures, WorkItem, WorkQueue, WorkQueueHandle, figures as queue_figures};

/// Pool tags (read backwards in pool dumps, as usual).
pub mod tags {
    /// The driver object and listener bookkeeping.
    pub const DRIVER: u32 = u32::from_le_bytes(*b"WskD");
    /// Listeners.
    pub const LISTENER: u32 = u32::from_le_bytes(*b"WskL");
    /// Connection tables.
    pub const TABLE: u32 = u32::from_le_bytes(*b"WskT");
    /// Connections' data buffers.
    pub const BUFFER: u32 = u32::from_le_bytes(*b"WskB");
    /// Accept IRP contexts.
    pub const ACCEPT: u32 = u32::from_le_bytes(*b"WskA");
    /// Synchronous-call state.
    pub const CALL: u32 = u32::from_le_bytes(*b"WskC");
    /// Kernel objects the backends allocate: KEVENTs, system thread start blocks.
    pub const EVENT: u32 = u32::from_le_bytes(*b"WskE");
}
