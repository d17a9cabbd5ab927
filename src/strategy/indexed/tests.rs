//! The indexed matcher's own mechanics: the gate, the postings, how each
//! strategy is found. Its equivalence with the linear scan on generated
//! strategy sets is property-tested in `crates/rta-testkit/tests/indexed_matcher.rs`.

use proptest::prelude::*;

use super::*;
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::{Action, Attr, Day, ItemKey, StateField, UserProfile};
use crate::strategy::{LinearMatcher, Os, StrategySet};

const TODAY: Day = 2518;
const OSES: [Os; 5] = [Os::Unknown, Os::Android, Os::Ios, Os::Harmony, Os::Other];

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

/// An attribute range or OS clause, as the gate folds them.
fn gate_clause() -> impl proptest::strategy::Strategy<Value = Expr> {
    use proptest::strategy::Strategy as _;
    prop_oneof![
        (0..Attr::ALL.len(), any::<u8>(), any::<u8>()).prop_map(|(a, lo, hi)| Expr::Attr {
            attr: Attr::ALL[a],
            lo,
            hi
        }),
        // small values too, so that ranges on one attribute overlap or not
        (0..Attr::ALL.len(), 0..6u8, 0..6u8).prop_map(|(a, lo, hi)| Expr::Attr {
            attr: Attr::ALL[a],
            lo,
            hi
        }),
        any::<u8>().prop_map(Expr::Os),
    ]
}

proptest! {
    #[test]
    fn the_gate_holds_exactly_when_every_folded_clause_does(
        clauses in proptest::collection::vec(gate_clause(), 0..6),
        values in proptest::collection::vec(prop_oneof![0..6u8, any::<u8>()], 8),
        os in 0..OSES.len(),
    ) {
        let mut gate = Gate::OPEN;
        for e in &clauses {
            prop_assert!(gate.fold(e), "{e:?} is folded");
        }
        let mut b = crate::index::profile::ProfileBuilder::default();
        for (a, &v) in Attr::ALL.iter().zip(&values) {
            b.attr(*a, v);
        }
        let profile = b.build().expect("a profile of attributes only fits");
        let ctx = EvalContext { profile: &profile, known_user: true, today: TODAY, os: OSES[os] };
        prop_assert_eq!(gate.holds(&ctx), clauses.iter().all(|e| e.eval(&ctx)));
    }
}

#[test]
fn the_gate_folds_only_attribute_ranges_and_oses() {
    let mut gate = Gate::OPEN;
    let state = Expr::State {
        item: ItemKey::new(crate::index::profile::Scope::Brand, 1).expect("valid id"),
        field: StateField::FourA,
        mask: 0b10,
    };
    assert!(!gate.fold(&state));
    assert!(!gate.fold(&Expr::Not(Box::new(Expr::Os(1)))));
    assert_eq!(gate, Gate::OPEN);
}

/// A profile with these `(item, action, days before TODAY, count)`
/// records (a negative number of days: a day after TODAY).
fn with_behaviour(records: &[(ItemKey, Action, i32, u16)]) -> UserProfile {
    let mut b = crate::index::profile::ProfileBuilder::default();
    for &(item, action, ago, count) in records {
        b.behaviour.push(crate::index::profile::BehaviourCount {
            item,
            action,
            day: (i32::from(TODAY) - ago) as Day,
            count,
        });
    }
    b.build().expect("a small profile builds")
}

/// `indexed`'s candidates for known user `k` with profile `p` on `os`,
/// as (strategy, how it was found), once both matchers are checked to
/// match `expected`.
fn candidates_checked(
    (set, indexed): (&StrategySet, &IndexedMatcher),
    (k, p): (usize, &UserProfile),
    os: Os,
    expected: &[u32],
) -> Vec<(u32, u32)> {
    let ctx = EvalContext {
        profile: p,
        known_user: true,
        today: TODAY,
        os,
    };
    let (lin, idx) = both(set, indexed, &ctx, None);
    assert_eq!(
        (&lin[..], &idx[..]),
        (expected, expected),
        "matches of user {k}"
    );
    let mut scratch = Scratch::default();
    indexed.candidates(&ctx, &mut scratch);
    scratch
        .candidates
        .iter()
        .map(|c| (c >> found::BITS, c & found::MASK))
        .collect()
}

