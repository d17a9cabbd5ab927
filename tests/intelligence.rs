//! Decision intelligence through real sockets: dual-tower scores, frequency
//! caps, experiments and the blacklist, answered over gRPC and explained and
//! administered over the admin HTTP API. Expected answers are worked out in
//! tests/fixtures/README.md ("Decision intelligence").

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use rta_engine::decision::Clock;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::serve::node::StrategySource;
use rta_engine::serve::pb;
use serde_json::Value;

use pb::DeviceIdType as T;

const USERS: &str = include_str!("fixtures/intel/users.jsonl");

async fn start() -> TestNode {
    let _ = rta_engine::telemetry::prometheus();
    let index = Arc::new(index_from(USERS, &Taxonomy::default_taxonomy()));
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel/strategies.toml");
    start_node(index, StrategySource::File(file), Clock::Fixed(TODAY)).await
}

fn imei(n: u64) -> pb::DeviceId {
    device(T::ImeiMd5, imei_md5(&format!("86{n:013}")))
}

fn sigma(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// (strategy, target, bid factor, pctr, pcvr) of an answer.
type Row = (String, String, f64, Option<f64>, Option<f64>);

async fn decide(node: &TestNode, user: u64, buckets: Vec<u64>) -> (bool, Vec<Row>) {
    let mut req = request(&format!("u{user}"), vec![imei(user)]);
    req.experiment_ids = buckets;
    let resp = node
        .client()
        .await
        .decide(req)
        .await
        .expect("decide")
        .into_inner();
    let rows = resp
        .matches
        .iter()
        .map(|m| {
            (
                m.strategy_id.clone(),
                m.target_id.clone(),
                m.bid_factor,
                m.pctr,
                m.pcvr,
            )
        })
        .collect();
    (resp.take, rows)
}

#[track_caller]
fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value"));
    assert!((got - want).abs() < 0.002, "{what}: got {got}, want {want}");
}

#[tokio::test]
async fn scores_caps_and_experiments_answer_as_worked_out_by_hand() {
    let node = start().await;
    let (q1, q05) = (64.0 * 2.0 / 127.0, 32.0 * 2.0 / 127.0);

    // user 1: both scored strategies, ranked by expected value, then the unscored
    let (take, rows) = decide(&node, 1, vec![]).await;
    assert!(take);
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["scored_ctr", "scored_value", "capped"]);
    close(rows[0].3, sigma(2.0 - 4.0), "u1 scored_ctr pctr");
    close(Some(rows[0].2), sigma(-2.0) / 0.1, "u1 scored_ctr bid");
    assert_eq!(rows[0].4, None, "scored_ctr has no cvr head");
    let (pctr, pcvr) = (sigma(q1 - 3.0), sigma(q05 - 2.0));
    close(rows[1].3, pctr, "u1 scored_value pctr");
    close(rows[1].4, pcvr, "u1 scored_value pcvr");
    assert!((rows[1].2 - pctr * pcvr / 0.005).abs() < 0.05, "{rows:?}");
    assert_eq!((rows[2].2, rows[2].3), (1.2, None));

    // user 2: below min_pctr, and capped at 3 exposures today
    let (_, rows) = decide(&node, 2, vec![]).await;
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["scored_value"]);
    close(rows[0].3, sigma(-3.0), "u2 pctr");
    close(rows[0].4, sigma(-2.0), "u2 pcvr");

    // users 3 and 4: no vector (4: another model's) -> fallbacks
    for user in [3, 4] {
        let (_, rows) = decide(&node, user, vec![]).await;
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ["scored_value", "capped"], "user {user}");
        assert_eq!(
            (rows[0].2, rows[0].3, rows[0].4),
            (1.0, None, None),
            "user {user}"
        );
    }

    // user 5: 10 exposures today reach the overall cap
    let (take, rows) = decide(&node, 5, vec![]).await;
    assert!(!take && rows.is_empty(), "{rows:?}");

    // experiment: user 20 in variant a, user 25 in the holdout unless the
    // media's bucket 900 binds the request to variant `media`
    let (_, rows) = decide(&node, 20, vec![]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("t-exp-a", 2.0));
    let (take, _) = decide(&node, 25, vec![]).await;
    assert!(!take);
    let (_, rows) = decide(&node, 25, vec![7, 900]).await;
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("t-exp", 3.0));

    // every step is counted in /metrics
    let text = metrics_text(&node).await;
    for line in [
        r#"rta_strategy_refusals_total{strategy="scored_ctr",reason="score"}"#,
        r#"rta_strategy_refusals_total{strategy="capped",reason="cap"}"#,
        r#"rta_strategy_refusals_total{strategy="scored_ctr",reason="no_vector"}"#,
        r#"rta_strategy_refusals_total{strategy="exp",reason="holdout"}"#,
        r#"rta_experiment_assignments_total{strategy="exp",arm="a"}"#,
        r#"rta_experiment_assignments_total{strategy="exp",arm="media"}"#,
        r#"rta_decide_requests_total{api="grpc",outcome="capped"}"#,
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(line) && !l.ends_with(" 0")),
            "{line} missing or zero in\n{text}"
        );
    }
    node.running.shutdown().await;
}

