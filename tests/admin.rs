//! Admin HTTP: health, readiness, metrics, strategies and reload, users, explain.

mod common;

use common::*;
use rta_engine::serve::node::StrategySource;
use rta_engine::serve::pb;

const STRATEGY_A: &str = r#"
version = "a"
[[strategy]]
id = "families"
target_id = "1"
audience = "target_group in {urban_family, town_family}"
"#;

const STRATEGY_B: &str = r#"
version = "b"
[[strategy]]
id = "gen_z"
target_id = "2"
audience = "target_group == urban_gen_z"
"#;

const STRATEGY_BROKEN: &str = r#"
version = "broken"
[[strategy]]
id = "typo"
target_id = "3"
audience = '''
target_group == urban_gen_z
  and cart(category 1319, 7d) >= many
'''
"#;

/// A scored strategy under `id` (the calibration gauges are per scored strategy).
fn scored(version: &str, id: &str) -> String {
    format!(
        r#"
version = "{version}"
[model]
version = "m"
dims = 2
[[strategy]]
id = "{id}"
target_id = "1"
audience = "target_group in {{urban_family}}"
[strategy.score]
ctr = {{ weights = [1.0, 0.0], bias = -3.0 }}
"#
    )
}

async fn decide_user_1(node: &TestNode) -> Vec<String> {
    let mut client = node.client().await;
    let resp = client
        .decide(request(
            "r",
            vec![device(
                pb::DeviceIdType::ImeiMd5,
                imei_md5("860000000000001"),
            )],
        ))
        .await
        .unwrap()
        .into_inner();
    matched_ids(&resp)
}

