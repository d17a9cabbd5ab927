//! The media adapter layer through real sockets: Ocean Engine
//! (`POST /rta/oceanengine`) and Meituan (`POST /rta/meituan`) golden requests
//! written by Google's protobuf runtime (scripts/media_fixtures.py), answers
//! decoded here with prost and in CI again with Google's runtime
//! (scripts/media_check.py over what this test dumps to `RTA_MEDIA_DUMP_DIR`);
//! the same devices through gRPC, Tencent, Ocean Engine and Meituan; bad input
//! per protocol; the default answers of the new media.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use prost::Message;
use rta_engine::serve::endpoints::MediaEndpoints;
use rta_engine::serve::media::FailMode;
use rta_engine::serve::meituan::{self, MeituanConfig};
use rta_engine::serve::oceanengine::{self, OceanEngineConfig};
use rta_engine::serve::pb;
use rta_engine::serve::tencent::{self, TencentConfig};

/// Every endpoint on its defaults, with a deadline no loaded CI machine reaches.
fn endpoints() -> MediaEndpoints {
    MediaEndpoints {
        tencent: TencentConfig {
            deadline_ms: 10_000,
            ..Default::default()
        },
        oceanengine: OceanEngineConfig {
            deadline_ms: 10_000,
            ..Default::default()
        },
        meituan: MeituanConfig {
            deadline_ms: 10_000,
            ..Default::default()
        },
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

async fn post(node: &TestNode, path: &str, body: Vec<u8>) -> Answer {
    let resp = reqwest::Client::new()
        .post(node.http_url(path))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("the endpoint answers");
    let status = resp.status().as_u16();
    if status == 200 {
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-protobuf")
        );
    }
    Answer {
        status,
        body: resp.bytes().await.expect("a body").to_vec(),
    }
}

/// One golden case: the request body and the expectation's JSON.
struct Golden {
    name: String,
    body: Vec<u8>,
    expected: serde_json::Value,
}

fn golden(media: &str) -> Vec<Golden> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(media);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let expected: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let file = expected["request"].as_str().unwrap().to_string();
            Golden {
                name: file.trim_end_matches(".bin").to_string(),
                body: std::fs::read(dir.join(&file)).unwrap(),
                expected,
            }
        })
        .collect()
}

/// Sends every golden case of `media` to `path`, dumps the answers for
/// scripts/media_check.py, checks each status and hands each 200 answer
/// with its expected JSON response to `check`.
async fn run_golden(
    node: &TestNode,
    media: &str,
    path: &str,
    min_cases: usize,
    check: impl Fn(&str, &[u8], &serde_json::Value),
) {
    let dump = std::env::var_os("RTA_MEDIA_DUMP_DIR").map(|d| PathBuf::from(d).join(media));
    if let Some(dir) = &dump {
        std::fs::create_dir_all(dir).unwrap();
    }
    let cases = golden(media);
    assert!(cases.len() >= min_cases, "{media}: golden cases missing");
    for case in cases {
        let answer = post(node, path, case.body.clone()).await;
        if let Some(dir) = &dump {
            std::fs::write(
                dir.join(format!("{}.status", case.name)),
                answer.status.to_string(),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{}.response.bin", case.name)),
                &answer.body,
            )
            .unwrap();
        }
        let status = case.expected["http_status"].as_u64().unwrap();
        assert_eq!(u64::from(answer.status), status, "{media}/{}", case.name);
        if case.expected["response"].is_null() {
            assert!(!answer.body.is_empty(), "{}: an error says why", case.name);
            continue;
        }
        check(&case.name, &answer.body, &case.expected["response"]);
    }
}