async fn explain(node: &TestNode, user: u64) -> Value {
    let dev = imei_md5(&format!("86{user:013}"));
    node.admin_client()
        .get(node.admin_url(&format!("/explain?device={dev}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn verdict<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["strategy_id"] == id)
        .unwrap_or_else(|| panic!("no verdict for {id}: {e}"))
}

#[tokio::test]
async fn explain_shows_score_cap_arm_and_blacklist_reason() {
    let node = start().await;
    let e = explain(&node, 2).await;
    let ctr = verdict(&e, "scored_ctr");
    assert_eq!(ctr["matched"], false);
    assert_eq!(ctr["refused"], "score");
    assert!(
        (ctr["score"]["pctr"].as_f64().unwrap() - sigma(-3.5)).abs() < 0.002,
        "{ctr}"
    );
    let capped = verdict(&e, "capped");
    assert_eq!(capped["refused"], "cap");
    assert_eq!(
        capped["cap"],
        serde_json::json!({"exposures": 3, "limit": 3, "days": 1})
    );
    assert_eq!(e["vector"]["current_model"], true);

    let e = explain(&node, 4).await;
    assert_eq!(verdict(&e, "scored_ctr")["missing_vector"], true);
    assert_eq!(verdict(&e, "scored_ctr")["refused"], "no_vector");
    assert_eq!(e["vector"]["current_model"], false);

    let e = explain(&node, 25).await;
    assert_eq!(verdict(&e, "exp")["arm"], "holdout");
    assert_eq!(verdict(&e, "exp")["matched"], false);
    let e = explain(&node, 20).await;
    assert_eq!(verdict(&e, "exp")["arm"], "a");
    assert_eq!(verdict(&e, "exp")["bid_factor"], 2.0);

    let e = explain(&node, 5).await;
    assert_eq!(
        e["user_cap"],
        serde_json::json!({"exposures": 10, "limit": 10, "days": 1})
    );
    assert_eq!(e["decision"]["outcome"], "capped");
    assert_eq!(e["blacklisted"], Value::Null);
    node.running.shutdown().await;
}

#[tokio::test]
async fn operators_list_and_unlist_devices_and_users_through_the_admin_api() {
    let node = start().await;
    let http = node.admin_client();
    let dev = imei_md5("860000000000001");
    assert!(decide(&node, 1, vec![]).await.0);

    let r = http
        .post(node.admin_url("/blacklist"))
        .json(&serde_json::json!({"device": dev, "ttl_seconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        !decide(&node, 1, vec![]).await.0,
        "a listed device is refused"
    );
    let e = explain(&node, 1).await;
    assert_eq!(e["blacklisted"], "operator");

    // the user path: user 20 listed by id, with a reason
    let r = http
        .post(node.admin_url("/blacklist"))
        .json(&serde_json::json!({"user": 20, "reason": "media_fraud"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(!decide(&node, 20, vec![]).await.0);

    let list: Value = http
        .get(node.admin_url("/blacklist"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{list}");
    assert!(
        entries
            .iter()
            .any(|e| e["listed"]["device"] == dev.as_str() && e["reason"] == "operator")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["listed"]["user"] == 20 && e["reason"] == "media_fraud")
    );

    // bad requests are clear errors
    for bad in [
        serde_json::json!({"device": "not-hex"}),
        serde_json::json!({"device": dev, "user": 3}),
        serde_json::json!({}),
        serde_json::json!({"user": 3, "reason": "because"}),
        serde_json::json!({"user": 3, "ttl_seconds": 0}),
        serde_json::json!({"device": "00000000000000000000000000000000"}),
    ] {
        let r = http
            .post(node.admin_url("/blacklist"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    let r = http
        .delete(node.admin_url(&format!("/blacklist?device={dev}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(decide(&node, 1, vec![]).await.0, "unlisted: served again");
    let r = http
        .delete(node.admin_url(&format!("/blacklist?device={dev}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let text = metrics_text(&node).await;
    assert!(
        text.lines().any(
            |l| l.starts_with(r#"rta_blacklist_refusals_total{reason="operator"}"#)
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
    node.running.shutdown().await;
}
