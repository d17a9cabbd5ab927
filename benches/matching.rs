//! Matching one user against 10, 1,000, 10,000 and 100,000 generated
//! strategies, two ways: `linear` (`LinearMatcher`, every strategy evaluated)
//! and `index` (`StrategySet::matching`, the `IndexedMatcher` that serves),
//! on two workloads.
//!
//! `matching`: strategies from `rta_testkit::generate` (seed 7, default mix: 2 %
//! broad, the rest narrow, all on the one demo catalogue), loaded through
//! `StrategySet::from_toml`; each smaller set is a prefix of the larger ones.
//! Users are generated users of the demo population (seed 42) picked by how
//! many of the first 1,000 strategies they match among users 1..=2,000: the
//! most (`matching_user`), the median (`typical_user`), the fewest
//! (`quiet_user`); and an unknown device (an empty profile, only
//! `match_unknown_devices` strategies are evaluated). On this workload what a
//! user matches grows with the set.
//!
//! `matching_flat`: the per-advertiser workload (`Workload::PerAdvertiser`,
//! same seed and mix): 100 strategies per advertiser, each on its
//! advertiser's own items and first-party tags, so 1,000 strategies are 10
//! advertisers and 100,000 are 1,000. Users are `advertiser_customer`s of two
//! or three of the first 10 advertisers (demo users 1..=2,000 with their
//! behaviour moved onto them), picked the same way; what they match stays
//! flat from 1,000 strategies on. No unknown device: an advertiser's
//! prospecting here needs its lookalike tag.
//!
//! Setup prints each user's match count per set size. Benchmark ids are
//! `<group>/<matcher>/<user>/<strategies>`; `benches/plot.py` draws one panel
//! per group, one line per matcher and user.
//!
//! ```text
//! cargo bench --bench matching -- --warm-up-time 1 --measurement-time 3
//! cargo bench --bench matching -- --warm-up-time 1 --measurement-time 3 matching_flat
//! python3 benches/plot.py      # docs/decide_vs_strategies.png
//! ```

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::UserProfile;
use rta_engine::strategy::{EvalContext, LinearMatcher, Matcher, Os, StrategySet};
use rta_testkit::generate::{self, GeneratedStrategy, StrategyGenerator, Workload};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Users searched for the matching / typical / quiet examples.
const CANDIDATES: u64 = 2_000;
/// The flat workload's users are customers of advertisers `0..10`: those of
/// the first 1,000 strategies.
const CUSTOMER_OF: std::ops::Range<u32> = 0..10;

/// A user to benchmark: name, profile, whether the device is known.
type User = (&'static str, UserProfile, bool);

/// The sets of [`SIZES`], each a prefix of `strategies`, compiled.
fn sets(
    name: &str,
    strategies: &[GeneratedStrategy],
    taxonomy: &Taxonomy,
) -> Vec<(usize, StrategySet)> {
    let started = Instant::now();
    let sets = SIZES
        .iter()
        .map(|&n| {
            let src = generate::strategy_file(&strategies[..n], &format!("bench-{n}"));
            let set = StrategySet::from_toml(&src, "generated", taxonomy)
                .expect("generated strategies compile");
            (n, set)
        })
        .collect();
    eprintln!(
        "setup {name}: strategy sets of {SIZES:?} generated and compiled in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    sets
}

fn count(set: &StrategySet, profile: &UserProfile, known_user: bool) -> usize {
    let ctx = EvalContext {
        profile,
        known_user,
        today: common::today(),
        os: Os::Android,
    };
    let mut out = Vec::new();
    set.matching(&ctx, None, &mut out);
    out.len()
}

/// The users of `CANDIDATES` matching the most, the median and the fewest of
/// the 1,000-strategy set; prints every user's match count per size.
fn pick_users(
    name: &str,
    sets: &[(usize, StrategySet)],
    profile: impl Fn(u64) -> UserProfile,
    unknown_device: bool,
) -> Vec<User> {
    let (_, thousand) = sets
        .iter()
        .find(|(n, _)| *n == 1_000)
        .expect("a 1,000-strategy set");
    let mut ranked: Vec<(usize, u64)> = (1..=CANDIDATES)
        .map(|id| (count(thousand, &profile(id), true), id))
        .collect();
    ranked.sort_unstable();
    let pick = |at: usize| ranked[at.min(ranked.len() - 1)].1;
    let mut users: Vec<User> = vec![
        ("matching_user", profile(pick(ranked.len() - 1)), true),
        ("typical_user", profile(pick(ranked.len() / 2)), true),
        ("quiet_user", profile(pick(0)), true),
    ];
    if unknown_device {
        users.push(("unknown_device", UserProfile::empty(), false));
    }
    for (user, profile, known) in &users {
        let counts: Vec<String> = sets
            .iter()
            .map(|(n, set)| format!("{} of {n}", count(set, profile, *known)))
            .collect();
        eprintln!("setup {name}: {user} matches {}", counts.join(", "));
    }
    users
}

fn bench_group(c: &mut Criterion, name: &str, sets: &[(usize, StrategySet)], users: &[User]) {
    let today = common::today();
    let mut g = c.benchmark_group(name);
    for (user, profile, known) in users {
        for (n, set) in sets {
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
                BenchmarkId::new(format!("linear/{user}"), n),
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
                BenchmarkId::new(format!("index/{user}"), n),
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

fn matching(c: &mut Criterion) {
    let largest = SIZES.iter().copied().max().unwrap_or(0);

    let taxonomy = Taxonomy::default_taxonomy();
    let all = generate::generate(&taxonomy, common::STRATEGY_SEED, largest);
    let shared = sets("matching", &all, &taxonomy);
    drop(all);
    let users = pick_users(
        "matching",
        &shared,
        |id| common::profile(&taxonomy, id),
        true,
    );
    bench_group(c, "matching", &shared, &users);
    drop(shared);

    let taxonomy = generate::advertiser_taxonomy();
    let all: Vec<GeneratedStrategy> = StrategyGenerator::new(&taxonomy, common::STRATEGY_SEED)
        .with_workload(Workload::PerAdvertiser)
        .take(largest)
        .collect();
    let flat = sets("matching_flat", &all, &taxonomy);
    drop(all);
    let users = pick_users(
        "matching_flat",
        &flat,
        |id| common::customer(&taxonomy, id, CUSTOMER_OF),
        false,
    );
    bench_group(c, "matching_flat", &flat, &users);
}

criterion_group!(benches, matching);
criterion_main!(benches);
