//! A log line let through at most once per interval, counting the lines it
//! held back, so that a flood (refused connections, repeated audit events)
//! writes one line a second instead of one per request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One throttled log line; keep it in a `static`.
#[derive(Debug)]
pub struct LogThrottle {
    interval_ms: u64,
    /// Milliseconds after the process base when the next line may pass
    /// (0: the first may pass at once).
    next_ms: AtomicU64,
    held: AtomicU64,
}

fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    // +1: the first call must be after "next = 0"
    u64::try_from(base.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

impl LogThrottle {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when this line may be written;
    /// `None` when it is held back (and counted).
    pub fn admit(&self) -> Option<u64> {
        let now = now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.interval_ms,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_passes_one_line_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(t.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.admit(), None);
        }
        // the next line to pass will report the 1000 held back
        t.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(t.admit(), Some(1000));
    }
}
