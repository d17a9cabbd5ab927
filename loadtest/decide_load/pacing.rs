//! The open loop's schedule ([`Pacing`]: request `i` due at `start + i /
//! rate`) and the two pacers that release it to the workers: the spinning
//! task ([`spin`], with its [`Stalls`]) and the sleeping thread
//! ([`sleep_pace`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::recorder::{Recorder, micros};

/// The open loop's schedule: request `i` is due at `start + i / rate`, until
/// the measured window ends.
pub(crate) struct Pacing {
    rate: f64,
    start: Instant,
    /// The next request's number.
    next: u64,
    recorder: Arc<Recorder>,
}

impl Pacing {
    /// Request 0 due at `start`, then one every `1 / rate` seconds.
    pub(crate) fn new(rate: f64, start: Instant, recorder: Arc<Recorder>) -> Self {
        Self {
            rate,
            start,
            next: 0,
            recorder,
        }
    }

    /// When the next request is due; `None` once the schedule has ended.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let due = self.start + Duration::from_secs_f64(self.next as f64 / self.rate);
        (due < self.recorder.measure_end).then_some(due)
    }

    /// Hands `send` every request due by `now`, in order, counting those
    /// inside the measured window as scheduled. False once the schedule has
    /// ended or `send` refused one (nobody takes requests any more).
    pub(crate) fn release(&mut self, now: Instant, mut send: impl FnMut(Instant) -> bool) -> bool {
        while let Some(due) = self.next_due() {
            if due > now {
                return true;
            }
            if !send(due) {
                return false;
            }
            if due >= self.recorder.measure_start {
                self.recorder.scheduled.fetch_add(1, Ordering::Relaxed);
            }
            self.next += 1;
        }
        false
    }
}

/// Gaps in the spinning pacer's look at the clock longer than [`Self::OVER`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Stalls {
    /// Gaps counted.
    pub(crate) count: u64,
    /// Their total, µs.
    pub(crate) total_us: u64,
    /// The longest of them, µs.
    pub(crate) longest_us: u64,
}

impl Stalls {
    /// A gap longer than this is a stall: the pacer looks every few µs.
    pub(crate) const OVER: Duration = Duration::from_millis(1);

    /// Counts `gap` if it is longer than [`Self::OVER`].
    pub(crate) fn add(&mut self, gap: Duration) {
        if gap > Self::OVER {
            let us = micros(gap);
            self.count += 1;
            self.total_us += us;
            self.longest_us = self.longest_us.max(us);
        }
    }
}

/// The spinning pacer (`--pacer spin`): releases what is due, at most once
/// per `tick`, then yields to the runtime's other tasks (and its I/O poll)
/// and looks again. It never parks the runtime, so the thread stays busy.
/// Long gaps between its looks are recorded as stalls.
pub(crate) async fn spin(mut pacing: Pacing, tick: Duration, due: async_channel::Sender<Instant>) {
    let mut released: Option<Instant> = None;
    let mut looked = pacing.start;
    loop {
        let now = Instant::now();
        if (pacing.recorder.measure_start..pacing.recorder.measure_end).contains(&looked) {
            let gap = now.duration_since(looked);
            if gap > Stalls::OVER {
                let mut stalls = pacing
                    .recorder
                    .stalls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                stalls.add(gap);
            }
        }
        looked = now;
        if released.is_none_or(|at| now >= at + tick) {
            released = Some(now);
            if !pacing.release(now, |at| due.try_send(at).is_ok()) {
                return; // dropping `due` ends the workers once they drain it
            }
        }
        tokio::task::yield_now().await;
    }
}

/// The sleeping pacer (`--pacer sleep`): a thread with `sleep` rather than a
/// tokio timer, whose 1 ms resolution would add up to 1 ms of the
/// generator's own lateness to every latency. It wakes at most once per
/// `tick` and sends everything due by then as one batch: waking per request
/// would cost a core's worth of wake-ups at high rates on a small machine.
/// A request released late is still timed from its scheduled instant, so
/// the coarser tick can only make the reported latency worse, never better.
pub(crate) fn sleep_pace(
    mut pacing: Pacing,
    tick: Duration,
    tx: &tokio::sync::mpsc::UnboundedSender<Vec<Instant>>,
) {
    let mut woke = pacing.start;
    while let Some(next) = pacing.next_due() {
        let wake = next.max(woke + tick);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        woke = Instant::now();
        let mut batch = Vec::new();
        let going = pacing.release(woke, |at| {
            batch.push(at);
            true
        });
        let sent = batch.is_empty() || tx.send(batch).is_ok();
        if !(going && sent) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule releases each request once, in order, not before it is
    /// due, and counts as scheduled only the requests due inside the window.
    #[test]
    fn pacing_releases_each_request_when_due_and_counts_the_window() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        // 1 000 per second: due at 0, 1, 2, ... 9 ms; measured from 3 ms on
        let recorder = Arc::new(Recorder::new(start + ms(3)..start + ms(10), ms(2)));
        let mut pacing = Pacing::new(1000.0, start, recorder.clone());
        let mut got = Vec::new();
        let mut take = |now: Instant, got: &mut Vec<Instant>| {
            pacing.release(now, |at| {
                got.push(at);
                true
            })
        };
        assert!(take(start + Duration::from_micros(2500), &mut got));
        assert_eq!(got, [start, start + ms(1), start + ms(2)]);
        assert_eq!(recorder.scheduled.load(Ordering::Relaxed), 0);
        // nothing new is due yet
        assert!(take(start + Duration::from_micros(2900), &mut got));
        assert_eq!(got.len(), 3);
        // far past the end: the rest, then the schedule says it is over
        assert!(!take(start + ms(60), &mut got));
        let expected: Vec<Instant> = (0..10).map(|i| start + ms(i)).collect();
        assert_eq!(got, expected);
        assert_eq!(recorder.scheduled.load(Ordering::Relaxed), 7);
        assert!(pacing.next_due().is_none());
        // a refused request is not lost: it is released again next time
        let recorder = Arc::new(Recorder::new(start..start + ms(10), ms(2)));
        let mut pacing = Pacing::new(1000.0, start, recorder);
        assert!(!pacing.release(start + ms(5), |_| false));
        assert_eq!(pacing.next_due(), Some(start));
    }

    #[test]
    fn only_gaps_over_a_millisecond_are_stalls() {
        let mut stalls = Stalls::default();
        stalls.add(Duration::from_micros(10));
        stalls.add(Stalls::OVER);
        assert_eq!(stalls.count, 0);
        stalls.add(Duration::from_micros(1500));
        stalls.add(Duration::from_millis(4));
        stalls.add(Duration::from_micros(1001));
        assert_eq!(
            (stalls.count, stalls.total_us, stalls.longest_us),
            (3, 6501, 4000)
        );
    }
}
