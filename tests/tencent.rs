//! The Tencent RTA endpoint (`POST /rta/tencent`) through a real socket with real
//! HTTP clients (reqwest over HTTP/1.1 and h2c, and raw HTTP/1.1 for slow
//! bodies). Golden requests were encoded by Google's protobuf runtime
//! (scripts/tencent_fixtures.py); answers are decoded here with prost and, in CI,
//! again with Google's runtime (scripts/tencent_check.py over the answers this test
//! dumps to `RTA_TENCENT_DUMP_DIR`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use prost::Message;
use rta_engine::serve::tencent::{self, code, pb};
use rta_engine::serve::tencent::{FactorField, FailMode, TencentConfig};

use pb::rta_request::Device;
use pb::rta_request::device::DeviceIdTag;

/// The default settings, but with a deadline no loaded CI machine reaches, so that
/// no answer becomes the default answer by accident.
fn config() -> TencentConfig {
    TencentConfig {
        deadline_ms: 10_000,
        ..TencentConfig::default()
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tencent")
}

fn user1() -> Device {
    Device {
        os: Some(pb::rta_request::OperatingSystem::OsAndroid as i32),
        imei_md5sum: Some(imei_md5("860000000000001")),
        ..Default::default()
    }
}

fn rta_request(id: &str, device: Device) -> pb::RtaRequest {
    pb::RtaRequest {
        id: Some(id.into()),
        device: Some(device),
        ..Default::default()
    }
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    version: reqwest::Version,
    body: Vec<u8>,
}

impl Answer {
    fn decoded(&self) -> pb::RtaResponse {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type.as_deref(), Some(tencent::CONTENT_TYPE));
        pb::RtaResponse::decode(self.body.as_slice()).expect("an RtaResponse")
    }
}

async fn post(http: &reqwest::Client, node: &TestNode, body: Vec<u8>) -> Answer {
    let resp = http
        .post(node.http_url(tencent::PATH))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("the endpoint answers");
    let status = resp.status().as_u16();
    let version = resp.version();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("a body").to_vec();
    Answer {
        status,
        content_type,
        version,
        body,
    }
}

async fn decide(node: &TestNode, req: &pb::RtaRequest) -> pb::RtaResponse {
    post(&reqwest::Client::new(), node, req.encode_to_vec())
        .await
        .decoded()
}

