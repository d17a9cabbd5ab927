//! The feedback loop through a real Kafka-protocol broker (librdkafka's mock
//! cluster): user vectors, media feedback, fraud reports and blacklist
//! commands consumed by the engine's own ingestion, and their effect on
//! answers over gRPC: scores, caps, calibration and refusals.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use rdkafka::mocking::MockCluster;
use rta_engine::decision::Clock;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::ingest::event::{Format, TopicKind};
use rta_engine::ingest::kafka::{
    self, DeadLetterConfig, IngestSetup, KafkaConfig, KafkaIngest, RetentionConfig, TopicConfig,
};
use rta_engine::ingest::pb;
use rta_engine::serve::node::StrategySource;
use rta_engine::serve::pb as api;

const TAGS: &str = "fb.tags";
const VECTORS: &str = "fb.vectors";
const FEEDBACK: &str = "fb.feedback";
const CONTROL: &str = "fb.control";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

use common::kafka::{flush, producer, send};

fn start_ingest(
    brokers: &str,
    index: &Arc<UserIndex>,
    observer: Arc<rta_engine::decision::DecisionEngine>,
) -> KafkaIngest {
    let topic = |name: &str, kind| TopicConfig {
        name: name.into(),
        kind,
        format: Format::Protobuf,
    };
    let setup = IngestSetup {
        kafka: KafkaConfig {
            brokers: brokers.to_string(),
            group_id: Some("rta-engine-feedback-test".into()),
            topics: vec![
                topic(TAGS, TopicKind::Tags),
                topic(VECTORS, TopicKind::Vectors),
                topic(FEEDBACK, TopicKind::Feedback),
                topic(CONTROL, TopicKind::Control),
            ],
            dead_letter: DeadLetterConfig::default(),
            ready_max_lag: 0,
            properties: Default::default(),
        },
        snapshot: None,
        retention: RetentionConfig::default(),
        tz_offset_secs: 0,
        start_offsets: Default::default(),
        observer: Some(observer),
    };
    kafka::start(setup, index.clone(), Arc::new(Taxonomy::default_taxonomy()))
        .expect("ingest starts")
}

fn imei(n: u64) -> String {
    common::imei_md5(&format!("86{n:013}"))
}

