//! A whole strategy file (TOML, audiences, policies) loaded against the
//! shipped taxonomy. What loads is matched on the test profiles by the
//! strategy index, by the linear scan and by the set's own matcher, over all
//! strategies and over a filter of every other one; all must agree, and with
//! `/explain`'s first failing clause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rta_engine::strategy::{IndexedMatcher, LinearMatcher, Matcher, StrategySet};
use rta_engine_fuzz::{TAXONOMY, each_context};

fuzz_target!(|text: &str| {
    let Ok(set) = StrategySet::from_toml(text, "fuzz.toml", &TAXONOMY) else {
        return;
    };
    let strategies = set.strategies();
    let indexed = IndexedMatcher::new(strategies);
    let every_other: Vec<u32> = (0..strategies.len() as u32).step_by(2).collect();
    let (mut lin, mut idx, mut live) = (Vec::new(), Vec::new(), Vec::new());
    each_context(|ctx| {
        for only in [None, Some(every_other.as_slice())] {
            lin.clear();
            idx.clear();
            live.clear();
            LinearMatcher.matching(strategies, ctx, only, &mut lin);
            indexed.matching(strategies, ctx, only, &mut idx);
            set.matching(ctx, only, &mut live);
            assert_eq!(lin, idx, "index and scan disagree on {text:?}");
            assert_eq!(lin, live, "the set and the scan disagree on {text:?}");
        }
        for s in strategies {
            assert_eq!(s.matches(ctx), s.first_failing_clause(ctx).is_none());
        }
    });
});
