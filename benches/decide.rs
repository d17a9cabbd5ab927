//! In-process `DecisionEngine::decide` end to end: resolve the device, read
//! the profile under the shard lock, match every live strategy, build the
//! answer and count it, as the gRPC and Tencent handlers call it (without
//! their wire decoding and encoding). The Prometheus recorder is installed,
//! as in the server, so per-strategy match counters cost what they cost there.
//!
//! Population: the 1 M-user demo population (seed 42). Strategy sets: the 7
//! demo strategies, 1,000 generated ones (`rta_testkit::generate`, seed 7), and
//! `demo_intelligence`: the demo strategies each with a 32-dimension
//! dual-tower score (both heads, thresholds, value-driven bid), a frequency
//! cap and a three-arm experiment, an overall cap, the request-rate rule on
//! and 10,000 blacklist entries; its sampled users get 32-dimension vectors
//! (after the other sets were measured).
//! Devices per set:
//! * `random_known_device`: 65,536 devices drawn from the population, in turn,
//!   each with its OS (mostly not cache-warm, a mix of takes and no-matches);
//! * `matching_device`: the first Android user (by id) that the set takes;
//! * `no_match_device`: the first Android user the set does not take
//!   (skipped when none of the first 20,000 users qualifies);
//! * `unknown_device`: a device no user holds.
//!
//! ```text
//! cargo bench --bench decide
//! ```

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::slice;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rta_engine::decision::blacklist::{BlacklistConfig, Listed, Reason};
use rta_engine::decision::ledger::CalibrationConfig;
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::domain::ids::DeviceKey;
use rta_engine::domain::os::Os;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{UserVector, model_tag};
use rta_engine::strategy::StrategySet;
use rta_engine::telemetry;
use rta_testkit::generate;

/// Users searched for a matching and a non-matching device.
const SEARCH: u64 = 20_000;

fn request(device: &DeviceKey, os: Os) -> DecisionRequest<'_> {
    DecisionRequest {
        devices: slice::from_ref(device),
        os,
        experiments: &[],
        only_strategies: &[],
        media: None,
    }
}

/// The first Android users (by id) the engine takes and does not take.
fn examples(
    engine: &DecisionEngine,
    taxonomy: &Taxonomy,
) -> (Option<DeviceKey>, Option<DeviceKey>) {
    let (mut take, mut refuse) = (None, None);
    for id in 1..=SEARCH.min(common::users()) {
        let (device, os) = common::first_device(taxonomy, id);
        if os != Os::Android {
            continue;
        }
        let d = engine.decide_uncounted(&request(&device, os));
        match d.take {
            true if take.is_none() => take = Some(device),
            false if refuse.is_none() => refuse = Some(device),
            _ => {}
        }
        if take.is_some() && refuse.is_some() {
            break;
        }
    }
    (take, refuse)
}

const DIMS: usize = 32;

/// The demo strategies with every decision-intelligence step switched on.
fn intelligence_strategies() -> String {
    let mut file: toml::Table = toml::from_str(DEMO_STRATEGIES).expect("demo strategies are TOML");
    file.insert(
        "model".into(),
        toml::Value::Table(toml::toml! { version = "bench" dims = 32 }),
    );
    file.insert(
        "user_cap".into(),
        toml::Value::Table(toml::toml! { exposures = 20 days = 1 }),
    );
    let weights = |seed: usize| -> toml::Value {
        toml::Value::Array(
            (0..DIMS)
                .map(|i| toml::Value::Float((((i * 7 + seed * 13) % 11) as f64 - 5.0) / 25.0))
                .collect(),
        )
    };
    if let Some(toml::Value::Array(strategies)) = file.get_mut("strategy") {
        for (i, s) in strategies.iter_mut().enumerate() {
            let Some(t) = s.as_table_mut() else { continue };
            t.insert(
                "cap".into(),
                toml::Value::Table(toml::toml! { exposures = 3 days = 1 }),
            );
            let mut score = toml::toml! {
                min_pctr = 0.005
                bid_from = "value"
                reference = 0.002
                fallback = "match"
            };
            for (head, bias, seed) in [("ctr", -3.0, i), ("cvr", -2.0, i + 100)] {
                let mut h = toml::Table::new();
                h.insert("weights".into(), weights(seed));
                h.insert("bias".into(), toml::Value::Float(bias));
                score.insert(head.into(), toml::Value::Table(h));
            }
            t.insert("score".into(), toml::Value::Table(score));
            t.insert(
                "experiment".into(),
                toml::Value::Table(toml::toml! {
                    holdout = 0.1
                    [[variant]]
                    name = "a"
                    share = 0.45
                    [[variant]]
                    name = "b"
                    share = 0.45
                    bid_factor = 1.5
                }),
            );
        }
    }
    toml::to_string(&file).expect("serialises")
}

