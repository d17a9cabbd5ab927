//! An Ocean Engine or Meituan RTA request body (the first byte picks the
//! protocol: even = Ocean Engine, odd = Meituan): the wire-shape bound,
//! prost's decode, the translation to device keys, OS, experiments and asked
//! ids, and the answer encoded for a decision that took one strategy, as the
//! media endpoints do.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rta_engine::decision::{Decision, MatchedStrategy};
use rta_engine::domain::media::MediaIds;
use rta_engine::serve::limits::MAX_EXPERIMENTS;
use rta_engine::serve::media::{MediaProtocol, Reply};
use rta_engine::serve::meituan::{self, Meituan};
use rta_engine::serve::oceanengine::{self, MAX_RTA_IDS, OceanEngine};
use rta_engine::telemetry::Outcome;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let decision = Decision {
        take: true,
        matches: vec![MatchedStrategy {
            strategy_id: "s",
            target_id: "1",
            media_ids: MediaIds {
                oceanengine: Some(1),
                meituan: Some(1),
            },
            variant: Some(u16::from(selector)),
            bid_factor: f64::from(selector) / 10.0,
            pctr: None,
            pcvr: None,
        }],
        cache_seconds: u32::from(selector) * 1000,
        outcome: Outcome::Take,
    };
    let reply = Reply {
        elapsed: Duration::from_micros(u64::from(selector)),
        cache_seconds: Some(u32::from(selector)),
    };
    if selector % 2 == 0 {
        let Ok(req) = oceanengine::read_request(body) else {
            return;
        };
        assert!(req.rta_ids.len() <= MAX_RTA_IDS);
        let t = oceanengine::translate(&req, oceanengine::API);
        // did, then eight device fields, each key once
        assert!(t.devices.len() <= 9);
        assert!(t.experiments.len() <= MAX_EXPERIMENTS);
        assert!(t.asked.len() <= req.rta_ids.len());
        let ep = OceanEngine::new(&Default::default());
        let _ = ep.answer(&req, &decision, reply);
        let _ = ep.default_answer(Some(&req), false, reply);
    } else {
        let Ok(req) = meituan::read_request(body) else {
            return;
        };
        let t = meituan::translate(&req, meituan::API);
        assert!(t.devices.len() <= 6);
        let _ = Meituan.answer(&req, &decision, reply);
        let _ = Meituan.call(&req);
    }
});
