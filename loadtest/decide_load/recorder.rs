//! The run's tallies ([`Recorder`]): latency histograms and counts per
//! phase (warm-up, measured), shared by the workers, the pacer and the
//! progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Answer, CallError};
use crate::pacing::Stalls;

/// Latency bounds of the histograms: 1 µs .. 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// What the requests of one phase (warm-up or measured) did.
pub(crate) struct Phase {
    /// From the scheduled send to the answer, µs (what a caller waits).
    pub(crate) latency: Histogram<u64>,
    /// From the actual send to the answer, µs (without queueing in the generator).
    pub(crate) service: Histogram<u64>,
    /// The server's reported decision time, µs.
    pub(crate) server: Histogram<u64>,
    /// Answers received.
    pub(crate) ok: u64,
    /// Answers with `take`.
    pub(crate) take: u64,
    /// Answers later than the deadline.
    pub(crate) late: u64,
    /// Failed requests, by kind.
    pub(crate) errors: BTreeMap<CallError, u64>,
}

impl Phase {
    fn new() -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            server: histogram(),
            ok: 0,
            take: 0,
            late: 0,
            errors: BTreeMap::new(),
        }
    }
}

/// Shared tallies of a run.
pub(crate) struct Recorder {
    /// The measured window's start: requests scheduled earlier are warm-up.
    pub(crate) measure_start: Instant,
    /// The measured window's end: nothing is scheduled from then on.
    pub(crate) measure_end: Instant,
    /// Answers slower than this (from the scheduled send) are late.
    deadline: Duration,
    /// Requests sent, all phases.
    pub(crate) sent: AtomicU64,
    /// Requests scheduled inside the measured window.
    pub(crate) scheduled: AtomicU64,
    /// Answers and errors received, all phases (for the progress rate).
    pub(crate) completed: AtomicU64,
    /// Answers and errors received inside the measured window (achieved rate).
    pub(crate) completed_in_window: AtomicU64,
    /// The spinning pacer's stalls inside the measured window.
    pub(crate) stalls: Mutex<Stalls>,
    /// The warm-up's tallies, then the measured window's.
    pub(crate) phases: Mutex<[Phase; 2]>,
}

impl Recorder {
    /// Empty tallies for a run measured over `window`, late past `deadline`.
    pub(crate) fn new(window: std::ops::Range<Instant>, deadline: Duration) -> Self {
        Self {
            measure_start: window.start,
            measure_end: window.end,
            deadline,
            sent: AtomicU64::new(0),
            scheduled: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            completed_in_window: AtomicU64::new(0),
            stalls: Mutex::new(Stalls::default()),
            phases: Mutex::new([Phase::new(), Phase::new()]),
        }
    }

    /// Tallies one request's outcome in the phase of its scheduled instant.
    pub(crate) fn record(
        &self,
        scheduled: Instant,
        sent: Instant,
        result: Result<Answer, CallError>,
    ) {
        let done = Instant::now();
        self.completed.fetch_add(1, Ordering::Relaxed);
        if (self.measure_start..=self.measure_end).contains(&done) {
            self.completed_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let measured = scheduled >= self.measure_start;
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let phase = &mut phases[usize::from(measured)];
        match result {
            Ok(answer) => {
                let latency = done.duration_since(scheduled);
                phase.ok += 1;
                phase.take += u64::from(answer.take);
                phase.late += u64::from(latency > self.deadline);
                phase.latency.saturating_record(micros(latency));
                phase
                    .service
                    .saturating_record(micros(done.duration_since(sent)));
                if let Some(us) = answer.server_us {
                    phase.server.saturating_record(us.max(1));
                }
            }
            Err(kind) => *phase.errors.entry(kind).or_default() += 1,
        }
    }

    /// Errors, late answers and p99 (µs) of the current phase.
    pub(crate) fn snapshot(&self, measured: bool) -> (u64, u64, u64) {
        let phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let p = &phases[usize::from(measured)];
        (
            p.errors.values().sum(),
            p.late,
            p.latency.value_at_quantile(0.99),
        )
    }
}

/// `d` in whole µs, at least 1 (the histograms' lowest value).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
