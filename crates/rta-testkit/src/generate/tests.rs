//! Tests of the strategy generator: determinism, counts, every mix compiling,
//! the constructs arbitrary trees use, match shares, and the per-advertiser
//! workload.

use rta_engine::demo::population::generate_user;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{ItemKey, Scope};
use rta_engine::strategy::{EvalContext, Os, StrategySet};

use super::advertiser::item_base;
use super::*;

fn taxonomy() -> Taxonomy {
    Taxonomy::default_taxonomy()
}

fn load(strategies: &[GeneratedStrategy]) -> StrategySet {
    let src = strategy_file(strategies, "test");
    match StrategySet::from_toml(&src, "generated.toml", &taxonomy()) {
        Ok(set) => set,
        Err(e) => panic!("generated file does not load: {e}"),
    }
}

#[test]
fn the_same_seed_generates_the_same_strategies() {
    let t = taxonomy();
    assert_eq!(generate(&t, 7, 300), generate(&t, 7, 300));
    assert_eq!(
        strategy_file(&generate(&t, 7, 300), "v"),
        strategy_file(&generate(&t, 7, 300), "v")
    );
    let other = generate(&t, 8, 300);
    let same = generate(&t, 7, 300)
        .iter()
        .zip(&other)
        .filter(|(a, b)| a.audience == b.audience)
        .count();
    assert!(same < 30, "{same} of 300 audiences equal across seeds");
}

#[test]
fn a_shorter_run_is_a_prefix_of_a_longer_one() {
    let t = taxonomy();
    let long = generate(&t, 3, 500);
    assert_eq!(generate(&t, 3, 120), long[..120]);
    assert_eq!(StrategyGenerator::new(&t, 3).strategy(321), long[321]);
}

#[test]
fn exactly_the_requested_number_is_generated_and_loaded() {
    let t = taxonomy();
    for n in [0, 1, 10, 37, 1000] {
        let strategies = generate(&t, 11, n);
        assert_eq!(strategies.len(), n);
        let set = load(&strategies);
        assert_eq!(set.strategies().len(), n);
        let ids: std::collections::HashSet<_> =
            set.strategies().iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), n, "ids are unique");
    }
    let set = strategy_set(&t, 11, 250).expect("generated set compiles");
    assert_eq!(set.strategies().len(), 250);
}

#[test]
fn every_generated_set_compiles_for_every_mix() {
    let t = taxonomy();
    let mixes = [
        Mix::default(),
        Mix {
            broad: 0.5,
            arbitrary: 0.0,
        },
        Mix {
            broad: 0.0,
            arbitrary: 1.0,
        },
        Mix {
            broad: 0.1,
            arbitrary: 0.3,
        },
    ];
    for seed in 0..8 {
        for mix in mixes {
            let strategies: Vec<_> = StrategyGenerator::new(&t, seed)
                .with_mix(mix)
                .take(400)
                .collect();
            assert_eq!(load(&strategies).strategies().len(), 400);
        }
    }
}

#[test]
fn arbitrary_trees_use_every_construct_of_the_language() {
    let t = taxonomy();
    let text: String = StrategyGenerator::new(&t, 5)
        .with_mix(Mix {
            broad: 0.0,
            arbitrary: 1.0,
        })
        .take(1000)
        .map(|s| s.audience + "\n")
        .collect();
    for construct in [
        " and ",
        " or ",
        "not (",
        " in {",
        "d..",
        " != ",
        " >= ",
        " <= ",
        " > ",
        " < ",
        " == ",
        "sku ",
        "brand ",
        "category ",
        "four_a(",
        "rfm_r(",
        "rfm_f(",
        "rfm_m(",
        "clv(",
        "search(",
        "favorite(",
        "share(",
        "browse(",
        "cart(",
        "buy(",
        "os ",
        "target_group",
        "value_group",
        "scene",
        "custom",
        "age",
        "city_tier",
        "purchasing_power",
        "occupation",
        "education",
    ] {
        assert!(text.contains(construct), "no `{construct}` in 1000 trees");
    }
}

