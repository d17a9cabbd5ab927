//! Kafka ingestion against librdkafka's mock cluster: a real Kafka-protocol
//! broker over TCP, in process, with fault injection.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::profile::{Action, ItemKey, Scope, day_of};
use rta_engine::index::snapshot::{self, Offsets};
use rta_engine::ingest::event::{Format, TopicKind};
use rta_engine::ingest::kafka::{
    self, DeadLetterConfig, IngestSetup, KafkaConfig, KafkaIngest, RetentionConfig, SnapshotConfig,
    TopicConfig,
};
use rta_engine::ingest::pb;

const TAGS: &str = "rta.tags";
const BEHAVIOUR: &str = "rta.behaviour";
const IDENTITY: &str = "rta.identity";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(3).expect("mock cluster");
    c.create_topic(TAGS, 2, 1).unwrap();
    c.create_topic(BEHAVIOUR, 3, 1).unwrap();
    c.create_topic(IDENTITY, 1, 1).unwrap();
    c
}

use common::kafka::{flush, producer, send};

fn cart(user: u64, t: i64) -> Vec<u8> {
    pb::BehaviourEvent {
        user_id: user,
        event_time_ms: t,
        action: pb::Action::Cart as i32,
        category_id: 1319,
        ..Default::default()
    }
    .encode_to_vec()
}

fn setup(
    brokers: &str,
    snapshot_dir: Option<&std::path::Path>,
    dead_letter: Option<std::path::PathBuf>,
    start_offsets: Offsets,
) -> IngestSetup {
    IngestSetup {
        kafka: KafkaConfig {
            brokers: brokers.to_string(),
            group_id: Some("rta-engine-test".into()),
            topics: vec![
                TopicConfig {
                    name: TAGS.into(),
                    kind: TopicKind::Tags,
                    format: Format::Json,
                },
                TopicConfig {
                    name: BEHAVIOUR.into(),
                    kind: TopicKind::Behaviour,
                    format: Format::Protobuf,
                },
                TopicConfig {
                    name: IDENTITY.into(),
                    kind: TopicKind::Identity,
                    format: Format::Protobuf,
                },
            ],
            dead_letter: DeadLetterConfig {
                topic: None,
                file: dead_letter,
            },
            ready_max_lag: 0,
            properties: Default::default(),
        },
        snapshot: snapshot_dir.map(|d| SnapshotConfig {
            dir: d.to_path_buf(),
            interval_secs: 3600,
            keep: 3,
        }),
        retention: RetentionConfig::default(),
        tz_offset_secs: 0,
        start_offsets,
        observer: None,
    }
}

fn start(setup: IngestSetup, index: &Arc<UserIndex>) -> KafkaIngest {
    kafka::start(setup, index.clone(), Arc::new(Taxonomy::default_taxonomy()))
        .expect("ingest starts")
}

