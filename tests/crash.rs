//! kill -9 at random points: the engine, a real child process fed by a real
//! Kafka-protocol broker (librdkafka's mock cluster, hosted by this test),
//! ends with exactly the index that applying every event once gives.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::profile::day_of;
use rta_engine::index::record::UserRecord;
use rta_engine::index::snapshot;
use rta_engine::ingest::apply::{ApplyContext, apply};
use rta_engine::ingest::event::{DecodeContext, Format, TopicKind, decode};
use rta_engine::ingest::pb;

const TOPICS: [(&str, TopicKind); 3] = [
    ("c.tags", TopicKind::Tags),
    ("c.behaviour", TopicKind::Behaviour),
    ("c.identity", TopicKind::Identity),
];

/// A small deterministic generator (the test prints its seed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Events whose final effect does not depend on how partitions interleave:
/// per-user tag updates stay in one partition (keyed by user), behaviour
/// counts add up, 4A moves are monotonic, devices are linked only on the
/// identity topic, and deleted users have no later activity.
fn events(n: usize, rng: &mut Lcg, now: i64) -> Vec<(usize, u64, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    let mut version = [0u64; 200];
    for i in 0..n {
        let user = 1 + rng.below(200);
        let t = now - 1000 * rng.below(3 * 86_400) as i64;
        match rng.below(10) {
            0 | 1 => {
                version[user as usize - 1] += 1;
                let groups = ["urban_family", "town_youth", "silver", "students"];
                let json = format!(
                    r#"{{"user_id": {user}, "event_time_ms": {t}, "version": {}, "replace_systems": ["target_group"],
                        "set_tags": [{{"system": "target_group", "value": "{}"}}],
                        "demographics": [{{"name": "age", "number": {}}}]}}"#,
                    version[user as usize - 1],
                    groups[rng.below(4) as usize],
                    18 + rng.below(50)
                );
                out.push((0, user, json.into_bytes()));
            }
            2 => {
                let link = pb::IdentityEvent {
                    event_time_ms: t,
                    change: pb::IdentityChange::Link as i32,
                    user_id: user,
                    device: Some(pb::DeviceRef {
                        kind: "imei".into(),
                        raw: format!("86{:013}", 1000 + i),
                        md5: String::new(),
                    }),
                };
                out.push((2, user, link.encode_to_vec()));
            }
            _ => {
                let ev = pb::BehaviourEvent {
                    user_id: user,
                    event_time_ms: t,
                    action: 1 + rng.below(6) as i32,
                    category_id: [1319, 1525, 9987][rng.below(3) as usize],
                    brand_id: [0, 8557, 3321][rng.below(3) as usize],
                    ..Default::default()
                };
                out.push((1, user, ev.encode_to_vec()));
            }
        }
    }
    // one privacy deletion, after everything that user did
    let delete = pb::IdentityEvent {
        event_time_ms: now + 1000,
        change: pb::IdentityChange::DeleteUser as i32,
        user_id: 42,
        device: None,
    };
    out.push((2, 42, delete.encode_to_vec()));
    out
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_rta-engine"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("engine starts")
}

async fn wait_ready(http: &reqwest::Client, port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "engine exited early");
        assert!(Instant::now() < deadline, "engine never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the engine started since byte `from` of its log resumed: the offset
/// total of the restored snapshot, or 0 when there was none.
fn resumed_at(log: &std::path::Path, from: usize) -> i64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .find_map(|l| l.split("at offset total ").nth(1)?.trim().parse().ok())
        .unwrap_or(0)
}

