//! Ingestion benchmarks: apply throughput from Kafka, freshness (event
//! produced -> visible to Decide) while Decide is under load, with Decide's
//! own latency alone and while events are applied, and snapshot
//! write/restore at scale. The broker is librdkafka's mock cluster (a real
//! Kafka-protocol broker over TCP, in this process), so the numbers include
//! the protocol, fetches and decoding, but not a disk-backed broker.
//!
//! ```text
//! cargo run --release --bin rta-ingest-bench -- apply --events 2000000
//! cargo run --release --bin rta-ingest-bench -- freshness --rate 50000 --seconds 10
//! cargo run --release --bin rta-ingest-bench -- restore --users 10000000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use prost::Message;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::os::Os;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::profile::day_of;
use rta_engine::index::snapshot;
use rta_engine::ingest::event::{Format, TopicKind};
use rta_engine::ingest::kafka::{
    self, DeadLetterConfig, IngestSetup, KafkaConfig, RetentionConfig, TopicConfig,
};
use rta_engine::ingest::pb;
use rta_engine::strategy::StrategySet;

/// The server's allocator (`rta-engine`'s), so that what this measures
/// allocates as the server does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "rta-engine ingestion benchmarks")]
struct Cli {
    /// An external Kafka-protocol broker (e.g. tansu) instead of the in-process mock cluster.
    #[arg(long, global = true)]
    brokers: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

/// The broker under test: the in-process mock cluster, or an external one.
struct Broker {
    _mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    brokers: String,
    topic: String,
}

impl Broker {
    fn new(external: Option<String>, partitions: i32) -> Result<Self> {
        match external {
            None => {
                let mock = MockCluster::new(1)?;
                mock.create_topic(TOPIC, partitions, 1)?;
                let brokers = mock.bootstrap_servers();
                Ok(Self {
                    _mock: Some(mock),
                    brokers,
                    topic: TOPIC.to_string(),
                })
            }
            Some(brokers) => {
                use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
                // a fresh topic per run, so earlier runs' events do not count
                let topic = format!("{TOPIC}.{}", now_ms());
                let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let created = rt.block_on(admin.create_topics(
                    &[NewTopic::new(
                        &topic,
                        partitions,
                        TopicReplication::Fixed(1),
                    )],
                    &AdminOptions::new(),
                ))?;
                for r in created {
                    r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
                }
                Ok(Self {
                    _mock: None,
                    brokers,
                    topic,
                })
            }
        }
    }
}

#[derive(Subcommand)]
enum Mode {
    /// Pre-fill a topic, then time consuming + decoding + applying all of it.
    Apply {
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Only consume (no decode, no apply): the broker and client ceiling.
        #[arg(long)]
        raw: bool,
        /// No broker: decode + apply pre-encoded payloads in process.
        #[arg(long)]
        in_process: bool,
        /// Events per Kafka message: above 1, the topic is `protobuf-delimited`
        /// (a bulk producer's batches) instead of one event per message.
        #[arg(long, default_value_t = 1)]
        batch: u64,
    },
    /// Produce at a steady rate and time each sampled event until Decide can see it.
    Freshness {
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Users in the index Decide is loaded against.
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Decisions per second run meanwhile (open loop).
        #[arg(long, default_value_t = 20_000)]
        decide_rate: u64,
        /// The producer's `linger.ms`. At 1 ms the mock broker's log fills
        /// with tiny message sets, and its fetches slow down as the log grows
        /// (latency climbed from 10 ms to seconds within 10 s at 50 k/s); 5 ms
        /// keeps it steady and adds at most 5 ms.
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
        /// Seconds Decide runs alone before events flow: the baseline its
        /// latency while ingesting is compared with.
        #[arg(long, default_value_t = 3)]
        baseline_seconds: u64,
    },
    /// Write a snapshot of a generated population and restore it.
    Restore {
        #[arg(long, default_value_t = 10_000_000)]
        users: u64,
        /// Directory for the snapshot file.
        #[arg(long, default_value = "target/bench-snapshot")]
        dir: std::path::PathBuf,
        /// Only restore the snapshot an earlier run left in `--dir`, in this
        /// fresh process, as a restarting engine does (the write-then-restore
        /// run restores into a heap just freed of the generated population).
        #[arg(long)]
        existing: bool,
    },
}

const TOPIC: &str = "bench.behaviour";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn setup(brokers: &str, topic: &str, format: Format) -> IngestSetup {
    IngestSetup {
        kafka: KafkaConfig {
            brokers: brokers.to_string(),
            group_id: Some("bench".into()),
            topics: vec![TopicConfig {
                name: topic.into(),
                kind: TopicKind::Behaviour,
                format,
            }],
            dead_letter: DeadLetterConfig::default(),
            ready_max_lag: 0,
            properties: std::env::var("RTA_BENCH_KAFKA_PROPS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        snapshot: None,
        retention: RetentionConfig::default(),
        tz_offset_secs: 8 * 3600,
        start_offsets: Default::default(),
        observer: None,
    }
}

fn producer(brokers: &str, linger_ms: &str) -> Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms)
        .set("socket.nagle.disable", "true")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create()?)
}