#[tokio::test]
async fn reload_swaps_a_good_file_in_and_keeps_serving_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strategies.toml");
    std::fs::write(&path, STRATEGY_A).unwrap();
    let node = start_with(StrategySource::File(path.clone())).await;
    let http = node.admin_client();
    assert_eq!(decide_user_1(&node).await, ["families"]);

    std::fs::write(&path, STRATEGY_BROKEN).unwrap();
    let resp = http
        .post(node.admin_url("/strategies/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    let err = body["error"].as_str().unwrap();
    assert!(
        err.contains("strategies.toml:8:34: strategy `typo`"),
        "{err}"
    );
    // the old set still serves
    assert_eq!(decide_user_1(&node).await, ["families"]);
    let listed: serde_json::Value = http
        .get(node.admin_url("/strategies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["version"], "a");

    std::fs::write(&path, STRATEGY_B).unwrap();
    let resp = http
        .post(node.admin_url("/strategies/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let summary: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (summary["version"].as_str(), summary["strategies"].as_u64()),
        (Some("b"), Some(1))
    );
    assert_eq!(decide_user_1(&node).await, Vec::<String>::new());
    node.running.shutdown().await;
}

#[tokio::test]
async fn users_endpoint_shows_the_profile_by_any_device_id() {
    let node = start_golden().await;
    let http = node.admin_client();
    let by_oaid = http
        .get(node.admin_url(&format!("/users/{}", plain_md5("oaid-of-user-7"))))
        .send()
        .await
        .unwrap();
    assert_eq!(by_oaid.status(), 200);
    let rec: serde_json::Value = by_oaid.json().await.unwrap();
    assert_eq!(rec["user_id"], 7);
    assert_eq!(rec["tags"]["target_group"][0], "town_family");
    assert_eq!(rec["demographics"]["children"], "yes");
    assert_eq!(rec["devices"].as_array().unwrap().len(), 2);
    assert_eq!(rec["behaviour"][0]["days_ago"], 15);

    let unknown = http
        .get(node.admin_url(&format!("/users/{}", plain_md5("nobody"))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let malformed = http.get(node.admin_url("/users/xyz")).send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    node.running.shutdown().await;
}

#[tokio::test]
async fn explain_names_the_first_failing_clause_per_strategy() {
    let node = start_golden().await;
    let http = node.admin_client();
    let url = node.admin_url(&format!(
        "/explain?device={}&os=android",
        imei_md5("860000000000003")
    ));
    let exp: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(exp["user_id"], 3);
    assert_eq!(exp["decision"]["take"], false);
    let verdicts = exp["verdicts"].as_array().unwrap();
    let formula = verdicts
        .iter()
        .find(|v| v["strategy_id"] == "high_intent_formula")
        .unwrap();
    assert_eq!(formula["matched"], false);
    assert_eq!(formula["failed_clause"], "cart(category 1319, 7d)");
    let fitness = verdicts
        .iter()
        .find(|v| v["strategy_id"] == "goal_urban_fitness")
        .unwrap();
    assert_eq!(
        fitness["failed_clause"],
        "target_group in {urban_gen_z, urban_middle_class}"
    );

    let url = node.admin_url(&format!("/explain?device={}", imei_md5("860000000000005")));
    let exp: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let fitness = exp["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["strategy_id"] == "goal_urban_fitness")
        .unwrap();
    assert_eq!(
        (
            fitness["matched"].as_bool(),
            fitness["failed_clause"].is_null()
        ),
        (Some(true), true)
    );

    let bad = http
        .get(node.admin_url("/explain?device=nothex&os=android"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // admin errors are JSON naming the field, like every other admin error
    let body: serde_json::Value = bad.json().await.expect("a JSON error body");
    assert_eq!(body["field"], "device[0]");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("device[0]: ")),
        "{body}"
    );
    let bad_os = http
        .get(node.admin_url(&format!("/explain?device={}&os=windows", plain_md5("x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_os.status(), 400);
    let body: serde_json::Value = bad_os.json().await.expect("a JSON error body");
    assert_eq!(body["field"], "os");
    // so is a query axum itself rejects (no device parameter at all)
    let no_device = http
        .get(node.admin_url("/explain?os=android"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_device.status(), 400);
    let body: serde_json::Value = no_device.json().await.expect("a JSON error body");
    assert_eq!(body["field"], "query");
    node.running.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let node = start_golden().await;
    let http = node.admin_client();
    assert_eq!(
        http.get(node.http_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(node.http_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    node.node.set_ready(false);
    assert_eq!(
        http.get(node.http_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    node.node.set_ready(true);

    // one decision so that request counters and the histogram exist
    assert_eq!(decide_user_1(&node).await, ["high_intent_formula"]);
    let text = http
        .get(node.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "rta_decide_requests_total{api=\"grpc\",outcome=\"take\"}",
        "rta_decide_duration_seconds_bucket{api=\"grpc\",le=",
        "rta_strategy_matches_total{strategy=\"high_intent_formula\"}",
        "rta_index_users 10",
        "rta_strategies 7",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    if let Ok(dir) = std::env::var("RTA_METRICS_DUMP_DIR") {
        // .ci/run checks this file with promtool
        std::fs::write(std::path::Path::new(&dir).join("metrics.prom"), &text).unwrap();
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn calibration_gauges_follow_the_live_strategies_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strategies.toml");
    std::fs::write(&path, scored("one", "scored_before")).unwrap();
    let node = start_with(StrategySource::File(path.clone())).await;
    let http = node.admin_client();
    let post = |path: &'static str| {
        let (http, node) = (&http, &node);
        async move {
            let resp = http.post(node.admin_url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
    };
    // each scrape after a recalibration, as the calibration cadence runs them
    let scrape = || async {
        post("/calibration/recalibrate").await;
        metrics_text(&node).await
    };
    let reported = |text: &str, id: &str| {
        let line = format!(r#"rta_model_calibration_shift{{strategy="{id}",rate="ctr"}} 0"#);
        text.lines().any(|l| l == line)
    };
    let text = scrape().await;
    assert!(reported(&text, "scored_before"), "{text}");

    std::fs::write(&path, scored("two", "scored_after")).unwrap();
    post("/strategies/reload").await;
    let text = scrape().await;
    assert!(reported(&text, "scored_after"), "{text}");
    // (other per-strategy series are counters, which keep their last value)
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("rta_model_") && l.contains(r#"strategy="scored_before""#)),
        "a removed strategy's calibration is still reported:\n{text}"
    );
    node.running.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_is_not_on_the_media_listener_and_health_is_on_both() {
    let node = start_golden().await;
    let http = node.admin_client();
    assert_ne!(node.running.http_addr, node.running.admin_addr);
    for path in [
        "/metrics",
        "/strategies",
        "/blacklist",
        "/calibration",
        "/explain?device=00000000000000000000000000000001",
    ] {
        let on_media = http.get(node.http_url(path)).send().await.unwrap();
        assert_eq!(
            on_media.status(),
            404,
            "{path} must not be on the media listener"
        );
        let on_admin = http.get(node.admin_url(path)).send().await.unwrap();
        assert_eq!(on_admin.status(), 200, "{path} on the admin listener");
    }
    let post = http
        .post(node.http_url("/strategies/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404, "no mutation reaches the media listener");
    for url in [node.http_url("/healthz"), node.admin_url("/healthz")] {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200, "{url}");
    }
    for url in [node.http_url("/readyz"), node.admin_url("/readyz")] {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200, "{url}");
    }
    node.running.shutdown().await;
}

#[tokio::test]
async fn anonymous_and_unknown_tokens_get_401_and_are_counted_by_reason() {
    // counted from the first request on
    let _ = rta_engine::telemetry::prometheus();
    let node = start_golden().await;
    let anonymous = reqwest::Client::new();
    let resp = anonymous
        .get(node.admin_url("/strategies"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("bearer token"))
    );
    let anonymous_post = anonymous
        .post(node.admin_url("/blacklist"))
        .json(&serde_json::json!({"user": 3, "ttl_seconds": 31536000}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_post.status(), 401);
    let wrong = client_with("not-a-configured-token")
        .delete(node.admin_url("/blacklist?user=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // nothing was listed by the anonymous POST
    let listed: serde_json::Value = node
        .admin_client()
        .get(node.admin_url("/blacklist"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["held"], 0, "{listed}");
    // /metrics and the health checks stay open on the admin listener
    let text = metrics_text(&node).await;
    for needle in [
        "rta_admin_auth_failures_total{reason=\"missing\"}",
        "rta_admin_auth_failures_total{reason=\"invalid\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    let health = anonymous
        .get(node.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_read_token_reads_but_every_mutation_needs_a_write_token() {
    // counted from the first request on
    let _ = rta_engine::telemetry::prometheus();
    let node = start_golden().await;
    let reader = client_with(READ_TOKEN);
    let strategies = reader
        .get(node.admin_url("/strategies"))
        .send()
        .await
        .unwrap();
    assert_eq!(strategies.status(), 200);
    for (method, path) in [
        (reqwest::Method::POST, "/strategies/reload"),
        (reqwest::Method::POST, "/calibration/recalibrate"),
        (reqwest::Method::DELETE, "/blacklist?user=3"),
    ] {
        let resp = reader
            .request(method.clone(), node.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
    }
    let text = metrics_text(&node).await;
    assert!(text.contains("rta_admin_auth_failures_total{reason=\"forbidden\"} 3"));
    node.running.shutdown().await;
}

#[tokio::test]
async fn a_cross_site_text_plain_post_is_refused_and_mutations_are_audited() {
    // counted from the first request on
    let _ = rta_engine::telemetry::prometheus();
    let node = start_golden().await;
    // what a web page can send without a preflight: no token, text/plain
    let cross_site = reqwest::Client::new()
        .post(node.admin_url("/strategies/reload"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 401);
    // even with a token, a mutation's body must be JSON
    let plain = node
        .admin_client()
        .post(node.admin_url("/strategies/reload"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let reload = node
        .admin_client()
        .post(node.admin_url("/strategies/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let text = metrics_text(&node).await;
    for needle in [
        "rta_admin_actions_total{action=\"POST /strategies/reload\",result=\"415\"} 1",
        // other tests reload too: this one's is at least one of them
        "rta_admin_actions_total{action=\"POST /strategies/reload\",result=\"200\"} ",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    node.running.shutdown().await;
}
