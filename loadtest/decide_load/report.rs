//! The measured window's results ([`Report`]): percentiles, counts and the
//! settings that produced them, printed for a reader or written as JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use serde::Serialize;

use rta_engine::serve::tencent;

use crate::args::{Args, Pacer, Target};
use crate::client::CallError;
use crate::pacing::Stalls;
use crate::recorder::Recorder;

/// Latency percentiles, µs.
#[derive(Serialize)]
pub(crate) struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Percentiles {
    /// The percentiles of `h`.
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The measured window's results, and the settings that produced them.
#[derive(Serialize)]
pub(crate) struct Report {
    target: Target,
    endpoint: String,
    mode: &'static str,
    target_rate: f64,
    /// The open loop's pacer and its batching tick (µs).
    pacer: Option<Pacer>,
    tick_us: Option<u64>,
    connections: usize,
    concurrency: usize,
    threads: usize,
    duration_s: f64,
    warmup_s: f64,
    deadline_ms: f64,
    hit_ratio: f64,
    zipf: f64,
    users: u64,
    /// Requests scheduled in the measured window.
    pub(crate) scheduled: u64,
    /// Answers received per second during the measured window.
    achieved_rate: f64,
    pub(crate) ok: u64,
    /// Answers with `take` (a strategy matched).
    pub(crate) take: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: BTreeMap<CallError, u64>,
    /// Answers later than the deadline, plus requests never answered.
    late: u64,
    /// Requests scheduled in the window and never answered (queued or abandoned).
    pub(crate) unfinished: u64,
    /// From the scheduled send (coordinated omission corrected).
    latency_us: Percentiles,
    /// From the actual send.
    service_us: Percentiles,
    /// The server's own decision time (gRPC `processing_time_us`).
    pub(crate) server_us: Option<Percentiles>,
    /// Times the spinning pacer did not get to look at the clock for more
    /// than [`Stalls::OVER`]: the generator's thread was not running (another
    /// task had the core) or its runtime was busy. Requests due meanwhile
    /// left late, and that lateness is in `latency_us`.
    pub(crate) pacer_stalls: Option<Stalls>,
}

impl Report {
    /// The measured phase of `recorder`, with the settings of `args`.
    pub(crate) fn new(args: &Args, recorder: &Recorder) -> Self {
        let phases = recorder
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let m = &phases[1];
        let errors: u64 = m.errors.values().sum();
        let scheduled = recorder.scheduled.load(Ordering::Relaxed);
        let unfinished = scheduled.saturating_sub(m.ok + errors);
        Self {
            target: args.target,
            endpoint: match args.target {
                Target::Grpc => args.addr.clone(),
                Target::Tencent => format!("http://{}{}", args.http_addr, tencent::PATH),
            },
            mode: if args.closed_loop() { "closed" } else { "open" },
            target_rate: if args.closed_loop() { 0.0 } else { args.rate },
            pacer: (!args.closed_loop()).then_some(args.pacer),
            tick_us: (!args.closed_loop())
                .then(|| u64::try_from(args.tick().as_micros()).unwrap_or(u64::MAX)),
            connections: match args.target {
                Target::Grpc => args.connections.min(args.concurrency),
                Target::Tencent => args.concurrency,
            },
            concurrency: args.concurrency,
            threads: args.threads,
            duration_s: args.duration,
            warmup_s: args.warmup,
            deadline_ms: args.deadline_ms,
            hit_ratio: args.hit_ratio,
            zipf: args.zipf,
            users: args.users,
            scheduled,
            achieved_rate: recorder.completed_in_window.load(Ordering::Relaxed) as f64
                / args.duration,
            ok: m.ok,
            take: m.take,
            errors,
            errors_by_kind: m.errors.clone(),
            late: m.late + unfinished,
            unfinished,
            latency_us: Percentiles::of(&m.latency),
            service_us: Percentiles::of(&m.service),
            server_us: (!m.server.is_empty()).then(|| Percentiles::of(&m.server)),
            pacer_stalls: (!args.closed_loop() && args.pacer == Pacer::Spin).then(|| {
                *recorder
                    .stalls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            }),
        }
    }
}

/// Prints the report for a reader, on stdout.
pub(crate) fn print_report(r: &Report) {
    let mut out = std::io::stdout().lock();
    let rate = if let (Some(pacer), Some(tick)) = (r.pacer, r.tick_us) {
        format!(
            "open loop at {:.0}/s, {} pacer, tick {tick} us",
            r.target_rate,
            format!("{pacer:?}").to_lowercase()
        )
    } else {
        "closed loop".into()
    };
    let _ = writeln!(
        out,
        "{:?} {} ({rate}, {} in flight over {} connections, {} threads), {:.1}s measured",
        r.target, r.endpoint, r.concurrency, r.connections, r.threads, r.duration_s
    );
    let _ = writeln!(
        out,
        "  achieved {:.0}/s  ok {}  take {}  errors {}  late (> {} ms) {}  unfinished {}",
        r.achieved_rate, r.ok, r.take, r.errors, r.deadline_ms, r.late, r.unfinished
    );
    for (kind, n) in &r.errors_by_kind {
        let _ = writeln!(out, "    {kind}: {n}");
    }
    let line = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<8} p50 {:>6}  p90 {:>6}  p99 {:>6}  p99.9 {:>6}  max {:>7}  (us)",
            p.p50, p.p90, p.p99, p.p999, p.max
        )
    };
    let _ = writeln!(out, "{}", line("latency", &r.latency_us));
    let _ = writeln!(out, "{}", line("service", &r.service_us));
    if let Some(s) = &r.server_us {
        let _ = writeln!(out, "{}", line("server", s));
    }
    if let Some(s) = &r.pacer_stalls {
        let _ = writeln!(
            out,
            "  pacer    stalls over {} ms: {}  total {:.1} ms  longest {:.1} ms",
            Stalls::OVER.as_millis(),
            s.count,
            s.total_us as f64 / 1000.0,
            s.longest_us as f64 / 1000.0
        );
    }
}
