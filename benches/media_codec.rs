//! Each media protocol's own cost per request, without the decision or the
//! transport: decode (with the wire-shape bound), translate to the engine's
//! request, and encode the answer to a decision that took one strategy, as
//! the media endpoint does around `DecisionEngine::decide_with`.
//!
//! Requests are what the media send for one Android device with an IMEI md5
//! (Ocean Engine: asking about the demo's seven rta_ids; Tencent: with two
//! experiment ids, as in its golden fixtures).
//!
//! ```text
//! cargo bench --bench media_codec
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use rta_engine::decision::{Decision, MatchedStrategy};
use rta_engine::domain::media::MediaIds;
use rta_engine::serve::media::{MediaProtocol, Reply};
use rta_engine::serve::meituan::{self, Meituan};
use rta_engine::serve::oceanengine::{self, OceanEngine};
use rta_engine::serve::tencent::{self, Tencent};
use rta_engine::telemetry::Outcome;

const IMEI_MD5: &str = "909595f63a04410e34d024517bf03404";

fn decision() -> Decision<&'static str> {
    Decision {
        take: true,
        matches: vec![MatchedStrategy {
            strategy_id: "goal_urban_fitness",
            target_id: "90007",
            media_ids: MediaIds {
                oceanengine: Some(90007),
                meituan: Some(90007),
            },
            variant: None,
            bid_factor: 1.25,
            pctr: None,
            pcvr: None,
        }],
        cache_seconds: 300,
        outcome: Outcome::Take,
    }
}

fn reply() -> Reply {
    Reply {
        elapsed: Duration::from_micros(20),
        cache_seconds: Some(300),
    }
}

/// Decode + translate, then encode, for one protocol.
fn bench_protocol<P: MediaProtocol>(
    c: &mut Criterion,
    name: &str,
    protocol: &P,
    body: &[u8],
    api: &'static str,
) {
    let d = decision();
    let mut g = c.benchmark_group(name);
    g.bench_function("decode_translate", |b| {
        b.iter(|| {
            let req = protocol.decode(black_box(body)).expect("a valid body");
            black_box(protocol.translate(&req, api).expect("translates"))
        })
    });
    let req = protocol.decode(body).expect("a valid body");
    g.bench_function("encode_answer", |b| {
        b.iter(|| black_box(protocol.answer(&req, black_box(&d), reply())))
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let tencent_body = tencent::pb::RtaRequest {
        id: Some("Jo825w_uEe2xLlJUAFwvSQ".into()),
        device: Some(tencent::pb::rta_request::Device {
            os: Some(tencent::pb::rta_request::OperatingSystem::OsAndroid as i32),
            imei_md5sum: Some(IMEI_MD5.into()),
            cached_deviceid_type: Some(
                tencent::pb::rta_request::device::CacheDeviceIdType::ImeiMd5 as i32,
            ),
            ip: Some("10.1.2.3".into()),
            ..Default::default()
        }),
        exps: vec![
            tencent::pb::rta_request::Experiment {
                exp_id: Some(32768),
            },
            tencent::pb::rta_request::Experiment {
                exp_id: Some(32770),
            },
        ],
        ..Default::default()
    }
    .encode_to_vec();
    bench_protocol(
        c,
        "tencent",
        &Tencent::new(&Default::default()),
        &tencent_body,
        tencent::API,
    );

    let oe_body = oceanengine::pb::Req {
        req_id: "Jo825w_uEe2xLlJUAFwvSQ".into(),
        platform: oceanengine::pb::PlatformType::Android as i32,
        did: IMEI_MD5.into(),
        did_type: oceanengine::pb::DidType::ImeiMd5 as i32,
        rta_ids: (90001..=90007).collect(),
        slot_id: 7001,
        source: "douyin".into(),
        ..Default::default()
    }
    .encode_to_vec();
    bench_protocol(
        c,
        "oceanengine",
        &OceanEngine::new(&Default::default()),
        &oe_body,
        oceanengine::API,
    );

    let mt_body = meituan::pb::RtaRequest {
        id: Some("Jo825w_uEe2xLlJUAFwvSQ".into()),
        device: Some(meituan::pb::rta_request::Device {
            os: Some(meituan::pb::rta_request::OperatingSystem::OsAndroid as i32),
            imei_md5sum: Some(IMEI_MD5.into()),
            ip: Some("10.1.2.3".into()),
            ..Default::default()
        }),
        site_id: Some("site".into()),
        ..Default::default()
    }
    .encode_to_vec();
    bench_protocol(
        c,
        "meituan",
        &Meituan::new(&Default::default()),
        &mt_body,
        meituan::API,
    );
}

criterion_group!(benches, codecs);
criterion_main!(benches);