#[test]
fn recent_behaviour_and_negated_clauses_are_settled_by_postings() {
    use crate::index::profile::Scope;
    let t = Taxonomy::default_taxonomy();
    let src = "[[strategy]]\nid = \"carted\"\ntarget_id = \"1\"\naudience = \"cart(sku 1, 7d)\"\n\n\
               [[strategy]]\nid = \"not_bought\"\ntarget_id = \"2\"\naudience = \"os == ios and not buy(sku 2, 7d)\"\n";
    let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
    let indexed = IndexedMatcher::new(set.strategies());
    let (sku1, sku2) = (
        ItemKey::new(Scope::Sku, 1).expect("valid id"),
        ItemKey::new(Scope::Sku, 2).expect("valid id"),
    );
    let cases = [
        // carted 7 days ago (outside "7d": today and the 6 days before),
        // bought today: a candidate for neither
        (
            with_behaviour(&[(sku1, Action::Cart, 7, 1), (sku2, Action::Buy, 0, 1)]),
            vec![],
        ),
        // a zero count today and a cart 30 days ago; a purchase dated
        // tomorrow, which no window counts yet
        (
            with_behaviour(&[
                (sku1, Action::Cart, 0, 0),
                (sku1, Action::Cart, 30, 2),
                (sku2, Action::Buy, -1, 1),
            ]),
            vec![1],
        ),
        // carted 6 days ago, never bought
        (with_behaviour(&[(sku1, Action::Cart, 6, 1)]), vec![0, 1]),
    ];
    for (k, (p, expected)) in cases.iter().enumerate() {
        let found = candidates_checked((&set, &indexed), (k, p), Os::Ios, expected);
        let ids: Vec<u32> = found.iter().map(|&(i, _)| i).collect();
        assert_eq!(&ids, expected, "candidates of user {k}");
        // found through every indexed clause: the windowed and negated
        // clauses are settled
        assert!(
            found
                .iter()
                .all(|&(_, how)| matches!(how, found::BY_ALL | found::SETTLED))
        );
    }
}

#[test]
fn state_clauses_not_accepting_code_zero_are_settled_by_postings() {
    use crate::index::profile::{ItemState, Scope};
    let t = Taxonomy::default_taxonomy();
    let src = "[[strategy]]\nid = \"intent\"\ntarget_id = \"1\"\naudience = \"four_a(brand 5) in {appeal, act}\"\n\n\
               [[strategy]]\nid = \"loyal\"\ntarget_id = \"2\"\naudience = \"clv(brand 5) == high and not rfm_r(brand 5) == low\"\n\n\
               [[strategy]]\nid = \"unaware\"\ntarget_id = \"3\"\naudience = \"four_a(brand 5) in {none, aware}\"\n";
    let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
    let indexed = IndexedMatcher::new(set.strategies());
    // accepting code 0 (no state) asks for no feature: scanned
    assert_eq!(indexed.unindexed(), 1);
    let brand = ItemKey::new(Scope::Brand, 5).expect("valid id");
    let with_state = |codes: &[(StateField, u8)]| {
        let mut b = crate::index::profile::ProfileBuilder::default();
        let state = codes
            .iter()
            .fold(ItemState::default(), |s, &(f, c)| s.with(f, c));
        b.items.push((brand, state));
        b.build().expect("fits")
    };
    let cases = [
        // aware, high CLV, low recency: "unaware" only, by evaluation
        (
            with_state(&[
                (StateField::FourA, 1),
                (StateField::Clv, 3),
                (StateField::RfmR, 1),
            ]),
            vec![2],
            vec![2],
        ),
        // acting, high CLV, mid recency: all but "unaware" found and settled
        (
            with_state(&[
                (StateField::FourA, 3),
                (StateField::Clv, 3),
                (StateField::RfmR, 2),
            ]),
            vec![0, 1, 2],
            vec![0, 1],
        ),
        // appealing, mid CLV: the CLV code is not the one asked for
        (
            with_state(&[(StateField::FourA, 2), (StateField::Clv, 2)]),
            vec![0, 2],
            vec![0],
        ),
    ];
    for (k, (p, candidates, expected)) in cases.iter().enumerate() {
        let found = candidates_checked((&set, &indexed), (k, p), Os::Android, expected);
        let ids: Vec<u32> = found.iter().map(|&(i, _)| i).collect();
        assert_eq!(&ids, candidates, "candidates of user {k}");
        // the indexed strategies' state clauses are settled: nothing left
        // to evaluate, and a match needs no look at the audience
        for (i, how) in found {
            let expected = if i == 2 {
                found::UNINDEXED
            } else {
                found::SETTLED
            };
            assert_eq!(how, expected, "candidate {i} of user {k}");
            assert!(how != found::SETTLED || indexed.audiences[i as usize].unsettled_by_all == 0);
        }
    }
}

#[test]
fn a_not_only_audience_is_evaluated_for_everyone() {
    let t = Taxonomy::default_taxonomy();
    let src = "[[strategy]]\nid = \"a\"\ntarget_id = \"1\"\naudience = \"not buy(category 1, 30d)\"\nmatch_unknown_devices = true\n\n[[strategy]]\nid = \"b\"\ntarget_id = \"2\"\naudience = \"buy(category 1, 30d) >= 1 or os == ios\"\n";
    let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
    let indexed = IndexedMatcher::new(set.strategies());
    assert_eq!(indexed.unindexed(), 1);
    let empty = UserProfile::empty();
    let ctx = EvalContext {
        profile: &empty,
        known_user: false,
        today: TODAY,
        os: Os::Ios,
    };
    let mut out = Vec::new();
    indexed.matching(set.strategies(), &ctx, None, &mut out);
    assert_eq!(out, [0]);
    let ctx = EvalContext {
        known_user: true,
        ..ctx
    };
    out.clear();
    indexed.matching(set.strategies(), &ctx, None, &mut out);
    assert_eq!(out, [0, 1]);
}