fn log_len(log: &std::path::Path) -> usize {
    std::fs::metadata(log)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

fn dump(index: &UserIndex, t: &Taxonomy) -> Vec<String> {
    let today = day_of(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        0,
    );
    let mut v = Vec::new();
    index.for_each(|u, p| {
        v.push(serde_json::to_string(&UserRecord::from_profile(u, p, t, today)).unwrap())
    });
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_neither_loses_nor_double_counts_events() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let mock = MockCluster::new(1).unwrap();
    for (name, _) in TOPICS {
        mock.create_topic(name, 3, 1).unwrap();
    }
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http_port, admin_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let config = dir.path().join("engine.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
grpc_addr = "127.0.0.1:{grpc}"
http_addr = "127.0.0.1:{http_port}"
admin_addr = "127.0.0.1:{admin_port}"
drain_seconds = 0
[kafka]
brokers = "{brokers}"
group_id = "crash-test"
ready_max_lag = 0
topics = [
  {{ name = "c.tags", kind = "tags", format = "json" }},
  {{ name = "c.behaviour", kind = "behaviour" }},
  {{ name = "c.identity", kind = "identity" }},
]
[snapshot]
dir = "{snap}"
interval_secs = 1
[time]
tz_offset_hours = 0
"#,
            snap = dir.path().join("snapshots").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("engine.log");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let all = events(8_000, &mut rng, now);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let http = reqwest::Client::new();

    let mut produced_before_kill = Vec::new();
    let mut resumed = Vec::new();
    for (i, chunk) in all.chunks(2_000).enumerate() {
        let from = log_len(&log);
        let mut child = spawn(&config, &log);
        wait_ready(&http, http_port, &mut child).await;
        resumed.push(resumed_at(&log, from));
        for (topic, key, payload) in chunk {
            let key = key.to_string();
            let mut rec = BaseRecord::to(TOPICS[*topic].0).key(&key).payload(payload);
            while let Err((_, r)) = producer.send(rec) {
                producer.poll(Duration::from_millis(5));
                rec = r;
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        // let it consume part of the chunk, then kill it without warning; the
        // first kill comes at once, before a 1 s snapshot can cover the chunk,
        // so at least one restart must replay events
        let delay = if i == 0 {
            rng.below(20)
        } else {
            200 + rng.below(1500)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        produced_before_kill.push((i * 2_000 + chunk.len()) as i64);
    }

    // final run: catch up completely (ready_max_lag = 0), then stop cleanly
    let from = log_len(&log);
    let mut child = spawn(&config, &log);
    wait_ready(&http, http_port, &mut child).await;
    resumed.push(resumed_at(&log, from));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        child.wait().unwrap().success(),
        "engine did not stop cleanly; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let taxonomy = Taxonomy::default_taxonomy();
    let engine_index = UserIndex::default();
    let restored = snapshot::restore_newest(&dir.path().join("snapshots"), &engine_index, |_| {})
        .unwrap()
        .expect("a final snapshot");
    assert_eq!(
        restored.offsets.values().sum::<i64>(),
        all.len() as i64,
        "the final snapshot covers every event"
    );

    // the reference: every event applied exactly once, in production order
    let reference = Arc::new(UserIndex::default());
    let dctx = DecodeContext {
        taxonomy: &taxonomy,
        now_ms: now,
        retention_days: 400,
    };
    let actx = ApplyContext {
        today: day_of(now / 1000, 0),
        tz_offset_secs: 0,
        retention_days: 400,
    };
    for (topic, _, payload) in &all {
        let format = if *topic == 0 {
            Format::Json
        } else {
            Format::Protobuf
        };
        let event =
            decode(TOPICS[*topic].1, format, payload, &dctx).expect("generated events are valid");
        let _ = apply(&reference, &event, &actx); // stale versions etc. are skipped alike
    }
    // start k resumed where the snapshot before kill k left off; at least one
    // resumed behind what had been produced, so events really were replayed
    eprintln!(
        "resumed at offset totals {resumed:?}; produced before each kill {produced_before_kill:?}"
    );
    assert!(
        resumed[1..]
            .iter()
            .zip(&produced_before_kill)
            .any(|(r, p)| r < p),
        "no kill landed between a snapshot and the end of consumption; nothing was replayed"
    );
    assert_eq!(engine_index.users(), reference.users());
    assert_eq!(dump(&engine_index, &taxonomy), dump(&reference, &taxonomy));
    assert!(engine_index.deleted_after(42, now));
}
