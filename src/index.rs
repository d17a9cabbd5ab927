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
use crate::profile::{ProfileError, UserProfile};

/// A user's id in the advertiser's One-ID system.
pub type UserId = u64;

type Hasher = ahash::RandomState;

/// Devices -> users -> profiles.
pub struct UserIndex {
    devices: DashMap<DeviceKey, UserId, Hasher>,
    profiles: DashMap<UserId, UserProfile, Hasher>,
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
    fn doubtful_devices_are_never_linked() {
        let idx = UserIndex::default();
        idx.upsert(1, profile(&[0, 4])).unwrap();
        assert_eq!(idx.devices(), 1);
        assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
    }
}
