//! `UserIndex`: the in-memory map from devices to users to profiles.
//!
//! Two sharded hash tables: device key -> user id, and user id -> profile.
//! Several devices resolve to one user (One-ID); the profile keeps its own
//! device list so that unlinking and deleting a user (a privacy request)
//! remove every device at once, and snapshots hold each user whole. Readers
//! hold a shard read lock only for the duration of one closure and never
//! across an await; no operation holds two shard locks at once.
//!
//! Memory is the design constraint (100 M users on one machine), so the
//! tables are our own rather than `DashMap`'s:
//! * slots are small. A profile slot is the user id and a thin pointer: 12
//!   bytes while the id fits 4 bytes (see [`UserProfile`]). A device slot is
//!   the first 96 bits of the md5 key (see [`DeviceTag`]) and the user id: 16
//!   bytes. A shard widens to 8-byte ids (16- and 24-byte slots) the first
//!   time a larger id arrives in it;
//! * a hash table of 2^k slots is at most 7/8 full, so one pre-sized to a
//!   count sits anywhere between 44 % and 87 % full depending on where the
//!   count falls between powers of two. The shard count here is free (not a
//!   power of two) and chosen per table so that the pre-sized shards come out
//!   nearly full ([`UserIndex::with_capacities`]);
//! * keys are hashed with a folded multiply under a random per-index seed
//!   (device keys are md5 digests, already uniform; user ids get two rounds),
//!   cheaper than a general-purpose hasher and still unpredictable from outside.

mod prefetch;
pub mod profile;
pub mod record;
pub mod snapshot;
mod table_memory;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::domain::ids::DeviceKey;
use crate::index::profile::{Day, ProfileBuilder, ProfileError, UserProfile};
use crate::index::table_memory::TableAlloc;

pub use crate::domain::ids::UserId;

/// Devices per user assumed by [`UserIndex::with_capacity`].
const DEVICES_PER_USER: usize = 2;

/// The two keys of this index's hash functions, random per index.
#[derive(Clone, Copy)]
struct Seeds(u64, u64);

impl Seeds {
    fn random() -> Self {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        Self(s.hash_one(0x5eed_u64), s.hash_one(0xcafe_u64) | 1)
    }

    /// Device keys are md5 digests (uniform), so one folded multiply of the
    /// tag's two parts mixes enough.
    #[inline]
    fn device(self, t: &DeviceTag) -> u64 {
        let mut b = [0; 16];
        b[..12].copy_from_slice(t);
        let x = u128::from_le_bytes(b);
        fold(x as u64 ^ self.0, (x >> 64) as u64 ^ self.1)
    }

