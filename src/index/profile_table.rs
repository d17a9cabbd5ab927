//! The profile table: user id to [`UserProfile`], one [`ProfileTable`] per
//! shard, with 4-byte ids (12-byte slots) until a larger one arrives. One of
//! the index's two tables; the other is `device_table`.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::index::profile::UserProfile;
use crate::index::table_memory::TableAlloc;

use super::UserId;
use super::slots::Slots;

/// A profile shard: user ids and their profiles.
pub(super) enum ProfileTable {
    /// Every id in the shard fits 4 bytes (12-byte slots: a profile is a
    /// 4-aligned thin pointer).
    Narrow(HashTable<(u32, UserProfile), TableAlloc>),
    /// Some id does not (16-byte slots).
    Wide(HashTable<(UserId, UserProfile), TableAlloc>),
}

impl ProfileTable {
    pub(super) fn get(&self, hash: u64, user: UserId) -> Option<&UserProfile> {
        match self {
            Self::Narrow(t) => t.find(hash, |e| UserId::from(e.0) == user).map(|e| &e.1),
            Self::Wide(t) => t.find(hash, |e| e.0 == user).map(|e| &e.1),
        }
    }

    pub(super) fn get_mut(&mut self, hash: u64, user: UserId) -> Option<&mut UserProfile> {
        match self {
            Self::Narrow(t) => t
                .find_mut(hash, |e| UserId::from(e.0) == user)
                .map(|e| &mut e.1),
            Self::Wide(t) => t.find_mut(hash, |e| e.0 == user).map(|e| &mut e.1),
        }
    }

    /// Inserts or replaces `user`'s profile; returns the one replaced.
    pub(super) fn insert(
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

    pub(super) fn remove(&mut self, hash: u64, user: UserId) -> Option<UserProfile> {
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

    pub(super) fn for_each(&self, f: &mut impl FnMut(UserId, &UserProfile)) {
        match self {
            Self::Narrow(t) => t.iter().for_each(|(u, p)| f(UserId::from(*u), p)),
            Self::Wide(t) => t.iter().for_each(|(u, p)| f(*u, p)),
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