/// Per strategy, the share of `users` generated users it matches.
fn match_shares(set: &StrategySet, users: u64) -> Vec<f64> {
    let t = taxonomy();
    let today = 2518;
    let mut hits = vec![0u32; set.strategies().len()];
    let mut out = Vec::new();
    for id in 1..=users {
        let p = generate_user(42, id, today, &t);
        let ctx = EvalContext {
            profile: &p,
            known_user: true,
            today,
            os: Os::Android,
        };
        out.clear();
        set.matching(&ctx, None, &mut out);
        for &i in &out {
            hits[i as usize] += 1;
        }
    }
    hits.iter().map(|&h| f64::from(h) / users as f64).collect()
}

#[test]
fn most_strategies_miss_a_typical_user_and_broad_ones_hit_many() {
    let t = taxonomy();
    let strategies = generate(&t, 9, 1000);
    let set = load(&strategies);
    let shares = match_shares(&set, 2000);
    let (mut narrow, mut broad) = (Vec::new(), Vec::new());
    for (s, share) in strategies.iter().zip(&shares) {
        if s.template.is_broad() {
            broad.push(*share);
        } else {
            narrow.push(*share);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    // a user matches about 1 % of the narrow strategies ...
    assert!(mean(&narrow) < 0.02, "narrow mean share {}", mean(&narrow));
    // ... most of which match under 1 % of users, but not nobody at all
    let rare = narrow.iter().filter(|s| **s < 0.01).count();
    assert!(
        rare * 10 >= narrow.len() * 7,
        "{rare} of {} rare",
        narrow.len()
    );
    let live = narrow.iter().filter(|s| **s > 0.0).count();
    assert!(
        live * 2 >= narrow.len(),
        "{live} of {} ever match",
        narrow.len()
    );
    // a few broad ones match a large share
    assert!((10..=35).contains(&broad.len()), "{} broad", broad.len());
    assert!(mean(&broad) > 0.2, "broad mean share {}", mean(&broad));
}

fn per_advertiser(t: &Taxonomy, seed: u64, n: usize) -> Vec<GeneratedStrategy> {
    StrategyGenerator::new(t, seed)
        .with_workload(Workload::PerAdvertiser)
        .take(n)
        .collect()
}

fn load_with(strategies: &[GeneratedStrategy], t: &Taxonomy) -> StrategySet {
    match StrategySet::from_toml(&strategy_file(strategies, "test"), "generated.toml", t) {
        Ok(set) => set,
        Err(e) => panic!("generated file does not load: {e}"),
    }
}

#[test]
fn the_advertiser_taxonomy_has_every_advertisers_tags() {
    let t = advertiser_taxonomy();
    assert_eq!(ADVERTISERS, 1073);
    let last = ADVERTISERS - 1;
    for name in FIRST_PARTY_TAGS {
        assert!(t.code(FIRST_PARTY, &first_party_value(0, name)).is_some());
        assert!(
            t.code(FIRST_PARTY, &first_party_value(last, name))
                .is_some()
        );
    }
    assert!(t.code("target_group", "urban_family").is_some());
    // the largest id of the last advertiser is a valid item id
    let top = u64::from(item_base(last)) + u64::from(ADVERTISER_ID_STRIDE) - 1;
    assert!(ItemKey::new(Scope::Sku, top).is_ok());
    assert_eq!(advertiser_of(0), 0);
    assert_eq!(advertiser_of(99_999), 999);
    assert_eq!(advertiser_of(107_300), 0);
}

#[test]
fn per_advertiser_strategies_are_deterministic_and_leave_the_default_alone() {
    let t = advertiser_taxonomy();
    let long = per_advertiser(&t, 3, 500);
    assert_eq!(per_advertiser(&t, 3, 120), long[..120]);
    let g = StrategyGenerator::new(&t, 3).with_workload(Workload::PerAdvertiser);
    assert_eq!(g.strategy(321), long[321]);
    // the default workload is unchanged by the taxonomy's extra system
    assert_eq!(generate(&t, 3, 300), generate(&taxonomy(), 3, 300));
    // advertiser 4's strategies talk about its items and tags only
    let mut items = 0;
    for s in &long[400..500] {
        assert!(!s.match_unknown_devices, "{}", s.audience);
        for scope in ["category ", "brand ", "sku "] {
            for (at, _) in s.audience.match_indices(scope) {
                let digits: String = s.audience[at + scope.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let id: u32 = digits.parse().expect("an item id follows its scope");
                assert_eq!(id / ADVERTISER_ID_STRIDE, 4, "{}", s.audience);
                items += 1;
            }
        }
        for (at, _) in s.audience.match_indices("first_party") {
            assert!(s.audience[at..].contains("a0004_"), "{}", s.audience);
        }
    }
    assert!(items > 100, "{items} items in 100 strategies");
    assert!(long[400..500].iter().any(|s| s.audience.contains("a0004_")));
}

#[test]
fn a_customer_is_deterministic_and_shops_at_two_or_three_advertisers() {
    let t = advertiser_taxonomy();
    for id in 1..=200 {
        let p = advertiser_customer(42, id, 2518, &t, 0..10).expect("profile fits");
        assert_eq!(
            Ok(&p),
            advertiser_customer(42, id, 2518, &t, 0..10).as_ref(),
            "user {id}"
        );
        let demo = generate_user(42, id, 2518, &t);
        assert_eq!(p.behaviour().count(), demo.behaviour().count());
        assert_eq!(p.items().count(), demo.items().count());
        let mut advertisers: Vec<u32> = p
            .behaviour()
            .map(|b| b.item)
            .chain(p.items().map(|(k, _)| k))
            .map(|k| k.id() / ADVERTISER_ID_STRIDE)
            .collect();
        advertisers.sort_unstable();
        advertisers.dedup();
        assert!(advertisers.len() <= 3, "user {id}: {advertisers:?}");
        assert!(
            advertisers.iter().all(|a| *a < 10),
            "user {id}: {advertisers:?}"
        );
    }
}

/// Per user, the strategies of `set` it matches, through the index and by
/// evaluating every strategy; both must agree.
fn matched(set: &StrategySet, users: &[rta_engine::index::profile::UserProfile]) -> Vec<Vec<u32>> {
    use rta_engine::strategy::{LinearMatcher, Matcher};
    users
        .iter()
        .map(|p| {
            let ctx = EvalContext {
                profile: p,
                known_user: true,
                today: 2518,
                os: Os::Android,
            };
            let (mut idx, mut lin) = (Vec::new(), Vec::new());
            set.matching(&ctx, None, &mut idx);
            LinearMatcher.matching(set.strategies(), &ctx, None, &mut lin);
            assert_eq!(idx, lin, "index and linear scan disagree");
            idx
        })
        .collect()
}

#[test]
fn a_customers_matches_stay_flat_as_advertisers_are_added() {
    let t = advertiser_taxonomy();
    let all = per_advertiser(&t, 7, 10_000);
    let (small, large) = (load_with(&all[..1_000], &t), load_with(&all, &t));
    assert_eq!(large.strategies().len(), 10_000);
    // customers of advertisers 0..10, the advertisers of the first 1,000
    let users: Vec<_> = (1..=300)
        .map(|id| advertiser_customer(42, id, 2518, &t, 0..10).expect("profile fits"))
        .collect();
    let (at_1k, at_10k) = (matched(&small, &users), matched(&large, &users));
    let total = |m: &[Vec<u32>]| m.iter().map(Vec::len).sum::<usize>();
    // users do match, several strategies on average ...
    assert!(
        total(&at_1k) >= 2 * users.len(),
        "{} matches over {} users",
        total(&at_1k),
        users.len()
    );
    // ... and the 90 advertisers added are not theirs: no more matches
    for (u, (a, b)) in at_1k.iter().zip(&at_10k).enumerate() {
        assert!(
            b.len() <= a.len() + 1,
            "user {u}: {} then {}",
            a.len(),
            b.len()
        );
        assert!(b.iter().all(|&i| i < 1_000), "user {u} matches {b:?}");
    }
}
