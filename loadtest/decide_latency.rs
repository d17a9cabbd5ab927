//! The latency distribution of in-process `DecisionEngine::decide`: every
//! call timed and recorded in an HdrHistogram, so that the tail (p99, p99.9)
//! is measured, which criterion's means and medians do not show. Closed loop
//! over random known devices of the generated demo population, on
//! `--threads` threads, with the Prometheus recorder installed as in the server.
//!
//! ```text
//! cargo run --release --bin rta-decide-latency -- --strategies 1000
//! cargo run --release --bin rta-decide-latency -- --strategies 0 --threads 2   # the demo strategies
//! cargo run --release --bin rta-decide-latency -- --strategies 1000 --workload per-advertiser
//! ```
//!
//! `--workload shared` (the default) draws every generated strategy on the
//! one demo catalogue, so a typical user matches ~2 % of them (19 of 1,000);
//! `per-advertiser` runs 100 strategies per advertiser over each advertiser's
//! own items and first-party tags, with users who are customers of 2-3 of the
//! advertisers (`rta_testkit::generate::Workload::PerAdvertiser`), so what a
//! user matches stays a handful however many advertisers there are.
//!
//! `--unknown 0.5` makes half the requests for devices the index does not
//! know (random md5 keys).
//!
//! Each recorded time includes two `Instant::now()` reads (about 20-40 ns).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::os::Os;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::profile::{UserProfile, day_of};
use rta_engine::strategy::StrategySet;
use rta_testkit::generate;
use rta_testkit::generate::{StrategyGenerator, Workload};

/// The server's allocator (`rta-engine`'s), so that what this measures
/// allocates as the server does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Share of requests (0 to 1) for devices the index does not know, as
    /// when the media sends all its traffic: they resolve to no user and
    /// are answered by the strategies that take unknown devices.
    #[arg(long, default_value_t = 0.0)]
    unknown: f64,
    /// What the generated strategies draw on (ignored with `--strategies 0`).
    #[arg(long, value_enum, default_value_t = StrategyWorkload::Shared)]
    workload: StrategyWorkload,
}

/// The generated strategy workloads (`rta_testkit::generate::Workload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyWorkload {
    /// One shared catalogue: matches grow with the number of strategies.
    Shared,
    /// 100 strategies per advertiser on its own data: matches stay flat.
    PerAdvertiser,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.unknown),
        "--unknown is a share between 0 and 1"
    );
    let _ = rta_engine::telemetry::prometheus();
    let per_advertiser = cli.strategies > 0 && cli.workload == StrategyWorkload::PerAdvertiser;
    let taxonomy = if per_advertiser {
        generate::advertiser_taxonomy()
    } else {
        Taxonomy::default_taxonomy()
    };
    // the benches' calendar: 2026-11-23 in UTC+8
    let today = day_of(1_795_406_400, 8 * 3600);
    // the advertisers running strategies; users are customers of 2-3 of them
    let advertisers = 0..cli.strategies.div_ceil(100).max(1) as u32;
    let user_of = |id: u64| -> Result<UserProfile> {
        if per_advertiser {
            Ok(generate::advertiser_customer(
                42,
                id,
                today,
                &taxonomy,
                advertisers.clone(),
            )?)
        } else {
            Ok(population::generate_user(42, id, today, &taxonomy))
        }
    };
    let started = Instant::now();
    let index = Arc::new(UserIndex::with_capacity(cli.users as usize));
    if per_advertiser {
        for id in 1..=cli.users {
            index.upsert(id, user_of(id)?)?;
        }
    } else {
        population::populate(&index, cli.users, 42, today, &taxonomy);
    }
    eprintln!(
        "{} users indexed in {:.1} s",
        index.users(),
        started.elapsed().as_secs_f64()
    );
    let set = if cli.strategies == 0 {
        StrategySet::from_toml(DEMO_STRATEGIES, "demo", &taxonomy)?
    } else if per_advertiser {
        let strategies: Vec<_> = StrategyGenerator::new(&taxonomy, 7)
            .with_workload(Workload::PerAdvertiser)
            .take(cli.strategies)
            .collect();
        let version = format!("per-advertiser-7-{}", cli.strategies);
        StrategySet::from_toml(
            &generate::strategy_file(&strategies, &version),
            &version,
            &taxonomy,
        )?
    } else {
        generate::strategy_set(&taxonomy, 7, cli.strategies)?
    };
    let engine = Arc::new(DecisionEngine::new(index.clone(), set, Clock::Fixed(today)));
    let mut rng = Pcg64Mcg::seed_from_u64(0xbe4c_0003);
    let mut devices = Vec::with_capacity(cli.devices);
    for _ in 0..cli.devices {
        let user = rng.random_range(1..=cli.users);
        let p = user_of(user)?;
        let first = p
            .devices()
            .next()
            .context("generated users have a device")?;
        let imei = format!("86{:013}", user % 10_000_000_000_000);
        let android = DeviceKey::from_raw(DeviceIdKind::Imei, &imei).is_ok_and(|k| k == first);
        devices.push((first, if android { Os::Android } else { Os::Ios }));
    }
    for d in devices.iter_mut() {
        if rng.random_bool(cli.unknown) {
            // a random md5 key: known to the index with odds of about 2^-96
            let key = DeviceKey::from_md5_hex(&format!("{:032x}", rng.random::<u128>()))?;
            anyhow::ensure!(index.resolve(&[key]).is_none(), "a random key is known");
            let os = if rng.random_bool(0.5) {
                Os::Android
            } else {
                Os::Ios
            };
            *d = (key, os);
        }
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
                let req = DecisionRequest {
                    devices: std::slice::from_ref(d),
                    os: *os,
                    experiments: &[],
                    only_strategies: &[],
                    media: None,
                };
                // as served: the answer borrowed from the live set
                let take = engine.decide_with(&req, |r| r.take);
                let ns = t.elapsed().as_nanos() as u64;
                takes += u64::from(take);
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
        "{} strategies{}, {} threads: {} decisions in {} s ({:.0}/s, {:.0} % taken)",
        if cli.strategies == 0 {
            "demo".to_string()
        } else {
            cli.strategies.to_string()
        },
        if per_advertiser {
            " (per advertiser)"
        } else {
            ""
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
