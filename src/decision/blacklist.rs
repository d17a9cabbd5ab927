//! The dynamic anti-cheat blacklist (动态黑名单).
//!
//! Devices (by hashed [`DeviceKey`]) and users (by [`UserId`]) flagged by a rule
//! or by an operator are refused for a TTL. The decision hot path calls
//! [`Blacklist::check`] on every request: with an empty list it costs one atomic
//! load, otherwise one hash lookup per device plus one for the user.
//!
//! Entries live in a sharded map; expired ones are treated as absent on every
//! read path (no write there) and dropped by [`Blacklist::purge_expired`]. The
//! map is bounded ([`MAX_ENTRIES`]) so a flood of rule hits cannot exhaust
//! memory.
//!
//! The request-rate rule ([`Blacklist::note_request`]) counts requests per
//! device and wall-clock second in a fixed, lock-free table of packed atomic
//! slots; see that method for what a slot holds and why it can under-count but
//! not over-count.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use serde::{Deserialize, Serialize};

use crate::domain::field::FieldError;
use crate::domain::ids::{DeviceKey, IdError};
use crate::index::UserId;
use crate::telemetry::event::EntryBlacklisted;

/// The most entries the blacklist holds; [`Blacklist::add`] beyond it fails with
/// [`BlacklistError::Full`], so that a flood of rule hits cannot exhaust memory.
pub const MAX_ENTRIES: usize = 10_000_000;

/// The highest `max_requests_per_second` the rate table can enforce: a slot's
/// 16-bit count must be able to reach the limit plus one.
pub const MAX_RATE_LIMIT: u32 = u16::MAX as u32 - 1;

/// The fewest slots of the request-rate table (a power of two).
pub const MIN_RATE_SLOTS: usize = 1 << 10;

/// The most slots of the request-rate table (a power of two; 2 GiB of slots).
pub const MAX_RATE_SLOTS: usize = 1 << 28;

/// The longest TTL the config accepts, seconds (365 days).
pub const MAX_TTL_SECONDS: u64 = 365 * 86_400;

/// What is listed: one device or one user.
///
/// Serialized as `{"device": "<32 hex>"}` or `{"user": 123}` (the admin API's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "ListedRepr", try_from = "ListedRepr")]
pub enum Listed {
    /// A device, by its md5 key.
    Device(DeviceKey),
    /// A user of the index.
    User(UserId),
}

/// The wire form of [`Listed`]: the device as lower-case hex.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum ListedRepr {
    Device(String),
    User(UserId),
}

impl From<Listed> for ListedRepr {
    fn from(listed: Listed) -> Self {
        match listed {
            Listed::Device(key) => Self::Device(key.to_hex()),
            Listed::User(user) => Self::User(user),
        }
    }
}

impl TryFrom<ListedRepr> for Listed {
    type Error = IdError;

    fn try_from(repr: ListedRepr) -> Result<Self, Self::Error> {
        match repr {
            ListedRepr::Device(hex) => DeviceKey::from_md5_hex(&hex).map(Self::Device),
            ListedRepr::User(user) => Ok(Self::User(user)),
        }
    }
}

/// Why an entry was listed; doubles as a metric label, so it never carries ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The device sent more requests in one second than the rate rule allows.
    RequestRate,
    /// The user clicked more than allowed in a day without converting.
    ClicksWithoutConversion,
    /// A media flagged the id as doubtful.
    DoubtfulId,
    /// Media feedback reported fraud.
    MediaFraud,
    /// An operator listed it by hand.
    Operator,
}

impl Reason {
    /// Every reason, in declaration order (the order of [`Blacklist::count_by_reason`]).
    pub const ALL: [Reason; 5] = [
        Reason::RequestRate,
        Reason::ClicksWithoutConversion,
        Reason::DoubtfulId,
        Reason::MediaFraud,
        Reason::Operator,
    ];

    /// The metric label (same as the serde form).
    pub fn label(self) -> &'static str {
        match self {
            Reason::RequestRate => "request_rate",
            Reason::ClicksWithoutConversion => "clicks_without_conversion",
            Reason::DoubtfulId => "doubtful_id",
            Reason::MediaFraud => "media_fraud",
            Reason::Operator => "operator",
        }
    }

    /// Parses a label produced by [`Reason::label`]; `None` for anything else.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One blacklist entry: refused from `since_ms` (inclusive) to `until_ms` (exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The device or user refused.
    pub listed: Listed,
    /// Why.
    pub reason: Reason,
    /// When it was (last) listed, ms since the Unix epoch.
    pub since_ms: i64,
    /// When it expires, ms since the Unix epoch; absent from `until_ms` on.
    pub until_ms: i64,
}

impl Entry {
    /// True while the entry is in force at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }
}

/// Why [`Blacklist::add`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlacklistError {
    /// The table holds its maximum of entries; purge or remove some first.
    #[error("blacklist is full")]
    Full,
}

/// Rules and TTL: the `[blacklist]` section of the engine config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlacklistConfig {
    /// How long a rule-flagged entry lasts, seconds.
    pub ttl_seconds: u64,
    /// A device seen in more than this many requests within one wall-clock
    /// second is listed ([`Reason::RequestRate`]); 0 turns the rule off.
    pub max_requests_per_second: u32,
    /// A user with more clicks than this in a day and no conversion that day is
    /// listed; 0 turns the rule off. The caller evaluates it.
    pub max_clicks_without_conversion: u32,
    /// Whether ids a media flags as doubtful get listed ([`Reason::DoubtfulId`]).
    pub list_flagged_doubtful_ids: bool,
    /// Whether fraud reports from media feedback list the device or user.
    pub media_fraud: bool,
    /// Slots of the request-rate table (a power of two; 8 bytes each).
    pub rate_slots: usize,
}

