//! Repeated identical log lines held back: the first of a kind is written,
//! the same one again within the interval is only counted, and the next one
//! written says how many were held. Keyed by a hash of the line's fields; the
//! key table is bounded (cleared when full, which at worst lets a line
//! through early).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Keys remembered at once.
const MAX_KEYS: usize = 4096;

/// Repeats of the same line held back for `interval`.
#[derive(Debug)]
pub struct RepeatFilter {
    interval: Duration,
    seen: OnceLock<Mutex<HashMap<u64, (Instant, u64)>>>,
    hasher: ahash::RandomState,
}

impl RepeatFilter {
    /// Each distinct line at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: OnceLock::new(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// `Some(repeats held since it was last written)` when the line keyed by
    /// `key` may be written at `now`; `None` when it is a repeat (counted).
    pub fn admit(&self, key: impl Hash, now: Instant) -> Option<u64> {
        let key = self.hasher.hash_one(key);
        let mut seen = self
            .seen
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((last, held)) = seen.get_mut(&key) {
            if now.saturating_duration_since(*last) < self.interval {
                *held += 1;
                return None;
            }
            let repeats = *held;
            *last = now;
            *held = 0;
            return Some(repeats);
        }
        if seen.len() >= MAX_KEYS {
            seen.clear();
        }
        seen.insert(key, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_line_passes_once_per_interval_and_reports_its_repeats() {
        let f = RepeatFilter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(f.admit(("ops", "POST /blacklist", 201), t0), Some(0));
        for _ in 0..5 {
            assert_eq!(f.admit(("ops", "POST /blacklist", 201), t0), None);
        }
        // a different line is not held back by the first
        assert_eq!(f.admit(("ops", "POST /blacklist", 429), t0), Some(0));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(f.admit(("ops", "POST /blacklist", 201), later), Some(5));
    }
}
