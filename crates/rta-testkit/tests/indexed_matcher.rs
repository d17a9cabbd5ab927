//! The indexed matcher answers exactly what the linear scan answers, on
//! generated strategy sets (random `and` / `or` / `not` trees and realistic
//! templates, both workloads) and generated users; and it stays cheap: a
//! typical user is a candidate for few strategies, and a customer's work does
//! not grow with advertisers the customer never dealt with.

use proptest::prelude::*;

use rta_engine::demo::population::generate_user;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{Day, UserProfile};
use rta_engine::strategy::indexed::POSTINGS_PER_EVALUATION;
use rta_engine::strategy::{
    EvalContext, FeatureShares, IndexedMatcher, LinearMatcher, Matcher, Os, StrategySet,
};
use rta_testkit::generate::{self, Mix, StrategyGenerator, Workload, strategy_file};

const TODAY: Day = 2518;
const OSES: [Os; 5] = [Os::Unknown, Os::Android, Os::Ios, Os::Harmony, Os::Other];

fn set(seed: u64, n: u64, mix: Mix, t: &Taxonomy) -> StrategySet {
    let g = StrategyGenerator::new(t, seed).with_mix(mix);
    let strategies: Vec<_> = (0..n).map(|i| g.strategy(i)).collect();
    StrategySet::from_toml(&strategy_file(&strategies, "prop"), "prop", t)
        .expect("generated strategies compile")
}

fn both(
    set: &StrategySet,
    indexed: &IndexedMatcher,
    ctx: &EvalContext<'_>,
    only: Option<&[u32]>,
) -> (Vec<u32>, Vec<u32>) {
    let (mut lin, mut idx) = (Vec::new(), Vec::new());
    LinearMatcher.matching(set.strategies(), ctx, only, &mut lin);
    indexed.matching(set.strategies(), ctx, only, &mut idx);
    (lin, idx)
}

/// The `k`-th user's context in the property tests: days and OSes vary
/// with `k` so that windows and OS clauses are exercised.
fn varied_context(profile: &UserProfile, known_user: bool, k: usize) -> EvalContext<'_> {
    EvalContext {
        profile,
        known_user,
        today: TODAY - (k as Day % 40),
        os: OSES[k % OSES.len()],
    }
}

fn mix(broad: f64, arbitrary: f64) -> Mix {
    Mix { broad, arbitrary }
}

