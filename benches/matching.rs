//! Matching one user against 10, 1,000, 10,000 and 100,000 generated
//! strategies, two ways: `linear` (`LinearMatcher`, every strategy evaluated)
//! and `index` (`StrategySet::matching`, the `IndexedMatcher` that serves).
//!
//! Strategies come from `strategy::generate` (seed 7, default mix: 2 % broad,
//! the rest narrow), loaded through `StrategySet::from_toml`; each smaller
//! set is a prefix of the larger ones. Users are generated users of the demo
//! population (seed 42) picked by how many of the first 1,000 strategies they
//! match among users 1..=2,000: the most (`matching_user`), the median
//! (`typical_user`), the fewest (`quiet_user`); and an unknown device (an
//! empty profile, only `match_unknown_devices` strategies are evaluated).
//! Setup prints each user's match count per set size.
//!
//! Benchmark ids are `matching/<matcher>/<user>/<strategies>`;
//! `benches/plot.py` draws one line per matcher and user.
//!
//! ```text
//! cargo bench --bench matching
//! python3 benches/plot.py      # docs/decide_vs_strategies.png
//! ```

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rta_engine::profile::UserProfile;
use rta_engine::strategy::generate;
use rta_engine::strategy::{EvalContext, LinearMatcher, Matcher, Os, StrategySet};
use rta_engine::taxonomy::Taxonomy;

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Users searched for the matching / typical / quiet examples.
const CANDIDATES: u64 = 2_000;

fn matching(c: &mut Criterion) {
    let taxonomy = Taxonomy::default_taxonomy();
    let today = common::today();

    let started = Instant::now();
    let largest = SIZES.iter().copied().max().unwrap_or(0);
    let all = generate::generate(&taxonomy, common::STRATEGY_SEED, largest);
    let sets: Vec<(usize, StrategySet)> = SIZES
        .iter()
        .map(|&n| {
            let src = generate::strategy_file(&all[..n], &format!("bench-{n}"));
            let set = StrategySet::from_toml(&src, "generated", &taxonomy)
                .expect("generated strategies compile");
            (n, set)
        })
        .collect();
    eprintln!(
        "setup: strategy sets of {SIZES:?} generated and compiled in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let count = |set: &StrategySet, profile: &UserProfile, known_user: bool| {
        let ctx = EvalContext {
            profile,
            known_user,
            today,
            os: Os::Android,
        };
        let mut out = Vec::new();
        set.matching(&ctx, None, &mut out);
        out.len()
    };
    let (_, thousand) = sets
        .iter()
        .find(|(n, _)| *n == 1_000)
        .expect("a 1,000-strategy set");
    let mut ranked: Vec<(usize, u64)> = (1..=CANDIDATES)
        .map(|id| (count(thousand, &common::profile(&taxonomy, id), true), id))
        .collect();
    ranked.sort_unstable();
    let pick = |at: usize| ranked[at.min(ranked.len() - 1)].1;
    let users: Vec<(&str, UserProfile, bool)> = vec![
        (
            "matching_user",
            common::profile(&taxonomy, pick(ranked.len() - 1)),
            true,
        ),
        (
            "typical_user",
            common::profile(&taxonomy, pick(ranked.len() / 2)),
            true,
        ),
        ("quiet_user", common::profile(&taxonomy, pick(0)), true),
        ("unknown_device", UserProfile::empty(), false),
    ];
    for (name, profile, known) in &users {
        let counts: Vec<String> = sets
            .iter()
            .map(|(n, set)| format!("{} of {n}", count(set, profile, *known)))
            .collect();
        eprintln!("setup: {name} matches {}", counts.join(", "));
    }

    let mut g = c.benchmark_group("matching");
    for (name, profile, known) in &users {
        for (n, set) in &sets {
            // 100 samples of a 100 k linear scan would take minutes
            g.sample_size(if *n >= 100_000 { 20 } else { 100 });
            let ctx = EvalContext {
                profile,
                known_user: *known,
                today,
                os: Os::Android,
            };
            let mut out = Vec::with_capacity(set.strategies().len());
            g.bench_with_input(
                BenchmarkId::new(format!("linear/{name}"), n),
                set,
                |b, set| {
                    b.iter(|| {
                        out.clear();
                        LinearMatcher.matching(set.strategies(), black_box(&ctx), None, &mut out);
                        out.len()
                    })
                },
            );
            g.sample_size(100);
            g.bench_with_input(
                BenchmarkId::new(format!("index/{name}"), n),
                set,
                |b, set| {
                    b.iter(|| {
                        out.clear();
                        set.matching(black_box(&ctx), None, &mut out);
                        out.len()
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
