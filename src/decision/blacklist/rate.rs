//! The request-rate rule of the blacklist: requests per device and wall-clock
//! second, counted in a fixed, lock-free table of packed atomic slots.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::ids::DeviceKey;

use super::{Blacklist, BlacklistConfig, Listed, Reason};

/// The highest `max_requests_per_second` the rate table can enforce: a slot's
/// 16-bit count must be able to reach the limit plus one.
pub const MAX_RATE_LIMIT: u32 = u16::MAX as u32 - 1;

/// The fewest slots of the request-rate table (a power of two).
pub const MIN_RATE_SLOTS: usize = 1 << 10;

/// The most slots of the request-rate table (a power of two; 2 GiB of slots).
pub const MAX_RATE_SLOTS: usize = 1 << 28;

/// A slot of the rate table: `fingerprint (32) | second (16) | count (16)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RateSlot {
    pub(super) fingerprint: u32,
    pub(super) second: u16,
    pub(super) count: u16,
}

impl RateSlot {
    /// The slot as one word.
    pub(super) fn pack(self) -> u64 {
        (u64::from(self.fingerprint) << 32) | (u64::from(self.second) << 16) | u64::from(self.count)
    }

    /// The slot held in the word `v`.
    pub(super) fn unpack(v: u64) -> Self {
        Self {
            fingerprint: (v >> 32) as u32,
            second: (v >> 16) as u16,
            count: v as u16,
        }
    }
}

/// The rate table for `config`: empty when the rule is off, else
/// `rate_slots` brought into range (clamped, next power of two) zeroed slots.
pub(super) fn table(config: &BlacklistConfig) -> Box<[AtomicU64]> {
    if config.max_requests_per_second == 0 {
        Box::default()
    } else {
        let slots = config
            .rate_slots
            .clamp(MIN_RATE_SLOTS, MAX_RATE_SLOTS)
            .next_power_of_two();
        (0..slots).map(|_| AtomicU64::new(0)).collect()
    }
}

impl Blacklist {
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
    pub(super) fn rate_slot(&self, device: &DeviceKey, second: i64) -> (usize, u32) {
        let hash = self.rate_hasher.hash_one((device.0, second >> 16));
        let mask = self.rate.len().saturating_sub(1);
        ((hash as usize) & mask, (hash >> 32) as u32)
    }
}
