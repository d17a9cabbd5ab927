//! Where a hashbrown table keeps the slots a hash probes first, so that the
//! index's tables can prefetch them before a lookup or insert. Apart because
//! it leans on hashbrown's memory layout (pinned by a test in `tests.rs`).

use hashbrown::HashTable;

use crate::index::table_memory::TableAlloc;

use super::prefetch;

/// Buckets from its first probed one that [`Slots::prefetch_lookup`] asks
/// for: an entry lands in the first free bucket of its group of 16, which
/// in a table 7/8 full or less is one of the first 8 most of the time.
pub(super) const LOOKUP_SLOTS: usize = 8;

/// Where a table keeps the group and slot that a hash probes first, to
/// prefetch them.
///
/// Worked out from one full bucket's address and hashbrown's layout (the
/// slot of bucket `i` at `ctrl - (i + 1) * size_of::<T>()`, probing from
/// bucket `hash & mask`). Should that layout ever change, or the table grow
/// meanwhile, the prefetches go to the wrong addresses and nothing else
/// happens: a prefetch reads nothing into the program and never faults.
pub(super) struct Slots {
    pub(super) ctrl: usize,
    pub(super) mask: usize,
    pub(super) size: usize,
}

impl Slots {
    /// `None` for an empty table (no bucket to start from).
    pub(super) fn of<T>(t: &HashTable<T, TableAlloc>) -> Option<Self> {
        if t.is_empty() {
            return None;
        }
        let i = t.iter_buckets().next()?;
        let at = std::ptr::from_ref(t.get_bucket(i)?) as usize;
        Some(Self {
            ctrl: at.wrapping_add((i + 1).wrapping_mul(size_of::<T>())),
            mask: t.num_buckets().wrapping_sub(1),
            size: size_of::<T>(),
        })
    }

    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let bucket = hash as usize & self.mask;
        prefetch::line(self.ctrl.wrapping_add(bucket));
        prefetch::line(
            self.ctrl
                .wrapping_sub(bucket.wrapping_add(1).wrapping_mul(self.size)),
        );
    }

    /// Prefetches what a lookup of `hash` most likely reads: the control
    /// group probed first and the slots of its first [`LOOKUP_SLOTS`]
    /// buckets, so that the slot's miss overlaps the control group's
    /// instead of following it.
    #[inline]
    pub(super) fn prefetch_lookup(&self, hash: u64) {
        let slots = LOOKUP_SLOTS;
        let bucket = hash as usize & self.mask;
        let group = self.ctrl.wrapping_add(bucket);
        prefetch::line(group);
        prefetch::line(group.wrapping_add(15)); // a group may straddle two lines
        // bucket i's slot lies below bucket i - 1's
        let high = self
            .ctrl
            .wrapping_sub(bucket.wrapping_add(1).wrapping_mul(self.size))
            .wrapping_add(self.size - 1);
        let low = self
            .ctrl
            .wrapping_sub(bucket.wrapping_add(slots).wrapping_mul(self.size));
        let first = low & !(prefetch::LINE - 1);
        // at most 4 (8 slots of 24 bytes), whatever the arithmetic gave
        let lines = (high.wrapping_sub(first) / prefetch::LINE + 1).min(4);
        prefetch::lines(first, lines);
    }
}
