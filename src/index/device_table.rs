//! The device table: device key (its first 96 bits, a [`DeviceTag`]) to
//! user id, one [`DeviceTable`] per shard, with 4-byte ids until a larger one
//! arrives. One of the index's two tables; the other is `profile_table`.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::domain::ids::DeviceKey;
use crate::index::table_memory::TableAlloc;

use super::UserId;
use super::slots::Slots;

/// What the device table keeps of a device key: its first 96 bits.
///
/// Keys are md5 digests, uniform, so 96 bits tell devices apart as well as
/// 128 do in practice: among 160 M devices (100 M users) the chance that any
/// two share 96 bits is 2e-13, and the chance that an unknown device matches a
/// known one is 2e-21 per lookup. A key someone chooses to collide with a
/// known one needs that key's 96 bits, which is the key itself for a lookup.
/// Saves 4 bytes a device (a 16-byte slot with a 4-byte user id). Profiles
/// keep the whole key, so snapshots and unlinking see the full 128 bits.
pub(super) type DeviceTag = [u8; 12];

/// The [`DeviceTag`] of `key`.
#[inline]
pub(super) fn tag(key: &DeviceKey) -> DeviceTag {
    let mut t = [0; 12];
    t.copy_from_slice(&key.0[..12]);
    t
}

/// A device shard: device tags and their users' ids.
pub(super) enum DeviceTable {
    /// Every id in the shard fits 4 bytes (16-byte slots).
    Narrow(HashTable<(DeviceTag, u32), TableAlloc>),
    /// Some id does not (24-byte slots).
    Wide(HashTable<(DeviceTag, UserId), TableAlloc>),
}

impl DeviceTable {
    pub(super) fn get(&self, hash: u64, key: &DeviceTag) -> Option<UserId> {
        match self {
            Self::Narrow(t) => t.find(hash, |e| e.0 == *key).map(|e| UserId::from(e.1)),
            Self::Wide(t) => t.find(hash, |e| e.0 == *key).map(|e| e.1),
        }
    }

    /// Links `key` to `user`; returns the user it was linked to before.
    pub(super) fn insert(
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
    pub(super) fn remove_if(
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

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Narrow(t) => t.len(),
            Self::Wide(t) => t.len(),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Self::Narrow(t) => t.clear(),
            Self::Wide(t) => t.clear(),
        }
    }

    pub(super) fn allocation_size(&self) -> usize {
        match self {
            Self::Narrow(t) => t.allocation_size(),
            Self::Wide(t) => t.allocation_size(),
        }
    }

    pub(super) fn slots(&self) -> Option<Slots> {
        match self {
            Self::Narrow(t) => Slots::of(t),
            Self::Wide(t) => Slots::of(t),
        }
    }

    /// Asks for the lines a probe for `hash` reads (see [`Slots::prefetch_lookup`]).
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(s) = self.slots() {
            s.prefetch_lookup(hash);
        }
    }
}
