//! Bulk loading: many users into an index being restored, buffered per
//! shard and inserted shard by shard under one lock each, with the
//! order-dependent cases left for [`UserIndex::finish_bulk`]. Apart from the
//! one-user-at-a-time operations in `mod.rs`, which it must agree with.

use std::sync::atomic::Ordering;

use crate::domain::ids::DeviceKey;
use crate::index::profile::{ProfileError, UserProfile};

use super::device_table::{DeviceTable, DeviceTag, tag};
use super::profile_table::ProfileTable;
use super::shards::Sharded;
use super::slots::Slots;
use super::{UserId, UserIndex, without_doubtful_devices};

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