    /// User ids are often sequential: two rounds.
    #[inline]
    fn user(self, u: UserId) -> u64 {
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
struct Shard<T>(RwLock<T>);

/// A table split into shards by hash, each under its own lock.
struct Sharded<T> {
    shards: Box<[Shard<T>]>,
}

impl<T> Sharded<T> {
    fn new(shards: usize, mut make: impl FnMut() -> T) -> Self {
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
    fn index_of(&self, hash: u64) -> usize {
        ((((hash >> 24) & 0xffff_ffff) * self.shards.len() as u64) >> 32) as usize
    }

    /// Write-locks shard `i` if no other thread holds it.
    fn try_write_at(&self, i: usize) -> Option<RwLockWriteGuard<'_, T>> {
        match self.shards[i].0.try_write() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Write-locks shard `i`, waiting for it.
    fn write_at(&self, i: usize) -> RwLockWriteGuard<'_, T> {
        self.shards[i]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn read(&self, hash: u64) -> RwLockReadGuard<'_, T> {
        self.of(hash).read().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn write(&self, hash: u64) -> RwLockWriteGuard<'_, T> {
        self.of(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard, read-locked one at a time.
    fn each(&self) -> impl Iterator<Item = RwLockReadGuard<'_, T>> {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every shard, write-locked one at a time.
    fn each_mut(&self) -> impl Iterator<Item = RwLockWriteGuard<'_, T>> {
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
fn plan(items: usize) -> (usize, usize) {
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

/// What the device table keeps of a device key: its first 96 bits.
///
/// Keys are md5 digests, uniform, so 96 bits tell devices apart as well as
/// 128 do in practice: among 160 M devices (100 M users) the chance that any
/// two share 96 bits is 2e-13, and the chance that an unknown device matches a
/// known one is 2e-21 per lookup. A key someone chooses to collide with a
/// known one needs that key's 96 bits, which is the key itself for a lookup.
/// Saves 4 bytes a device (a 16-byte slot with a 4-byte user id). Profiles
/// keep the whole key, so snapshots and unlinking see the full 128 bits.
type DeviceTag = [u8; 12];

/// The [`DeviceTag`] of `key`.
#[inline]
fn tag(key: &DeviceKey) -> DeviceTag {
    let mut t = [0; 12];
    t.copy_from_slice(&key.0[..12]);
    t
}

/// A device shard: device tags and their users' ids.
enum DeviceTable {
    /// Every id in the shard fits 4 bytes (16-byte slots).
    Narrow(HashTable<(DeviceTag, u32), TableAlloc>),
    /// Some id does not (24-byte slots).
    Wide(HashTable<(DeviceTag, UserId), TableAlloc>),
}

impl DeviceTable {
    fn get(&self, hash: u64, key: &DeviceTag) -> Option<UserId> {
        match self {
            Self::Narrow(t) => t.find(hash, |e| e.0 == *key).map(|e| UserId::from(e.1)),
            Self::Wide(t) => t.find(hash, |e| e.0 == *key).map(|e| e.1),
        }
    }

    /// Links `key` to `user`; returns the user it was linked to before.
    fn insert(
        &mut self,
        hash: u64,
        key: DeviceTag,
        user: UserId,
        rehash: impl Fn(&DeviceTag) -> u64,
    ) -> Option<UserId> {
        if let Self::Narrow(t) = self
            && u32::try_from(user).is_err()
        {
            let mut wide =
                HashTable::with_capacity_in(t.capacity().max(t.len() + 1), t.allocator().clone());
            for (k, u) in t.drain() {
                wide.insert_unique(rehash(&k), (k, UserId::from(u)), |e| rehash(&e.0));
            }
            *self = Self::Wide(wide);
        }
        match self {
            Self::Narrow(t) => {
                let narrow = u32::try_from(user).ok()?; // widened above otherwise
                match t.entry(hash, |e| e.0 == key, |e| rehash(&e.0)) {
                    Entry::Occupied(mut o) => {
                        Some(UserId::from(std::mem::replace(&mut o.get_mut().1, narrow)))
                    }
                    Entry::Vacant(v) => {
                        v.insert((key, narrow));
                        None
                    }
                }
            }
            Self::Wide(t) => match t.entry(hash, |e| e.0 == key, |e| rehash(&e.0)) {
                Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, user)),
                Entry::Vacant(v) => {
                    v.insert((key, user));
                    None
                }
            },
        }
    }

    /// Unlinks `key` if `unlink` says so of its user; returns the user unlinked.
    fn remove_if(
        &mut self,
        hash: u64,
        key: &DeviceTag,
        unlink: impl Fn(UserId) -> bool,
    ) -> Option<UserId> {
        match self {
            Self::Narrow(t) => match t.find_entry(hash, |e| e.0 == *key) {
                Ok(o) if unlink(UserId::from(o.get().1)) => Some(UserId::from(o.remove().0.1)),
                _ => None,
            },
            Self::Wide(t) => match t.find_entry(hash, |e| e.0 == *key) {
                Ok(o) if unlink(o.get().1) => Some(o.remove().0.1),
                _ => None,
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Narrow(t) => t.len(),
            Self::Wide(t) => t.len(),
        }
    }

    fn clear(&mut self) {
        match self {
            Self::Narrow(t) => t.clear(),
            Self::Wide(t) => t.clear(),
        }
    }

    fn allocation_size(&self) -> usize {
        match self {
            Self::Narrow(t) => t.allocation_size(),
            Self::Wide(t) => t.allocation_size(),
        }
    }

    fn slots(&self) -> Option<Slots> {
        match self {
            Self::Narrow(t) => Slots::of(t),
            Self::Wide(t) => Slots::of(t),
        }
    }

    /// Asks for the lines a probe for `hash` reads (see [`Slots::prefetch_lookup`]).
    #[inline]
    fn prefetch(&self, hash: u64) {
        if let Some(s) = self.slots() {
            s.prefetch_lookup(hash);
        }
    }
}

/// At least the bytes hashbrown allocates for a table of `T` made with
/// capacity `capacity`: a slot and a control byte per bucket, a group of
/// trailing control bytes and alignment.
fn allocated_bytes<T>(capacity: usize) -> usize {
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

/// A profile shard: user ids and their profiles.
enum ProfileTable {
    /// Every id in the shard fits 4 bytes (12-byte slots: a profile is a
    /// 4-aligned thin pointer).
    Narrow(HashTable<(u32, UserProfile), TableAlloc>),
    /// Some id does not (16-byte slots).
    Wide(HashTable<(UserId, UserProfile), TableAlloc>),
}

impl ProfileTable {
    fn get(&self, hash: u64, user: UserId) -> Option<&UserProfile> {
        match self {
            Self::Narrow(t) => t.find(hash, |e| UserId::from(e.0) == user).map(|e| &e.1),
            Self::Wide(t) => t.find(hash, |e| e.0 == user).map(|e| &e.1),
        }
    }

    fn get_mut(&mut self, hash: u64, user: UserId) -> Option<&mut UserProfile> {
        match self {
            Self::Narrow(t) => t
                .find_mut(hash, |e| UserId::from(e.0) == user)
                .map(|e| &mut e.1),
            Self::Wide(t) => t.find_mut(hash, |e| e.0 == user).map(|e| &mut e.1),
        }
    }

    /// Inserts or replaces `user`'s profile; returns the one replaced.
    fn insert(
        &mut self,
        hash: u64,
        user: UserId,
        profile: UserProfile,
        rehash: impl Fn(UserId) -> u64,
    ) -> Option<UserProfile> {
        if let Self::Narrow(t) = self
            && u32::try_from(user).is_err()
        {
            let mut wide =
                HashTable::with_capacity_in(t.capacity().max(t.len() + 1), t.allocator().clone());
            for (u, p) in t.drain() {
                wide.insert_unique(rehash(u.into()), (u.into(), p), |e| rehash(e.0));
            }
            *self = Self::Wide(wide);
        }
        match self {
            Self::Narrow(t) => {
                let Ok(narrow) = u32::try_from(user) else {
                    return None; // widened above
                };
                match t.entry(hash, |e| e.0 == narrow, |e| rehash(e.0.into())) {
                    Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, profile)),
                    Entry::Vacant(v) => {
                        v.insert((narrow, profile));
                        None
                    }
                }
            }
            Self::Wide(t) => match t.entry(hash, |e| e.0 == user, |e| rehash(e.0)) {
                Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, profile)),
                Entry::Vacant(v) => {
                    v.insert((user, profile));
                    None
                }
            },
        }
    }

    fn remove(&mut self, hash: u64, user: UserId) -> Option<UserProfile> {
        match self {
            Self::Narrow(t) => t
                .find_entry(hash, |e| UserId::from(e.0) == user)
                .ok()
                .map(|o| o.remove().0.1),
            Self::Wide(t) => t
                .find_entry(hash, |e| e.0 == user)
                .ok()
                .map(|o| o.remove().0.1),
        }
    }

    fn for_each(&self, f: &mut impl FnMut(UserId, &UserProfile)) {
        match self {
            Self::Narrow(t) => t.iter().for_each(|(u, p)| f(UserId::from(*u), p)),
            Self::Wide(t) => t.iter().for_each(|(u, p)| f(*u, p)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Narrow(t) => t.len(),
            Self::Wide(t) => t.len(),
        }
    }

    fn clear(&mut self) {
        match self {
            Self::Narrow(t) => t.clear(),
            Self::Wide(t) => t.clear(),
        }
    }

    fn allocation_size(&self) -> usize {
        match self {
            Self::Narrow(t) => t.allocation_size(),
            Self::Wide(t) => t.allocation_size(),
        }
    }

    fn slots(&self) -> Option<Slots> {
        match self {
            Self::Narrow(t) => Slots::of(t),
            Self::Wide(t) => Slots::of(t),
        }
    }

    /// Asks for the lines a probe for `hash` reads (see [`Slots::prefetch_lookup`]).
    #[inline]
    fn prefetch(&self, hash: u64) {
        if let Some(s) = self.slots() {
            s.prefetch_lookup(hash);
        }
    }
}

/// Devices -> users -> profiles.
pub struct UserIndex {
    seeds: Seeds,
    devices: Sharded<DeviceTable>,
    profiles: Sharded<ProfileTable>,
    /// Deleted users and when (Unix ms): older events about them are ignored.
    tombstones: DashMap<UserId, i64, ahash::RandomState>,
    profile_heap_bytes: AtomicU64,
}

impl Default for UserIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl std::fmt::Debug for UserIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIndex")
            .field("users", &self.users())
            .field("devices", &self.devices())
            .finish()
    }
}

impl UserIndex {
    /// An index pre-sized for `users` users (about two devices each).
    pub fn with_capacity(users: usize) -> Self {
        Self::with_capacities(users, users.saturating_mul(DEVICES_PER_USER))
    }

