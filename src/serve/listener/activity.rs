//! What a connection is doing: requests begun, in flight, and when the last
//! one began or ended. The idle watch reads it; the request wrapper writes it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that a paused test clock moves the idle watch too
use tokio::time::Instant;

/// Request activity of one connection.
pub(super) struct Activity {
    opened: Instant,
    begun: AtomicU64,
    in_flight: AtomicU32,
    /// Nanoseconds after `opened` of the last end: the watch reads it only
    /// with nothing in flight, so a begin needs no clock read.
    last_nanos: AtomicU64,
}

impl Activity {
    /// A connection opened now, with no request yet.
    pub(super) fn new() -> Self {
        Self {
            opened: Instant::now(),
            begun: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last_nanos: AtomicU64::new(0),
        }
    }

    /// A request began; it ends when the guard drops.
    pub(super) fn begin(&self) -> InFlight<'_> {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Release);
    }

    /// Requests begun on the connection so far.
    pub(super) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }

    /// Requests in progress now.
    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// When a request last ended (the opening, before any).
    pub(super) fn last(&self) -> Instant {
        self.opened + Duration::from_nanos(self.last_nanos.load(Ordering::Acquire))
    }
}

/// A request in progress; dropping it ends it.
pub(super) struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves with the reason when the connection should be closed: no first
/// request within `first_request`, or nothing in progress for `idle`.
pub(super) async fn idle_watch(
    activity: &Activity,
    first_request: Duration,
    idle: Duration,
) -> &'static str {
    loop {
        if activity.in_flight() > 0 {
            tokio::time::sleep(idle).await;
            continue;
        }
        let first = activity.begun() == 0;
        let (limit, reason) = if first {
            (first_request, "no_request")
        } else {
            (idle, "idle")
        };
        let deadline = activity.last() + limit;
        let now = Instant::now();
        if deadline <= now {
            return reason;
        }
        // waking at least every `idle` sees a first request's idle time
        // start before the (longer) first-request deadline
        tokio::time::sleep_until(deadline.min(now + idle)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_after_the_first_request_time() {
        let a = Activity::new();
        let started = tokio::time::Instant::now();
        let reason = idle_watch(&a, Duration::from_secs(5), Duration::from_secs(300)).await;
        assert_eq!(reason, "no_request");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_open() {
        let a = Activity::new();
        let guard = a.begin();
        let watch = idle_watch(&a, Duration::from_secs(1), Duration::from_secs(10));
        tokio::pin!(watch);
        // a minute with the request in flight: never idle
        tokio::select! {
            _ = &mut watch => panic!("closed with a request in flight"),
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        drop(guard);
        assert_eq!(watch.await, "idle");
    }
}