/// The answer a golden case expects, as an `RtaResponse`, from the JSON the
/// fixture script wrote (json_format names; absent = not set).
fn expected_response(v: &serde_json::Value) -> pb::RtaResponse {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let u32_of = |v: &serde_json::Value| v.as_u64().map(|n| u32::try_from(n).unwrap());
    let f32_of = |v: &serde_json::Value| v.as_f64().map(|f| f as f32);
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let known = [
        "request_id",
        "code",
        "out_target_id",
        "target_infos",
        "response_cache_time",
    ];
    for key in v.as_object().unwrap().keys() {
        assert!(known.contains(&key.as_str()), "expectation uses {key}");
    }
    pb::RtaResponse {
        request_id: s(&v["request_id"]),
        code: u32_of(&v["code"]),
        out_target_id: strings(&v["out_target_id"]),
        target_infos: v["target_infos"]
            .as_array()
            .map(|infos| {
                infos
                    .iter()
                    .map(|t| pb::rta_response::TargetInfo {
                        out_target_id: s(&t["out_target_id"]),
                        user_weight_factor: f32_of(&t["user_weight_factor"]),
                        cpc_factor: f32_of(&t["cpc_factor"]),
                        pcvr: f32_of(&t["pcvr"]),
                        dsp_tag_str: s(&t["dsp_tag_str"]),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        response_cache_time: u32_of(&v["response_cache_time"]),
        ..Default::default()
    }
}

#[tokio::test]
async fn golden_requests_from_googles_protobuf_get_the_hand_worked_answers() {
    let node = start_tencent(config()).await;
    let http = reqwest::Client::new();
    let dump = std::env::var_os("RTA_TENCENT_DUMP_DIR").map(PathBuf::from);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "golden cases missing: {cases:?}");
    for path in cases {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = expected["request"]
            .as_str()
            .unwrap()
            .trim_end_matches(".bin");
        let body =
            std::fs::read(fixture_dir().join(expected["request"].as_str().unwrap())).unwrap();
        let answer = post(&http, &node, body).await;
        if let Some(dir) = &dump {
            // .ci/run decodes these with Google's protobuf (scripts/tencent_check.py)
            std::fs::write(
                dir.join(format!("{name}.status")),
                answer.status.to_string(),
            )
            .unwrap();
            std::fs::write(dir.join(format!("{name}.response.bin")), &answer.body).unwrap();
        }
        let status = expected["http_status"].as_u64().unwrap();
        assert_eq!(u64::from(answer.status), status, "{name}");
        if expected["response"].is_null() {
            assert!(!answer.body.is_empty(), "{name}: an error says why");
            continue;
        }
        let mut actual = answer.decoded();
        let varying: Vec<&str> = expected["varying"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if varying.contains(&"processing_time_ms") {
            let ms = actual.processing_time_ms.take();
            assert!(matches!(ms, Some(0..)), "{name}: processing_time_ms {ms:?}");
        }
        assert_eq!(actual, expected_response(&expected["response"]), "{name}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn ping_answers_code_and_id_without_touching_the_index() {
    let node = start_tencent(config()).await;
    let mut req = rta_request("ping-1", user1());
    req.is_ping = Some(true);
    let resp = decide(&node, &req).await;
    // user 1 matches a strategy: any decision would carry target ids and a cache time
    assert_eq!(
        resp,
        pb::RtaResponse {
            request_id: Some("ping-1".into()),
            code: Some(code::TAKE),
            ..Default::default()
        }
    );
    assert!(
        metrics_text(&node)
            .await
            .contains("rta_pings_total{api=\"tencent\"}")
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn h2c_and_http1_keep_alive_both_serve_the_endpoint() {
    let node = start_tencent(config()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    for (client, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        for i in 0..3 {
            let req = rta_request(&format!("r{i}"), user1());
            let answer = post(client, &node, req.encode_to_vec()).await;
            assert_eq!(answer.version, version);
            let resp = answer.decoded();
            assert_eq!(resp.out_target_id, ["90001"]);
            assert_eq!(resp.request_id.as_deref(), Some(format!("r{i}").as_str()));
        }
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn is_test_requests_are_decided_but_counted_apart() {
    let node = start_tencent(config()).await;
    let mut req = rta_request("t", user1());
    req.is_test = Some(true);
    let resp = decide(&node, &req).await;
    assert_eq!(resp.code, Some(code::TAKE));
    assert_eq!(resp.out_target_id, ["90001"]);
    let text = metrics_text(&node).await;
    for needle in [
        "rta_decide_requests_total{api=\"tencent_test\",outcome=\"take\"}",
        "rta_decide_duration_seconds_bucket{api=\"tencent_test\",le=",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn live_requests_are_counted_per_outcome_with_their_duration() {
    let node = start_tencent(config()).await;
    decide(&node, &rta_request("a", user1())).await;
    let unknown = Device {
        imei_md5sum: Some(imei_md5("869999999999999")),
        ..Default::default()
    };
    decide(&node, &rta_request("b", unknown)).await;
    let text = metrics_text(&node).await;
    for needle in [
        "rta_decide_requests_total{api=\"tencent\",outcome=\"take\"}",
        "rta_decide_requests_total{api=\"tencent\",outcome=\"unknown_device\"}",
        "rta_decide_duration_seconds_bucket{api=\"tencent\",le=",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    if let Ok(dir) = std::env::var("RTA_METRICS_DUMP_DIR") {
        // .ci/run checks this file with promtool, as it does the admin test's
        std::fs::write(Path::new(&dir).join("metrics_tencent.prom"), &text).unwrap();
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_present_malformed_id_is_ignored_and_counted_not_refused() {
    let node = start_tencent(config()).await;
    let device = Device {
        imei_md5sum: Some("86000000000000".into()),
        oaid_md5sum: Some(plain_md5("oaid-of-user-7")),
        ..Default::default()
    };
    let resp = decide(&node, &rta_request("m", device)).await;
    assert_eq!(resp.out_target_id, ["90005", "90006"]);
    let text = metrics_text(&node).await;
    let needle =
        "rta_ignored_device_ids_total{api=\"tencent\",field=\"imei_md5sum\",reason=\"malformed\"}";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
    node.running.shutdown().await;
}

#[tokio::test]
async fn ids_the_media_flags_as_doubtful_never_match() {
    let node = start_tencent(config()).await;
    let mut device = user1();
    device.doubtful_ids_list = vec![DeviceIdTag::ImeiMd5Doubtful as i32];
    let resp = decide(&node, &rta_request("d", device.clone())).await;
    assert_eq!(resp.code, Some(code::NO_MATCH));
    assert!(resp.out_target_id.is_empty());
    assert_eq!(resp.response_cache_time, None, "nothing may be cached");
    // a flag for another id leaves the IMEI alone
    device.doubtful_ids_list = vec![DeviceIdTag::IdfaMd5Doubtful as i32];
    let resp = decide(&node, &rta_request("d", device)).await;
    assert_eq!(resp.out_target_id, ["90001"]);
    let text = metrics_text(&node).await;
    let needle = "rta_ignored_device_ids_total{api=\"tencent\",field=\"imei_md5sum\",reason=\"flagged_doubtful\"}";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
    node.running.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_reason_and_are_counted() {
    let node = start_tencent(config()).await;
    let http = reqwest::Client::new();
    let answer = post(&http, &node, b"this is not protobuf".to_vec()).await;
    assert_eq!(answer.status, 400);
    let reason = String::from_utf8(answer.body).unwrap();
    assert!(
        reason.starts_with("body: not a tencent.ad.rta.RtaRequest"),
        "{reason}"
    );
    let text = metrics_text(&node).await;
    let needle = "rta_invalid_requests_total{api=\"tencent\",field=\"body\"}";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
    node.running.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_empty_caids_are_refused_before_decoding_and_the_next_request_is_served() {
    let node = start_tencent(config()).await;
    let http = reqwest::Client::new();
    let mut device = user1();
    device.qaid_infos = vec![Default::default(); 10_000];
    let flood = post(&http, &node, rta_request("flood", device).encode_to_vec()).await;
    assert_eq!(flood.status, 400);
    let reason = String::from_utf8(flood.body).unwrap();
    assert!(reason.starts_with("device:"), "{reason}");
    let text = metrics_text(&node).await;
    let needle = "rta_invalid_requests_total{api=\"tencent\",field=\"device\"}";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
    let answer = decide(&node, &rta_request("after", user1())).await;
    assert_eq!(answer.request_id.as_deref(), Some("after"));
    node.running.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_configured_limit_get_413_and_up_to_it_are_served() {
    let limit = 1024;
    let node = start_tencent(TencentConfig {
        max_body_bytes: limit,
        ..config()
    })
    .await;
    let http = reqwest::Client::new();
    // a request of exactly `limit` bytes: pad the id
    let mut req = rta_request("", user1());
    req.id = None;
    // the id costs its tag, a 2-byte length and itself
    req.id = Some("x".repeat(limit - req.encoded_len() - 3));
    assert_eq!(req.encoded_len(), limit);
    let ok = post(&http, &node, req.encode_to_vec()).await;
    assert_eq!(ok.decoded().out_target_id, ["90001"]);
    let answer = post(&http, &node, vec![0x0a; limit + 1]).await;
    assert_eq!(answer.status, 413);
    let text = metrics_text(&node).await;
    let needle = "rta_invalid_requests_total{api=\"tencent\",field=\"body_size\"}";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
    node.running.shutdown().await;
}

#[tokio::test]
async fn bid_factors_go_to_the_configured_target_info_fields() {
    let node = start_tencent(TencentConfig {
        bid_factor_fields: vec![FactorField::CpcFactor],
        ..config()
    })
    .await;
    let resp = decide(&node, &rta_request("f", user1())).await;
    let info = &resp.target_infos[0];
    assert_eq!(info.cpc_factor, Some(1.8));
    assert_eq!(info.user_weight_factor, None);
    node.running.shutdown().await;
}

#[tokio::test]
async fn cache_times_respect_the_configured_floor_and_ceiling() {
    let node = start_tencent(TencentConfig {
        min_cache_seconds: 900,
        max_cache_seconds: 1200,
        ..config()
    })
    .await;
    // matched (300 s in the strategy file) is raised to the floor
    let resp = decide(&node, &rta_request("c", user1())).await;
    assert_eq!(resp.response_cache_time, Some(900));
    // unknown device (1800 s) is cut to the ceiling
    let unknown = Device {
        imei_md5sum: Some(imei_md5("869999999999999")),
        ..Default::default()
    };
    let resp = decide(&node, &rta_request("c", unknown)).await;
    assert_eq!(resp.response_cache_time, Some(1200));
    // a placeholder id may never be cached, floor or not
    let placeholder = Device {
        imei_md5sum: Some(plain_md5("")),
        ..Default::default()
    };
    let resp = decide(&node, &rta_request("c", placeholder)).await;
    assert_eq!(resp.response_cache_time, None);
    node.running.shutdown().await;
}

#[tokio::test]
async fn the_endpoint_can_be_disabled_and_takes_only_post() {
    let node = start_tencent(config()).await;
    let get = reqwest::get(node.http_url(tencent::PATH)).await.unwrap();
    assert_eq!(get.status(), 405);
    node.running.shutdown().await;
    let node = start_tencent(TencentConfig {
        enabled: false,
        ..config()
    })
    .await;
    let answer = post(&reqwest::Client::new(), &node, user1().encode_to_vec()).await;
    assert_eq!(answer.status, 404);
    node.running.shutdown().await;
}

/// Raw HTTP/1.1 over a tokio socket (only `net` readiness, no io-util), for
/// requests whose body arrives late.
#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_with_the_default_answer() {
    let node = start_tencent(TencentConfig {
        max_in_flight: 1,
        deadline_ms: 30_000,
        default_answer: FailMode::FailClosed,
        ..config()
    })
    .await;
    let addr = node.running.http_addr;
    let body = rta_request("slow", user1()).encode_to_vec();
    // two requests whose bodies are still on their way: whichever is admitted holds
    // the only slot while it waits; the other is shed at once, body or not
    let mut a = RawHttp::post_partially(addr, tencent::PATH, &body, 3).await;
    let mut b = RawHttp::post_partially(addr, tencent::PATH, &body, 3).await;
    let first = tokio::select! {
        r = a.0.readable() => { r.unwrap(); 0 }
        r = b.0.readable() => { r.unwrap(); 1 }
    };
    let (shed, admitted) = if first == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (status, bytes) = shed.response().await;
    assert_eq!(status, 200, "the media expects 200 for any answer");
    let resp = pb::RtaResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(resp.code, Some(code::DEFAULT_REFUSE));
    assert!(resp.out_target_id.is_empty());
    assert_eq!(resp.response_cache_time, None);
    // the admitted one is decided once its body is complete
    admitted.write(&body[3..]).await;
    let (status, bytes) = admitted.response().await;
    assert_eq!(status, 200);
    let resp = pb::RtaResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(resp.out_target_id, ["90001"]);
    // and the slot is free again
    let resp = decide(&node, &rta_request("after", user1())).await;
    assert_eq!(resp.out_target_id, ["90001"]);
    let text = metrics_text(&node).await;
    // registered at 0 from the start: the answer must have counted
    let needle = "rta_decide_requests_total{api=\"tencent\",outcome=\"shed\"}";
    assert!(
        metric_value(&text, needle) >= 1.0,
        "{needle} not counted in\n{text}"
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_request_not_answered_within_its_deadline_gets_the_default_answer() {
    let node = start_tencent(TencentConfig {
        deadline_ms: 50,
        default_answer: FailMode::FailOpen,
        ..config()
    })
    .await;
    let body = rta_request("late", user1()).encode_to_vec();
    // the body never completes: the deadline, not the client, ends the wait
    let mut slow = RawHttp::post_partially(node.running.http_addr, tencent::PATH, &body, 5).await;
    let (status, bytes) = slow.response().await;
    assert_eq!(status, 200);
    let resp = pb::RtaResponse::decode(bytes.as_slice()).unwrap();
    // fail-open: code 0 without strategy ids, i.e. "all ads may compete"
    assert_eq!(resp.code, Some(code::TAKE));
    assert!(resp.out_target_id.is_empty());
    assert!(resp.target_infos.is_empty());
    assert!(matches!(resp.processing_time_ms, Some(50..)), "{resp:?}");
    let text = metrics_text(&node).await;
    // registered at 0 from the start: the answer must have counted
    let needle = "rta_decide_requests_total{api=\"tencent\",outcome=\"deadline\"}";
    assert!(
        metric_value(&text, needle) >= 1.0,
        "{needle} not counted in\n{text}"
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_content_length_over_the_limit_gets_413_from_the_header_without_waiting_for_a_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // a deadline far longer than the test waits: the default answer would come too late
    let node = start_tencent(TencentConfig {
        max_body_bytes: 1024,
        deadline_ms: 30_000,
        ..config()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(node.running.http_addr)
        .await
        .expect("the media listener accepts");
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: rta\r\ncontent-type: application/x-protobuf\r\ncontent-length: 10000000\r\n\r\n",
        tencent::PATH
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // no body byte is ever sent
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("answered from the header, not after the deadline")
        .unwrap();
    let status_line = String::from_utf8_lossy(&answer[..n]);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    node.running.shutdown().await;
}
