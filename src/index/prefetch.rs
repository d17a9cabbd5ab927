//! Asking the CPU for a cache line before the code that reads it runs.
//!
//! A decision walks a chain of dependent loads through tables far larger
//! than the caches (device slot, then user slot, then the profile): each
//! waits for the one before. Where an address can be known or guessed a
//! step early, asking for its line then overlaps the misses.

/// Asks for the cache line holding `addr` to be brought into every level
/// of cache.
///
/// A hint only: it reads nothing into the program, never faults whatever
/// the address (unmapped, freed, a guess that turned out wrong), and does
/// nothing on targets other than x86-64.
#[inline(always)]
pub(crate) fn line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has; a
        // prefetch dereferences nothing for the program and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance(addr)) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// The size of a cache line on the targets we run on.
pub(crate) const LINE: usize = 64;

/// Asks for the `lines` cache lines from `addr` on (see [`line`]).
#[inline(always)]
pub(crate) fn lines(addr: usize, lines: usize) {
    for k in 0..lines {
        line(addr.wrapping_add(k * LINE));
    }
}
