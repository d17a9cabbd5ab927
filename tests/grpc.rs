//! `rta.v1.RtaService` through a real socket with a real tonic client.

mod common;

use common::*;
use prost::Message;
use rta_engine::serve::pb;
use rta_engine::serve::tokens::{BearerTokens, Role, TokenEntry, token_sha256_hex};
use tonic::Code;

use pb::DeviceIdType as T;

/// Expected answers for the golden population, worked out by hand
/// (tests/fixtures/README.md has the reasoning per user).
fn golden_expectations() -> Vec<(u64, pb::DeviceId, Vec<&'static str>)> {
    let imei = |n: u64| device(T::ImeiMd5, imei_md5(&format!("86{n:013}")));
    vec![
        (1, imei(1), vec!["high_intent_formula"]),
        (2, imei(2), vec!["repurchase_diapers"]),
        (3, imei(3), vec![]),
        (4, imei(4), vec!["high_intent_phone_browsers"]),
        (
            5,
            imei(5),
            vec!["new_customer_skincare", "goal_urban_fitness"],
        ),
        (6, imei(6), vec![]),
        (
            7,
            imei(7),
            vec![
                "new_customer_brand_cross_category",
                "new_customer_diapers_to_formula",
            ],
        ),
        (
            8,
            imei(8),
            vec!["repurchase_diapers", "new_customer_diapers_to_formula"],
        ),
        (
            9,
            device(T::IdfaMd5, idfa_md5("6d92078a-8246-4ba4-ae5b-76104861e7dc")),
            vec!["goal_urban_fitness"],
        ),
        (10, imei(10), vec![]),
    ]
}