    /// An index pre-sized for `users` users with `devices` devices in all.
    /// Pre-sizing to the counts expected (a snapshot's, a population's) lets
    /// the tables start nearly full instead of about half empty; more fit,
    /// a shard doubles when it fills.
    pub fn with_capacities(users: usize, devices: usize) -> Self {
        let (device_shards, per_device_shard) = plan(devices);
        let (profile_shards, per_profile_shard) = plan(users);
        // one region for all pre-sized tables (see `table_memory`)
        let alloc = TableAlloc::with_region(
            device_shards
                .saturating_mul(allocated_bytes::<(DeviceTag, u32)>(per_device_shard))
                .saturating_add(
                    profile_shards
                        .saturating_mul(allocated_bytes::<(u32, UserProfile)>(per_profile_shard)),
                ),
        );
        Self {
            seeds: Seeds::random(),
            devices: Sharded::new(device_shards, || {
                DeviceTable::Narrow(HashTable::with_capacity_in(per_device_shard, alloc.clone()))
            }),
            profiles: Sharded::new(profile_shards, || {
                ProfileTable::Narrow(HashTable::with_capacity_in(
                    per_profile_shard,
                    alloc.clone(),
                ))
            }),
            tombstones: DashMap::with_hasher(ahash::RandomState::new()),
            profile_heap_bytes: AtomicU64::new(0),
        }
    }

    /// The user `key` is linked to.
    #[inline]
    fn device_user(&self, key: &DeviceKey) -> Option<UserId> {
        let t = tag(key);
        let h = self.seeds.device(&t);
        let shard = self.devices.read(h);
        shard.prefetch(h);
        shard.get(h, &t)
    }

    /// Links `key` to `user`; returns the user it was linked to before.
    fn link_device(&self, key: DeviceKey, user: UserId) -> Option<UserId> {
        let (t, seeds) = (tag(&key), self.seeds);
        let h = seeds.device(&t);
        let mut shard = self.devices.write(h);
        shard.prefetch(h);
        shard.insert(h, t, user, |k| seeds.device(k))
    }

    /// Unlinks `key` if it is linked to `user`.
    fn unlink_device_of(&self, key: &DeviceKey, user: UserId) {
        let t = tag(key);
        let h = self.seeds.device(&t);
        let mut shard = self.devices.write(h);
        shard.prefetch(h);
        shard.remove_if(h, &t, |u| u == user);
    }

    /// Inserts or replaces a profile; returns the one replaced.
    fn put_profile(&self, user: UserId, profile: UserProfile) -> Option<UserProfile> {
        let (h, seeds) = (self.seeds.user(user), self.seeds);
        let added = profile.heap_bytes() as u64;
        // counted under the shard lock, so that a concurrent removal of the
        // same user cannot subtract before this adds (the gauge would wrap)
        let mut shard = self.profiles.write(h);
        shard.prefetch(h);
        let old = shard.insert(h, user, profile, |u| seeds.user(u));
        let removed = old.as_ref().map_or(0, |o| o.heap_bytes() as u64);
        self.profile_heap_bytes
            .fetch_add(added.wrapping_sub(removed), Ordering::Relaxed);
        drop(shard);
        old
    }

    /// Removes a profile; returns it.
    fn take_profile(&self, user: UserId) -> Option<UserProfile> {
        let h = self.seeds.user(user);
        let mut shard = self.profiles.write(h);
        shard.prefetch(h);
        let removed = shard.remove(h, user);
        if let Some(p) = &removed {
            self.profile_heap_bytes
                .fetch_sub(p.heap_bytes() as u64, Ordering::Relaxed);
        }
        drop(shard);
        removed
    }

    /// The user the first known, non-doubtful key belongs to.
    #[inline]
    pub fn resolve(&self, keys: &[DeviceKey]) -> Option<UserId> {
        keys.iter()
            .filter(|k| !k.is_doubtful())
            .find_map(|k| self.device_user(k))
    }

    /// Runs `f` on a user's profile, if the user exists.
    #[inline]
    pub fn with_profile<R>(&self, user: UserId, f: impl FnOnce(&UserProfile) -> R) -> Option<R> {
        let h = self.seeds.user(user);
        let shard = self.profiles.read(h);
        shard.prefetch(h);
        let profile = shard.get(h, user)?;
        profile.prefetch();
        Some(f(profile))
    }