/// Polls `cond` until it holds or `limit` passes (a wait for an observable condition, not a fixed sleep).
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn carts(index: &UserIndex, user: u64) -> u32 {
    let today = day_of(now_ms() / 1000, 0);
    let item = ItemKey::new(Scope::Category, 1319).unwrap();
    index
        .with_profile(user, |p| {
            p.count(item, Action::Cart, today.saturating_sub(1), today)
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_kafka_reach_decide_through_grpc() {
    use rta_engine::decision::Clock;
    use rta_engine::demo::DEMO_STRATEGIES;
    use rta_engine::serve::node::StrategySource;
    use rta_engine::serve::pb as api;

    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let index = Arc::new(UserIndex::default());
    let node = common::start_node(
        index.clone(),
        StrategySource::Embedded(DEMO_STRATEGIES),
        Clock::System { tz_offset_secs: 0 },
    )
    .await;
    let mut ingest = start(setup(&brokers, None, None, Offsets::new()), &index);
    ingest.wait_caught_up().await;

    let imei = common::imei_md5("861111111111111");
    let p = producer(&brokers);
    let now = now_ms();
    let tags = format!(
        r#"{{"user_id": 100, "event_time_ms": {now}, "version": 1,
            "set_tags": [{{"system": "target_group", "value": "urban_family"}}],
            "devices": [{{"kind": "imei", "md5": "{imei}"}}]}}"#
    );
    send(&p, TAGS, 100, tags.as_bytes());
    send(&p, BEHAVIOUR, 100, &cart(100, now));
    flush(&p);

    let mut client = node.client().await;
    let req = common::request(
        "k",
        vec![common::device(api::DeviceIdType::ImeiMd5, imei.clone())],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = client.decide(req.clone()).await.unwrap().into_inner();
        if common::matched_ids(&resp) == ["high_intent_formula"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never reached Decide: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // deletion (privacy request) is effective at once
    let delete = pb::IdentityEvent {
        event_time_ms: now_ms(),
        change: pb::IdentityChange::DeleteUser as i32,
        user_id: 100,
        device: None,
    };
    send(&p, IDENTITY, 100, &delete.encode_to_vec());
    flush(&p);
    eventually(Duration::from_secs(20), "the deletion", || {
        index.users() == 0
    })
    .await;
    let resp = client.decide(req).await.unwrap().into_inner();
    assert!(!resp.take);
    ingest.stop();
    node.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_messages_are_dead_lettered_and_do_not_stall_the_consumer() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead.jsonl");
    let index = Arc::new(UserIndex::default());
    let ingest = start(
        setup(&brokers, None, Some(dlq.clone()), Offsets::new()),
        &index,
    );
    let p = producer(&brokers);
    let now = now_ms();
    send(&p, BEHAVIOUR, 1, b"\xff\xff\xff not protobuf");
    send(
        &p,
        BEHAVIOUR,
        1,
        &pb::BehaviourEvent {
            user_id: 1,
            event_time_ms: now,
            action: 99,
            category_id: 1319,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    send(&p, BEHAVIOUR, 1, &cart(1, now + 400 * 86_400_000)); // a year in the future
    let martians = format!(
        r#"{{"user_id": 1, "event_time_ms": {now}, "set_tags": [{{"system": "target_group", "value": "martians"}}]}}"#
    );
    send(&p, TAGS, 1, martians.as_bytes());
    send(&p, BEHAVIOUR, 1, &cart(1, now));
    flush(&p);
    eventually(Duration::from_secs(20), "the valid event", || {
        carts(&index, 1) == 1
    })
    .await;
    eventually(Duration::from_secs(20), "four dead letters", || {
        std::fs::read_to_string(&dlq)
            .map(|s| s.lines().count() == 4)
            .unwrap_or(false)
    })
    .await;
    let text = std::fs::read_to_string(&dlq).unwrap();
    let mut reasons: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "absurd_timestamp",
            "undecodable",
            "unknown_enum",
            "unknown_tag"
        ]
    );
    ingest.stop();
}

/// One protobuf-delimited frame: the event's length as a varint, then the event.
fn framed(event: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(event.len() as u64, &mut out);
    out.extend_from_slice(event);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_messages_apply_each_good_event_and_dead_letter_each_bad_one() {
    const BATCHED: &str = "rta.behaviour.batched";
    const LINES: &str = "rta.tags.lines";
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(BATCHED, 2, 1).unwrap();
    mock.create_topic(LINES, 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead.jsonl");
    let mut cfg = setup(&brokers, None, Some(dlq.clone()), Offsets::new());
    cfg.kafka.topics = vec![
        TopicConfig {
            name: BATCHED.into(),
            kind: TopicKind::Behaviour,
            format: Format::ProtobufDelimited,
        },
        TopicConfig {
            name: LINES.into(),
            kind: TopicKind::Tags,
            format: Format::JsonLines,
        },
    ];
    let index = Arc::new(UserIndex::default());
    let ingest = start(cfg, &index);
    let p = producer(&brokers);
    let now = now_ms();

    // users 1 and 2, a frame that is not a BehaviourEvent, user 3, then a
    // length prefix promising more bytes than are left: the rest is one skip
    let mut batch = [framed(&cart(1, now)), framed(&cart(2, now))].concat();
    batch.extend(framed(b"\xff\xff\xff not protobuf"));
    batch.extend(framed(&cart(3, now)));
    batch.extend([50u8, 1, 2, 3]);
    send(&p, BATCHED, 1, &batch);
    send(
        &p,
        BATCHED,
        2,
        &[framed(&cart(4, now)), framed(&cart(4, now))].concat(),
    );
    let tag = |user: u64, value: &str| {
        format!(
            r#"{{"user_id": {user}, "event_time_ms": {now}, "version": 1, "set_tags": [{{"system": "target_group", "value": "{value}"}}]}}"#
        )
    };
    let lines = format!(
        "{}\r\n\n{}\nnot json at all\n{}",
        tag(5, "urban_gen_z"),
        tag(6, "town_family"),
        tag(7, "martians")
    );
    send(&p, LINES, 1, lines.as_bytes());
    flush(&p);

    eventually(Duration::from_secs(20), "four dead letters", || {
        std::fs::read_to_string(&dlq)
            .map(|s| s.lines().count() == 4)
            .unwrap_or(false)
    })
    .await;
    for user in [1, 2, 3] {
        assert_eq!(carts(&index, user), 1, "user {user}");
    }
    assert_eq!(carts(&index, 4), 2, "both events of a two-event message");
    let taxonomy = Taxonomy::default_taxonomy();
    for (user, value) in [(5, "urban_gen_z"), (6, "town_family")] {
        let code = taxonomy.code("target_group", value).unwrap();
        assert_eq!(
            index.with_profile(user, |p| p.tags().contains(&code)),
            Some(true),
            "user {user}"
        );
    }
    assert!(index.with_profile(7, |_| ()).is_none());
    let text = std::fs::read_to_string(&dlq).unwrap();
    let mut reasons: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v = serde_json::from_str::<serde_json::Value>(l).unwrap();
            (
                v["topic"].as_str().unwrap().to_string(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    let want = |t: &str, r: &str| (t.to_string(), r.to_string());
    assert_eq!(
        reasons,
        [
            want(BATCHED, "undecodable"),
            want(BATCHED, "undecodable"),
            want(LINES, "undecodable"),
            want(LINES, "unknown_tag"),
        ]
    );
    ingest.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_and_request_errors_lose_and_duplicate_nothing() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let index = Arc::new(UserIndex::default());
    let ingest = start(setup(&brokers, None, None, Offsets::new()), &index);
    let p = producer(&brokers);
    let now = now_ms();
    for _ in 0..50 {
        send(&p, BEHAVIOUR, 7, &cart(7, now));
    }
    flush(&p);
    eventually(Duration::from_secs(20), "the first 50 events", || {
        carts(&index, 7) == 50
    })
    .await;

    // fetches fail for a while, and every broker goes down and comes back
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 10],
    );
    for b in 1..=3 {
        mock.broker_down(b).unwrap();
    }
    for _ in 0..50 {
        send(&p, BEHAVIOUR, 7, &cart(7, now));
    }
    for b in 1..=3 {
        mock.broker_up(b).unwrap();
    }
    flush(&p);
    eventually(Duration::from_secs(60), "all 100 events", || {
        carts(&index, 7) >= 100
    })
    .await;
    ingest.stop();
    assert_eq!(carts(&index, 7), 100, "no event may be applied twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_snapshot_without_loss_or_double_counting() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let p = producer(&brokers);
    let now = now_ms();
    for _ in 0..30 {
        send(&p, BEHAVIOUR, 5, &cart(5, now));
    }
    flush(&p);

    let first = Arc::new(UserIndex::default());
    let ingest = start(
        setup(&brokers, Some(dir.path()), None, Offsets::new()),
        &first,
    );
    eventually(Duration::from_secs(20), "30 events", || {
        carts(&first, 5) == 30
    })
    .await;
    ingest.stop(); // writes the final snapshot

    for _ in 0..20 {
        send(&p, BEHAVIOUR, 5, &cart(5, now));
    }
    flush(&p);

    let second = Arc::new(UserIndex::default());
    let restored = snapshot::restore_newest(dir.path(), &second, |_| {})
        .unwrap()
        .expect("a snapshot");
    assert_eq!(carts(&second, 5), 30);
    assert_eq!(
        restored.offsets.values().sum::<i64>(),
        30,
        "the snapshot covers exactly what was applied"
    );
    let ingest = start(
        setup(&brokers, Some(dir.path()), None, restored.offsets),
        &second,
    );
    eventually(Duration::from_secs(20), "50 events", || {
        carts(&second, 5) >= 50
    })
    .await;
    ingest.stop();
    assert_eq!(carts(&second, 5), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_in_the_same_group_takes_no_partitions_away() {
    // With group subscription a second member would trigger a rebalance and the
    // first node would lose the users of the partitions moved away. Serving
    // replicas assign every partition to themselves instead: both see everything.
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let first = Arc::new(UserIndex::default());
    let a = start(setup(&brokers, None, None, Offsets::new()), &first);
    let p = producer(&brokers);
    let now = now_ms();
    for user in 1..=30 {
        send(&p, BEHAVIOUR, user, &cart(user, now));
    }
    flush(&p);
    eventually(Duration::from_secs(20), "the first node's 30 users", || {
        first.users() == 30
    })
    .await;
    let second = Arc::new(UserIndex::default());
    let b = start(setup(&brokers, None, None, Offsets::new()), &second); // same group id
    for user in 31..=60 {
        send(&p, BEHAVIOUR, user, &cart(user, now));
    }
    flush(&p);
    eventually(Duration::from_secs(20), "60 users on both nodes", || {
        first.users() == 60 && second.users() == 60
    })
    .await;
    a.stop();
    b.stop();
    for user in 1..=60 {
        assert_eq!(
            (carts(&first, user), carts(&second, user)),
            (1, 1),
            "user {user}"
        );
    }
}