fn send(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut rec = BaseRecord::to(topic).key(key).payload(payload);
    while let Err((_, r)) = p.send(rec) {
        p.poll(Duration::from_millis(1));
        rec = r;
    }
}

fn event(user: u64, t: i64, i: u64) -> Vec<u8> {
    pb::BehaviourEvent {
        user_id: user,
        event_time_ms: t,
        action: 1 + (i % 5) as i32,
        category_id: [1319, 1525, 9987, 1316][(i % 4) as usize],
        brand_id: [8557, 3321, 1001, 0][(i % 4) as usize],
        ..Default::default()
    }
    .encode_to_vec()
}

fn main() -> Result<()> {
    rta_engine::telemetry::init_tracing();
    let cli = Cli::parse();
    match cli.mode {
        Mode::Apply {
            events,
            users,
            in_process: true,
            ..
        } => apply_in_process(events, users),
        Mode::Apply {
            events,
            partitions,
            users,
            raw,
            batch,
            ..
        } => apply(
            Broker::new(cli.brokers, partitions)?,
            events,
            users,
            raw,
            batch.max(1),
        ),
        Mode::Freshness {
            rate,
            seconds,
            partitions,
            users,
            decide_rate,
            linger_ms,
            baseline_seconds,
        } => freshness(
            Broker::new(cli.brokers, partitions)?,
            rate,
            seconds,
            users,
            decide_rate,
            linger_ms,
            baseline_seconds,
        ),
        Mode::Restore {
            users,
            dir,
            existing,
        } => restore(users, &dir, existing),
    }
}

/// decode + apply over pre-encoded protobuf payloads, no broker: the engine's own cost.
fn apply_in_process(events: u64, users: u64) -> Result<()> {
    use rta_engine::ingest::apply::{ApplyContext, apply};
    use rta_engine::ingest::event::{DecodeContext, decode};
    let taxonomy = Taxonomy::default_taxonomy();
    let now = now_ms();
    let payloads: Vec<Vec<u8>> = (0..events).map(|i| event(1 + i % users, now, i)).collect();
    let index = UserIndex::with_capacity(users as usize);
    let dctx = DecodeContext {
        taxonomy: &taxonomy,
        now_ms: now,
        retention_days: 400,
    };
    let actx = ApplyContext {
        today: day_of(now / 1000, 8 * 3600),
        tz_offset_secs: 8 * 3600,
        retention_days: 400,
    };
    let t = Instant::now();
    for p in &payloads {
        let ev = decode(TopicKind::Behaviour, Format::Protobuf, p, &dctx)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        apply(&index, &ev, &actx).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "decode + apply in process (one thread): {events} events over {users} users in {secs:.2}s ({:.0} events/s, {:.0} ns/event)",
        events as f64 / secs,
        secs * 1e9 / events as f64
    );
    Ok(())
}

