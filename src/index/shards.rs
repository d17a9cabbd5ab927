//! The sharded tables under [`UserIndex`](super::UserIndex): the per-index
//! hash seeds, a table split into lock-guarded shards, and how many shards
//! of what capacity a table pre-sized to a count gets. Kept apart from the
//! index's operations so that the locking and sizing rules read on their own.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::UserId;
use super::device_table::DeviceTag;

/// The two keys of this index's hash functions, random per index.
#[derive(Clone, Copy)]
pub(super) struct Seeds(u64, u64);

impl Seeds {
    pub(super) fn random() -> Self {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        Self(s.hash_one(0x5eed_u64), s.hash_one(0xcafe_u64) | 1)
    }

    /// Device keys are md5 digests (uniform), so one folded multiply of the
    /// tag's two parts mixes enough.
    #[inline]
    pub(super) fn device(self, t: &DeviceTag) -> u64 {
        let mut b = [0; 16];
        b[..12].copy_from_slice(t);
        let x = u128::from_le_bytes(b);
        fold(x as u64 ^ self.0, (x >> 64) as u64 ^ self.1)
    }

    /// User ids are often sequential: two rounds.
    #[inline]
    pub(super) fn user(self, u: UserId) -> u64 {
        fold(fold(u ^ self.0, self.1), 0x9e37_79b9_7f4a_7c15)
    }
}

/// The 128-bit product of `a` and `b`, its halves xor-ed together.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    p as u64 ^ (p >> 64) as u64
}

/// One shard: a lock and what it guards, on its own cache lines so that
/// readers of neighbouring shards do not share the lock word's line.
#[repr(align(128))]
pub(super) struct Shard<T>(pub(super) RwLock<T>);

/// A table split into shards by hash, each under its own lock.
pub(super) struct Sharded<T> {
    pub(super) shards: Box<[Shard<T>]>,
}

impl<T> Sharded<T> {
    pub(super) fn new(shards: usize, mut make: impl FnMut() -> T) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Shard(RwLock::new(make())))
                .collect(),
        }
    }

    /// The shard of `hash`: bits 24..56 scaled to the shard count (any count
    /// works), independent of the low bits that pick a slot and of the top 7
    /// that hashbrown keeps as a tag.
    #[inline]
    fn of(&self, hash: u64) -> &RwLock<T> {
        &self.shards[self.index_of(hash)].0
    }

    /// The position of `hash`'s shard (see [`Sharded::of`]).
    #[inline]
    pub(super) fn index_of(&self, hash: u64) -> usize {
        ((((hash >> 24) & 0xffff_ffff) * self.shards.len() as u64) >> 32) as usize
    }

    /// Write-locks shard `i` if no other thread holds it.
    pub(super) fn try_write_at(&self, i: usize) -> Option<RwLockWriteGuard<'_, T>> {
        match self.shards[i].0.try_write() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Write-locks shard `i`, waiting for it.
    pub(super) fn write_at(&self, i: usize) -> RwLockWriteGuard<'_, T> {
        self.shards[i]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(super) fn read(&self, hash: u64) -> RwLockReadGuard<'_, T> {
        self.of(hash).read().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(super) fn write(&self, hash: u64) -> RwLockWriteGuard<'_, T> {
        self.of(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard, read-locked one at a time.
    pub(super) fn each(&self) -> impl Iterator<Item = RwLockReadGuard<'_, T>> {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every shard, write-locked one at a time.
    pub(super) fn each_mut(&self) -> impl Iterator<Item = RwLockWriteGuard<'_, T>> {
        self.shards
            .iter()
            .map(|s| s.0.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Shard count and per-shard capacity for a table pre-sized to `items`.
///
/// hashbrown gives a shard of capacity `c` the next power of two above
/// `c * 8 / 7` slots; among shard counts in `[m, 2m)` (m = 4 per core, at
/// least 32, for lock spread) this picks the one whose shards, with a margin
/// of 4 standard deviations for the uneven split, need the fewest slots in all.
pub(super) fn plan(items: usize) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let min = (4 * cores).clamp(32, 1024);
    if items == 0 {
        return (min, 0);
    }
    (min..2 * min)
        .map(|shards| {
            let mean = items.div_ceil(shards);
            let cap = mean + 4 * mean.isqrt() + 8;
            (shards.saturating_mul(buckets_for(cap)), shards, cap)
        })
        .min()
        .map_or((min, 0), |(_, shards, cap)| (shards, cap))
}

/// At least the bytes hashbrown allocates for a table of `T` made with
/// capacity `capacity`: a slot and a control byte per bucket, a group of
/// trailing control bytes and alignment.
pub(super) fn allocated_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0; // no allocation
    }
    buckets_for(capacity)
        .saturating_mul(size_of::<T>() + 1)
        .saturating_add(128)
}

/// The buckets hashbrown gives a table made with capacity `capacity` (at
/// most 7/8 full; small tables differ a little, which no caller minds).
fn buckets_for(capacity: usize) -> usize {
    match capacity {
        0..4 => 4,
        4..8 => 8,
        _ => (capacity.saturating_mul(8) / 7).next_power_of_two(),
    }
}
