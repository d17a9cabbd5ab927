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
//! slots (`rate`); see that method for what a slot holds and why it can
//! under-count but not over-count. Saving and loading the list across restarts
//! is in `persistence`.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use serde::{Deserialize, Serialize};

use crate::domain::field::FieldError;
use crate::domain::ids::{DeviceKey, IdError};
use crate::index::UserId;
use crate::telemetry::event::EntryBlacklisted;

mod persistence;
mod rate;

pub use rate::{MAX_RATE_LIMIT, MAX_RATE_SLOTS, MIN_RATE_SLOTS};

/// The most entries the blacklist holds; [`Blacklist::add`] beyond it fails with
/// [`BlacklistError::Full`], so that a flood of rule hits cannot exhaust memory.
pub const MAX_ENTRIES: usize = 10_000_000;

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
    /// The operator (admin token name) who listed it; none for rule hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_by: Option<String>,
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
    /// The operator holds its maximum of entries.
    #[error("the operator already holds {limit} blacklist entries")]
    OperatorCap {
        /// The cap.
        limit: usize,
    },
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
    /// Entries held per operator (expired included, as `count`); operators
    /// are the configured admin tokens, so this stays small.
    by_operator: Mutex<HashMap<String, usize>>,
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
        let rate = rate::table(&config);
        Self {
            config,
            entries: DashMap::with_hasher(ahash::RandomState::new()),
            count: AtomicUsize::new(0),
            max_entries,
            rate,
            rate_hasher: ahash::RandomState::new(),
            by_operator: Mutex::new(HashMap::new()),
        }
    }

    /// Entries `operator` holds now (expired ones until purged).
    pub fn held_by(&self, operator: &str) -> usize {
        self.operators().get(operator).copied().unwrap_or(0)
    }

    fn operators(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.by_operator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more entry for `operator`, unless it holds `limit` already.
    fn claim(&self, operator: &str, limit: usize) -> Result<(), BlacklistError> {
        let mut held = self.operators();
        let n = held.entry(operator.to_string()).or_insert(0);
        if *n >= limit {
            return Err(BlacklistError::OperatorCap { limit });
        }
        *n += 1;
        Ok(())
    }

    /// Counts one entry of `entry`'s operator gone.
    fn release(&self, entry: &Entry) {
        if let Some(op) = &entry.added_by {
            let mut held = self.operators();
            if let Some(n) = held.get_mut(op.as_str()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(op.as_str());
                }
            }
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
        let entry = self.upsert(listed, reason, now_ms, until_ms, false, None)?;
        EntryBlacklisted {
            reason: reason.label(),
        }
        .emit();
        Ok(entry)
    }

    /// [`Blacklist::add`] by a named operator who may hold at most `limit`
    /// entries: the entry records who listed it, and a new key past the
    /// operator's cap is refused (re-listing a key it holds is not).
    pub fn add_by(
        &self,
        operator: &str,
        limit: usize,
        listed: Listed,
        reason: Reason,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<Entry, BlacklistError> {
        let until_ms = now_ms.saturating_add(self.ttl_ms(Some(ttl)));
        let entry = self.upsert(
            listed,
            reason,
            now_ms,
            until_ms,
            false,
            Some((operator, limit)),
        )?;
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
        let entry = self.upsert(listed, reason, now_ms, until_ms, true, None)?;
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
        operator: Option<(&str, usize)>,
    ) -> Result<Entry, BlacklistError> {
        let entry = Entry {
            listed,
            reason,
            since_ms,
            until_ms,
            added_by: operator.map(|(name, _)| name.to_string()),
        };
        match self.entries.entry(listed) {
            MapEntry::Occupied(mut held) => {
                let current = held.get();
                if keep_longer && current.is_active(since_ms) && current.until_ms >= until_ms {
                    return Ok(current.clone());
                }
                let same_owner = current.added_by.as_deref() == operator.map(|(name, _)| name);
                if !same_owner {
                    if let Some((name, limit)) = operator {
                        self.claim(name, limit)?;
                    }
                    self.release(current);
                }
                held.insert(entry.clone());
                Ok(entry)
            }
            MapEntry::Vacant(vacant) => {
                if let Some((name, limit)) = operator {
                    self.claim(name, limit)?;
                }
                // Reserve a place first (under the shard lock), so that the count
                // never falls behind the map and never passes the bound.
                if self
                    .count
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_entries).then_some(n + 1)
                    })
                    .is_err()
                {
                    self.release(&entry);
                    return Err(BlacklistError::Full);
                }
                vacant.insert(entry.clone());
                Ok(entry)
            }
        }
    }

    /// Removes the entry of `listed`; true if one was there (expired or not).
    pub fn remove(&self, listed: Listed) -> bool {
        let Some((_, entry)) = self.entries.remove(&listed) else {
            return false;
        };
        self.release(&entry);
        self.count.fetch_sub(1, Ordering::AcqRel);
        true
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
                self.release(held);
            }
            keep
        });
        if removed > 0 {
            self.count.fetch_sub(removed, Ordering::AcqRel);
        }
        removed
    }
}

#[cfg(test)]
mod tests;