fn apply(broker: Broker, events: u64, users: u64, raw: bool, batch: u64) -> Result<()> {
    let (brokers, topic) = (broker.brokers.clone(), broker.topic.clone());
    let partitions = {
        let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let md = rdkafka::consumer::Consumer::fetch_metadata(
            &probe,
            Some(&topic),
            Duration::from_secs(10),
        )?;
        md.topics()
            .first()
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0)
    };
    let p = producer(&brokers, "20")?;
    let t0 = Instant::now();
    let now = now_ms();
    let messages = events / batch;
    let mut payload = Vec::new();
    for m in 0..messages {
        payload.clear();
        let first = m * batch;
        for i in first..first + batch {
            let e = event(1 + i % users, now, i);
            if batch == 1 {
                payload = e;
            } else {
                prost::encoding::encode_varint(e.len() as u64, &mut payload);
                payload.extend_from_slice(&e);
            }
        }
        let user = 1 + first % users;
        send(&p, &topic, &user.to_string(), &payload);
    }
    p.flush(Duration::from_secs(300))?;
    println!(
        "produced {} events in {messages} messages of {batch} into {partitions} partitions in {:.2}s",
        messages * batch,
        t0.elapsed().as_secs_f64()
    );
    // the mock broker keeps a bounded log per partition: count what is retained
    let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let mut retained = 0;
    for part in 0..partitions {
        let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
            &probe,
            &topic,
            part,
            Duration::from_secs(10),
        )?;
        retained += high - low;
        eprintln!("  partition {part}: offsets {low}..{high}");
    }
    let messages = retained as u64;
    let events = messages * batch;
    println!("the broker retains {messages} messages ({events} events)");

    if raw {
        // the broker + client ceiling: poll only, no decode, no apply
        let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "raw")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        rdkafka::consumer::Consumer::subscribe(&c, &[topic.as_str()])?;
        let t = Instant::now();
        let mut n = 0u64;
        while n < messages {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                n += 1;
            }
        }
        println!(
            "raw consume: {n} messages in {:.2}s ({:.0} messages/s)",
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let index = Arc::new(UserIndex::with_capacity(users as usize));
    let taxonomy = Arc::new(Taxonomy::default_taxonomy());
    let t1 = Instant::now();
    let format = if batch == 1 {
        Format::Protobuf
    } else {
        Format::ProtobufDelimited
    };
    let ingest = kafka::start(setup(&brokers, &topic, format), index.clone(), taxonomy)?;
    let mut first = None;
    let mut last_report = Instant::now();
    while ingest.consumed() < messages {
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  consumed {} ...", ingest.consumed());
            last_report = Instant::now();
        }
        if first.is_none() && ingest.consumed() > 0 {
            first = Some((Instant::now(), ingest.consumed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = t1.elapsed().as_secs_f64();
    let (f, n0) = first.context("nothing consumed")?;
    let steady = f.elapsed().as_secs_f64();
    let n0 = n0 * batch;
    println!(
        "applied {events} events in {total:.2}s from start ({:.0} events/s); from first event {:.2}s ({:.0} events/s); {} users",
        events as f64 / total,
        steady,
        (events - n0) as f64 / steady,
        index.users()
    );
    ingest.stop();
    Ok(())
}

/// Paces an open loop without spinning: sleeps until `due` when it is more
/// than a millisecond away, else returns at once, so work goes out in bursts
/// of up to a millisecond's worth. At 50 k events/s an event is due every
/// 20 us: a pacer that spun for the last stretch before each one kept a core
/// busy, and on two cores that starved the broker and consumer threads whose
/// latency is being measured (p90 216 ms at 50 k/s with spinning).
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now + Duration::from_millis(1) {
        std::thread::sleep(due - now);
    }
}

/// The phases of a freshness run Decide's latency is kept apart for.
mod phase {
    /// Before any event is produced.
    pub const BASELINE: u8 = 0;
    /// While events are produced and applied.
    pub const INGESTING: u8 = 1;
    /// After the last event is visible (not reported).
    pub const AFTER: u8 = 2;
}

fn freshness(
    broker: Broker,
    rate: u64,
    seconds: u64,
    users: u64,
    decide_rate: u64,
    linger_ms: u64,
    baseline_seconds: u64,
) -> Result<()> {
    let (brokers, topic) = (broker.brokers.clone(), broker.topic.clone());
    let taxonomy = Arc::new(Taxonomy::default_taxonomy());
    let today = Clock::System {
        tz_offset_secs: 8 * 3600,
    }
    .today();
    // sized for the users the events add too, as `[users] expected` sizes a
    // node: growing a shard's table holds its lock while it rehashes, and
    // Decide's latency while ingesting is what this run reports
    let index = Arc::new(UserIndex::with_capacity((users + rate * seconds) as usize));
    population::populate(&index, users, 42, today, &taxonomy);
    let set = StrategySet::from_toml(DEMO_STRATEGIES, "demo", &taxonomy)?;
    let engine = Arc::new(DecisionEngine::new(
        index.clone(),
        set,
        Clock::System {
            tz_offset_secs: 8 * 3600,
        },
    ));
    let mut ingest = kafka::start(
        setup(&brokers, &topic, Format::Protobuf),
        index.clone(),
        taxonomy,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(ingest.wait_caught_up());

    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(phase::BASELINE));
    // Decide under load: one thread deciding for random known devices, each
    // call timed into the histogram of the phase it ran in
    let load = {
        let (engine, stop) = (engine.clone(), stop.clone());
        let phase = phase.clone();
        std::thread::spawn(move || {
            // nanoseconds, up to a minute
            let new =
                || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
            // per phase: (from the call's start, from its scheduled time)
            let mut latency = [(new(), new()), (new(), new())];
            let mut i = 0u64;
            let started = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (decide_rate > 0)
                    .then(|| started + Duration::from_secs_f64(n as f64 / decide_rate as f64));
                if let Some(due) = due {
                    wait_until(due);
                }
                n += 1;
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = 1 + (i >> 33) % users;
                let imei = format!("86{:013}", id % 10_000_000_000_000);
                let Ok(k) = DeviceKey::from_raw(DeviceIdKind::Imei, &imei) else {
                    continue;
                };
                // timed from the scheduled time when the call starts late, so
                // that one held up by the one before it is charged for the
                // wait; from its start when early (`wait_until` does not sleep
                // the last millisecond)
                let call = Instant::now();
                let from = due.map_or(call, |due| due.min(call));
                let d = engine.decide(&DecisionRequest {
                    devices: &[k],
                    os: Os::Android,
                    experiments: &[],
                    only_strategies: &[],
                    media: None,
                });
                let done = Instant::now();
                std::hint::black_box(d);
                if let Some((service, scheduled)) =
                    latency.get_mut(usize::from(phase.load(Ordering::Relaxed)))
                {
                    service.saturating_record(done.duration_since(call).as_nanos() as u64);
                    scheduled.saturating_record(done.duration_since(from).as_nanos() as u64);
                }
            }
            latency
        })
    };
    std::thread::sleep(Duration::from_secs(baseline_seconds));
    phase.store(phase::INGESTING, Ordering::Relaxed);

    // new users (ids above the population) so that visibility is unambiguous
    let base = users + 1_000_000;
    let sample_every = 50u64;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Instant, Instant)>();
    let checker = {
        let index = index.clone();
        std::thread::spawn(move || {
            let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut from_due, mut from_send) = (new(), new());
            // the worst sample of each second of sending, to tell a steady
            // tail from a stall
            let mut worst: Vec<u64> = Vec::new();
            let mut first = None;
            for (user, due, sent) in rx {
                while index.with_profile(user, |_| ()).is_none() {
                    std::thread::sleep(Duration::from_micros(50));
                }
                let us = due.elapsed().as_micros() as u64;
                let _ = from_due.record(us);
                let _ = from_send.record(sent.elapsed().as_micros() as u64);
                let second = due.duration_since(*first.get_or_insert(due)).as_secs() as usize;
                if worst.len() <= second {
                    worst.resize(second + 1, 0);
                }
                worst[second] = worst[second].max(us);
            }
            let worst: Vec<String> = worst
                .iter()
                .map(|us| format!("{:.0}", *us as f64 / 1000.0))
                .collect();
            println!(
                "  worst sample per second of sending (ms): {}",
                worst.join(" ")
            );
            (from_due, from_send)
        })
    };
    let p = producer(&brokers, &linger_ms.to_string())?;
    // a steady producer is connected and knows the topic's partitions; a new
    // one holds its first messages until it does (about half a second here),
    // which is start-up, not freshness
    for part in 0..4u64 {
        send(
            &p,
            &topic,
            &part.to_string(),
            &event(base - 1 - part, now_ms(), 0),
        );
    }
    p.flush(Duration::from_secs(30))?;
    let start = Instant::now();
    let total = rate * seconds;
    for i in 0..total {
        // open loop: event i is due at start + i / rate
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        wait_until(due);
        let user = base + i;
        send(&p, &topic, &user.to_string(), &event(user, now_ms(), i));
        if i % sample_every == 0 {
            let _ = tx.send((user, due, Instant::now()));
        }
        p.poll(Duration::ZERO);
    }
    drop(tx);
    phase.store(phase::AFTER, Ordering::Relaxed);
    let sending = start.elapsed().as_secs_f64();
    let (h, from_send) = checker
        .join()
        .map_err(|_| anyhow::anyhow!("checker panicked"))?;
    stop.store(true, Ordering::Relaxed);
    let latency = load
        .join()
        .map_err(|_| anyhow::anyhow!("the deciding thread panicked"))?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "freshness (produced -> visible to Decide) at {rate} events/s for {seconds}s, {} samples: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; Decide meanwhile: {:.0} decisions/s",
        h.len(),
        ms(&h, 0.5),
        ms(&h, 0.9),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0,
        latency[1].0.len() as f64 / sending
    );
    println!(
        "  from each event's scheduled time (above: a producer behind schedule is charged); from the moment it was handed to the producer: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(&from_send, 0.5),
        ms(&from_send, 0.9),
        ms(&from_send, 0.99),
        from_send.max() as f64 / 1000.0
    );
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (name, (service, scheduled)) in ["alone", "while ingesting"].iter().zip(&latency) {
        println!(
            "  Decide {name} ({} calls), us: p50 {:.2}, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.0}; \
             from the scheduled time (the deciding thread's own wake-ups included): p99 {:.1}, p99.9 {:.1}",
            service.len(),
            us(service, 0.5),
            us(service, 0.9),
            us(service, 0.99),
            us(service, 0.999),
            service.max() as f64 / 1000.0,
            us(scheduled, 0.99),
            us(scheduled, 0.999),
        );
    }
    ingest.stop();
    Ok(())
}

