//! Counts that many cores write on the request path, kept per group of
//! threads and added to the metrics exporter's counters when they are read.
//!
//! A `metrics` counter of the Prometheus exporter is shared atomics (the
//! value and a generation), so counting each of a user's twenty matched
//! strategies there costs forty atomic read-modify-writes per decision, and
//! on a many-core server every core answering the same popular strategies
//! writes the same cache lines. A [`Tally`] gives each group of threads its
//! own row of slots; [`Tally::publish`] adds what the rows gathered since the
//! last call to the exporter's counters. Call it before rendering metrics; a
//! tally also publishes when dropped, so a replaced strategy set's last
//! counts are not lost.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use metrics::Counter;

/// Rows at most, whatever the core count.
const MAX_ROWS: usize = 64;

/// Per-slot counts in one row per group of threads, published into
/// exporter counters (one per slot).
pub struct Tally {
    counters: Box<[Counter]>,
    rows: Box<[Box<[AtomicU64]>]>,
    /// Per slot, the sum already added to its counter.
    published: Mutex<Box<[u64]>>,
}

/// One thread group's slots of a [`Tally`]: where a thread counts.
#[derive(Clone, Copy)]
pub struct Row<'a>(&'a [AtomicU64]);

impl Row<'_> {
    /// Counts one event in `slot` (a slot out of range counts nothing).
    #[inline]
    pub fn add(self, slot: u32) {
        if let Some(c) = self.0.get(slot as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Tally {
    /// A tally with one slot per counter, in as many rows as the machine
    /// has cores (at most [`MAX_ROWS`]).
    pub fn new(counters: Vec<Counter>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_rows(counters, cores.clamp(1, MAX_ROWS))
    }

    fn with_rows(counters: Vec<Counter>, rows: usize) -> Self {
        let slots = counters.len();
        let rows = (0..rows)
            .map(|_| (0..slots).map(|_| AtomicU64::new(0)).collect())
            .collect();
        Self {
            counters: counters.into(),
            rows,
            published: Mutex::new(vec![0; slots].into()),
        }
    }

    /// The calling thread's row.
    #[inline]
    pub fn row(&self) -> Row<'_> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let at = THREAD.with(|t| *t) % self.rows.len().max(1);
        Row(self.rows.get(at).map_or(&[], |r| &r[..]))
    }

    /// Adds to each exporter counter what its slot counted since the last
    /// publish.
    pub fn publish(&self) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (slot, (counter, done)) in self.counters.iter().zip(published.iter_mut()).enumerate() {
            let sum: u64 = self
                .rows
                .iter()
                .map(|r| r[slot].load(Ordering::Relaxed))
                .sum();
            if sum > *done {
                counter.increment(sum - *done);
                *done = sum;
            }
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// The value of series `name` in Prometheus text `text`.
    fn value(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_from_many_threads_reach_the_exporter_exactly_once() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counters = metrics::with_local_recorder(&recorder, || {
            vec![metrics::counter!("a_total"), metrics::counter!("b_total")]
        });
        // fewer rows than threads: rows are shared, and nothing may be lost
        let tally = Tally::with_rows(counters, 3);
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let tally = &tally;
                s.spawn(move || {
                    for i in 0..10_000u32 {
                        tally.row().add(i % 2);
                        if t == 0 && i % 1000 == 0 {
                            // publishing while others count loses nothing either
                            tally.publish();
                        }
                    }
                    tally.row().add(7); // no such slot: ignored
                });
            }
        });
        tally.publish();
        let text = handle.render();
        assert_eq!(value(&text, "a_total"), Some(40_000), "{text}");
        assert_eq!(value(&text, "b_total"), Some(40_000), "{text}");
        // publishing again adds nothing; dropping publishes what is left
        tally.publish();
        tally.row().add(1);
        drop(tally);
        let text = handle.render();
        assert_eq!(value(&text, "a_total"), Some(40_000), "{text}");
        assert_eq!(value(&text, "b_total"), Some(40_001), "{text}");
    }
}