    /// Inserts or replaces a user's profile and links the devices it lists
    /// (taking them over from any other user). Devices of the old profile that
    /// the new one no longer lists are unlinked. Doubtful devices are dropped.
    pub fn upsert(&self, user: UserId, profile: UserProfile) -> Result<(), ProfileError> {
        let profile = without_doubtful_devices(profile)?;
        let new_devices: Vec<DeviceKey> = profile.devices().collect();
        for d in &new_devices {
            if let Some(prev) = self.link_device(*d, user)
                && prev != user
            {
                self.drop_device_from_profile(prev, *d)?;
            }
        }
        if let Some(old) = self.put_profile(user, profile) {
            for d in old.devices() {
                if !new_devices.contains(&d) {
                    self.unlink_device_of(&d, user);
                }
            }
        }
        Ok(())
    }

    fn drop_device_from_profile(
        &self,
        user: UserId,
        device: DeviceKey,
    ) -> Result<(), ProfileError> {
        let h = self.seeds.user(user);
        let mut shard = self.profiles.write(h);
        if let Some(p) = shard.get_mut(h, user) {
            let mut b = p.to_builder();
            b.devices.retain(|d| *d != device);
            let rebuilt = b.build()?;
            self.profile_heap_bytes.fetch_add(
                (rebuilt.heap_bytes() as u64).wrapping_sub(p.heap_bytes() as u64),
                Ordering::Relaxed,
            );
            *p = rebuilt;
        }
        Ok(())
    }

    /// Deletes a user and all its devices (privacy request); returns whether it existed.
    pub fn delete(&self, user: UserId) -> bool {
        match self.take_profile(user) {
            Some(p) => {
                for d in p.devices() {
                    self.unlink_device_of(&d, user);
                }
                true
            }
            None => false,
        }
    }

    /// Changes a user's profile (creating it when absent) through a builder.
    /// Devices the change adds or removes are linked or unlinked.
    pub fn modify<E: From<ProfileError>>(
        &self,
        user: UserId,
        change: impl FnOnce(&mut ProfileBuilder) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut b = self
            .with_profile(user, |p| p.to_builder())
            .unwrap_or_default();
        change(&mut b)?;
        self.upsert(user, b.build()?)?;
        Ok(())
    }

    /// Changes an existing user's profile in place (devices must not change);
    /// returns false, doing nothing, when the user does not exist.
    #[inline]
    pub fn update_in_place<R>(
        &self,
        user: UserId,
        change: impl FnOnce(&mut UserProfile) -> R,
    ) -> Option<R> {
        let h = self.seeds.user(user);
        let mut shard = self.profiles.write(h);
        shard.prefetch(h);
        let p = shard.get_mut(h, user)?;
        p.prefetch();
        let before = p.heap_bytes() as u64;
        let r = change(p);
        let after = p.heap_bytes() as u64;
        if after != before {
            self.profile_heap_bytes
                .fetch_add(after.wrapping_sub(before), Ordering::Relaxed);
        }
        Some(r)
    }

    /// Links a device to a user (creating an empty profile when absent).
    pub fn link(&self, device: DeviceKey, user: UserId) -> Result<(), ProfileError> {
        if device.is_doubtful() || self.device_user(&device) == Some(user) {
            return Ok(());
        }
        self.modify(user, |b| {
            b.devices.push(device);
            Ok::<(), ProfileError>(())
        })
    }

