//! MDLs, reduced to what WSK_BUF needs on the host: a chain of (virtual address, length).
//! IoAllocateMdl + MmBuildMdlForNonPagedPool on Windows.

use std::sync::atomic::Ordering;

use wsk::MDL;

use crate::accounting::COUNTERS;

/// The host's MDL; `*mut MDL` points at one.
#[repr(C)]
#[derive(Debug)]
pub struct HostMdl {
    /// Next MDL of the chain.
    pub next: *mut MDL,
    /// Start of the described buffer.
    pub address: *mut u8,
    /// Bytes described.
    pub byte_count: u32,
}

/// IoAllocateMdl(address, length) + MmBuildMdlForNonPagedPool: NULL when the schedule injects an
/// allocation failure. IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn allocate(address: *mut u8, length: u32) -> *mut MDL {
    crate::irql::assert_at_most_dispatch("IoAllocateMdl");
    if crate::schedule::should_fail(crate::schedule::Fault::MdlAllocation) {
        return std::ptr::null_mut();
    }
    COUNTERS.mdls.fetch_add(1, Ordering::SeqCst);
    crate::accounting::MDL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    Box::into_raw(Box::new(HostMdl {
        next: std::ptr::null_mut(),
        address,
        byte_count: length,
    }))
    .cast()
}

/// IoFreeMdl.
///
/// # Safety
/// `mdl` must come from [`allocate`] and not be used afterwards.
pub unsafe fn free(mdl: *mut MDL) {
    COUNTERS.mdls.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: the caller passes an MDL from `allocate` (a leaked Box) exactly once.
    drop(unsafe { Box::from_raw(mdl.cast::<HostMdl>()) });
}

/// The bytes a WSK_BUF describes, as (pointer, length) pieces.
///
/// # Safety
/// `buf` must describe live MDLs from [`allocate`].
pub(crate) unsafe fn pieces(buf: &wsk::WSK_BUF) -> Vec<(*mut u8, usize)> {
    let mut out = Vec::new();
    let mut remaining = buf.Length;
    let mut offset = buf.Offset as usize;
    let mut mdl = buf.Mdl.cast::<HostMdl>();
    while remaining > 0 && !mdl.is_null() {
        // SAFETY: the caller guarantees the chain is made of live host MDLs.
        let m = unsafe { &*mdl };
        let available = (m.byte_count as usize).saturating_sub(offset);
        let take = available.min(remaining);
        if take > 0 {
            // SAFETY: `offset < byte_count`, so the pointer stays inside the described buffer.
            out.push((unsafe { m.address.add(offset) }, take));
        }
        remaining -= take;
        offset = 0;
        mdl = m.next.cast();
    }
    out
}
