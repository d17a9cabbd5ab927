//! `UserIndex`: the in-memory map from devices to users to profiles.
//!
//! Two concurrent maps (dashmap, sharded locks): device key -> user id, and
//! user id -> profile. Several devices resolve to one user (One-ID); the
//! profile keeps its own device list so that unlinking and deleting a user
//! (a privacy request) remove every device at once. Readers hold a shard read
//! lock only for the duration of one closure and never across an await.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::ids::DeviceKey;
use crate::profile::{Day, ProfileBuilder, ProfileError, UserProfile};

/// A user's id in the advertiser's One-ID system.
pub type UserId = u64;

type Hasher = ahash::RandomState;

/// Devices -> users -> profiles.
pub struct UserIndex {
    devices: DashMap<DeviceKey, UserId, Hasher>,
    profiles: DashMap<UserId, UserProfile, Hasher>,
    /// Deleted users and when (Unix ms): older events about them are ignored.
    tombstones: DashMap<UserId, i64, Hasher>,
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
        Self {
            devices: DashMap::with_capacity_and_hasher(users * 2, Hasher::new()),
            profiles: DashMap::with_capacity_and_hasher(users, Hasher::new()),
            tombstones: DashMap::with_hasher(Hasher::new()),
            profile_heap_bytes: AtomicU64::new(0),
        }
    }

    /// The user the first known, non-doubtful key belongs to.
    #[inline]
    pub fn resolve(&self, keys: &[DeviceKey]) -> Option<UserId> {
        keys.iter()
            .filter(|k| !k.is_doubtful())
            .find_map(|k| self.devices.get(k).map(|u| *u))
    }

    /// Runs `f` on a user's profile, if the user exists.
    #[inline]
    pub fn with_profile<R>(&self, user: UserId, f: impl FnOnce(&UserProfile) -> R) -> Option<R> {
        self.profiles.get(&user).map(|p| f(&p))
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
            if let Some(prev) = self.devices.insert(*d, user)
                && prev != user
            {
                self.drop_device_from_profile(prev, *d)?;
            }
        }
        let added = profile.heap_bytes() as u64;
        if let Some(old) = self.profiles.insert(user, profile) {
            self.profile_heap_bytes
                .fetch_sub(old.heap_bytes() as u64, Ordering::Relaxed);
            for d in old.devices() {
                if !new_devices.contains(&d) {
                    self.devices.remove_if(&d, |_, u| *u == user);
                }
            }
        }
        self.profile_heap_bytes.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }

    fn drop_device_from_profile(
        &self,
        user: UserId,
        device: DeviceKey,
    ) -> Result<(), ProfileError> {
        if let Some(mut p) = self.profiles.get_mut(&user) {
            let mut b = p.to_builder();
            b.devices.retain(|d| *d != device);
            let rebuilt = b.build()?;
            self.profile_heap_bytes.fetch_sub(
                (p.heap_bytes() - rebuilt.heap_bytes()) as u64,
                Ordering::Relaxed,
            );
            *p = rebuilt;
        }
        Ok(())
    }

    /// Deletes a user and all its devices (privacy request); returns whether it existed.
    pub fn delete(&self, user: UserId) -> bool {
        match self.profiles.remove(&user) {
            Some((_, p)) => {
                self.profile_heap_bytes
                    .fetch_sub(p.heap_bytes() as u64, Ordering::Relaxed);
                for d in p.devices() {
                    self.devices.remove_if(&d, |_, u| *u == user);
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
            .profiles
            .get(&user)
            .map(|p| p.to_builder())
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
        let mut p = self.profiles.get_mut(&user)?;
        let before = p.heap_bytes() as u64;
        let r = change(&mut p);
        let after = p.heap_bytes() as u64;
        if after != before {
            self.profile_heap_bytes
                .fetch_add(after.wrapping_sub(before), Ordering::Relaxed);
        }
        Some(r)
    }

    /// Links a device to a user (creating an empty profile when absent).
    pub fn link(&self, device: DeviceKey, user: UserId) -> Result<(), ProfileError> {
        if device.is_doubtful() || self.devices.get(&device).is_some_and(|u| *u == user) {
            return Ok(());
        }
        self.modify(user, |b| {
            b.devices.push(device);
            Ok::<(), ProfileError>(())
        })
    }

    /// Unlinks a device from whichever user holds it; returns whether one did.
    pub fn unlink(&self, device: DeviceKey) -> Result<bool, ProfileError> {
        match self.devices.remove(&device) {
            Some((_, user)) => {
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
        for e in self.profiles.iter() {
            f(*e.key(), e.value());
        }
    }

    /// Drops profiles untouched since before `oldest_touched` and behaviour
    /// counts older than `oldest_day`; returns the users dropped.
    pub fn expire(&self, oldest_touched: Day, oldest_day: Day) -> usize {
        let stale: Vec<UserId> = self
            .profiles
            .iter()
            .filter(|e| e.touched() < oldest_touched)
            .map(|e| *e.key())
            .collect();
        for u in &stale {
            self.delete(*u);
        }
        let mut trimmed = Vec::new();
        for e in self.profiles.iter() {
            if e.behaviour().any(|b| b.day < oldest_day) {
                trimmed.push(*e.key());
            }
        }
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
            self.devices.insert(d, user);
        }
        self.profile_heap_bytes
            .fetch_add(profile.heap_bytes() as u64, Ordering::Relaxed);
        self.profiles.insert(user, profile);
    }

    /// Removes everything (a restore that turned out corrupt).
    pub fn clear(&self) {
        self.devices.clear();
        self.profiles.clear();
        self.tombstones.clear();
        self.profile_heap_bytes.store(0, Ordering::Relaxed);
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.profiles.len()
    }

    /// Number of linked devices.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Heap bytes held by profile bodies (excluding map overhead).
    pub fn profile_heap_bytes(&self) -> u64 {
        self.profile_heap_bytes.load(Ordering::Relaxed)
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
    fn doubtful_devices_are_never_linked() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[0, 4])).unwrap();
        assert_eq!(idx.devices(), 1);
        assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
    }
}
