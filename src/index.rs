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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::ids::DeviceKey;
use crate::profile::{Day, ProfileBuilder, ProfileError, UserProfile};

/// A user's id in the advertiser's One-ID system.
pub type UserId = u64;

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
        let i = (((hash >> 24) & 0xffff_ffff) * self.shards.len() as u64) >> 32;
        &self.shards[i as usize].0
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
    let slots = |cap: usize| match cap {
        0..4 => 4,
        4..8 => 8,
        _ => (cap.saturating_mul(8) / 7).next_power_of_two(),
    };
    (min..2 * min)
        .map(|shards| {
            let mean = items.div_ceil(shards);
            let cap = mean + 4 * mean.isqrt() + 8;
            (shards.saturating_mul(slots(cap)), shards, cap)
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
    Narrow(HashTable<(DeviceTag, u32)>),
    /// Some id does not (24-byte slots).
    Wide(HashTable<(DeviceTag, UserId)>),
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
            let mut wide = HashTable::with_capacity(t.capacity().max(t.len() + 1));
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
}

/// A profile shard: user ids and their profiles.
enum ProfileTable {
    /// Every id in the shard fits 4 bytes (12-byte slots: a profile is a
    /// 4-aligned thin pointer).
    Narrow(HashTable<(u32, UserProfile)>),
    /// Some id does not (16-byte slots).
    Wide(HashTable<(UserId, UserProfile)>),
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
            let mut wide = HashTable::with_capacity(t.capacity().max(t.len() + 1));
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
        Self {
            seeds: Seeds::random(),
            devices: Sharded::new(device_shards, || {
                DeviceTable::Narrow(HashTable::with_capacity(per_device_shard))
            }),
            profiles: Sharded::new(profile_shards, || {
                ProfileTable::Narrow(HashTable::with_capacity(per_profile_shard))
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
        self.devices.read(h).get(h, &t)
    }

    /// Links `key` to `user`; returns the user it was linked to before.
    fn link_device(&self, key: DeviceKey, user: UserId) -> Option<UserId> {
        let (t, seeds) = (tag(&key), self.seeds);
        let h = seeds.device(&t);
        self.devices
            .write(h)
            .insert(h, t, user, |k| seeds.device(k))
    }

    /// Unlinks `key` if it is linked to `user`.
    fn unlink_device_of(&self, key: &DeviceKey, user: UserId) {
        let t = tag(key);
        let h = self.seeds.device(&t);
        self.devices.write(h).remove_if(h, &t, |u| u == user);
    }

    /// Inserts or replaces a profile; returns the one replaced.
    fn put_profile(&self, user: UserId, profile: UserProfile) -> Option<UserProfile> {
        let (h, seeds) = (self.seeds.user(user), self.seeds);
        let added = profile.heap_bytes() as u64;
        // counted under the shard lock, so that a concurrent removal of the
        // same user cannot subtract before this adds (the gauge would wrap)
        let mut shard = self.profiles.write(h);
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
        self.profiles.read(h).get(h, user).map(f)
    }

    /// Inserts or replaces a user's profile and links the devices it lists
    /// (taking them over from any other user). Devices of the old profile that
    /// the new one no longer lists are unlinked. Doubtful devices are dropped.
    pub fn upsert(&self, user: UserId, profile: UserProfile) -> Result<(), ProfileError> {
        let profile = if profile.devices().any(|d| d.is_doubtful()) {
            let mut b = profile.to_builder();
            b.devices.retain(|d| !d.is_doubtful());
            b.build()?
        } else {
            profile
        };
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
        let p = shard.get_mut(h, user)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileBuilder;

    fn profile(devices: &[u8]) -> UserProfile {
        ProfileBuilder {
            devices: devices.iter().map(|d| DeviceKey([*d; 16])).collect(),
            ..Default::default()
        }
        .build()
        .unwrap()
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
        use crate::profile::{Action, BehaviourCount, ItemKey, Scope};
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
                crate::profile::ItemKey::new(crate::profile::Scope::Sku, 1).unwrap(),
                crate::profile::Action::Buy,
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
}