fn tags(user: u64) -> Vec<u8> {
    pb::TagUpdate {
        user_id: user,
        event_time_ms: now_ms(),
        version: 1,
        set_tags: vec![pb::Tag {
            system: "target_group".into(),
            value: "urban_family".into(),
        }],
        devices: vec![pb::DeviceRef {
            kind: "imei".into(),
            md5: imei(user),
            raw: String::new(),
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn vector(user: u64, model: &str, values: Vec<f32>) -> Vec<u8> {
    pb::UserVector {
        user_id: user,
        event_time_ms: now_ms(),
        model_version: model.into(),
        values,
    }
    .encode_to_vec()
}

fn feedback(user: u64, kind: pb::FeedbackKind, strategy: &str) -> Vec<u8> {
    pb::FeedbackEvent {
        user_id: user,
        device: None,
        event_time_ms: now_ms(),
        kind: kind as i32,
        strategy_id: strategy.into(),
        media_id: "tencent".into(),
    }
    .encode_to_vec()
}

fn control(op: pb::BlacklistOp, user: u64) -> Vec<u8> {
    pb::BlacklistCommand {
        event_time_ms: now_ms(),
        op: op as i32,
        user_id: user,
        device: None,
        reason: String::new(),
        ttl_seconds: 600,
    }
    .encode_to_vec()
}

/// The answer for `user`'s device, polled until `done` holds (events are
/// applied asynchronously; this waits for an observable condition).
async fn decide_until(
    node: &common::TestNode,
    user: u64,
    what: &str,
    done: impl Fn(&api::DecideResponse) -> bool,
) -> api::DecideResponse {
    let mut client = node.client().await;
    let req = common::request(
        "fb",
        vec![common::device(api::DeviceIdType::ImeiMd5, imei(user))],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = client.decide(req.clone()).await.unwrap().into_inner();
        if done(&resp) {
            return resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(r: &api::DecideResponse) -> Vec<&str> {
    r.matches.iter().map(|m| m.strategy_id.as_str()).collect()
}

fn pctr_of(r: &api::DecideResponse, id: &str) -> Option<f64> {
    r.matches.iter().find(|m| m.strategy_id == id)?.pctr
}

fn sigma(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_feedback_and_control_events_from_kafka_change_the_answers() {
    let _ = rta_engine::telemetry::prometheus();
    let mock = MockCluster::new(1).expect("mock cluster");
    for t in [TAGS, VECTORS, FEEDBACK, CONTROL] {
        mock.create_topic(t, 1, 1).unwrap();
    }
    let brokers = mock.bootstrap_servers();
    let index = Arc::new(UserIndex::default());
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel/strategies.toml");
    let node = common::start_node(
        index.clone(),
        StrategySource::File(file),
        Clock::System { tz_offset_secs: 0 },
    )
    .await;
    let mut ingest = start_ingest(&brokers, &index, node.node.engine.clone());
    ingest.wait_caught_up().await;
    let p = producer(&brokers);

    // a user arrives from the tag platform, then its vector from the model
    for u in [300, 301, 302] {
        send(&p, TAGS, u, &tags(u));
    }
    flush(&p);
    let r = decide_until(&node, 300, "the tags", |r| r.take).await;
    assert_eq!(
        ids(&r),
        ["scored_value", "capped"],
        "no vector yet: fallbacks"
    );
    send(
        &p,
        VECTORS,
        300,
        &vector(300, "dt-test", vec![2.0, 1.0, 0.5, 0.0]),
    );
    // bad vectors are counted skips that change nothing
    send(&p, VECTORS, 300, &vector(300, "dt-test", vec![f32::NAN; 4]));
    send(&p, VECTORS, 300, &vector(300, "dt-test", vec![1.0; 300]));
    send(
        &p,
        VECTORS,
        301,
        &vector(301, "dt-test", vec![2.0, 1.0, 0.5, 0.0]),
    );
    flush(&p);
    let r = decide_until(&node, 300, "the vector", |r| r.matches.len() == 3).await;
    assert_eq!(ids(&r), ["scored_ctr", "scored_value", "capped"]);
    let before = pctr_of(&r, "scored_ctr").unwrap();
    assert!((before - sigma(-2.0)).abs() < 0.002, "{before}");

    // three exposures of `capped` today reach its cap
    for _ in 0..3 {
        send(
            &p,
            FEEDBACK,
            300,
            &feedback(300, pb::FeedbackKind::Exposure, "capped"),
        );
    }
    flush(&p);
    let r = decide_until(&node, 300, "the cap", |r| !ids(r).contains(&"capped")).await;
    assert_eq!(ids(&r), ["scored_ctr", "scored_value"]);

    // user 301's feedback on scored_ctr: 30 % clicks where the model says 11.9 %
    for i in 0..200 {
        send(
            &p,
            FEEDBACK,
            301,
            &feedback(301, pb::FeedbackKind::Exposure, "scored_ctr"),
        );
        if i % 10 < 3 {
            send(
                &p,
                FEEDBACK,
                301,
                &feedback(301, pb::FeedbackKind::Click, "scored_ctr"),
            );
        }
    }
    flush(&p);
    let http = node.admin_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let row = loop {
        let rows: serde_json::Value = http
            .post(node.admin_url("/calibration/recalibrate"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy_id"] == "scored_ctr")
            .cloned()
            .unwrap();
        if row["sums"]["exposures"].as_f64().unwrap_or(0.0) > 199.9 {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "feedback never arrived: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // broken down by the users' target group: all of user 301's feedback is urban_family
    let groups = row["by_group"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{row}");
    assert_eq!(groups[0]["group"], "urban_family");
    assert!(
        (groups[0]["observed_ctr"].as_f64().unwrap() - 0.3).abs() < 0.01,
        "{row}"
    );
    let observed = row["observed_ctr"].as_f64().unwrap();
    assert!((observed - 0.3).abs() < 0.01, "{row}");
    assert!(
        (row["predicted_ctr"].as_f64().unwrap() - sigma(-2.0)).abs() < 0.002,
        "{row}"
    );
    // every scored exposure had raw logit -2 (p = sigma(-2)); the shift b solves
    // 200 sigma(-2 + b) + 20 sigma(-2 + b) = 60 + 20 p (a prior of 20 events)
    let p0 = sigma(-2.0);
    let q = (60.0 + 20.0 * p0) / 220.0;
    let want = (q / (1.0 - q)).ln() + 2.0;
    assert!(
        (row["shift"]["ctr"].as_f64().unwrap() - want).abs() < 0.02,
        "{row}"
    );
    let r = decide_until(&node, 300, "the calibrated score", |r| {
        pctr_of(r, "scored_ctr").is_some_and(|x| x > before + 0.05)
    })
    .await;
    let after = pctr_of(&r, "scored_ctr").unwrap();
    assert!((after - sigma(-2.0 + want)).abs() < 0.01, "{after}");
    // user 301 took 200 exposures today: over the overall cap of 10
    let r = decide_until(&node, 301, "the overall cap", |r| !r.take).await;
    assert!(r.matches.is_empty());

    // the media reports fraud on 302; a control event lists 300, then unlists it
    send(
        &p,
        FEEDBACK,
        302,
        &feedback(302, pb::FeedbackKind::Fraud, "scored_ctr"),
    );
    send(&p, CONTROL, 300, &control(pb::BlacklistOp::Add, 300));
    flush(&p);
    decide_until(&node, 302, "the fraud report", |r| !r.take).await;
    decide_until(&node, 300, "the control event", |r| !r.take).await;
    let listed = node
        .node
        .engine
        .blacklist()
        .list(now_ms(), 10)
        .into_iter()
        .map(|e| (e.listed, e.reason))
        .collect::<Vec<_>>();
    use rta_engine::decision::blacklist::{Listed, Reason};
    assert!(
        listed.contains(&(Listed::User(302), Reason::MediaFraud)),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(Listed::User(300), Reason::Operator)),
        "{listed:?}"
    );
    send(&p, CONTROL, 300, &control(pb::BlacklistOp::Remove, 300));
    flush(&p);
    decide_until(&node, 300, "the unlisting", |r| r.take).await;

    let text = common::metrics_text(&node).await;
    for line in [
        r#"rta_ingest_skipped_total{topic="fb.vectors",reason="bad_value"} 2"#,
        r#"rta_blacklist_listed_total{reason="media_fraud"} 1"#,
        r#"rta_model_observed_rate{strategy="scored_ctr",rate="ctr"}"#,
        r#"rta_model_calibration_shift{strategy="scored_ctr",rate="ctr"}"#,
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} missing in\n{text}"
        );
    }
    if let Ok(dir) = std::env::var("RTA_METRICS_DUMP_DIR") {
        // .ci/run checks this file with promtool: the decision-intelligence metrics
        std::fs::write(
            std::path::Path::new(&dir).join("metrics_intelligence.prom"),
            &text,
        )
        .unwrap();
    }
    ingest.stop();
    node.running.shutdown().await;
}
