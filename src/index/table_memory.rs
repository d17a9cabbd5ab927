//! Memory for the user index's hash tables: one region per index, mapped
//! from the kernel aligned to 2 MiB and advised to be backed by transparent
//! huge pages.
//!
//! A table slot is found at random, so with 4 KiB pages nearly every lookup
//! and every insert into a large index also misses the TLB (a page walk, two
//! levels deep in a virtual machine). Hosts run THP in `madvise` mode, where
//! only memory that asks gets huge pages, and a table on its own is often too
//! small to hold one (an index has dozens to hundreds of shards, each a table
//! of a few hundred KiB to a few MiB). So [`TableAlloc`] carves the tables
//! an index is pre-sized for out of one region: the 440 MB of tables of
//! 10 M users take about 220 huge pages instead of 110 000 small ones. A table
//! that grows beyond its pre-sized allocation, and every table of an index
//! not pre-sized, comes from the global allocator as before.
//!
//! Memory stays as it was: the region is mapped to the bytes the tables
//! need (the part past the last 2 MiB boundary gets small pages, nothing is
//! rounded up) and every byte of a pre-sized table is written anyway (the
//! control bytes when it is made, the slots as it fills). A table freed
//! from the region gives its pages back to the kernel; its addresses are not
//! reused, and the region is unmapped when the last table carved from it is
//! dropped.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// The size and alignment of a transparent huge page on x86-64 and arm64
/// (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Regions smaller than this are not worth a mapping of their own.
const MIN_REGION: usize = HUGE_PAGE;

/// The allocator of the index's tables: from the index's region while it
/// has room, else from the global allocator.
#[derive(Clone, Default)]
pub(crate) struct TableAlloc(Option<Arc<Region>>);

impl TableAlloc {
    /// An allocator with room for about `bytes` of tables in one region
    /// (none when that is small or the kernel refuses the mapping).
    pub(crate) fn with_region(bytes: usize) -> Self {
        if bytes < MIN_REGION {
            return Self(None);
        }
        Self(Region::map(bytes).map(Arc::new))
    }

    /// Whether this allocator carves from a region.
    #[cfg(test)]
    pub(crate) fn has_region(&self) -> bool {
        self.0.is_some()
    }
}

// SAFETY: blocks from the region are carved once each, never overlap, are
// `layout`-aligned and at least `layout.size()` long, and stay mapped while
// any clone of the allocator (each holds the region) lives; other blocks come
// from and go back to `Global`, told apart by address.
unsafe impl Allocator for TableAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if let Some(block) = self.0.as_ref().and_then(|r| r.carve(layout)) {
            return Ok(block);
        }
        Global.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        match &self.0 {
            Some(region) if region.contains(ptr) => region.release(ptr, layout.size()),
            // SAFETY: not from the region, so from `Global` with this layout
            // (the caller's contract).
            _ => unsafe { Global.deallocate(ptr, layout) },
        }
    }
}

/// An anonymous mapping, 2 MiB aligned, handed out front to back.
struct Region {
    base: NonNull<u8>,
    /// Bytes mapped (a multiple of the page size).
    len: usize,
    /// Bytes handed out so far.
    used: AtomicUsize,
}

// SAFETY: the region is plain memory owned by this value; `used` is atomic and
// each carved block is owned by one table.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `bytes` (rounded up to whole pages) at a 2 MiB boundary, advised
    /// to be backed by huge pages; `None` when the kernel refuses.
    #[cfg(target_os = "linux")]
    fn map(bytes: usize) -> Option<Self> {
        let len = bytes.checked_next_multiple_of(4096)?;
        let reserve = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let head = start.next_multiple_of(HUGE_PAGE) - start;
        let tail = reserve - head - len;
        // Both trims are page-aligned ranges of the mapping just made, not
        // part of the region kept: unmapping them touches nothing else.
        // SAFETY: as above.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap(raw.cast::<u8>().add(head + len).cast(), tail);
            }
        }
        // SAFETY: within the mapping (head < HUGE_PAGE), so not null.
        let base = unsafe { NonNull::new_unchecked(raw.cast::<u8>().add(head)) };
        // Advice only: without huge pages the region works as before.
        // SAFETY: the region just mapped.
        unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        Some(Self {
            base,
            len,
            used: AtomicUsize::new(0),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_bytes: usize) -> Option<Self> {
        None
    }

    /// The next `layout` bytes of the region, if it has room.
    fn carve(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let base = self.base.as_ptr() as usize;
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let start = (base + used).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > self.len {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    // SAFETY: `start + size <= len`: inside the mapping.
                    let ptr = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(start)) };
                    return Some(NonNull::slice_from_raw_parts(ptr, layout.size()));
                }
                Err(now) => used = now,
            }
        }
    }

    fn contains(&self, ptr: NonNull<u8>) -> bool {
        let (p, base) = (ptr.as_ptr() as usize, self.base.as_ptr() as usize);
        p >= base && p < base + self.len
    }

    /// Gives the whole pages of a freed block back to the kernel (they read
    /// as zeros if touched again, which nothing does: blocks are not reused).
    fn release(&self, ptr: NonNull<u8>, size: usize) {
        #[cfg(target_os = "linux")]
        {
            let start = (ptr.as_ptr() as usize).next_multiple_of(4096);
            let end = (ptr.as_ptr() as usize + size) / 4096 * 4096;
            if end > start {
                // SAFETY: whole pages inside the freed block, which no one
                // uses any more.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
                };
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, size);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping made in `map`; every table carved from it is
        // gone (each held the region).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_carved_from_the_region_until_it_is_full() {
        let alloc = TableAlloc::with_region(4 * HUGE_PAGE);
        let Some(region) = alloc.0.clone() else {
            return; // no mapping on this system: nothing to test
        };
        assert_eq!(region.base.as_ptr() as usize % HUGE_PAGE, 0);
        let layout = Layout::from_size_align(3 * HUGE_PAGE / 2 + 1, 16).unwrap();
        let a = alloc.allocate(layout).unwrap();
        let b = alloc.allocate(layout).unwrap();
        let c = alloc.allocate(layout).unwrap(); // no room: global
        assert!(region.contains(a.cast()) && region.contains(b.cast()));
        assert!(!region.contains(c.cast()));
        assert_eq!(b.cast::<u8>().as_ptr() as usize % 16, 0);
        // SAFETY: the blocks are `layout` bytes, just allocated, not shared.
        unsafe {
            b.cast::<u8>().as_ptr().write_bytes(7, layout.size());
            a.cast::<u8>().as_ptr().write_bytes(9, layout.size());
            assert_eq!(*b.cast::<u8>().as_ptr().add(layout.size() - 1), 7);
            alloc.deallocate(a.cast(), layout);
            alloc.deallocate(b.cast(), layout);
            alloc.deallocate(c.cast(), layout);
        }
    }

    #[test]
    fn small_indexes_take_no_region() {
        assert!(TableAlloc::with_region(MIN_REGION - 1).0.is_none());
    }
}