#[tokio::test]
async fn decide_answers_the_golden_population_as_worked_out_by_hand() {
    let node = start_golden().await;
    let mut client = node.client().await;
    for (user, dev, expected) in golden_expectations() {
        let resp = client
            .decide(request(&format!("golden-{user}"), vec![dev]))
            .await
            .unwrap_or_else(|s| panic!("user {user}: {s}"))
            .into_inner();
        assert_eq!(matched_ids(&resp), expected, "user {user}");
        assert_eq!(resp.take, !expected.is_empty(), "user {user}");
        assert_eq!(resp.request_id, format!("golden-{user}"));
        let expected_cache = if expected.is_empty() { 600 } else { 300 };
        assert_eq!(resp.cache_seconds, expected_cache, "user {user}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn matches_carry_target_id_and_bid_factor_from_the_strategy_file() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let resp = client
        .decide(request(
            "r",
            vec![device(T::ImeiMd5, imei_md5("860000000000001"))],
        ))
        .await
        .unwrap()
        .into_inner();
    let m = &resp.matches[0];
    assert_eq!((m.target_id.as_str(), m.bid_factor), ("90001", 1.8));
    assert_eq!((m.pctr, m.pcvr), (None, None), "no model is configured");
    node.running.shutdown().await;
}

#[tokio::test]
async fn any_linked_device_id_resolves_the_same_user() {
    let node = start_golden().await;
    let mut client = node.client().await;
    // user 7 by OAID md5, by raw OAID, and with an unknown IMEI listed first
    for devices in [
        vec![device(T::OaidMd5, plain_md5("oaid-of-user-7"))],
        vec![device(T::OaidRaw, "oaid-of-user-7")],
        vec![
            device(T::ImeiMd5, imei_md5("869999999999999")),
            device(T::OaidMd5, plain_md5("oaid-of-user-7")),
        ],
    ] {
        let resp = client
            .decide(request("r", devices))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            matched_ids(&resp),
            [
                "new_customer_brand_cross_category",
                "new_customer_diapers_to_formula"
            ]
        );
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn unknown_devices_match_nothing_and_may_be_cached_long() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let resp = client
        .decide(request(
            "r",
            vec![device(T::ImeiMd5, imei_md5("869999999999999"))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.take);
    assert_eq!(resp.cache_seconds, 1800);
    node.running.shutdown().await;
}

#[tokio::test]
async fn decide_never_matches_doubtful_ids_nor_lets_them_be_cached() {
    let node = start_golden().await;
    let mut client = node.client().await;
    for doubtful in [
        device(T::ImeiMd5, plain_md5("")),
        device(T::IdfaMd5, idfa_md5("00000000-0000-0000-0000-000000000000")),
        device(T::OaidMd5, "00000000000000000000000000000000"),
    ] {
        let resp = client
            .decide(request("r", vec![doubtful]))
            .await
            .unwrap()
            .into_inner();
        assert!(!resp.take);
        assert_eq!(
            resp.cache_seconds, 0,
            "a placeholder id must not key a cache"
        );
    }
    // a doubtful id next to a real one: the real one decides
    let resp = client
        .decide(request(
            "r",
            vec![
                device(T::ImeiMd5, plain_md5("")),
                device(T::ImeiMd5, imei_md5("860000000000001")),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(matched_ids(&resp), ["high_intent_formula"]);
    node.running.shutdown().await;
}

#[tokio::test]
async fn decide_rejects_a_malformed_md5_naming_the_field() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let status = client
        .decide(request(
            "r",
            vec![
                device(T::ImeiMd5, imei_md5("860000000000001")),
                device(T::OaidMd5, "not-hex"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("device_ids[1].value:"),
        "{}",
        status.message()
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn decide_rejects_missing_or_unknown_device_types_and_os() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let mut req = request(
        "r",
        vec![pb::DeviceId {
            r#type: 0,
            value: imei_md5("1"),
        }],
    );
    let s = client.decide(req.clone()).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().starts_with("device_ids[0].type"),
        "{}",
        s.message()
    );
    req.device_ids[0].r#type = 99;
    let s = client.decide(req.clone()).await.unwrap_err();
    assert!(
        s.message().contains("unknown device id type 99"),
        "{}",
        s.message()
    );
    let mut req = request("r", vec![device(T::ImeiMd5, imei_md5("1"))]);
    req.os = 42;
    let s = client.decide(req).await.unwrap_err();
    assert!(s.message().starts_with("os:"), "{}", s.message());
    node.running.shutdown().await;
}

#[tokio::test]
async fn decide_rejects_oversized_lists() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let many = (0..17)
        .map(|i| device(T::ImeiMd5, imei_md5(&i.to_string())))
        .collect();
    let s = client.decide(request("r", many)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("device_ids:"), "{}", s.message());
    let s = client
        .decide(request(&"x".repeat(129), vec![]))
        .await
        .unwrap_err();
    assert!(s.message().starts_with("request_id:"), "{}", s.message());
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_strategy_filter_restricts_the_answer_to_those_strategies() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let mut req = request("r", vec![device(T::ImeiMd5, imei_md5("860000000000008"))]);
    req.strategy_ids = vec![
        "new_customer_diapers_to_formula".into(),
        "no_such_strategy".into(),
    ];
    let resp = client.decide(req).await.unwrap().into_inner();
    assert_eq!(matched_ids(&resp), ["new_customer_diapers_to_formula"]);
    node.running.shutdown().await;
}

/// 100 requests with long ids, the users in reverse order and repeated: tens
/// of kilobytes each way, past tonic's first codec buffer (8 KiB) and several
/// HTTP/2 frames, must come back whole and in request order.
#[tokio::test]
async fn batch_decide_answers_a_large_batch_whole_and_in_request_order() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let expectations = golden_expectations();
    let id = |i: usize, u: &u64| format!("{i:03}-b{u}-{}", "r".repeat(120));
    let cases: Vec<_> = expectations
        .iter()
        .rev()
        .cycle()
        .take(100)
        .enumerate()
        .collect();
    let requests = cases
        .iter()
        .map(|(i, (u, d, _))| request(&id(*i, u), vec![d.clone()]))
        .collect();
    let resp = client
        .batch_decide(pb::BatchDecideRequest { requests })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.encoded_len() > 16 * 1024, "{}", resp.encoded_len());
    assert_eq!(resp.responses.len(), cases.len());
    for (r, (i, (u, _, expected))) in resp.responses.iter().zip(&cases) {
        assert_eq!(r.request_id, id(*i, u));
        assert_eq!(matched_ids(r), *expected);
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn batch_decide_names_the_bad_request_and_limits_batch_size() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let requests = vec![
        request("ok", vec![device(T::ImeiMd5, imei_md5("1"))]),
        request("bad", vec![device(T::ImeiMd5, "zz")]),
    ];
    let s = client
        .batch_decide(pb::BatchDecideRequest { requests })
        .await
        .unwrap_err();
    assert!(
        s.message().starts_with("requests[1].device_ids[0].value"),
        "{}",
        s.message()
    );
    let requests = (0..101).map(|i| request(&i.to_string(), vec![])).collect();
    let s = client
        .batch_decide(pb::BatchDecideRequest { requests })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("requests:"), "{}", s.message());
    node.running.shutdown().await;
}

#[tokio::test]
async fn standard_health_service_reports_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let node = start_golden().await;
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let resp = health
        .check(HealthCheckRequest {
            service: "rta.v1.RtaService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status(), ServingStatus::Serving);
    node.running.shutdown().await;
}

#[tokio::test]
async fn server_reflection_lists_the_rta_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let node = start_golden().await;
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"rta.v1.RtaService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_request_about_no_device_is_invalid_argument_naming_device_ids() {
    let node = start_golden().await;
    let mut client = node.client().await;
    let err = client
        .decide(pb::DecideRequest::default())
        .await
        .expect_err("an empty request is a caller's bug");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("device_ids: "),
        "{}",
        err.message()
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn with_client_tokens_configured_decide_takes_only_callers_holding_one() {
    let callers = BearerTokens::from_entries(&[
        TokenEntry {
            name: "dsp-a".into(),
            role: Role::Read,
            sha256: token_sha256_hex("dsp-a-secret"),
            strategies: Vec::new(),
        },
        TokenEntry {
            name: "dsp-b".into(),
            role: Role::Read,
            sha256: token_sha256_hex("dsp-b-secret"),
            strategies: vec!["goal_urban_fitness".into()],
        },
    ])
    .unwrap();
    let node = start_with_callers(callers).await;
    let mut client = node.client().await;
    let ask = |token: Option<&str>| {
        let mut req = tonic::Request::new(request(
            "r1",
            vec![device(T::ImeiMd5, imei_md5("860000000000001"))],
        ));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };
    let anonymous = client.decide(ask(None)).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let wrong = client.decide(ask(Some("guess"))).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let answer = client
        .decide(ask(Some("dsp-a-secret")))
        .await
        .expect("a configured caller decides")
        .into_inner();
    assert!(answer.take);
    assert_eq!(matched_ids(&answer), ["high_intent_formula"]);

    // dsp-b may ask about its own strategy only: the same device, matched by
    // another strategy, is no take for it, and naming that strategy is denied
    let scoped = client
        .decide(ask(Some("dsp-b-secret")))
        .await
        .expect("a scoped caller decides")
        .into_inner();
    assert!(!scoped.take, "{scoped:?}");
    let mut other = ask(Some("dsp-b-secret"));
    other.get_mut().strategy_ids = vec!["high_intent_formula".into()];
    let denied = client.decide(other).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("high_intent_formula"),
        "{denied:?}"
    );
    let text = metrics_text(&node).await;
    for needle in [
        "rta_client_auth_failures_total{api=\"grpc\",reason=\"missing\"} 1",
        "rta_client_auth_failures_total{api=\"grpc\",reason=\"invalid\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    node.running.shutdown().await;
}
