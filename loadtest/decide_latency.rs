//! The latency distribution of in-process `DecisionEngine::decide`: every
//! call timed and recorded in an HdrHistogram, so that the tail (p99, p99.9)
//! is measured, which criterion's means and medians do not show. Closed loop
//! over random known devices of the generated demo population, on
//! `--threads` threads, with the Prometheus recorder installed as in the server.
//!
//! ```text
//! cargo run --release --bin rta-decide-latency -- --strategies 1000
//! cargo run --release --bin rta-decide-latency -- --strategies 0 --threads 2   # the demo strategies
//! ```
//!
//! Each recorded time includes two `Instant::now()` reads (about 20-40 ns).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::ids::{DeviceIdKind, DeviceKey};
use rta_engine::index::UserIndex;
use rta_engine::population;
use rta_engine::profile::day_of;
use rta_engine::strategy::{DEMO_STRATEGIES, Os, StrategySet, generate};
use rta_engine::taxonomy::Taxonomy;

#[derive(Parser)]
#[command(about = "in-process Decide latency percentiles (HdrHistogram, every call timed)")]
struct Cli {
    /// Users of the generated population.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Generated strategies; 0 = the demo strategies.
    #[arg(long, default_value_t = 1000)]
    strategies: usize,
    /// Deciding threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct devices requested, drawn at random from the population.
    #[arg(long, default_value_t = 1 << 16)]
    devices: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rta_engine::telemetry::prometheus();
    let taxonomy = Taxonomy::default_taxonomy();
    // the benches' calendar: 2026-11-23 in UTC+8
    let today = day_of(1_795_406_400, 8 * 3600);
    let started = Instant::now();
    let index = Arc::new(UserIndex::with_capacity(cli.users as usize));
    population::populate(&index, cli.users, 42, today, &taxonomy);
    eprintln!(
        "{} users indexed in {:.1} s",
        index.users(),
        started.elapsed().as_secs_f64()
    );
    let set = if cli.strategies == 0 {
        StrategySet::from_toml(DEMO_STRATEGIES, "demo", &taxonomy)?
    } else {
        generate::strategy_set(&taxonomy, 7, cli.strategies)?
    };
    let engine = Arc::new(DecisionEngine::new(index, set, Clock::Fixed(today)));
    let mut rng = Pcg64Mcg::seed_from_u64(0xbe4c_0003);
    let mut devices = Vec::with_capacity(cli.devices);
    for _ in 0..cli.devices {
        let user = rng.random_range(1..=cli.users);
        let p = population::generate_user(42, user, today, &taxonomy);
        let first = p
            .devices()
            .next()
            .context("generated users have a device")?;
        let imei = format!("86{:013}", user % 10_000_000_000_000);
        let android = DeviceKey::from_raw(DeviceIdKind::Imei, &imei).is_ok_and(|k| k == first);
        devices.push((first, if android { Os::Android } else { Os::Ios }));
    }
    let devices = Arc::new(devices);
    let run = |engine: Arc<DecisionEngine>,
               devices: Arc<Vec<(DeviceKey, Os)>>,
               offset: usize,
               for_: Duration| {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).expect("bounds");
        let mut takes = 0u64;
        let end = Instant::now() + for_;
        let mut i = offset;
        while Instant::now() < end {
            for _ in 0..256 {
                let (d, os) = &devices[i % devices.len()];
                i += 1;
                let t = Instant::now();
                let r = engine.decide(&DecisionRequest {
                    devices: std::slice::from_ref(d),
                    os: *os,
                    experiments: &[],
                    only_strategies: &[],
                });
                let ns = t.elapsed().as_nanos() as u64;
                takes += u64::from(r.take);
                h.saturating_record(ns.max(1));
            }
        }
        (h, takes)
    };
    // warm-up
    run(engine.clone(), devices.clone(), 0, Duration::from_secs(1));
    let handles: Vec<_> = (0..cli.threads.max(1))
        .map(|t| {
            let (e, d) = (engine.clone(), devices.clone());
            let secs = Duration::from_secs(cli.seconds);
            std::thread::spawn(move || run(e, d, t * 7919, secs))
        })
        .collect();
    let mut total = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3)?;
    let mut takes = 0;
    for h in handles {
        let (h, t) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a deciding thread panicked"))?;
        total.add(&h)?;
        takes += t;
    }
    let n = total.len();
    println!(
        "{} strategies, {} threads: {} decisions in {} s ({:.0}/s, {:.0} % taken)",
        if cli.strategies == 0 {
            "demo".to_string()
        } else {
            cli.strategies.to_string()
        },
        cli.threads.max(1),
        n,
        cli.seconds,
        n as f64 / cli.seconds.max(1) as f64,
        100.0 * takes as f64 / n.max(1) as f64
    );
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency us: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.1}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        total.max() as f64 / 1000.0
    );
    Ok(())
}