/// A json_format int64 (a string) or int32 (a number).
fn int(v: &serde_json::Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn golden_ocean_engine_requests_get_the_hand_worked_answers() {
    let node = start_media(endpoints()).await;
    run_golden(
        &node,
        "oceanengine",
        oceanengine::PATH,
        12,
        |name, body, want| {
            let got = oceanengine::pb::Rsp::decode(body).expect("an Ocean Engine Rsp");
            assert_eq!(got.status_code, 0, "{name}");
            assert_eq!(got.req_id, want["req_id"].as_str().unwrap_or(""), "{name}");
            assert!(got.ts > 1_700_000_000_000, "{name}: ts {}", got.ts);
            assert_eq!(got.bid_type, Some(int(&want["bid_type"]) as i32), "{name}");
            assert_eq!(
                i64::from(got.cache_time_secs),
                int(&want["cache_time_secs"]),
                "{name}"
            );
            let infos: Vec<(i64, bool, Vec<f64>)> = got
                .user_infos
                .iter()
                .map(|u| {
                    (
                        u.rta_id,
                        u.is_interested,
                        u.user_scores.iter().map(|s| s.quality).collect(),
                    )
                })
                .collect();
            let wanted: Vec<(i64, bool, Vec<f64>)> = want["user_infos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|u| {
                            (
                                int(&u["rta_id"]),
                                u["is_interested"].as_bool().unwrap_or(false),
                                u["user_scores"]
                                    .as_array()
                                    .map(|s| {
                                        s.iter().filter_map(|q| q["quality"].as_f64()).collect()
                                    })
                                    .unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(infos, wanted, "{name}");
        },
    )
    .await;
    node.running.shutdown().await;
}

#[tokio::test]
async fn golden_meituan_requests_get_the_hand_worked_answers() {
    let node = start_media(endpoints()).await;
    run_golden(&node, "meituan", meituan::PATH, 10, |name, body, want| {
        let got = meituan::pb::RtaResponse::decode(body).expect("a Meituan RtaResponse");
        assert_eq!(
            got.request_id.as_deref(),
            want["request_id"].as_str(),
            "{name}"
        );
        assert_eq!(got.code.map(i64::from), Some(int(&want["code"])), "{name}");
        let ids: Vec<i64> = want["promotion_target_id"]
            .as_array()
            .map(|a| a.iter().map(int).collect())
            .unwrap_or_default();
        assert_eq!(got.promotion_target_id, ids, "{name}");
        if name == "ping" {
            assert_eq!(
                got.processing_time_ms, None,
                "a ping answers id and code only"
            );
        } else {
            assert!(matches!(got.processing_time_ms, Some(0..)), "{name}");
        }
    })
    .await;
    let text = metrics_text(&node).await;
    for series in [
        "rta_pings_total{api=\"meituan\"}",
        "rta_decide_requests_total{api=\"meituan_test\",outcome=\"take\"}",
        "rta_decide_requests_total{api=\"meituan\",outcome=\"take\"}",
        "rta_invalid_requests_total{api=\"meituan\",field=\"body\"}",
        "rta_ignored_device_ids_total{api=\"meituan\",field=\"device.android_id_md5sum\",reason=\"malformed\"}",
    ] {
        assert!(metric_value(&text, series) >= 1.0, "{series} in\n{text}");
    }
    node.running.shutdown().await;
}

/// One device in each protocol's terms.
struct Device {
    grpc: pb::DeviceId,
    tencent: tencent::pb::rta_request::Device,
    oceanengine: oceanengine::pb::Req,
    meituan: meituan::pb::rta_request::Device,
}

fn by_imei_md5(md5: &str) -> Device {
    Device {
        grpc: device(pb::DeviceIdType::ImeiMd5, md5),
        tencent: tencent::pb::rta_request::Device {
            imei_md5sum: Some(md5.into()),
            ..Default::default()
        },
        oceanengine: oceanengine::pb::Req {
            did: md5.into(),
            did_type: oceanengine::pb::DidType::ImeiMd5 as i32,
            ..Default::default()
        },
        meituan: meituan::pb::rta_request::Device {
            imei_md5sum: Some(md5.into()),
            ..Default::default()
        },
    }
}

fn by_oaid_md5(md5: &str) -> Device {
    Device {
        grpc: device(pb::DeviceIdType::OaidMd5, md5),
        tencent: tencent::pb::rta_request::Device {
            oaid_md5sum: Some(md5.into()),
            ..Default::default()
        },
        oceanengine: oceanengine::pb::Req {
            did: md5.into(),
            did_type: oceanengine::pb::DidType::OaidMd5 as i32,
            ..Default::default()
        },
        meituan: meituan::pb::rta_request::Device {
            oaid_md5sum: Some(md5.into()),
            ..Default::default()
        },
    }
}

fn by_idfa_md5(md5: &str) -> Device {
    Device {
        grpc: device(pb::DeviceIdType::IdfaMd5, md5),
        tencent: tencent::pb::rta_request::Device {
            idfa_md5sum: Some(md5.into()),
            ..Default::default()
        },
        oceanengine: oceanengine::pb::Req {
            did: md5.into(),
            did_type: oceanengine::pb::DidType::IdfaMd5 as i32,
            ..Default::default()
        },
        meituan: meituan::pb::rta_request::Device {
            idfa_md5sum: Some(md5.into()),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn the_same_devices_take_the_same_strategies_through_every_endpoint() {
    let node = start_media(endpoints()).await;
    let mut grpc = node.client().await;
    // every demo strategy's media ids: what Ocean Engine asks about
    let all_ids: Vec<i64> = (90001..=90007).collect();
    let devices = [
        by_imei_md5(&imei_md5("860000000000001")),
        by_imei_md5(&imei_md5("860000000000002")),
        by_imei_md5(&imei_md5("860000000000003")),
        by_imei_md5(&imei_md5("860000000000004")),
        by_imei_md5(&imei_md5("860000000000005")),
        by_oaid_md5(&plain_md5("oaid-of-user-7")),
        by_imei_md5(&imei_md5("860000000000008")),
        by_idfa_md5(&idfa_md5("6d92078a-8246-4ba4-ae5b-76104861e7dc")),
        by_imei_md5(&imei_md5("869999999999999")),
    ];
    let mut took_any = 0;
    for (i, d) in devices.into_iter().enumerate() {
        let by_grpc: BTreeSet<i64> = grpc
            .decide(request(&format!("g{i}"), vec![d.grpc]))
            .await
            .unwrap()
            .into_inner()
            .matches
            .iter()
            .map(|m| m.target_id.parse().unwrap())
            .collect();
        let t = tencent::pb::RtaRequest {
            id: Some(format!("t{i}")),
            device: Some(d.tencent),
            ..Default::default()
        };
        let answer = post(&node, tencent::PATH, t.encode_to_vec()).await;
        let by_tencent: BTreeSet<i64> = tencent::pb::RtaResponse::decode(&answer.body[..])
            .unwrap()
            .out_target_id
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let o = oceanengine::pb::Req {
            req_id: format!("o{i}"),
            rta_ids: all_ids.clone(),
            ..d.oceanengine
        };
        let answer = post(&node, oceanengine::PATH, o.encode_to_vec()).await;
        let rsp = oceanengine::pb::Rsp::decode(&answer.body[..]).unwrap();
        assert_eq!(
            rsp.user_infos.len(),
            all_ids.len(),
            "each asked id answered"
        );
        let by_oceanengine: BTreeSet<i64> = rsp
            .user_infos
            .iter()
            .filter(|u| u.is_interested)
            .map(|u| u.rta_id)
            .collect();
        let m = meituan::pb::RtaRequest {
            id: Some(format!("m{i}")),
            device: Some(d.meituan),
            ..Default::default()
        };
        let answer = post(&node, meituan::PATH, m.encode_to_vec()).await;
        let by_meituan: BTreeSet<i64> = meituan::pb::RtaResponse::decode(&answer.body[..])
            .unwrap()
            .promotion_target_id
            .into_iter()
            .collect();
        assert_eq!(by_tencent, by_grpc, "device {i}: Tencent vs gRPC");
        assert_eq!(by_oceanengine, by_grpc, "device {i}: Ocean Engine vs gRPC");
        assert_eq!(by_meituan, by_grpc, "device {i}: Meituan vs gRPC");
        took_any += usize::from(!by_grpc.is_empty());
    }
    // the comparison means something only if most devices take something
    assert!(took_any >= 6, "only {took_any} devices matched");
    node.running.shutdown().await;
}

#[tokio::test]
async fn ocean_engine_asking_for_one_strategy_gets_only_that_one_answered() {
    let node = start_media(endpoints()).await;
    // user 7 matches 90005 and 90006; asked only about 90006 (the decision is
    // restricted to it: src/decision/tests.rs)
    let req = oceanengine::pb::Req {
        req_id: "one".into(),
        rta_ids: vec![90006],
        device: Some(oceanengine::pb::Device {
            oaid: "oaid-of-user-7".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = post(&node, oceanengine::PATH, req.encode_to_vec()).await;
    let rsp = oceanengine::pb::Rsp::decode(&answer.body[..]).unwrap();
    let infos: Vec<(i64, bool)> = rsp
        .user_infos
        .iter()
        .map(|u| (u.rta_id, u.is_interested))
        .collect();
    assert_eq!(infos, [(90006, true)]);
    node.running.shutdown().await;
}

#[tokio::test]
async fn bad_input_per_protocol_is_a_clear_400_and_counted() {
    let node = start_media(endpoints()).await;
    let many = oceanengine::pb::Req {
        rta_ids: (1..=10_000).collect(),
        ..Default::default()
    };
    let answer = post(&node, oceanengine::PATH, many.encode_to_vec()).await;
    assert_eq!(answer.status, 400);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("rta_ids"), "{text}");
    // a device block of 1,000 fields on either protocol
    let mut oe_device = Vec::new();
    for _ in 0..1000 {
        oe_device.extend(
            oceanengine::pb::Device {
                ip: "1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
    }
    let mut body = Vec::new();
    prost::encoding::encode_key(17, prost::encoding::WireType::LengthDelimited, &mut body);
    prost::encoding::encode_varint(oe_device.len() as u64, &mut body);
    body.extend(&oe_device);
    let answer = post(&node, oceanengine::PATH, body).await;
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("device"));
    // not hex and unknown enum values: ignored and counted, never a failure
    let odd = meituan::pb::RtaRequest {
        id: Some("odd".into()),
        device: Some(meituan::pb::rta_request::Device {
            os: Some(99),
            imei_md5sum: Some("g".repeat(32)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = post(&node, meituan::PATH, odd.encode_to_vec()).await;
    assert_eq!(answer.status, 200);
    let rsp = meituan::pb::RtaResponse::decode(&answer.body[..]).unwrap();
    assert_eq!(rsp.code, Some(meituan::code::NO_MATCH));
    let text = metrics_text(&node).await;
    for series in [
        "rta_invalid_requests_total{api=\"oceanengine\",field=\"rta_ids\"}",
        "rta_invalid_requests_total{api=\"oceanengine\",field=\"device\"}",
        "rta_ignored_device_ids_total{api=\"meituan\",field=\"device.imei_md5sum\",reason=\"malformed\"}",
    ] {
        assert!(metric_value(&text, series) >= 1.0, "{series} in\n{text}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn the_new_media_answer_their_default_when_out_of_time() {
    let mut media = endpoints();
    media.oceanengine.deadline_ms = 50;
    media.meituan.deadline_ms = 50;
    media.meituan.default_answer = FailMode::FailClosed;
    let node = start_media(media).await;
    let addr = node.running.http_addr;
    // bodies that never complete: the deadline, not the client, ends the wait
    let oe = oceanengine::pb::Req {
        req_id: "late".into(),
        rta_ids: vec![90001],
        ..Default::default()
    }
    .encode_to_vec();
    let (status, bytes) = RawHttp::post_partially(addr, oceanengine::PATH, &oe, 3)
        .await
        .response()
        .await;
    assert_eq!(status, 200);
    let rsp = oceanengine::pb::Rsp::decode(bytes.as_slice()).unwrap();
    assert!(rsp.user_infos.iter().all(|u| !u.is_interested), "{rsp:?}");
    assert_eq!(rsp.cache_time_secs, 0, "a default answer is never cached");
    let mt = meituan::pb::RtaRequest {
        id: Some("late".into()),
        ..Default::default()
    }
    .encode_to_vec();
    let (status, bytes) = RawHttp::post_partially(addr, meituan::PATH, &mt, 3)
        .await
        .response()
        .await;
    assert_eq!(status, 200);
    let rsp = meituan::pb::RtaResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(rsp.code, Some(meituan::code::DEFAULT_REFUSE));
    assert!(matches!(rsp.processing_time_ms, Some(50..)), "{rsp:?}");
    let text = metrics_text(&node).await;
    for api in ["oceanengine", "meituan"] {
        let series = format!("rta_decide_requests_total{{api=\"{api}\",outcome=\"deadline\"}}");
        assert!(metric_value(&text, &series) >= 1.0, "{series} in\n{text}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_serves_at_its_configured_path_and_not_when_disabled() {
    let mut media = endpoints();
    media.meituan.path = "/rta/mt-v2".into();
    media.oceanengine.enabled = false;
    let node = start_media(media).await;
    let req = meituan::pb::RtaRequest {
        id: Some("p".into()),
        is_ping: Some(true),
        ..Default::default()
    };
    let answer = post(&node, "/rta/mt-v2", req.encode_to_vec()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        post(&node, meituan::PATH, req.encode_to_vec()).await.status,
        404
    );
    let oe = oceanengine::pb::Req::default().encode_to_vec();
    assert_eq!(post(&node, oceanengine::PATH, oe).await.status, 404);
    node.running.shutdown().await;
}
