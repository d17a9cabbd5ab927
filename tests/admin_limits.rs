//! Floods of the control plane: a token's mutation rate, the longest TTL an
//! operator may grant, and the entries one operator may hold, through real
//! sockets.

mod common;

use common::*;
use rta_engine::serve::admin_policy::AdminLimits;
use rta_engine::serve::node::ServeOptions;
use serde_json::json;

async fn start_limited(limits: AdminLimits) -> TestNode {
    start_serving(ServeOptions {
        admin_limits: limits,
        ..test_options()
    })
    .await
}

fn device_n(n: u32) -> String {
    plain_md5(&format!("flood-{n}"))
}

#[tokio::test]
async fn a_token_past_its_mutation_rate_gets_429_and_reads_still_pass() {
    let node = start_limited(AdminLimits {
        mutations_per_second: 0.001,
        mutation_burst: 3,
        ..AdminLimits::default()
    })
    .await;
    let ops = client_with(WRITE_TOKEN);
    for n in 0..3 {
        let r = ops
            .post(node.admin_url("/blacklist"))
            .json(&json!({ "device": device_n(n) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let limited = ops
        .post(node.admin_url("/blacklist"))
        .json(&json!({ "device": device_n(3) }))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    // nothing was listed by the refused request
    let listing = client_with(READ_TOKEN)
        .get(node.admin_url("/blacklist"))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let body = listing.text().await.unwrap();
    assert!(!body.contains(&device_n(3)), "{body}");
    assert!(body.contains(&device_n(2)), "{body}");
    let metrics = metrics_text(&node).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rta_admin_rate_limited_total{token=\"tester\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_ttl_past_the_admin_maximum_is_refused_naming_ttl_seconds() {
    let node = start_limited(AdminLimits {
        max_ttl_seconds: 3600,
        ..AdminLimits::default()
    })
    .await;
    let ops = client_with(WRITE_TOKEN);
    let year = ops
        .post(node.admin_url("/blacklist"))
        .json(&json!({ "device": device_n(1), "ttl_seconds": 31_536_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(year.status(), 400);
    assert!(year.text().await.unwrap().contains("ttl_seconds"));
    let hour = ops
        .post(node.admin_url("/blacklist"))
        .json(&json!({ "device": device_n(1), "ttl_seconds": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(hour.status(), 201);
    let entry: serde_json::Value = hour.json().await.unwrap();
    assert_eq!(entry["added_by"], "tester");
    let span = entry["until_ms"].as_i64().unwrap() - entry["since_ms"].as_i64().unwrap();
    assert_eq!(span, 3_600_000);
}

#[tokio::test]
async fn an_operator_past_its_entry_cap_is_refused_until_it_removes_one() {
    let node = start_limited(AdminLimits {
        max_entries_per_token: 2,
        ..AdminLimits::default()
    })
    .await;
    let ops = client_with(WRITE_TOKEN);
    let add = |n: u32| {
        ops.post(node.admin_url("/blacklist"))
            .json(&json!({ "device": device_n(n) }))
            .send()
    };
    assert_eq!(add(1).await.unwrap().status(), 201);
    assert_eq!(add(2).await.unwrap().status(), 201);
    let third = add(3).await.unwrap();
    assert_eq!(third.status(), 507);
    assert!(third.text().await.unwrap().contains("holds 2"));
    // re-listing an entry it holds extends it; no new place is needed
    assert_eq!(add(2).await.unwrap().status(), 201);
    let removed = ops
        .delete(node.admin_url(&format!("/blacklist?device={}", device_n(1))))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(add(3).await.unwrap().status(), 201);
}
