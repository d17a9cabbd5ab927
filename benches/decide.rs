//! In-process `DecisionEngine::decide` end to end: resolve the device, read
//! the profile under the shard lock, match every live strategy, build the
//! answer and count it, as the gRPC and Tencent handlers call it (without
//! their wire decoding and encoding). The Prometheus recorder is installed,
//! as in the server, so per-strategy match counters cost what they cost there.
//!
//! Population: the 1 M-user demo population (seed 42). Strategy sets: the 7
//! demo strategies, and 1,000 generated ones (`strategy::generate`, seed 7).
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
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::ids::DeviceKey;
use rta_engine::strategy::{DEMO_STRATEGIES, Os, StrategySet, generate};
use rta_engine::taxonomy::Taxonomy;
use rta_engine::telemetry;

/// Users searched for a matching and a non-matching device.
const SEARCH: u64 = 20_000;

fn request(device: &DeviceKey, os: Os) -> DecisionRequest<'_> {
    DecisionRequest {
        devices: slice::from_ref(device),
        os,
        experiments: &[],
        only_strategies: &[],
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
                engine.decide(black_box(&request(d, *os)))
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
                b.iter(|| engine.decide(black_box(&request(&device, Os::Android))))
            });
        }
        g.bench_function(format!("{name}/unknown_device"), |b| {
            b.iter(|| engine.decide(black_box(&request(&unknown, Os::Android))))
        });
    }
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