fn restore(users: u64, dir: &std::path::Path, existing: bool) -> Result<()> {
    if !existing {
        write_population_snapshot(users, dir)?;
    }
    // pre-sized from the snapshot's header, as `serve` does
    let (users, devices) = snapshot::newest_counts(dir).context("no snapshot")?;
    let back = UserIndex::with_capacities(users as usize, devices as usize);
    let t = Instant::now();
    let r = snapshot::restore_newest(dir, &back, |n| eprintln!("  restored {n} users ..."))?
        .context("no snapshot")?;
    println!(
        "restored {} users ({} devices) in {:.2}s",
        r.users,
        back.devices(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Generates `users` users and writes them as the only snapshot in `dir`.
fn write_population_snapshot(users: u64, dir: &std::path::Path) -> Result<()> {
    let taxonomy = Taxonomy::default_taxonomy();
    let today = day_of(now_ms() / 1000, 8 * 3600);
    let index = UserIndex::with_capacity(users as usize);
    let t = Instant::now();
    population::populate(&index, users, 42, today, &taxonomy);
    println!(
        "generated {users} users in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
    let t = Instant::now();
    let path = snapshot::write(dir, &index, &Default::default(), 1)?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "wrote {} ({:.0} MiB) in {:.2}s",
        path.display(),
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