impl Default for BlacklistConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 86_400,
            max_requests_per_second: 0,
            max_clicks_without_conversion: 0,
            list_flagged_doubtful_ids: false,
            media_fraud: true,
            rate_slots: 1 << 20,
        }
    }
}

impl BlacklistConfig {
    /// Checks the values; the message names the offending key.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.ttl_seconds == 0 || self.ttl_seconds > MAX_TTL_SECONDS {
            return Err(FieldError::new(
                "blacklist.ttl_seconds",
                format!(
                    "must be between 1 and {MAX_TTL_SECONDS}, got {}",
                    self.ttl_seconds
                ),
            ));
        }
        if self.max_requests_per_second > MAX_RATE_LIMIT {
            return Err(FieldError::new(
                "blacklist.max_requests_per_second",
                format!(
                    "must be at most {MAX_RATE_LIMIT}, got {}",
                    self.max_requests_per_second
                ),
            ));
        }
        if !self.rate_slots.is_power_of_two()
            || !(MIN_RATE_SLOTS..=MAX_RATE_SLOTS).contains(&self.rate_slots)
        {
            return Err(FieldError::new(
                "blacklist.rate_slots",
                format!(
                    "must be a power of two between {MIN_RATE_SLOTS} and {MAX_RATE_SLOTS}, got {}",
                    self.rate_slots
                ),
            ));
        }
        Ok(())
    }

    /// The rule TTL in milliseconds (saturating).
    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The dynamic blacklist: entries with a TTL plus the request-rate rule's table.
///
/// All methods take `&self` and are safe to call from many threads.
pub struct Blacklist {
    config: BlacklistConfig,
    entries: DashMap<Listed, Entry, ahash::RandomState>,
    /// Entries held (expired included), kept in step with `entries` so that
    /// `check` can skip everything with one load when it is zero. It may briefly
    /// run ahead of the map (reserved before an insert, released after a remove),
    /// never behind.
    count: AtomicUsize,
    max_entries: usize,
    /// The request-rate table; empty when the rule is off.
    rate: Box<[AtomicU64]>,
    /// Keys the slot and fingerprint hash; random per process so ids cannot be
    /// crafted to collide.
    rate_hasher: ahash::RandomState,
}

impl fmt::Debug for Blacklist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blacklist")
            .field("config", &self.config)
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// A slot of the rate table: `fingerprint (32) | second (16) | count (16)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateSlot {
    fingerprint: u32,
    second: u16,
    count: u16,
}

impl RateSlot {
    fn pack(self) -> u64 {
        (u64::from(self.fingerprint) << 32) | (u64::from(self.second) << 16) | u64::from(self.count)
    }

    fn unpack(v: u64) -> Self {
        Self {
            fingerprint: (v >> 32) as u32,
            second: (v >> 16) as u16,
            count: v as u16,
        }
    }
}

/// An entry ordered for [`Blacklist::list`]: newer `since_ms` first, then by key.
struct Newest(Entry);

impl Newest {
    fn rank(&self) -> (i64, Reverse<Listed>) {
        (self.0.since_ms, Reverse(self.0.listed))
    }
}

impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Newest {}

impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Newest {
    /// Greater = listed earlier in the output.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.rank().cmp(&other.rank())
    }
}

impl Blacklist {
    /// An empty blacklist under `config`, bounded to [`MAX_ENTRIES`].
    ///
    /// The config should have passed [`BlacklistConfig::validate`]; if not,
    /// `rate_slots` is brought into range (next power of two, clamped) rather
    /// than panicking, and a `max_requests_per_second` above [`MAX_RATE_LIMIT`]
    /// can never be exceeded (the rule never lists).
    pub fn new(config: BlacklistConfig) -> Self {
        Self::with_capacity_limit(config, MAX_ENTRIES)
    }

    /// Like [`Blacklist::new`] with another bound on the number of entries
    /// (tests, small deployments).
    pub fn with_capacity_limit(config: BlacklistConfig, max_entries: usize) -> Self {
        let rate = if config.max_requests_per_second == 0 {
            Box::default()
        } else {
            let slots = config
                .rate_slots
                .clamp(MIN_RATE_SLOTS, MAX_RATE_SLOTS)
                .next_power_of_two();
            (0..slots).map(|_| AtomicU64::new(0)).collect()
        };
        Self {
            config,
            entries: DashMap::with_hasher(ahash::RandomState::new()),
            count: AtomicUsize::new(0),
            max_entries,
            rate,
            rate_hasher: ahash::RandomState::new(),
        }
    }

    /// The config it runs under.
    pub fn config(&self) -> &BlacklistConfig {
        &self.config
    }

    /// Lists `listed` for `ttl` from `now_ms` (`None` = the config's TTL). A key
    /// already there is replaced (new reason, since and until): an operator
    /// re-adding extends the TTL. Fails only when a new key would take the table
    /// past its bound; replacing an existing key always succeeds.
    pub fn add(
        &self,
        listed: Listed,
        reason: Reason,
        now_ms: i64,
        ttl: Option<Duration>,
    ) -> Result<Entry, BlacklistError> {
        let until_ms = now_ms.saturating_add(self.ttl_ms(ttl));
        let entry = self.upsert(listed, reason, now_ms, until_ms, false)?;
        EntryBlacklisted {
            reason: reason.label(),
        }
        .emit();
        Ok(entry)
    }

    /// A rule hit: lists `listed` for the config's TTL like [`Blacklist::add`],
    /// except that an unexpired entry lasting at least as long (an operator's
    /// longer listing, say) is kept as it is. Returns the entry in force.
    pub fn flag(
        &self,
        listed: Listed,
        reason: Reason,
        now_ms: i64,
    ) -> Result<Entry, BlacklistError> {
        let until_ms = now_ms.saturating_add(self.config.ttl_ms());
        let entry = self.upsert(listed, reason, now_ms, until_ms, true)?;
        EntryBlacklisted {
            reason: reason.label(),
        }
        .emit();
        Ok(entry)
    }

