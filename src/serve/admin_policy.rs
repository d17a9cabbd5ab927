//! What an operator may do in how much: the longest blacklist TTL the admin
//! API grants, the entries one token may hold, and how many mutations a
//! token may make per second (a token bucket per token name). Configured in
//! `[admin]`; the token set is configured too, so the buckets stay few.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::domain::field::FieldError;

/// The `[admin]` limits (read from `AdminConfig`'s keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdminLimits {
    /// Longest TTL of a blacklist entry added through the API, seconds.
    pub max_ttl_seconds: u64,
    /// Most blacklist entries one token may hold.
    pub max_entries_per_token: usize,
    /// Mutations per second per token, sustained.
    pub mutations_per_second: f64,
    /// Mutations a token may make at once before the rate applies.
    pub mutation_burst: u32,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_ttl_seconds: 30 * 86_400,
            max_entries_per_token: 100_000,
            mutations_per_second: 20.0,
            mutation_burst: 100,
        }
    }
}

impl AdminLimits {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), FieldError> {
        let max_ttl = crate::decision::blacklist::MAX_TTL_SECONDS;
        if !(1..=max_ttl).contains(&self.max_ttl_seconds) {
            return Err(FieldError::new(
                "admin.max_ttl_seconds",
                format!("must be 1..={max_ttl}"),
            ));
        }
        if self.max_entries_per_token == 0 {
            return Err(FieldError::new(
                "admin.max_entries_per_token",
                "must be at least 1",
            ));
        }
        if !(self.mutations_per_second > 0.0 && self.mutations_per_second <= 1e6) {
            return Err(FieldError::new(
                "admin.mutations_per_second",
                "must be above 0 and at most 1000000",
            ));
        }
        if self.mutation_burst == 0 {
            return Err(FieldError::new(
                "admin.mutation_burst",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Token buckets of mutations, one per token name.
#[derive(Debug)]
pub struct MutationRate {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl MutationRate {
    /// Buckets filling at `limits.mutations_per_second` up to `mutation_burst`.
    pub fn new(limits: &AdminLimits) -> Self {
        Self {
            per_second: limits.mutations_per_second,
            burst: f64::from(limits.mutation_burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one mutation from `token`'s bucket at `now`; false when empty.
    pub fn try_take(&self, token: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (level, last) = buckets
            .entry(token.to_string())
            .or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *level = (*level + refill).min(self.burst);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let rate = MutationRate::new(&AdminLimits {
            mutations_per_second: 2.0,
            mutation_burst: 3,
            ..AdminLimits::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.try_take("ops", t0));
        }
        assert!(!rate.try_take("ops", t0));
        assert!(rate.try_take("other", t0));
        // half a second refills one
        assert!(rate.try_take("ops", t0 + Duration::from_millis(500)));
        assert!(!rate.try_take("ops", t0 + Duration::from_millis(500)));
        // a long pause refills only up to the burst
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(rate.try_take("ops", later));
        }
        assert!(!rate.try_take("ops", later));
    }

    #[test]
    fn limits_out_of_range_name_their_key() {
        let bad = AdminLimits {
            max_ttl_seconds: 0,
            ..AdminLimits::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("admin.max_ttl_seconds")
        );
        let bad = AdminLimits {
            mutations_per_second: f64::NAN,
            ..AdminLimits::default()
        };
        assert!(bad.validate().is_err());
    }
}