/// Narrowing postings walked per strategy found: never, as served, always.
const WALKS: [usize; 3] = [0, POSTINGS_PER_EVALUATION, usize::MAX];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// On random strategy sets (random and/or/not trees and realistic
    /// templates) and random users, known or not, with every OS, the index
    /// answers exactly what evaluating every strategy answers, whether it
    /// narrows by counting or evaluates every strategy found.
    #[test]
    fn indexed_matches_exactly_what_the_linear_scan_matches(
        strategy_seed in any::<u64>(),
        n in 1u64..300,
        broad in 0.0f64..0.3,
        arbitrary in 0.0f64..1.0,
        user_seed in any::<u64>(),
        measured in any::<bool>(),
        walk in 0..WALKS.len(),
    ) {
        let t = Taxonomy::default_taxonomy();
        let set = set(strategy_seed, n, mix(broad, arbitrary), &t);
        let users: Vec<UserProfile> =
            (1..=40).map(|id| generate_user(user_seed, id, TODAY, &t)).collect();
        let indexed = if measured {
            IndexedMatcher::with_shares(set.strategies(), &FeatureShares::measure(&users))
        } else {
            IndexedMatcher::new(set.strategies())
        }
        .with_postings_per_evaluation(WALKS[walk]);
        let empty = UserProfile::empty();
        for (k, p) in users.iter().chain(std::iter::once(&empty)).enumerate() {
            for known_user in [true, false] {
                let ctx = varied_context(p, known_user, k);
                let (lin, idx) = both(&set, &indexed, &ctx, None);
                prop_assert_eq!(&lin, &idx, "user {} known {}", k, known_user);
                // a restriction to every other strategy
                let only: Vec<u32> = (0..n as u32).step_by(2).collect();
                let (lin, idx) = both(&set, &indexed, &ctx, Some(&only));
                prop_assert_eq!(lin, idx);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same on the per-advertiser workload (item ids offset by
    /// advertiser, first-party tags), from a random first strategy so that
    /// sets start at any advertiser, with customers of those advertisers.
    #[test]
    fn indexed_matches_the_linear_scan_on_the_per_advertiser_workload(
        strategy_seed in any::<u64>(),
        first in 0u64..100_000,
        n in 64u64..400,
        broad in 0.0f64..0.3,
        arbitrary in 0.0f64..0.5,
        user_seed in any::<u64>(),
        walk in 0..WALKS.len(),
    ) {
        let t = generate::advertiser_taxonomy();
        let g = StrategyGenerator::new(&t, strategy_seed)
            .with_mix(mix(broad, arbitrary))
            .with_workload(Workload::PerAdvertiser);
        let strategies: Vec<_> = (first..first + n).map(|i| g.strategy(i)).collect();
        let set = StrategySet::from_toml(&strategy_file(&strategies, "prop"), "prop", &t)
            .expect("generated strategies compile");
        let indexed =
            IndexedMatcher::new(set.strategies()).with_postings_per_evaluation(WALKS[walk]);
        // customers of the set's advertisers
        let among = generate::advertiser_of(first)..generate::advertiser_of(first + n - 1) + 1;
        for id in 1..=40 {
            let p = generate::advertiser_customer(user_seed, id, TODAY, &t, among.clone())
                .expect("profile fits");
            for known_user in [true, false] {
                let ctx = varied_context(&p, known_user, id as usize);
                let (lin, idx) = both(&set, &indexed, &ctx, None);
                prop_assert_eq!(lin, idx, "user {} known {}", id, known_user);
            }
        }
    }
}

#[test]
fn narrow_strategies_are_filed_under_features_and_not_scanned() {
    let t = Taxonomy::default_taxonomy();
    let set = set(7, 2000, Mix::default(), &t);
    let indexed = IndexedMatcher::new(set.strategies());
    // realistic strategies nearly all have an access clause ...
    assert!(
        indexed.unindexed() * 50 < set.strategies().len(),
        "{} of {} unindexed",
        indexed.unindexed(),
        set.strategies().len()
    );
    // ... so a typical user is a candidate for a small share of them
    let users: Vec<UserProfile> = (1..=200)
        .map(|id| generate_user(42, id, TODAY, &t))
        .collect();
    let mut candidates = 0usize;
    for p in &users {
        let ctx = EvalContext {
            profile: p,
            known_user: true,
            today: TODAY,
            os: Os::Android,
        };
        candidates += indexed.work(&ctx).candidates;
    }
    let mean = candidates as f64 / users.len() as f64;
    assert!(mean < 0.2 * 2000.0, "{mean} candidates per user of 2000");
}

/// Mean postings walked and candidates per user.
fn work(indexed: &IndexedMatcher, users: &[UserProfile]) -> (f64, f64) {
    let (mut walked, mut candidates) = (0, 0);
    for p in users {
        let ctx = EvalContext {
            profile: p,
            known_user: true,
            today: TODAY,
            os: Os::Android,
        };
        let w = indexed.work(&ctx);
        walked += w.postings_walked;
        candidates += w.candidates;
    }
    let n = users.len() as f64;
    (walked as f64 / n, candidates as f64 / n)
}

#[test]
fn a_customers_work_stays_flat_as_advertisers_are_added() {
    let t = generate::advertiser_taxonomy();
    let all: Vec<_> = StrategyGenerator::new(&t, 7)
        .with_workload(Workload::PerAdvertiser)
        .take(10_000)
        .collect();
    let users: Vec<UserProfile> = (1..=200)
        .map(|id| generate::advertiser_customer(42, id, TODAY, &t, 0..10).expect("profile fits"))
        .collect();
    let work_at = |n: usize| {
        let set = StrategySet::from_toml(&strategy_file(&all[..n], "w"), "w", &t)
            .expect("generated strategies compile");
        work(&IndexedMatcher::new(set.strategies()), &users)
    };
    let ((walked_1k, candidates_1k), (walked_10k, candidates_10k)) =
        (work_at(1_000), work_at(10_000));
    // the 9,000 strategies added narrow by the same target groups and
    // ages as the first 1,000, but belong to advertisers the users never
    // dealt with: neither postings walked nor candidates may grow with them
    assert!(
        walked_10k <= 2.0 * walked_1k + 10.0,
        "postings walked per user: {walked_1k} at 1,000, {walked_10k} at 10,000"
    );
    assert!(
        candidates_10k <= 2.0 * candidates_1k + 10.0,
        "candidates per user: {candidates_1k} at 1,000, {candidates_10k} at 10,000"
    );
}