    /// Unlinks a device from whichever user holds it; returns whether one did.
    pub fn unlink(&self, device: DeviceKey) -> Result<bool, ProfileError> {
        let t = tag(&device);
        let h = self.seeds.device(&t);
        let removed = self.devices.write(h).remove_if(h, &t, |_| true);
        match removed {
            Some(user) => {
                self.drop_device_from_profile(user, device)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Deletes a user (privacy request) and remembers when, so that events about
    /// the user from before the deletion are ignored, also when replayed.
    pub fn delete_user(&self, user: UserId, at_ms: i64) -> bool {
        self.tombstones
            .entry(user)
            .and_modify(|t| *t = (*t).max(at_ms))
            .or_insert(at_ms);
        self.delete(user)
    }

    /// Whether an event about `user` at `at_ms` predates the user's deletion.
    #[inline]
    pub fn deleted_after(&self, user: UserId, at_ms: i64) -> bool {
        self.tombstones.get(&user).is_some_and(|t| at_ms <= *t)
    }

    /// All deletion tombstones, for snapshots.
    pub fn tombstones(&self) -> Vec<(UserId, i64)> {
        self.tombstones
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect()
    }

    /// Restores a deletion tombstone from a snapshot.
    pub fn restore_tombstone(&self, user: UserId, at_ms: i64) {
        self.tombstones.insert(user, at_ms);
    }

    /// Calls `f` on every user and profile (shard by shard, under read locks).
    pub fn for_each(&self, mut f: impl FnMut(UserId, &UserProfile)) {
        for shard in self.profiles.each() {
            shard.for_each(&mut f);
        }
    }

    /// Drops profiles untouched since before `oldest_touched` and behaviour
    /// counts older than `oldest_day`; returns the users dropped.
    pub fn expire(&self, oldest_touched: Day, oldest_day: Day) -> usize {
        let mut stale = Vec::new();
        self.for_each(|u, p| {
            if p.touched() < oldest_touched {
                stale.push(u);
            }
        });
        for u in &stale {
            self.delete(*u);
        }
        let mut trimmed = Vec::new();
        self.for_each(|u, p| {
            if p.behaviour().any(|b| b.day < oldest_day) {
                trimmed.push(u);
            }
        });
        for u in trimmed {
            let _ = self.modify(u, |b| {
                b.forget_before(oldest_day);
                Ok::<(), ProfileError>(())
            });
        }
        stale.len()
    }

    /// Inserts a profile restored from a snapshot into an index being
    /// restored: no relinking checks (a snapshot holds each device once).
    pub fn insert_restored(&self, user: UserId, profile: UserProfile) {
        for d in profile.devices() {
            self.link_device(d, user);
        }
        self.put_profile(user, profile);
    }

    /// Removes everything (a restore that turned out corrupt).
    pub fn clear(&self) {
        for mut shard in self.devices.each_mut() {
            shard.clear();
        }
        for mut shard in self.profiles.each_mut() {
            shard.clear();
        }
        self.tombstones.clear();
        self.profile_heap_bytes.store(0, Ordering::Relaxed);
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.profiles.each().map(|s| s.len()).sum()
    }

    /// Number of linked devices.
    pub fn devices(&self) -> usize {
        self.devices.each().map(|s| s.len()).sum()
    }

    /// Heap bytes held by profile bodies (excluding map overhead).
    pub fn profile_heap_bytes(&self) -> u64 {
        self.profile_heap_bytes.load(Ordering::Relaxed)
    }

    /// Bytes allocated for the device and profile tables (slots, full or
    /// not, and their control bytes; not the profile bodies), for the memory
    /// report.
    pub fn table_bytes(&self) -> (u64, u64) {
        let devices = self
            .devices
            .each()
            .map(|s| s.allocation_size())
            .sum::<usize>();
        let profiles = self
            .profiles
            .each()
            .map(|s| s.allocation_size())
            .sum::<usize>();
        (devices as u64, profiles as u64)
    }
}

/// `profile` without its doubtful (placeholder) device ids: the index never
/// links them, since thousands of users share each.
fn without_doubtful_devices(profile: UserProfile) -> Result<UserProfile, ProfileError> {
    if !profile.devices().any(|d| d.is_doubtful()) {
        return Ok(profile);
    }
    let mut b = profile.to_builder();
    b.devices.retain(|d| !d.is_doubtful());
    b.build()
}

/// Users a [`BulkLoader`] buffers before inserting them.
const BULK_FLUSH: usize = 1 << 19;

/// Inserts many users into an index being restored, shard by shard.
///
/// [`UserIndex::upsert`] one user at a time takes two or three shard locks
/// per user (the lock words bounce between the inserting threads), checks
/// for devices to relink, and writes a random slot of the whole index (all
/// of it, hundreds of MB, a cache and TLB miss per slot). A loader instead
/// buffers users per shard (a device goes to its device shard, a profile to
/// its profile shard) and every [`BULK_FLUSH`] users inserts each shard's
/// batch under one lock: one table of a few MB at a time, whose lines and
/// pages stay cached through the batch. Several loaders may fill one index
/// at once (each starts its pass at a different shard and takes shards
/// another holds last). What order-dependent cases a file might hold (a
/// user twice, a device under two users; never in a snapshot the engine
/// wrote) are put right by [`UserIndex::finish_bulk`], which must run once
/// every loader has finished.
pub struct BulkLoader<'a> {
    index: &'a UserIndex,
    /// Per profile shard: hash, user, profile.
    profiles: Vec<Vec<(u64, UserId, UserProfile)>>,
    /// Per device shard: hash, tag, user.
    devices: Vec<Vec<(u64, DeviceTag, UserId)>>,
    /// Users buffered since the last flush.
    buffered: usize,
    /// Heap bytes of the profiles buffered (counted while they are in cache).
    heap_bytes: u64,
    /// This loader's share of the shard passes: `part` of `parts`.
    part: (usize, usize),
    /// What [`UserIndex::finish_bulk`] has to put right.
    repairs: BulkRepairs,
}

/// Cases left for [`UserIndex::finish_bulk`] by [`BulkLoader`]s.
#[derive(Default)]
pub struct BulkRepairs {
    /// Profiles replaced by a later one of the same user.
    replaced: Vec<(UserId, UserProfile)>,
    /// Device tags claimed by two users (the two).
    claimed_twice: Vec<(DeviceTag, UserId, UserId)>,
}

impl BulkRepairs {
    /// Adds `other`'s cases to these.
    pub fn merge(&mut self, mut other: BulkRepairs) {
        self.replaced.append(&mut other.replaced);
        self.claimed_twice.append(&mut other.claimed_twice);
    }
}

impl<'a> BulkLoader<'a> {
    /// Adds `user`'s profile (and links its devices), inserting at the next
    /// flush. Doubtful devices are dropped, as [`UserIndex::upsert`] does.
    pub fn push(&mut self, user: UserId, profile: UserProfile) -> Result<(), ProfileError> {
        let profile = without_doubtful_devices(profile)?;
        let (index, seeds) = (self.index, self.index.seeds);
        for d in profile.devices() {
            let t = tag(&d);
            let h = seeds.device(&t);
            self.devices[index.devices.index_of(h)].push((h, t, user));
        }
        let h = seeds.user(user);
        self.heap_bytes += profile.heap_bytes() as u64;
        self.profiles[index.profiles.index_of(h)].push((h, user, profile));
        self.buffered += 1;
        if self.buffered >= BULK_FLUSH {
            self.flush();
        }
        Ok(())
    }

    /// Inserts everything buffered.
    pub fn flush(&mut self) {
        let index = self.index;
        let seeds = index.seeds;
        let (part, parts) = self.part;
        let added = std::mem::take(&mut self.heap_bytes);
        let mut removed = 0u64;
        let replaced = &mut self.repairs.replaced;
        each_shard(
            &index.profiles,
            &mut self.profiles,
            (part, parts),
            ProfileTable::slots,
            |e| e.0,
            |shard, (h, user, profile)| {
                if let Some(old) = shard.insert(h, user, profile, |u| seeds.user(u)) {
                    removed += old.heap_bytes() as u64;
                    replaced.push((user, old));
                }
            },
        );
        index
            .profile_heap_bytes
            .fetch_add(added.wrapping_sub(removed), Ordering::Relaxed);
        let claimed_twice = &mut self.repairs.claimed_twice;
        each_shard(
            &index.devices,
            &mut self.devices,
            (part, parts),
            DeviceTable::slots,
            |e| e.0,
            |shard, (h, t, user)| {
                if let Some(prev) = shard.insert(h, t, user, |k| seeds.device(k))
                    && prev != user
                {
                    claimed_twice.push((t, prev, user));
                }
            },
        );
        self.buffered = 0;
    }

    /// Flushes and returns what [`UserIndex::finish_bulk`] has to put right.
    pub fn finish(mut self) -> BulkRepairs {
        self.flush();
        self.repairs
    }
}

/// Inserts are prefetched this many entries ahead.
const AHEAD: usize = 8;

/// Empties `batch` into `insert` in order, prefetching the slot of the entry
/// [`AHEAD`] places on: the inserts are independent but each would otherwise
/// wait for a cache miss on its control group and on its slot in turn.
/// `slots` tells where `shard`'s slots are once it holds an entry.
fn insert_ahead<S, E>(
    shard: &mut S,
    batch: &mut Vec<E>,
    slots: impl Fn(&S) -> Option<Slots>,
    hash: impl Fn(&E) -> u64,
    mut insert: impl FnMut(&mut S, E),
) {
    let mut entries = batch.drain(..);
    let mut found = None;
    let mut ahead = 0; // entries prefetched beyond the next one
    while let Some(e) = entries.next() {
        if found.is_none() {
            found = slots(shard);
        }
        if let Some(s) = &found {
            let rest = entries.as_slice();
            for later in &rest[ahead.min(rest.len())..AHEAD.min(rest.len())] {
                s.prefetch(hash(later));
            }
            ahead = AHEAD.min(rest.len()).saturating_sub(1);
        }
        insert(shard, e);
    }
}

/// Buckets from its first probed one that [`Slots::prefetch_lookup`] asks
/// for: an entry lands in the first free bucket of its group of 16, which
/// in a table 7/8 full or less is one of the first 8 most of the time.
const LOOKUP_SLOTS: usize = 8;

/// Where a table keeps the group and slot that a hash probes first, to
/// prefetch them.
///
/// Worked out from one full bucket's address and hashbrown's layout (the
/// slot of bucket `i` at `ctrl - (i + 1) * size_of::<T>()`, probing from
/// bucket `hash & mask`). Should that layout ever change, or the table grow
/// meanwhile, the prefetches go to the wrong addresses and nothing else
/// happens: a prefetch reads nothing into the program and never faults.
struct Slots {
    ctrl: usize,
    mask: usize,
    size: usize,
}

impl Slots {
    /// `None` for an empty table (no bucket to start from).
    fn of<T>(t: &HashTable<T, TableAlloc>) -> Option<Self> {
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
    fn prefetch(&self, hash: u64) {
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
    fn prefetch_lookup(&self, hash: u64) {
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

/// Empties every non-empty batch into its shard (see [`insert_ahead`]) with
/// the shard write-locked, starting at the `part`-th of `parts` stretches of
/// shards and leaving shards another thread holds for last.
fn each_shard<T, E>(
    sharded: &Sharded<T>,
    batches: &mut [Vec<E>],
    (part, parts): (usize, usize),
    slots: impl Fn(&T) -> Option<Slots>,
    hash: impl Fn(&E) -> u64,
    mut insert: impl FnMut(&mut T, E),
) {
    let n = batches.len();
    let start = part * n / parts.max(1);
    let mut busy = Vec::new();
    for i in (start..n).chain(0..start) {
        if batches[i].is_empty() {
            continue;
        }
        match sharded.try_write_at(i) {
            Some(mut shard) => {
                insert_ahead(&mut *shard, &mut batches[i], &slots, &hash, &mut insert)
            }
            None => busy.push(i),
        }
    }
    for i in busy {
        let mut shard = sharded.write_at(i);
        insert_ahead(&mut *shard, &mut batches[i], &slots, &hash, &mut insert);
    }
}

impl UserIndex {
    /// A [`BulkLoader`] into this index, the `part`-th of `parts` loaders
    /// filling it at once.
    pub fn bulk_loader(&self, part: usize, parts: usize) -> BulkLoader<'_> {
        BulkLoader {
            index: self,
            profiles: (0..self.profiles.shards.len())
                .map(|_| Vec::new())
                .collect(),
            devices: (0..self.devices.shards.len()).map(|_| Vec::new()).collect(),
            buffered: 0,
            heap_bytes: 0,
            part: (part, parts.max(1)),
            repairs: BulkRepairs::default(),
        }
    }

    /// Puts right what bulk loading left order-dependent, once every loader
    /// has finished: devices of a replaced profile that the profile kept no
    /// longer lists are unlinked, and a device claimed by two users stays
    /// with the one it ended up linked to and leaves the other's profile
    /// (as [`UserIndex::upsert`] in some order would have had it).
    pub fn finish_bulk(&self, repairs: BulkRepairs) -> Result<(), ProfileError> {
        for (user, old) in repairs.replaced {
            let kept: Vec<DeviceKey> = self
                .with_profile(user, |p| p.devices().collect())
                .unwrap_or_default();
            for d in old.devices() {
                if !kept.contains(&d) {
                    self.unlink_device_of(&d, user);
                }
            }
        }
        for (t, a, b) in repairs.claimed_twice {
            let h = self.seeds.device(&t);
            let linked = self.devices.read(h).get(h, &t);
            for user in [a, b] {
                if linked != Some(user) {
                    self.drop_tag_from_profile(user, &t)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the devices with tag `t` from `user`'s profile.
    fn drop_tag_from_profile(&self, user: UserId, t: &DeviceTag) -> Result<(), ProfileError> {
        let listed = self
            .with_profile(user, |p| p.devices().find(|d| tag(d) == *t))
            .flatten();
        match listed {
            Some(d) => self.drop_device_from_profile(user, d),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::profile::ProfileBuilder;

    fn profile(devices: &[u8]) -> UserProfile {
        ProfileBuilder {
            devices: devices.iter().map(|d| DeviceKey([*d; 16])).collect(),
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    /// The prefetches assume hashbrown's layout (bucket i's slot at
    /// `ctrl - (i + 1) * size`, probing from `hash & mask`). Were that to
    /// change they would go astray without a sound: this pins it.
    #[test]
    fn prefetched_lines_hold_the_slots_that_lookups_read() {
        let mut table: HashTable<(u64, u32), TableAlloc> =
            HashTable::with_capacity_in(7_000, TableAlloc::default());
        let hash = |k: u64| {
            let z = k
                .wrapping_add(0x9e37_79b9_7f4a_7c15)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (z ^ (z >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb)
        };
        for k in 0..7_000u64 {
            table.insert_unique(hash(k), (k, 0), |e| hash(e.0));
        }
        let slots = Slots::of(&table).unwrap();
        let mut near = 0;
        for k in 0..7_000u64 {
            let i = table.find_bucket_index(hash(k), |e| e.0 == k).unwrap();
            let at = std::ptr::from_ref(table.get_bucket(i).unwrap()) as usize;
            assert_eq!(at, slots.ctrl - (i + 1) * slots.size, "bucket {i}");
            let home = hash(k) as usize & slots.mask;
            near += usize::from(i.wrapping_sub(home) & slots.mask < LOOKUP_SLOTS);
        }
        // 85 % full: most entries sit within the buckets prefetched
        assert!(
            near * 10 >= 7_000 * 8,
            "{near} of 7000 near their first bucket"
        );
    }

    #[test]
    fn any_linked_device_resolves_the_user() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[1, 2])).unwrap();
        assert_eq!(
            idx.resolve(&[DeviceKey([9; 16]), DeviceKey([2; 16])]),
            Some(1)
        );
        assert_eq!(idx.resolve(&[DeviceKey([9; 16])]), None);
    }

    #[test]
    fn a_device_moves_to_the_user_that_claims_it_last() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[1, 2])).unwrap();
        idx.upsert(2, profile(&[2, 3])).unwrap();
        assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
        let devices_of_1 = idx.with_profile(1, |p| p.devices().count()).unwrap();
        assert_eq!(devices_of_1, 1);
        // re-upserting user 2 without device 3 unlinks it
        idx.upsert(2, profile(&[2])).unwrap();
        assert_eq!(idx.resolve(&[DeviceKey([3; 16])]), None);
    }

    #[test]
    fn deleting_a_user_unlinks_every_device_at_once() {
        let idx = UserIndex::default();
        idx.upsert(5, profile(&[1, 2, 3])).unwrap();
        assert!(idx.delete(5));
        assert_eq!(idx.users(), 0);
        assert_eq!(idx.devices(), 0);
        assert_eq!(idx.resolve(&[DeviceKey([1; 16])]), None);
        assert_eq!(idx.profile_heap_bytes(), 0);
        assert!(!idx.delete(5));
    }

    #[test]
    fn a_deletion_tombstone_rejects_older_events_only() {
        let idx = UserIndex::default();
        idx.upsert(9, profile(&[1])).unwrap();
        assert!(idx.delete_user(9, 1_000));
        assert!(idx.deleted_after(9, 999));
        assert!(idx.deleted_after(9, 1_000));
        assert!(!idx.deleted_after(9, 1_001));
        assert!(!idx.deleted_after(8, 0));
    }

    #[test]
    fn link_and_unlink_move_devices_between_users() {
        let idx = UserIndex::default();
        idx.link(DeviceKey([1; 16]), 1).unwrap();
        idx.link(DeviceKey([2; 16]), 1).unwrap();
        assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(1));
        idx.link(DeviceKey([2; 16]), 2).unwrap();
        assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
        assert_eq!(idx.with_profile(1, |p| p.devices().count()), Some(1));
        assert!(idx.unlink(DeviceKey([2; 16])).unwrap());
        assert_eq!(idx.with_profile(2, |p| p.devices().count()), Some(0));
        assert!(!idx.unlink(DeviceKey([2; 16])).unwrap());
    }

    #[test]
    fn expiry_drops_untouched_users_and_slides_behaviour_windows() {
        use crate::index::profile::{Action, BehaviourCount, ItemKey, Scope};
        let idx = UserIndex::default();
        let item = ItemKey::new(Scope::Category, 1).unwrap();
        for (user, touched) in [(1, 10), (2, 50)] {
            let mut b = ProfileBuilder {
                touched,
                ..Default::default()
            };
            for day in [5, 45] {
                b.behaviour.push(BehaviourCount {
                    item,
                    action: Action::Buy,
                    day,
                    count: 1,
                });
            }
            idx.upsert(user, b.build().unwrap()).unwrap();
        }
        assert_eq!(idx.expire(20, 40), 1);
        assert_eq!(idx.users(), 1);
        assert_eq!(
            idx.with_profile(2, |p| p.count(item, Action::Buy, 0, 100)),
            Some(1)
        );
    }

    #[test]
    fn ids_beyond_32_bits_widen_a_shard_and_keep_its_entries() {
        let idx = UserIndex::default();
        let narrow: Vec<UserId> = (1..=200).collect();
        for &u in &narrow {
            idx.upsert(u, profile_of(u, u as u8)).unwrap();
        }
        let wide: Vec<UserId> = (0..200).map(|i| u64::MAX - i).collect();
        for &u in &wide {
            idx.upsert(u, profile_of(u, 7)).unwrap();
        }
        assert_eq!(idx.users(), 400);
        assert_eq!(idx.devices(), 400);
        for &u in narrow.iter().chain(&wide) {
            assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
            assert_eq!(
                idx.with_profile(u, |p| p.devices().next()),
                Some(Some(key_of(u)))
            );
        }
        assert!(idx.delete(u64::MAX));
        assert!(idx.delete(1));
        assert_eq!(idx.resolve(&[key_of(u64::MAX)]), None);
        assert_eq!(idx.resolve(&[key_of(1)]), None);
        assert_eq!((idx.users(), idx.devices()), (398, 398));
        // a device moves from a narrow id to a wide one and back
        idx.link(key_of(2), u64::MAX - 1).unwrap();
        assert_eq!(idx.resolve(&[key_of(2)]), Some(u64::MAX - 1));
        assert_eq!(idx.with_profile(2, |p| p.devices().count()), Some(0));
        idx.link(key_of(2), 2).unwrap();
        assert_eq!(idx.resolve(&[key_of(2)]), Some(2));
        let mut seen = 0;
        idx.for_each(|_, _| seen += 1);
        assert_eq!(seen, 398);
    }

    #[test]
    fn heap_bytes_follow_every_change() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[1, 2])).unwrap();
        idx.upsert(2, profile(&[3])).unwrap();
        let sum = || {
            let mut n = 0;
            idx.for_each(|_, p| n += p.heap_bytes() as u64);
            n
        };
        assert_eq!(idx.profile_heap_bytes(), sum());
        idx.link(DeviceKey([2; 16]), 2).unwrap();
        idx.update_in_place(1, |p| {
            p.add_count(
                crate::index::profile::ItemKey::new(crate::index::profile::Scope::Sku, 1).unwrap(),
                crate::index::profile::Action::Buy,
                3,
                1,
            )
            .unwrap()
        });
        assert_eq!(idx.profile_heap_bytes(), sum());
        idx.unlink(DeviceKey([3; 16])).unwrap();
        idx.delete(1);
        assert_eq!(idx.profile_heap_bytes(), sum());
        idx.clear();
        assert_eq!(
            (idx.users(), idx.devices(), idx.profile_heap_bytes()),
            (0, 0, 0)
        );
    }

    #[test]
    fn pre_sized_tables_come_out_nearly_full_and_do_not_grow() {
        for items in [100_000, 1_000_000, 1_570_000, 10_000_000, 157_000_000] {
            let (shards, cap) = plan(items);
            let slots = shards * (cap * 8 / 7).next_power_of_two();
            let load = items as f64 / slots as f64;
            assert!(shards * cap >= items, "{items}: {shards} x {cap}");
            // small tables pay a larger margin for the uneven split
            let want = if items >= 1_000_000 { 0.8 } else { 0.7 };
            assert!(load > want, "{items} items: load {load:.3}");
        }
        let users = 50_000;
        let idx = UserIndex::with_capacities(users, users);
        let before = idx.table_bytes();
        for u in 1..=users as u64 {
            idx.upsert(u, profile_of(u, 0)).unwrap();
        }
        assert_eq!(idx.table_bytes(), before);
    }

    fn key_of(u: UserId) -> DeviceKey {
        let mut k = [9; 16];
        k[..8].copy_from_slice(&u.to_le_bytes());
        DeviceKey(k)
    }

    fn profile_of(u: UserId, tag: u8) -> UserProfile {
        ProfileBuilder {
            devices: vec![key_of(u)],
            tags: vec![u32::from(tag)],
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn doubtful_devices_are_never_linked() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[0, 4])).unwrap();
        assert_eq!(idx.devices(), 1);
        assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
    }

    /// Every linked device resolves to a user whose profile lists it, and
    /// every device a profile lists resolves to that user.
    fn assert_consistent(idx: &UserIndex) {
        let mut listed = 0;
        idx.for_each(|u, p| {
            for d in p.devices() {
                assert_eq!(idx.resolve(&[d]), Some(u), "{d:?} of {u}");
                listed += 1;
            }
        });
        assert_eq!(idx.devices(), listed);
        let mut heap = 0;
        idx.for_each(|_, p| heap += p.heap_bytes() as u64);
        assert_eq!(idx.profile_heap_bytes(), heap);
    }

    #[test]
    fn bulk_loading_inserts_what_upserting_does() {
        let idx = UserIndex::with_capacity(3_000);
        let mut a = idx.bulk_loader(0, 2);
        let mut b = idx.bulk_loader(1, 2);
        for u in 1..=3_000u64 {
            let loader = if u % 3 == 0 { &mut a } else { &mut b };
            loader.push(u, profile_of(u, u as u8)).unwrap();
        }
        // a wide id widens its shards on the way
        a.push(u64::MAX, profile_of(u64::MAX, 1)).unwrap();
        let mut repairs = a.finish();
        repairs.merge(b.finish());
        idx.finish_bulk(repairs).unwrap();
        assert_eq!((idx.users(), idx.devices()), (3_001, 3_001));
        for u in (1..=3_000u64).chain([u64::MAX]) {
            assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
        }
        assert_consistent(&idx);
    }

    #[test]
    fn a_large_pre_sized_index_carves_its_tables_from_one_region_and_still_grows() {
        let users = 150_000;
        let idx = UserIndex::with_capacities(users, users);
        let in_region = |idx: &UserIndex| match &*idx.devices.shards[0].0.read().unwrap() {
            DeviceTable::Narrow(t) => t.allocator().has_region(),
            DeviceTable::Wide(t) => t.allocator().has_region(),
        };
        if !in_region(&idx) {
            return; // no mapping on this system
        }
        let before = idx.table_bytes();
        // three times the users it was sized for: every shard grows out of
        // the region (its block given back) into the global allocator
        let mut loader = idx.bulk_loader(0, 1);
        for u in 1..=3 * users as u64 {
            loader.push(u, profile_of(u, 0)).unwrap();
        }
        idx.finish_bulk(loader.finish()).unwrap();
        assert!(idx.table_bytes().0 > before.0 && idx.table_bytes().1 > before.1);
        assert_eq!(idx.users(), 3 * users);
        for u in (1..=3 * users as u64).step_by(997) {
            assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
        }
        assert_consistent(&idx);
        idx.clear();
        assert_eq!(idx.users(), 0);
    }

    #[test]
    fn bulk_loading_puts_right_a_user_twice_and_a_device_under_two_users() {
        let idx = UserIndex::default();
        let mut loader = idx.bulk_loader(0, 1);
        loader.push(1, profile(&[1, 2])).unwrap();
        loader.push(2, profile(&[2, 3])).unwrap(); // claims device 2 as well
        loader.push(3, profile(&[4, 5])).unwrap();
        loader.push(3, profile(&[5, 6, 0])).unwrap(); // user 3 again; 0 is doubtful
        idx.finish_bulk(loader.finish()).unwrap();
        assert_eq!(idx.users(), 3);
        // the later claim and the later profile win, as with upserts in file order
        assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
        assert_eq!(idx.with_profile(1, |p| p.devices().count()), Some(1));
        assert_eq!(idx.resolve(&[DeviceKey([4; 16])]), None);
        assert_eq!(idx.resolve(&[DeviceKey([6; 16])]), Some(3));
        assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
        assert_eq!(idx.with_profile(3, |p| p.devices().count()), Some(2));
        assert_consistent(&idx);
    }
}
