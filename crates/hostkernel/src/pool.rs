//! Nonpaged pool (ExAllocatePool2 / ExFreePoolWithTag) with per-tag accounting. Every block is
//! recorded with its tag, size and alignment; freeing checks all three.

use std::alloc::Layout;
use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::irql;
use crate::schedule::{self, Fault};
use crate::verifier::{Rule, violation};

struct Block {
    tag: u32,
    layout: Layout,
}

static BLOCKS: Mutex<Option<FxHashMap<usize, Block>>> = Mutex::new(None);

/// ExAllocatePool2 calls that succeeded so far (cumulative; [`crate::accounting::allocations`]).
pub(crate) static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Pool blocks outstanding under one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// The four-character tag.
    pub tag: String,
    /// Blocks outstanding.
    pub blocks: u64,
    /// Bytes outstanding.
    pub bytes: u64,
}

fn tag_name(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag): zeroed memory, or NULL when the schedule
/// injects an allocation failure or `size` is 0.
///
/// IRQL: <= DISPATCH_LEVEL.
#[must_use]
pub fn allocate(tag: u32, size: usize, align: usize) -> *mut u8 {
    irql::assert_at_most_dispatch("ExAllocatePool2");
    let Ok(layout) = Layout::from_size_align(size, align.max(1)) else {
        return std::ptr::null_mut();
    };
    if size == 0 || schedule::should_fail(Fault::PoolAllocation) {
        return std::ptr::null_mut();
    }
    // SAFETY: the layout has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if !ptr.is_null() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BLOCKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(FxHashMap::default)
            .insert(ptr as usize, Block { tag, layout });
    }
    ptr
}

/// ExFreePoolWithTag. IRQL: <= DISPATCH_LEVEL.
///
/// # Safety
/// `ptr` must not be used after this call.
pub unsafe fn free(ptr: *mut u8, tag: u32) {
    irql::assert_at_most_dispatch("ExFreePoolWithTag");
    let block = BLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(FxHashMap::default)
        .remove(&(ptr as usize));
    let Some(block) = block else {
        violation(
            Rule::BadPoolFree,
            format_args!("ExFreePoolWithTag({ptr:p}): not an allocated block (double free?)"),
        );
    };
    if block.tag != tag {
        violation(
            Rule::BadPoolFree,
            format_args!(
                "ExFreePoolWithTag({ptr:p}) with tag '{}' but allocated with '{}'",
                tag_name(tag),
                tag_name(block.tag)
            ),
        );
    }
    crate::dpc::check_free(ptr as usize, block.layout.size());
    // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly this layout (recorded at
    // allocation) and is removed from the table, so it is freed once.
    unsafe { std::alloc::dealloc(ptr, block.layout) };
}

/// Outstanding blocks by tag, sorted by tag.
#[must_use]
pub fn usage() -> Vec<PoolUsage> {
    let guard = BLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut by_tag: HashMap<u32, (u64, u64)> = HashMap::new();
    for block in guard.iter().flat_map(FxHashMap::values) {
        let entry = by_tag.entry(block.tag).or_default();
        entry.0 += 1;
        entry.1 += block.layout.size() as u64;
    }
    let mut usage: Vec<PoolUsage> = by_tag
        .into_iter()
        .map(|(tag, (blocks, bytes))| PoolUsage {
            tag: tag_name(tag),
            blocks,
            bytes,
        })
        .collect();
    usage.sort_by(|a, b| a.tag.cmp(&b.tag));
    usage
}
