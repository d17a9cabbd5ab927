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

mod bulk;
mod device_table;
mod prefetch;
pub mod profile;
mod profile_table;
pub mod record;
mod shards;
mod slots;
pub mod snapshot;
mod table_memory;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use hashbrown::HashTable;

use crate::domain::ids::DeviceKey;
use crate::index::profile::{Day, ProfileBuilder, ProfileError, UserProfile};
use crate::index::table_memory::TableAlloc;

use device_table::{DeviceTable, DeviceTag, tag};
use profile_table::ProfileTable;
use shards::{Seeds, Sharded, allocated_bytes, plan};

pub use crate::domain::ids::UserId;
pub use bulk::{BulkLoader, BulkRepairs};

/// Devices per user assumed by [`UserIndex::with_capacity`].
const DEVICES_PER_USER: usize = 2;

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

#[cfg(test)]
mod tests;
