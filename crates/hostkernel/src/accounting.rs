//! What the driver holds: pool by tag, IRPs, sockets, registrations, captured NPIs, system
//! threads. A driver that unloads with anything outstanding has leaked it; [`outstanding`] names
//! what.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub use crate::pool::PoolUsage;

/// Global counters of kernel objects the driver holds.
pub(crate) struct Counters {
    pub(crate) irps: AtomicI64,
    pub(crate) sockets: AtomicI64,
    pub(crate) registrations: AtomicI64,
    pub(crate) captured_npis: AtomicI64,
    pub(crate) system_threads: AtomicI64,
    pub(crate) mdls: AtomicI64,
}

/// Allocations made so far (cumulative), to count what an operation allocates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocations {
    /// ExAllocatePool2 calls that succeeded.
    pub pool: u64,
    /// IoAllocateIrp calls that succeeded.
    pub irps: u64,
    /// IoAllocateMdl calls.
    pub mdls: u64,
}

pub(crate) static IRP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
pub(crate) static MDL_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations made so far by the driver through the kernel (pool, IRPs, MDLs).
#[must_use]
pub fn allocations() -> Allocations {
    Allocations {
        pool: crate::pool::ALLOCATIONS.load(Ordering::Relaxed),
        irps: IRP_ALLOCATIONS.load(Ordering::Relaxed),
        mdls: MDL_ALLOCATIONS.load(Ordering::Relaxed),
    }
}

pub(crate) static COUNTERS: Counters = Counters {
    irps: AtomicI64::new(0),
    sockets: AtomicI64::new(0),
    registrations: AtomicI64::new(0),
    captured_npis: AtomicI64::new(0),
    system_threads: AtomicI64::new(0),
    mdls: AtomicI64::new(0),
};

/// A snapshot of everything outstanding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outstanding {
    /// Pool by tag (only tags with blocks outstanding).
    pub pool: Vec<PoolUsage>,
    /// IRPs allocated and not freed.
    pub irps: i64,
    /// Sockets created (WskSocket or accepted) and not closed.
    pub sockets: i64,
    /// WskRegister without WskDeregister.
    pub registrations: i64,
    /// WskCaptureProviderNPI without WskReleaseProviderNPI.
    pub captured_npis: i64,
    /// System threads not joined.
    pub system_threads: i64,
    /// MDLs allocated and not freed.
    pub mdls: i64,
}

impl Outstanding {
    /// True when nothing is outstanding.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Outstanding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("nothing outstanding");
        }
        writeln!(f, "outstanding kernel objects (leaked at unload):")?;
        for usage in &self.pool {
            writeln!(
                f,
                "  pool tag '{}': {} blocks, {} bytes",
                usage.tag, usage.blocks, usage.bytes
            )?;
        }
        let rows = [
            ("IRPs", self.irps),
            ("sockets", self.sockets),
            ("WSK registrations", self.registrations),
            ("captured provider NPIs", self.captured_npis),
            ("system threads", self.system_threads),
            ("MDLs", self.mdls),
        ];
        for (what, count) in rows {
            if count != 0 {
                writeln!(f, "  {what}: {count}")?;
            }
        }
        Ok(())
    }
}

/// Everything outstanding now.
#[must_use]
pub fn outstanding() -> Outstanding {
    Outstanding {
        pool: crate::pool::usage(),
        irps: COUNTERS.irps.load(Ordering::SeqCst),
        sockets: COUNTERS.sockets.load(Ordering::SeqCst),
        registrations: COUNTERS.registrations.load(Ordering::SeqCst),
        captured_npis: COUNTERS.captured_npis.load(Ordering::SeqCst),
        system_threads: COUNTERS.system_threads.load(Ordering::SeqCst),
        mdls: COUNTERS.mdls.load(Ordering::SeqCst),
    }
}