    fn ttl_ms(&self, ttl: Option<Duration>) -> i64 {
        match ttl {
            Some(ttl) => i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            None => self.config.ttl_ms(),
        }
    }

    fn upsert(
        &self,
        listed: Listed,
        reason: Reason,
        since_ms: i64,
        until_ms: i64,
        keep_longer: bool,
    ) -> Result<Entry, BlacklistError> {
        let entry = Entry {
            listed,
            reason,
            since_ms,
            until_ms,
        };
        match self.entries.entry(listed) {
            MapEntry::Occupied(mut held) => {
                let current = held.get();
                if keep_longer && current.is_active(since_ms) && current.until_ms >= until_ms {
                    return Ok(current.clone());
                }
                held.insert(entry.clone());
                Ok(entry)
            }
            MapEntry::Vacant(vacant) => {
                // Reserve a place first (under the shard lock), so that the count
                // never falls behind the map and never passes the bound.
                self.count
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_entries).then_some(n + 1)
                    })
                    .map_err(|_| BlacklistError::Full)?;
                vacant.insert(entry.clone());
                Ok(entry)
            }
        }
    }

    /// Removes the entry of `listed`; true if one was there (expired or not).
    pub fn remove(&self, listed: Listed) -> bool {
        let removed = self.entries.remove(&listed).is_some();
        if removed {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// The reason the request is refused, if any of its devices or its user has
    /// an unexpired entry (devices first, in order, then the user). One atomic
    /// load when the list is empty.
    pub fn check(
        &self,
        devices: &[DeviceKey],
        user: Option<UserId>,
        now_ms: i64,
    ) -> Option<Reason> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        devices
            .iter()
            .map(|&d| Listed::Device(d))
            .chain(user.map(Listed::User))
            .find_map(|listed| self.active_reason(listed, now_ms))
    }

    fn active_reason(&self, listed: Listed, now_ms: i64) -> Option<Reason> {
        let held = self.entries.get(&listed)?;
        held.is_active(now_ms).then_some(held.reason)
    }

    /// The entry of `listed` if there is one in force at `now_ms`.
    pub fn get(&self, listed: Listed, now_ms: i64) -> Option<Entry> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let held = self.entries.get(&listed)?;
        held.is_active(now_ms).then(|| held.clone())
    }

    /// Entries in force at `now_ms`, at most `limit`, newest (`since_ms`) first;
    /// equal times are ordered by key. Memory is bounded by `limit`, not by the
    /// table.
    pub fn list(&self, now_ms: i64, limit: usize) -> Vec<Entry> {
        if limit == 0 || self.is_empty() {
            return Vec::new();
        }
        // A min-heap of the `limit` newest seen so far.
        let mut heap: BinaryHeap<Reverse<Newest>> = BinaryHeap::new();
        for held in self.entries.iter() {
            if !held.is_active(now_ms) {
                continue;
            }
            if heap.len() < limit {
                heap.push(Reverse(Newest(held.clone())));
            } else if let Some(mut oldest) = heap.peek_mut() {
                let candidate = Newest(held.clone());
                if candidate > oldest.0 {
                    oldest.0 = candidate;
                }
            }
        }
        // Ascending order of Reverse = descending order of Newest.
        heap.into_sorted_vec()
            .into_iter()
            .map(|Reverse(n)| n.0)
            .collect()
    }

    /// Entries in force at `now_ms` per reason, in [`Reason::ALL`] order (a gauge).
    pub fn count_by_reason(&self, now_ms: i64) -> [(Reason, usize); 5] {
        let mut counts = Reason::ALL.map(|r| (r, 0usize));
        if self.is_empty() {
            return counts;
        }
        for held in self.entries.iter() {
            if held.is_active(now_ms)
                && let Some(slot) = counts.iter_mut().find(|(r, _)| *r == held.reason)
            {
                slot.1 += 1;
            }
        }
        counts
    }

    /// Number of entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the unexpired entries to `path` as JSON lines, atomically
    /// (a temporary file, fsync, rename), so that a restart keeps what
    /// operators and rules listed. Returns how many were written.
    pub fn save_to(&self, path: &std::path::Path, now_ms: i64) -> std::io::Result<usize> {
        use std::io::Write;
        let entries = self.list(now_ms, usize::MAX);
        let tmp = path.with_extension("tmp");
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for e in &entries {
                serde_json::to_writer(&mut w, e)?;
                w.write_all(b"\n")?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(entries.len())
    }

    /// Lists the unexpired entries of a file written by [`Blacklist::save_to`]
    /// (keeping their reasons and times). Lines that do not parse and
    /// expired entries are skipped; returns (loaded, skipped). A missing
    /// file is an empty list.
    pub fn load_from(
        &self,
        path: &std::path::Path,
        now_ms: i64,
    ) -> std::io::Result<(usize, usize)> {
        use std::io::BufRead;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut loaded, mut skipped) = (0, 0);
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) if e.is_active(now_ms) && e.until_ms > e.since_ms => {
                    // restored, not listed anew: not counted as a listing
                    match self.upsert(e.listed, e.reason, e.since_ms, e.until_ms, false) {
                        Ok(_) => loaded += 1,
                        Err(_) => skipped += 1,
                    }
                }
                _ => skipped += 1,
            }
        }
        Ok((loaded, skipped))
    }

    /// Drops the entries expired at `now_ms`; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut removed = 0usize;
        self.entries.retain(|_, held| {
            let keep = held.is_active(now_ms);
            if !keep {
                removed += 1;
            }
            keep
        });
        if removed > 0 {
            self.count.fetch_sub(removed, Ordering::AcqRel);
        }
        removed
    }

    /// The request-rate rule: counts one request of `device` in the wall-clock
    /// second of `now_ms`. When the rule is on and this request is the one that
    /// takes the device over `max_requests_per_second` in that second, lists it
    /// ([`Reason::RequestRate`], via [`Blacklist::flag`]) and returns true.
    ///
    /// It returns true exactly once per crossing: the request numbered
    /// `limit + 1` in a second; later requests of the same second return false
    /// (the device is already listed). It also returns false when the rule is
    /// off, and when the table is full (the device could not be listed).
    ///
    /// Lock-free: a fixed table of `rate_slots` atomic slots, each packing
    /// `fingerprint (32 bits) | second (16) | count (16)` and updated by
    /// compare-exchange, so concurrent requests are never lost. The slot index
    /// and the fingerprint are disjoint bits of one keyed hash of the device and
    /// the second's high bits (`second >> 16`); the slot stores the second's low
    /// 16 bits. A request whose slot holds the same fingerprint and second adds
    /// one (saturating, never spilling into the other fields); any other slot
    /// content (another device, an older or newer second) is taken over with a
    /// count of one. So a collision between two devices only resets counts
    /// (under-counting: a device that alternates with a colliding one in a
    /// second may escape), and a device is listed only after `limit + 1`
    /// requests of its own in that second were counted. The one exception would
    /// be two (device, epoch) pairs agreeing on all 32 + log2(slots) hash bits
    /// within the same second, a chance of 2^-52 per pair at 2^20 slots under a
    /// per-process random key that ids cannot be crafted against.
    pub fn note_request(&self, device: &DeviceKey, now_ms: i64) -> bool {
        let limit = self.config.max_requests_per_second;
        if limit == 0 || self.rate.is_empty() {
            return false;
        }
        let Some(crossing) = limit.checked_add(1) else {
            return false;
        };
        let second = now_ms.div_euclid(1000);
        let (index, fingerprint) = self.rate_slot(device, second);
        let Some(slot) = self.rate.get(index) else {
            return false;
        };
        let second = (second & 0xFFFF) as u16;
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let held = RateSlot::unpack(current);
            let count = if held.fingerprint == fingerprint && held.second == second {
                match held.count.checked_add(1) {
                    Some(count) => count,
                    // Saturated: more than any enforceable limit, nothing to record.
                    None => return false,
                }
            } else {
                1
            };
            let next = RateSlot {
                fingerprint,
                second,
                count,
            }
            .pack();
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break count,
                Err(seen) => current = seen,
            }
        };
        if u32::from(count) != crossing {
            return false;
        }
        self.flag(Listed::Device(*device), Reason::RequestRate, now_ms)
            .is_ok()
    }

    /// The rate-table slot index and fingerprint of `device` in the wall-clock
    /// `second`: low bits and high 32 bits of one keyed hash.
    fn rate_slot(&self, device: &DeviceKey, second: i64) -> (usize, u32) {
        let hash = self.rate_hasher.hash_one((device.0, second >> 16));
        let mask = self.rate.len().saturating_sub(1);
        ((hash as usize) & mask, (hash >> 32) as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Some wall-clock second, far from a 16-bit epoch boundary.
    const BASE_SECOND: i64 = 65_536 * 26_000 + 1_000;
    const T0: i64 = BASE_SECOND * 1000;

    fn device(n: u64) -> DeviceKey {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[8] = 0xA5;
        DeviceKey(bytes)
    }

    fn rated(limit: u32) -> Blacklist {
        Blacklist::new(BlacklistConfig {
            max_requests_per_second: limit,
            rate_slots: 1024,
            ..BlacklistConfig::default()
        })
    }

    /// Two devices of `bl` that land in the same slot with different fingerprints.
    fn colliding_pair(bl: &Blacklist) -> (DeviceKey, DeviceKey) {
        let mut seen: HashMap<usize, (DeviceKey, u32)> = HashMap::new();
        for n in 0..100_000 {
            let d = device(n);
            let (slot, fp) = bl.rate_slot(&d, BASE_SECOND);
            match seen.get(&slot) {
                Some(&(other, other_fp)) if other_fp != fp => return (other, d),
                Some(_) => {}
                None => {
                    seen.insert(slot, (d, fp));
                }
            }
        }
        panic!("no collision among 100000 devices in 1024 slots");
    }

    /// Two devices of `bl` that land in different slots.
    fn separate_pair(bl: &Blacklist) -> (DeviceKey, DeviceKey) {
        let a = device(1);
        let slot_a = bl.rate_slot(&a, BASE_SECOND).0;
        let b = (2..1000)
            .map(device)
            .find(|d| bl.rate_slot(d, BASE_SECOND).0 != slot_a)
            .expect("some device in another slot");
        (a, b)
    }

    #[test]
    fn empty_list_refuses_nothing() {
        let bl = Blacklist::new(BlacklistConfig::default());
        assert!(bl.is_empty());
        assert_eq!(bl.check(&[device(1)], Some(7), T0), None);
        assert_eq!(bl.get(Listed::User(7), T0), None);
        assert!(bl.list(T0, 10).is_empty());
    }

    #[test]
    fn device_listed_refuses_requests_carrying_it() {
        let bl = Blacklist::new(BlacklistConfig::default());
        let bad = device(1);
        let entry = bl
            .add(Listed::Device(bad), Reason::MediaFraud, T0, None)
            .unwrap();
        assert_eq!(entry.since_ms, T0);
        assert_eq!(entry.until_ms, T0 + 86_400_000);
        assert_eq!(bl.len(), 1);

        assert_eq!(bl.check(&[bad], None, T0 + 1), Some(Reason::MediaFraud));
        assert_eq!(
            bl.check(&[device(2), bad, device(3)], Some(9), T0 + 1),
            Some(Reason::MediaFraud)
        );
        assert_eq!(bl.check(&[device(2), device(3)], Some(9), T0 + 1), None);
        assert_eq!(bl.check(&[], None, T0 + 1), None);
        assert_eq!(bl.get(Listed::Device(bad), T0 + 1), Some(entry));
        assert_eq!(bl.get(Listed::Device(device(2)), T0 + 1), None);

        assert!(bl.remove(Listed::Device(bad)));
        assert!(!bl.remove(Listed::Device(bad)));
        assert_eq!(bl.check(&[bad], None, T0 + 1), None);
        assert!(bl.is_empty());
    }

    #[test]
    fn user_listed_refuses_its_requests() {
        let bl = Blacklist::new(BlacklistConfig::default());
        bl.add(Listed::User(42), Reason::ClicksWithoutConversion, T0, None)
            .unwrap();
        assert_eq!(
            bl.check(&[device(1)], Some(42), T0),
            Some(Reason::ClicksWithoutConversion)
        );
        assert_eq!(bl.check(&[device(1)], Some(43), T0), None);
        assert_eq!(bl.check(&[device(1)], None, T0), None);
        // A user id and a device are different keys.
        assert_eq!(bl.get(Listed::Device(device(42)), T0), None);
        assert!(bl.get(Listed::User(42), T0).is_some());
        assert!(bl.remove(Listed::User(42)));
        assert_eq!(bl.check(&[], Some(42), T0), None);
    }

    #[test]
    fn devices_are_checked_before_the_user() {
        let bl = Blacklist::new(BlacklistConfig::default());
        bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
        bl.add(Listed::Device(device(1)), Reason::DoubtfulId, T0, None)
            .unwrap();
        assert_eq!(
            bl.check(&[device(1)], Some(1), T0),
            Some(Reason::DoubtfulId)
        );
    }

    #[test]
    fn entry_expires_at_until() {
        let bl = Blacklist::new(BlacklistConfig::default());
        let ttl = Duration::from_secs(60);
        let e = bl
            .add(Listed::User(1), Reason::Operator, T0, Some(ttl))
            .unwrap();
        assert_eq!(e.until_ms, T0 + 60_000);
        assert!(bl.get(Listed::User(1), e.until_ms - 1).is_some());
        assert_eq!(
            bl.check(&[], Some(1), e.until_ms - 1),
            Some(Reason::Operator)
        );
        assert!(bl.get(Listed::User(1), e.until_ms).is_none());
        assert_eq!(bl.check(&[], Some(1), e.until_ms), None);
        // Absent to readers, still held until purged.
        assert_eq!(bl.len(), 1);
        assert!(bl.remove(Listed::User(1)));
    }

    #[test]
    fn purge_removes_exactly_the_expired() {
        let bl = Blacklist::new(BlacklistConfig::default());
        for user in 0..10u64 {
            let ttl = Duration::from_secs(user + 1);
            bl.add(Listed::User(user), Reason::Operator, T0, Some(ttl))
                .unwrap();
        }
        // At T0 + 4s, users 0..=3 (ttl 1..=4 s) have expired.
        assert_eq!(bl.purge_expired(T0 + 4_000), 4);
        assert_eq!(bl.len(), 6);
        for user in 0..10u64 {
            assert_eq!(bl.remove(Listed::User(user)), user >= 4, "user {user}");
        }
        assert!(bl.is_empty());
        assert_eq!(bl.purge_expired(T0 + 4_000), 0);
    }

    #[test]
    fn re_adding_replaces_and_extends() {
        let bl = Blacklist::new(BlacklistConfig::default());
        let key = Listed::Device(device(5));
        bl.add(key, Reason::RequestRate, T0, Some(Duration::from_secs(10)))
            .unwrap();
        let later = T0 + 5_000;
        let e = bl
            .add(key, Reason::Operator, later, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(e.reason, Reason::Operator);
        assert_eq!(e.since_ms, later);
        assert_eq!(e.until_ms, later + 10_000);
        assert_eq!(bl.len(), 1);
        assert_eq!(
            bl.get(key, T0 + 12_000).map(|e| e.reason),
            Some(Reason::Operator)
        );
        assert_eq!(bl.get(key, later + 10_000), None);
        // Re-adding after expiry lists it again, without a second slot.
        bl.add(key, Reason::MediaFraud, T0 + 100_000, None).unwrap();
        assert_eq!(bl.len(), 1);
        assert!(bl.get(key, T0 + 100_000).is_some());
    }

    #[test]
    fn flag_keeps_a_longer_entry() {
        let bl = Blacklist::new(BlacklistConfig {
            ttl_seconds: 60,
            ..BlacklistConfig::default()
        });
        let key = Listed::User(3);
        let long = bl
            .add(key, Reason::Operator, T0, Some(Duration::from_secs(3_600)))
            .unwrap();
        assert_eq!(bl.flag(key, Reason::MediaFraud, T0 + 1).unwrap(), long);
        // A shorter one is extended.
        bl.add(key, Reason::Operator, T0, Some(Duration::from_secs(1)))
            .unwrap();
        let e = bl.flag(key, Reason::MediaFraud, T0 + 10).unwrap();
        assert_eq!(
            (e.reason, e.until_ms),
            (Reason::MediaFraud, T0 + 10 + 60_000)
        );
    }

    #[test]
    fn absurd_times_saturate() {
        let bl = Blacklist::new(BlacklistConfig::default());
        let e = bl
            .add(
                Listed::User(1),
                Reason::Operator,
                i64::MAX - 5,
                Some(Duration::MAX),
            )
            .unwrap();
        assert_eq!(e.until_ms, i64::MAX);
        let e = bl
            .add(Listed::User(2), Reason::Operator, i64::MIN, None)
            .unwrap();
        assert_eq!(e.until_ms, i64::MIN + 86_400_000);
        assert!(bl.get(Listed::User(2), i64::MIN).is_some());
        let rated = rated(1);
        assert!(!rated.note_request(&device(1), i64::MIN));
        assert!(rated.note_request(&device(1), i64::MIN));
        assert!(!rated.note_request(&device(2), i64::MAX));
        assert!(rated.note_request(&device(2), i64::MAX));
    }

    #[test]
    fn list_is_newest_first_limited_and_unexpired() {
        let bl = Blacklist::new(BlacklistConfig::default());
        let ttl = Some(Duration::from_secs(100));
        for user in 0..6u64 {
            let since = T0 + i64::try_from(user).unwrap() * 1_000;
            bl.add(Listed::User(user), Reason::Operator, since, ttl)
                .unwrap();
        }
        // User 0 (listed at T0) has expired at T0 + 100 s.
        let now = T0 + 100_000;
        let all = bl.list(now, 100);
        let users: Vec<Listed> = all.iter().map(|e| e.listed).collect();
        assert_eq!(users, [5, 4, 3, 2, 1].map(Listed::User));
        let top = bl.list(now, 2);
        assert_eq!(top, all[..2]);
        assert!(bl.list(now, 0).is_empty());
        assert!(bl.list(T0 + 1_000_000, 10).is_empty());
    }

    #[test]
    fn count_by_reason_counts_unexpired() {
        let bl = Blacklist::new(BlacklistConfig::default());
        bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
        bl.add(Listed::User(2), Reason::Operator, T0, None).unwrap();
        bl.add(Listed::User(3), Reason::MediaFraud, T0, None)
            .unwrap();
        bl.add(
            Listed::User(4),
            Reason::MediaFraud,
            T0,
            Some(Duration::from_secs(1)),
        )
        .unwrap();
        let counts = bl.count_by_reason(T0 + 1_000);
        assert_eq!(
            counts,
            [
                (Reason::RequestRate, 0),
                (Reason::ClicksWithoutConversion, 0),
                (Reason::DoubtfulId, 0),
                (Reason::MediaFraud, 1),
                (Reason::Operator, 2),
            ]
        );
    }

    #[test]
    fn full_table_refuses_new_keys_and_stays_usable() {
        let bl = Blacklist::with_capacity_limit(BlacklistConfig::default(), 2);
        bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
        bl.add(Listed::User(2), Reason::Operator, T0, None).unwrap();
        assert_eq!(
            bl.add(Listed::User(3), Reason::Operator, T0, None),
            Err(BlacklistError::Full)
        );
        assert_eq!(bl.len(), 2);
        // Replacing a held key is still allowed.
        assert!(
            bl.add(Listed::User(1), Reason::MediaFraud, T0 + 1, None)
                .is_ok()
        );
        assert_eq!(bl.check(&[], Some(1), T0 + 1), Some(Reason::MediaFraud));
        assert_eq!(bl.check(&[], Some(3), T0 + 1), None);
        assert!(bl.remove(Listed::User(2)));
        assert!(bl.add(Listed::User(3), Reason::Operator, T0, None).is_ok());
        assert_eq!(bl.list(T0 + 1, 10).len(), 2);
    }

    #[test]
    fn full_table_stops_the_rate_rule_from_listing() {
        let bl = Blacklist::with_capacity_limit(
            BlacklistConfig {
                max_requests_per_second: 1,
                rate_slots: 1024,
                ..BlacklistConfig::default()
            },
            0,
        );
        assert!(!bl.note_request(&device(1), T0));
        assert!(!bl.note_request(&device(1), T0));
        assert!(bl.is_empty());
    }

    #[test]
    fn rate_rule_lists_at_the_crossing_only() {
        let bl = rated(5);
        let d = device(1);
        for n in 1..=5 {
            assert!(!bl.note_request(&d, T0 + n * 10), "request {n}");
        }
        assert!(bl.check(&[d], None, T0 + 60).is_none());
        assert!(bl.note_request(&d, T0 + 999), "6th request lists");
        let e = bl.get(Listed::Device(d), T0 + 999).unwrap();
        assert_eq!((e.reason, e.since_ms), (Reason::RequestRate, T0 + 999));
        // Later requests of that second do not list again.
        for _ in 0..10 {
            assert!(!bl.note_request(&d, T0 + 999));
        }
        assert_eq!(bl.check(&[d], None, T0 + 999), Some(Reason::RequestRate));
    }

    #[test]
    fn rate_rule_resets_each_second() {
        let bl = rated(5);
        let d = device(1);
        for second in 0..4 {
            for n in 0..5 {
                assert!(!bl.note_request(&d, T0 + second * 1_000 + n));
            }
        }
        assert!(bl.is_empty());
        // One request per second, then two in one second: the second of these
        // lists (limit 1 needs a count going 1 -> 2 after a takeover at 1).
        let bl1 = rated(1);
        for second in 0..3 {
            assert!(!bl1.note_request(&d, T0 + second * 1_000));
        }
        assert!(!bl1.note_request(&d, T0 + 3_000));
        assert!(bl1.note_request(&d, T0 + 3_001));
        // Straddling a second boundary: 3 + 3 is no more than 5 per second.
        for _ in 0..3 {
            assert!(!bl.note_request(&d, T0 + 10_999));
        }
        for _ in 0..3 {
            assert!(!bl.note_request(&d, T0 + 11_000));
        }
        assert!(bl.is_empty());
    }

    #[test]
    fn rate_rule_off_never_lists() {
        let bl = Blacklist::new(BlacklistConfig::default());
        assert_eq!(bl.config().max_requests_per_second, 0);
        for _ in 0..100_000 {
            assert!(!bl.note_request(&device(1), T0));
        }
        assert!(bl.is_empty());
    }

    #[test]
    fn devices_in_different_slots_do_not_share_counts() {
        let bl = rated(5);
        let (a, b) = separate_pair(&bl);
        for _ in 0..5 {
            assert!(!bl.note_request(&a, T0));
            assert!(!bl.note_request(&b, T0));
        }
        assert!(bl.is_empty());
        assert!(bl.note_request(&a, T0));
        assert!(bl.note_request(&b, T0));
    }

    #[test]
    fn a_slot_collision_only_resets() {
        let bl = rated(3);
        let (a, b) = colliding_pair(&bl);
        // a: 3, b takes the slot over: 3, a takes it back: 3. a made 6 requests
        // in the second and escapes (an under-count, allowed); what must not
        // happen is either device counting the other's requests.
        for d in [a, b, a] {
            for _ in 0..3 {
                assert!(!bl.note_request(&d, T0));
            }
        }
        assert!(bl.is_empty());
        // b alone with 3 requests after a's: still not listed.
        for _ in 0..3 {
            assert!(!bl.note_request(&b, T0 + 1));
        }
        assert!(bl.get(Listed::Device(b), T0 + 1).is_none());
        // Uncontended, the fourth lists.
        assert!(bl.note_request(&b, T0 + 2));
    }

    #[test]
    fn rate_slot_packing_round_trips() {
        let slot = RateSlot {
            fingerprint: 0xDEAD_BEEF,
            second: 0xABCD,
            count: 0xFFFF,
        };
        assert_eq!(slot.pack(), 0xDEAD_BEEF_ABCD_FFFF);
        assert_eq!(RateSlot::unpack(slot.pack()), slot);
    }

    #[test]
    fn highest_limit_is_enforced_and_counts_saturate() {
        let bl = rated(MAX_RATE_LIMIT);
        let d = device(9);
        let listed: usize = (0..=u32::from(u16::MAX) + 10)
            .filter(|_| bl.note_request(&d, T0))
            .count();
        assert_eq!(listed, 1);
        // A limit the slot cannot represent never lists.
        let bl = rated(u32::from(u16::MAX));
        assert!((0..70_000).all(|_| !bl.note_request(&d, T0)));
    }

    #[test]
    fn concurrent_requests_are_not_lost() {
        const THREADS: u32 = 4;
        const PER_THREAD: u32 = 2_000;
        let total = THREADS * PER_THREAD;
        for (limit, expected) in [(total - 1, 1usize), (total, 0), (100, 1)] {
            let bl = rated(limit);
            let d = device(77);
            let listed: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(|| {
                            (0..PER_THREAD)
                                .filter(|_| bl.note_request(&d, T0 + 500))
                                .count()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(listed, expected, "limit {limit}");
            assert_eq!(bl.get(Listed::Device(d), T0 + 500).is_some(), expected == 1);
        }
    }

    #[test]
    fn concurrent_adds_keep_the_count_in_step() {
        let bl = Blacklist::with_capacity_limit(BlacklistConfig::default(), 1_000);
        let added: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let bl = &bl;
                    s.spawn(move || {
                        (0..500u64)
                            .filter(|n| {
                                bl.add(Listed::User(t * 1_000 + n), Reason::Operator, T0, None)
                                    .is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(added, 1_000);
        assert_eq!(bl.len(), 1_000);
        assert_eq!(bl.entries.len(), 1_000);
        assert_eq!(bl.purge_expired(i64::MAX), 1_000);
        assert!(bl.is_empty());
        assert_eq!(bl.entries.len(), 0);
    }

    proptest! {
        #[test]
        fn rate_rule_lists_only_real_excess(
            limit in 1u32..5,
            requests in proptest::collection::vec((0u64..8, 0i64..3, 0i64..1000), 0..200),
        ) {
            let bl = rated(limit);
            let mut model: HashMap<(u64, i64), u32> = HashMap::new();
            for &(dev, sec, ms) in &requests {
                let seen = model.entry((dev, sec)).or_insert(0);
                *seen += 1;
                let listed = bl.note_request(&device(dev), (BASE_SECOND + sec) * 1000 + ms);
                if listed {
                    prop_assert!(*seen > limit, "device {dev} listed after {seen} requests");
                }
            }
            for dev in 0..8u64 {
                if bl.get(Listed::Device(device(dev)), T0).is_some() {
                    prop_assert!((0..3).any(|sec| model.get(&(dev, sec)).is_some_and(|&n| n > limit)));
                }
            }
        }

        #[test]
        fn rate_rule_is_exact_without_collisions(
            limit in 1u32..5,
            mut requests in proptest::collection::vec((0u64..8, 0i64..3, 0i64..1000), 0..200),
        ) {
            // In time order and with the devices in distinct slots, the rule
            // lists exactly at each real crossing.
            requests.sort_by_key(|&(_, sec, ms)| (sec, ms));
            let bl = rated(limit);
            let slots: std::collections::HashSet<usize> =
                (0..8).map(|dev| bl.rate_slot(&device(dev), BASE_SECOND).0).collect();
            prop_assume!(slots.len() == 8);
            let mut model: HashMap<(u64, i64), u32> = HashMap::new();
            for &(dev, sec, ms) in &requests {
                let seen = model.entry((dev, sec)).or_insert(0);
                *seen += 1;
                let listed = bl.note_request(&device(dev), (BASE_SECOND + sec) * 1000 + ms);
                prop_assert_eq!(listed, *seen == limit + 1, "device {} request {}", dev, seen);
            }
            for dev in 0..8u64 {
                let over = (0..3).any(|sec| model.get(&(dev, sec)).is_some_and(|&n| n > limit));
                prop_assert_eq!(bl.get(Listed::Device(device(dev)), T0).is_some(), over);
            }
        }
    }

    #[test]
    fn config_validation() {
        assert_eq!(BlacklistConfig::default().validate(), Ok(()));
        let bad = [
            BlacklistConfig {
                ttl_seconds: 0,
                ..BlacklistConfig::default()
            },
            BlacklistConfig {
                ttl_seconds: MAX_TTL_SECONDS + 1,
                ..BlacklistConfig::default()
            },
            BlacklistConfig {
                rate_slots: 1000,
                ..BlacklistConfig::default()
            },
            BlacklistConfig {
                rate_slots: 512,
                ..BlacklistConfig::default()
            },
            BlacklistConfig {
                rate_slots: 1 << 29,
                ..BlacklistConfig::default()
            },
            BlacklistConfig {
                max_requests_per_second: MAX_RATE_LIMIT + 1,
                ..BlacklistConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        let edge = BlacklistConfig {
            ttl_seconds: MAX_TTL_SECONDS,
            rate_slots: MIN_RATE_SLOTS,
            max_requests_per_second: MAX_RATE_LIMIT,
            ..BlacklistConfig::default()
        };
        assert_eq!(edge.validate(), Ok(()));
        // An invalid slot count is brought into range rather than panicking.
        let bl = Blacklist::new(BlacklistConfig {
            rate_slots: 3,
            max_requests_per_second: 1,
            ..BlacklistConfig::default()
        });
        assert_eq!(bl.rate.len(), MIN_RATE_SLOTS);
    }

    #[test]
    fn config_from_toml() {
        let config: BlacklistConfig =
            toml::from_str("ttl_seconds = 3600\nmax_requests_per_second = 50").unwrap();
        assert_eq!(
            config,
            BlacklistConfig {
                ttl_seconds: 3600,
                max_requests_per_second: 50,
                ..BlacklistConfig::default()
            }
        );
        assert!(config.media_fraud);
        assert_eq!(config.rate_slots, 1 << 20);
        assert!(toml::from_str::<BlacklistConfig>("ttl_second = 3600").is_err());
        assert_eq!(
            toml::from_str::<BlacklistConfig>("").unwrap(),
            BlacklistConfig::default()
        );
    }

    #[test]
    fn wire_forms() {
        let key = DeviceKey::from_md5_hex("0123456789abcdef0123456789ABCDEF").unwrap();
        let json = serde_json::to_string(&Listed::Device(key)).unwrap();
        assert_eq!(json, r#"{"device":"0123456789abcdef0123456789abcdef"}"#);
        assert_eq!(
            serde_json::to_string(&Listed::User(123)).unwrap(),
            r#"{"user":123}"#
        );
        assert_eq!(
            serde_json::from_str::<Listed>(&json).unwrap(),
            Listed::Device(key)
        );
        assert_eq!(
            serde_json::from_str::<Listed>(r#"{"user":123}"#).unwrap(),
            Listed::User(123)
        );
        assert!(serde_json::from_str::<Listed>(r#"{"device":"zz"}"#).is_err());
        assert!(serde_json::from_str::<Listed>(r#"{"phone":1}"#).is_err());

        let entry = Entry {
            listed: Listed::User(5),
            reason: Reason::ClicksWithoutConversion,
            since_ms: 1,
            until_ms: 2,
        };
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({
                "listed": {"user": 5},
                "reason": "clicks_without_conversion",
                "since_ms": 1,
                "until_ms": 2,
            })
        );
    }

    #[test]
    fn reason_labels_match_serde_and_parse_back() {
        for reason in Reason::ALL {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.label()));
            assert_eq!(Reason::from_label(reason.label()), Some(reason));
            assert_eq!(reason.to_string(), reason.label());
        }
        assert_eq!(Reason::from_label("Operator"), None);
        assert_eq!(Reason::from_label(""), None);
    }
    #[test]
    fn a_saved_list_loads_back_without_expired_entries_or_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blacklist.jsonl");
        let bl = Blacklist::new(BlacklistConfig::default());
        let now = 1_795_406_400_000;
        let dev = DeviceKey([7; 16]);
        let secs = Duration::from_secs;
        bl.add(
            Listed::Device(dev),
            Reason::Operator,
            now - 1000,
            Some(secs(3600)),
        )
        .unwrap();
        bl.add(
            Listed::User(42),
            Reason::MediaFraud,
            now - 5000,
            Some(secs(10)),
        )
        .unwrap();
        // already expired: not saved
        bl.add(
            Listed::User(7),
            Reason::RequestRate,
            now - 20_000,
            Some(secs(10)),
        )
        .unwrap();
        assert_eq!(bl.save_to(&path, now).unwrap(), 2);
        // a line someone broke by hand is skipped, not fatal
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{not json\n");
        std::fs::write(&path, text).unwrap();

        let back = Blacklist::new(BlacklistConfig::default());
        assert_eq!(back.load_from(&path, now).unwrap(), (2, 1));
        assert_eq!(
            back.get(Listed::Device(dev), now),
            bl.get(Listed::Device(dev), now)
        );
        assert_eq!(
            back.get(Listed::User(42), now).unwrap().reason,
            Reason::MediaFraud
        );
        // loaded later, what expired in between stays out
        let later = Blacklist::new(BlacklistConfig::default());
        assert_eq!(later.load_from(&path, now + 6000).unwrap(), (1, 2));
        let none = Blacklist::new(BlacklistConfig::default());
        assert_eq!(
            none.load_from(&dir.path().join("none"), now).unwrap(),
            (0, 0)
        );
    }
}