fn decide(c: &mut Criterion) {
    let _ = telemetry::prometheus();
    let taxonomy = Taxonomy::default_taxonomy();
    let index = common::population(&taxonomy);
    let clock = Clock::Fixed(common::today());
    let demo = StrategySet::from_toml(DEMO_STRATEGIES, "demo", &taxonomy)
        .expect("the demo strategies compile");
    let generated = generate::strategy_set(&taxonomy, common::STRATEGY_SEED, 1_000)
        .expect("generated strategies compile");
    let engines = [
        (
            "demo_strategies",
            DecisionEngine::new(Arc::clone(&index), demo, clock),
        ),
        (
            "generated_1000",
            DecisionEngine::new(Arc::clone(&index), generated, clock),
        ),
    ];
    let known: Vec<(DeviceKey, Os)> = common::sample_users(common::SAMPLE, 3)
        .into_iter()
        .map(|u| common::first_device(&taxonomy, u))
        .collect();
    let unknown = common::unknown_devices(1)[0];
    let mask = common::SAMPLE - 1;
    let intelligence =
        StrategySet::from_toml(&intelligence_strategies(), "intelligence", &taxonomy)
            .expect("the intelligence strategies compile");

    let mut g = c.benchmark_group("decide");
    for (name, engine) in &engines {
        let takes = known
            .iter()
            .filter(|(d, os)| engine.decide_uncounted(&request(d, *os)).take)
            .count();
        eprintln!(
            "setup: {name}: {takes} of {} sampled devices are taken",
            known.len()
        );
        g.bench_function(format!("{name}/random_known_device"), |b| {
            let mut i = 0;
            b.iter(|| {
                let (d, os) = &known[i & mask];
                i += 1;
                engine.decide_with(black_box(&request(d, *os)), |d| d.matches.len())
            })
        });
        let (take, refuse) = examples(engine, &taxonomy);
        for (case, device) in [("matching_device", take), ("no_match_device", refuse)] {
            let Some(device) = device else {
                eprintln!("setup: {name}: no {case} among the first {SEARCH} users; skipped");
                continue;
            };
            let d = engine.decide_uncounted(&request(&device, Os::Android));
            eprintln!(
                "setup: {name}/{case}: take {}, {} strategies matched",
                d.take,
                d.matches.len()
            );
            g.bench_function(format!("{name}/{case}"), |b| {
                b.iter(|| {
                    engine.decide_with(black_box(&request(&device, Os::Android)), |d| {
                        d.matches.len()
                    })
                })
            });
        }
        g.bench_function(format!("{name}/unknown_device"), |b| {
            b.iter(|| {
                engine.decide_with(black_box(&request(&unknown, Os::Android)), |d| {
                    d.matches.len()
                })
            })
        });
    }

    // the intelligence set: vectors for the sampled users, a busy blacklist
    let tag = model_tag("bench");
    for (k, u) in common::sample_users(common::SAMPLE, 3)
        .into_iter()
        .enumerate()
    {
        let v: Vec<f32> = (0..DIMS)
            .map(|i| (((i + k) % 9) as f32 - 4.0) / 4.0)
            .collect();
        let v = UserVector::quantise(tag, &v).expect("finite");
        index.update_in_place(u, |p| p.set_vector(&v));
    }
    let engine = DecisionEngine::with_rules(
        Arc::clone(&index),
        intelligence,
        clock,
        BlacklistConfig {
            max_requests_per_second: 60_000,
            max_clicks_without_conversion: 5,
            ..Default::default()
        },
        CalibrationConfig::default(),
    );
    let now = clock.now_ms();
    for d in common::unknown_devices(10_001).into_iter().skip(1) {
        engine
            .blacklist()
            .add(Listed::Device(d), Reason::Operator, now, None)
            .expect("room");
    }
    let takes = known
        .iter()
        .filter(|(d, os)| engine.decide_uncounted(&request(d, *os)).take)
        .count();
    eprintln!(
        "setup: demo_intelligence: {takes} of {} sampled devices are taken",
        known.len()
    );
    g.bench_function("demo_intelligence/random_known_device", |b| {
        let mut i = 0;
        b.iter(|| {
            let (d, os) = &known[i & mask];
            i += 1;
            engine.decide_with(black_box(&request(d, *os)), |d| d.matches.len())
        })
    });
    g.bench_function("demo_intelligence/unknown_device", |b| {
        b.iter(|| {
            engine.decide_with(black_box(&request(&unknown, Os::Android)), |d| {
                d.matches.len()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
