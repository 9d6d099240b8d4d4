//! Tagged, fallible nonpaged allocations ([`PoolBox`], [`PoolSlice`]) over the facade's pool
//! calls: allocation failure is an error, never an abort, and every block is accounted by tag.

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use wsk::NtStatus;

use super::{pool_allocate, pool_free};

/// One `T` in nonpaged pool under a tag.
///
/// # Invariants
/// `ptr` points at an initialised `T` in a pool block of `T`'s layout allocated with
/// `tag`, owned by this box, freed exactly once (on drop). The address never changes, so the
/// value can be handed to the kernel as a context pointer.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: u32,
}

impl<T> core::fmt::Debug for PoolBox<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolBox")
            .field("ptr", &self.ptr)
            .field("tag", &self.tag)
            .finish()
    }
}

// SAFETY: the box owns its T like alloc::boxed::Box does.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access gives out only `&T`, and `T: Sync` makes sharing `&T` between threads
// sound.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    /// Allocates and moves `value` in. IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the pool has no room.
    pub fn new(tag: u32, value: T) -> Result<Self, NtStatus> {
        let raw = pool_allocate(tag, size_of::<T>().max(1), align_of::<T>()).cast::<T>();
        let ptr = NonNull::new(raw).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: a fresh block with T's size and alignment.
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: `ptr` is a fresh block of T's layout under `tag`, now holding `value`; only
        // this box has it.
        Ok(Self { ptr, tag })
    }

    /// Gives up ownership; [`PoolBox::from_raw`] takes it back (a driver global).
    #[must_use]
    pub fn into_raw(self) -> *mut T {
        let ptr = self.ptr.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// Takes back a box given up with [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a box with `tag`, and is taken back once.
    #[must_use]
    pub unsafe fn from_raw(ptr: *mut T, tag: u32) -> Option<Self> {
        // INVARIANT: by the caller's promise `ptr` is what `into_raw` gave up (initialised, under
        // `tag`), taken back once, so this box is again its only owner.
        NonNull::new(ptr).map(|ptr| Self { ptr, tag })
    }

    /// The stable address (for kernel context pointers).
    #[must_use]
    pub fn as_ptr(&self) -> *const T {
        self.ptr.as_ptr()
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: initialised and owned (type invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: initialised and uniquely owned (type invariant, `&mut self`).
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: initialised and dropped once (type invariant).
        unsafe { self.ptr.as_ptr().drop_in_place() };
        // SAFETY: allocated with this tag; freed once, here.
        unsafe { pool_free(self.ptr.as_ptr().cast(), self.tag) };
    }
}

/// `len` values of `T` in one nonpaged block (a preallocated table).
///
/// # Invariants
/// `ptr` points at `len` initialised `T`s in one block allocated with `tag`, owned
/// here, freed once on drop; the block never moves.
pub struct PoolSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    tag: u32,
}

impl<T> core::fmt::Debug for PoolSlice<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolSlice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("tag", &self.tag)
            .finish()
    }
}

// SAFETY: owns its elements like Box<[T]>.
unsafe impl<T: Send> Send for PoolSlice<T> {}
// SAFETY: shared access gives out only `&[T]`, sound to share across threads since `T: Sync`.
unsafe impl<T: Sync> Sync for PoolSlice<T> {}

impl<T> PoolSlice<T> {
    /// Allocates `len` elements made by `init(index)`. If `init` fails, what was built is dropped
    /// and the block freed. IRQL: <= DISPATCH_LEVEL (PASSIVE_LEVEL if `init` needs it).
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the pool has no room, or `init`'s error.
    pub fn try_new(
        tag: u32,
        len: usize,
        mut init: impl FnMut(usize) -> Result<T, NtStatus>,
    ) -> Result<Self, NtStatus> {
        let size = size_of::<T>()
            .checked_mul(len)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let raw = pool_allocate(tag, size.max(1), align_of::<T>()).cast::<T>();
        let ptr = NonNull::new(raw).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: `len` starts at 0 (no element initialised yet) and grows by one after each
        // element is written, so the first `len` are always initialised; if `init` fails, drop
        // drops exactly those and frees the block.
        let mut slice = Self { ptr, len: 0, tag };
        for index in 0..len {
            let value = init(index)?;
            // SAFETY: `index < len`: inside the block.
            let place = unsafe { ptr.as_ptr().add(index) };
            // SAFETY: the slot is inside the block, aligned, and not initialised yet.
            unsafe { place.write(value) };
            slice.len = index + 1;
        }
        Ok(slice)
    }
}

impl PoolSlice<u8> {
    /// `len` zero bytes in one block (a data buffer). IRQL: <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// STATUS_INSUFFICIENT_RESOURCES when the pool has no room.
    pub fn zeroed(tag: u32, len: usize) -> Result<Self, NtStatus> {
        let ptr = NonNull::new(pool_allocate(tag, len.max(1), 1))
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: a fresh block of at least `len` bytes, owned here.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        // INVARIANT: one block of `len` bytes from `tag`, every byte initialised (zero), owned.
        Ok(Self { ptr, len, tag })
    }

    /// The first byte (for an MDL; the block never moves).
    #[must_use]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl<T> Deref for PoolSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements (type invariant).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for PoolSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: `len` initialised elements, uniquely borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for PoolSlice<T> {
    fn drop(&mut self) {
        let elements = core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: the first `len` elements are initialised and dropped once.
        unsafe { elements.drop_in_place() };
        // SAFETY: allocated with this tag; freed once.
        unsafe { pool_free(self.ptr.as_ptr().cast(), self.tag) };
    }
}
