//! A run: the clients connected, the workers and their schedule (closed
//! loop, or the pacer's queue), the progress line, and the drain at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tokio::net::TcpStream;

use crate::args::{Args, Pacer, Target};
use crate::client::Client;
use crate::devices::Population;
use crate::grpc::GrpcConnection;
use crate::http1::Http1;
use crate::pacing::{Pacing, sleep_pace, spin};
use crate::recorder::Recorder;
use crate::report::Report;

/// Where a worker's requests come from.
#[derive(Clone)]
enum Schedule {
    /// As fast as answers come back, until the measured window ends.
    Closed,
    /// Scheduled send times from the pacer, until it stops; any idle worker
    /// takes the next one.
    Open(async_channel::Receiver<Instant>),
}

/// Connects, runs the warm-up and the measured window, and reports the latter.
pub(crate) async fn run(args: &Args, population: Arc<Population>) -> Result<Report> {
    let workers = args.concurrency;
    let mut clients = Vec::with_capacity(workers);
    match args.target {
        Target::Grpc => {
            let mut connections = Vec::with_capacity(args.connections);
            for _ in 0..args.connections.min(workers) {
                connections.push(GrpcConnection::connect(&args.addr).await?);
            }
            for w in 0..workers {
                clients.push(Client::Grpc(connections[w % connections.len()].clone()));
            }
        }
        Target::Tencent => {
            TcpStream::connect(args.http_addr)
                .await
                .with_context(|| format!("connecting to {}", args.http_addr))?;
            clients.extend((0..workers).map(|_| Client::Tencent(Http1::new(args.http_addr))));
        }
    }

    let start = Instant::now();
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let measure_end = measure_start + Duration::from_secs_f64(args.duration);
    let recorder = Arc::new(Recorder::new(
        measure_start..measure_end,
        Duration::from_secs_f64(args.deadline_ms / 1000.0),
    ));

    let schedule = if args.closed_loop() {
        Schedule::Closed
    } else {
        let pacing = Pacing::new(args.rate, start, recorder.clone());
        let (due, rx) = async_channel::unbounded();
        match args.pacer {
            Pacer::Spin => {
                tokio::spawn(spin(pacing, args.tick(), due));
            }
            Pacer::Sleep => {
                let (batches, mut due_batches) = tokio::sync::mpsc::unbounded_channel();
                let tick = args.tick();
                std::thread::Builder::new()
                    .name("rta-load-pacer".into())
                    .spawn(move || sleep_pace(pacing, tick, &batches))?;
                // one cross-thread wake per batch: the batch's requests then
                // wake their workers inside the runtime, and all of them are on
                // the wire before the connections flush, in one write each (a
                // wake per request from the pacer thread cost an eventfd write
                // and a socket write per request)
                tokio::spawn(async move {
                    while let Some(batch) = due_batches.recv().await {
                        for at in batch {
                            if due.try_send(at).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        }
        Schedule::Open(rx)
    };

    let timeout = Duration::from_millis(args.timeout_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for (w, client) in clients.into_iter().enumerate() {
        let (pop, rec, schedule) = (population.clone(), recorder.clone(), schedule.clone());
        let rng = Pcg64Mcg::seed_from_u64(
            args.rng_seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        tasks.spawn(worker(w, client, rng, pop, rec, schedule, timeout));
    }
    drop(schedule);

    let progress = tokio::spawn(progress(recorder.clone(), start));
    // workers end when the window closes (closed loop) or the pacer stops and its
    // queue is drained (open loop); what is still unanswered a timeout later is
    // abandoned and reported as unfinished
    let drain = tokio::time::sleep_until((measure_end + timeout + Duration::from_secs(1)).into());
    tokio::pin!(drain);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = &mut drain => { tasks.abort_all(); break }
        }
    }
    progress.abort();
    Ok(Report::new(args, &recorder))
}

/// Worker `w`: takes each request when it is due (or at once, closed loop),
/// sends it on `client` and records its outcome, until the schedule ends.
async fn worker(
    w: usize,
    mut client: Client,
    mut rng: Pcg64Mcg,
    population: Arc<Population>,
    recorder: Arc<Recorder>,
    schedule: Schedule,
    timeout: Duration,
) {
    let mut n: u64 = 0;
    loop {
        let scheduled = match &schedule {
            Schedule::Closed => {
                let now = Instant::now();
                if now >= recorder.measure_end {
                    return;
                }
                if now >= recorder.measure_start {
                    recorder.scheduled.fetch_add(1, Ordering::Relaxed);
                }
                now
            }
            Schedule::Open(rx) => match rx.recv().await {
                Ok(due) => due,
                Err(_) => return, // the pacer stopped and the queue is empty
            },
        };
        let draw = population.draw(&mut rng);
        n += 1;
        let sent = Instant::now();
        recorder.sent.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(
            timeout,
            client.decide(&draw, format!("load-{w}-{n}")),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                if let Client::Tencent(http) = &mut client {
                    http.conn = None; // an answer may still arrive on it
                }
                Err("timeout".into())
            }
        };
        recorder.record(scheduled, sent, result);
    }
}

/// Prints a progress line every second on stderr.
async fn progress(recorder: Arc<Recorder>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let measured = Instant::now() >= recorder.measure_start;
        let completed = recorder.completed.load(Ordering::Relaxed);
        let (errors, late, p99) = recorder.snapshot(measured);
        eprintln!(
            "{:>5.1}s {:<7} sent {:>9}  rate {:>8}/s  errors {:>6}  late {:>6}  p99 {:>7} us",
            start.elapsed().as_secs_f64(),
            if measured { "measure" } else { "warmup" },
            recorder.sent.load(Ordering::Relaxed),
            completed - last,
            errors,
            late,
            p99
        );
        last = completed;
    }
}
