//! The Kafka source: consumes the configured topics and applies their events
//! to the index, snapshotting index + offsets on a cadence.
//!
//! **Every serving node reads every partition** (manual assignment, its own
//! consumer group id): a replica behind a load balancer must be able to answer
//! for any user, so partitions are not split between replicas. The group id is
//! used only to commit the node's offsets for monitoring
//! (`kafka-consumer-groups --describe` shows each node's lag).
//!
//! **Exactly-once state.** The apply loop is the index's only writer. A
//! snapshot is taken by that loop between two messages, so it covers exactly
//! the offsets it records. On start the node restores the newest intact
//! snapshot and seeks every partition to the snapshot's offsets (not to the
//! group's committed ones), so a kill -9 at any moment replays precisely the
//! events after the snapshot: nothing is lost and no behaviour is counted
//! twice. Offsets are committed to Kafka only after the snapshot that covers
//! them is durable.
//!
//! **Never stalls.** A message that does not decode or validate is counted by
//! reason, logged without ids, written as a dead letter, and skipped.
//! Transport errors (broker down) are logged and retried by librdkafka.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::watch;

use super::apply::{ApplyContext, apply};
use super::dead_letter::{DeadLetters, Origin};
use super::event::{
    ControlEvent, DecodeContext, Event, Format, IdentityEvent, SkipReason, TopicKind, decode,
    frames,
};
use crate::decision::observer::EventObserver;
use crate::domain::taxonomy::Taxonomy;
use crate::index::UserIndex;
use crate::index::profile::day_of;
use crate::index::snapshot::{self, Offsets};
use crate::telemetry;
use crate::telemetry::event::{EventSkipped, SnapshotFailed, SnapshotWritten};

/// One consumed topic.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// What it carries: tags, behaviour, feedback, identity.
    pub kind: TopicKind,
    /// protobuf (default) or json.
    #[serde(default)]
    pub format: Format,
}

/// Where skipped messages go.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A Kafka topic (original payload, reason and origin in headers).
    pub topic: Option<String>,
    /// A JSON-lines file (payload hex-encoded).
    pub file: Option<PathBuf>,
}

/// The `[kafka]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group id for offset commits; default `rta-engine-<hostname>` (one per node).
    pub group_id: Option<String>,
    /// The topics to consume.
    pub topics: Vec<TopicConfig>,
    /// Dead-letter destination.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// `/readyz` turns ready once every partition's lag is at most this.
    #[serde(default = "default_ready_lag")]
    pub ready_max_lag: i64,
    /// Extra librdkafka properties (e.g. security settings).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_ready_lag() -> i64 {
    1000
}

/// The `[snapshot]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Directory of snapshot files.
    pub dir: PathBuf,
    /// Seconds between snapshots.
    #[serde(default = "default_snapshot_interval")]
    pub interval_secs: u64,
    /// Snapshot files kept.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_snapshot_interval() -> u64 {
    300
}
fn default_keep() -> usize {
    3
}

/// The `[retention]` section: what expires.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Behaviour counts older than this many days are dropped (windows slide).
    pub behaviour_days: u16,
    /// Profiles untouched for this many days are dropped.
    pub profile_ttl_days: u16,
    /// Seconds between expiry sweeps.
    pub sweep_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            behaviour_days: 400,
            profile_ttl_days: 400,
            sweep_interval_secs: 3600,
        }
    }
}

/// Why ingestion could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// librdkafka refused the configuration or a call.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A configured topic does not exist.
    #[error("kafka: topic `{0}` not found (or has no partitions)")]
    NoSuchTopic(String),
    /// The dead-letter file could not be opened.
    #[error("dead-letter file {0}: {1}")]
    DeadLetterFile(PathBuf, std::io::Error),
    /// The configuration is inconsistent.
    #[error("kafka config: {0}")]
    Config(String),
}

/// A running Kafka source.
pub struct KafkaIngest {
    stop: Arc<AtomicBool>,
    consumed: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<JoinHandle<()>>,
    caught_up: watch::Receiver<bool>,
}

impl KafkaIngest {
    /// Resolves once every partition was within `ready_max_lag` (once; it stays true).
    pub async fn wait_caught_up(&mut self) {
        let _ = self.caught_up.wait_for(|v| *v).await;
    }

    /// Whether the node has caught up since start.
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Messages consumed so far (applied or skipped).
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// A receiver that turns true once the node has caught up.
    pub fn caught_up_signal(&self) -> watch::Receiver<bool> {
        self.caught_up.clone()
    }

    /// Stops consuming, writes a final snapshot (if configured) and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KafkaIngest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Everything the apply loop needs.
pub struct IngestSetup {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Snapshots, if any.
    pub snapshot: Option<SnapshotConfig>,
    /// Expiry.
    pub retention: RetentionConfig,
    /// Business time zone, seconds east of UTC.
    pub tz_offset_secs: i32,
    /// Where to resume (from the restored snapshot); other partitions start
    /// at the beginning, and so do `control` topics always (the blacklist is
    /// not in snapshots: it is rebuilt from its topic).
    pub start_offsets: Offsets,
    /// Sees every applied event after the index did (the decision engine's
    /// feedback loop and blacklist); `None`: the index only.
    pub observer: Option<Arc<dyn EventObserver>>,
}

fn default_group_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("rta-engine-{host}")
}

/// Receives librdkafka's statistics (on the polling thread): the brokers'
/// high watermarks per partition, for lag and readiness.
#[derive(Default)]
struct WatermarkContext {
    high: std::sync::Mutex<HashMap<(String, i32), (i64, i64)>>,
}

impl ClientContext for WatermarkContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut high) = self.high.lock() {
            for (topic, t) in statistics.topics {
                for (p, part) in t.partitions {
                    if p >= 0 && part.hi_offset >= 0 {
                        high.insert((topic.clone(), p), (part.lo_offset, part.hi_offset));
                    }
                }
            }
        }
    }
}

impl ConsumerContext for WatermarkContext {}

type IngestConsumer = BaseConsumer<WatermarkContext>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Connects, assigns every partition of every topic, and starts the apply loop on its own thread.
pub fn start(
    setup: IngestSetup,
    index: Arc<UserIndex>,
    taxonomy: Arc<Taxonomy>,
) -> Result<KafkaIngest, IngestError> {
    if setup.kafka.topics.is_empty() {
        return Err(IngestError::Config("no topics configured".into()));
    }
    let group_id = setup
        .kafka
        .group_id
        .clone()
        .unwrap_or_else(default_group_id);
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &setup.kafka.brokers)
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // how long a broker may hold a fetch that has no data yet: Kafka
        // answers as soon as data arrives anyway, but brokers that only answer
        // when the wait is over (librdkafka's mock cluster) add up to this
        // much to every event's freshness; 5 ms costs ~200 idle fetches/s
        .set("fetch.wait.max.ms", "5")
        // librdkafka stops fetching a partition whose local queue holds
        // `queued.min.messages` (100 k by default) and then waits
        // `fetch.queue.backoff.ms` (1 s by default) before fetching again: a
        // catching-up consumer spent most of its time in that wait (145 k
        // events/s from a pre-filled topic, 700 k/s with these two). The
        // queue stays bounded by `queued.max.messages.kbytes` (64 MiB).
        .set("queued.min.messages", "1000000")
        .set("fetch.queue.backoff.ms", "20")
        .set("statistics.interval.ms", "500")
        .set("socket.nagle.disable", "true");
    for (k, v) in &setup.kafka.properties {
        cc.set(k, v);
    }
    let consumer: IngestConsumer = cc.create_with_context(WatermarkContext::default())?;

    let mut tpl = TopicPartitionList::new();
    let mut partitions = Vec::new();
    for (ti, t) in setup.kafka.topics.iter().enumerate() {
        let md = consumer.fetch_metadata(Some(&t.name), Duration::from_secs(10))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|mt| mt.name() == t.name && mt.error().is_none())
            .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            return Err(IngestError::NoSuchTopic(t.name.clone()));
        }
        for p in parts {
            let offset = match setup.start_offsets.get(&(t.name.clone(), p)) {
                Some(o) if t.kind != TopicKind::Control => Offset::Offset(*o),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(&t.name, p, offset)?;
            partitions.push((ti, p));
        }
    }
    consumer.assign(&tpl)?;

    let dead = match (
        &setup.kafka.dead_letter.topic,
        &setup.kafka.dead_letter.file,
    ) {
        (Some(topic), _) => {
            let mut pc = ClientConfig::new();
            pc.set("bootstrap.servers", &setup.kafka.brokers);
            for (k, v) in &setup.kafka.properties {
                pc.set(k, v);
            }
            DeadLetters::Topic {
                producer: pc.create::<BaseProducer>()?,
                topic: topic.clone(),
            }
        }
        (None, Some(path)) => DeadLetters::file(path.clone())
            .map_err(|e| IngestError::DeadLetterFile(path.clone(), e))?,
        (None, None) => DeadLetters::Discard,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (tx, rx) = watch::channel(false);
    let mut lp = ApplyLoop {
        metrics: Vec::new(),
        consumed: consumed.clone(),
        setup,
        index,
        taxonomy,
        dead,
        positions: HashMap::new(),
        partitions,
        caught_up: tx,
    };
    for (ti, p) in lp.partitions.clone() {
        let topic = &lp.setup.kafka.topics[ti];
        if topic.kind == TopicKind::Control {
            continue;
        }
        if let Some(o) = lp.setup.start_offsets.get(&(topic.name.clone(), p)) {
            lp.positions.insert((ti, p), *o);
        }
    }
    lp.metrics = lp
        .setup
        .kafka
        .topics
        .iter()
        .map(|t| TopicMetrics {
            applied: metrics::counter!(telemetry::INGEST_EVENTS, "topic" => t.name.clone(), "result" => "applied"),
            skipped: metrics::counter!(telemetry::INGEST_EVENTS, "topic" => t.name.clone(), "result" => "skipped"),
            freshness: metrics::histogram!(telemetry::INGEST_FRESHNESS, "topic" => t.name.clone()),
        })
        .collect();
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("rta-ingest".into())
        .spawn(move || lp.run(&consumer, &stop_flag))
        .map_err(|e| IngestError::Config(format!("cannot start the ingest thread: {e}")))?;
    Ok(KafkaIngest {
        stop,
        consumed,
        thread: Some(thread),
        caught_up: rx,
    })
}

/// Messages applied per [`ApplyLoop::drain`] at most: bounds the time
/// between checks of the stop flag, lag, snapshots and expiry.
const POLL_BATCH: usize = 4096;

/// Messages between reads of the wall clock within a batch (a read is
/// ~25 ns; a message ~1 us, so freshness is off by well under a millisecond).
const CLOCK_EVERY: usize = 64;

/// What one batch applied, folded into the shared counters at its end.
#[derive(Default)]
struct Tally {
    /// Messages consumed, applied or skipped.
    messages: u64,
    /// Events applied per topic index.
    applied: Vec<u64>,
}

/// Metric handles per topic, registered once (no label allocation per event).
struct TopicMetrics {
    applied: metrics::Counter,
    skipped: metrics::Counter,
    freshness: metrics::Histogram,
}

struct ApplyLoop {
    metrics: Vec<TopicMetrics>,
    consumed: Arc<std::sync::atomic::AtomicU64>,
    setup: IngestSetup,
    index: Arc<UserIndex>,
    taxonomy: Arc<Taxonomy>,
    dead: DeadLetters,
    /// (topic index, partition) -> next offset to apply.
    positions: HashMap<(usize, i32), i64>,
    partitions: Vec<(usize, i32)>,
    caught_up: watch::Sender<bool>,
}

impl ApplyLoop {
    fn run(&mut self, consumer: &IngestConsumer, stop: &AtomicBool) {
        let mut last_lag = Instant::now() - Duration::from_secs(60);
        let mut last_snapshot = Instant::now();
        let mut last_sweep = Instant::now();
        let snapshot_every = self
            .setup
            .snapshot
            .as_ref()
            .map(|s| Duration::from_secs(s.interval_secs.max(1)));
        let sweep_every = Duration::from_secs(self.setup.retention.sweep_interval_secs.max(1));
        while !stop.load(Ordering::Acquire) {
            self.drain(consumer);
            if last_lag.elapsed() >= Duration::from_millis(500) {
                self.update_lag(consumer);
                last_lag = Instant::now();
            }
            if let Some(every) = snapshot_every
                && last_snapshot.elapsed() >= every
            {
                self.snapshot(consumer);
                last_snapshot = Instant::now();
            }
            if last_sweep.elapsed() >= sweep_every {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        if self.setup.snapshot.is_some() {
            self.snapshot(consumer);
        }
        self.dead.flush();
    }

    /// Applies what the consumer has, up to [`POLL_BATCH`] messages: waits
    /// for the first, takes the rest only if already fetched. Clock reads,
    /// counters and positions are per batch, not per message.
    fn drain(&mut self, consumer: &IngestConsumer) {
        let mut tally = Tally::default();
        let mut timeout = Duration::from_millis(50);
        let mut now = 0;
        let mut last_topic: Option<(usize, i32, i64)> = None;
        for n in 0..POLL_BATCH {
            let msg = match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consume error; retrying");
                    break;
                }
                Some(Ok(msg)) => msg,
            };
            timeout = Duration::ZERO;
            if n % CLOCK_EVERY == 0 {
                now = now_ms();
            }
            let topic = msg.topic();
            let ti = match last_topic {
                Some((ti, ..)) if self.setup.kafka.topics[ti].name == topic => ti,
                _ => match self.setup.kafka.topics.iter().position(|t| t.name == topic) {
                    Some(ti) => ti,
                    None => continue,
                },
            };
            let (partition, offset) = (msg.partition(), msg.offset());
            if let Some((lt, lp, lo)) = last_topic
                && (lt, lp) != (ti, partition)
            {
                self.positions.insert((lt, lp), lo + 1);
            }
            last_topic = Some((ti, partition, offset));
            self.handle(
                ti,
                partition,
                offset,
                msg.payload().unwrap_or(&[]),
                now,
                &mut tally,
            );
        }
        if let Some((lt, lp, lo)) = last_topic {
            self.positions.insert((lt, lp), lo + 1);
        }
        for (ti, applied) in tally.applied.iter().enumerate() {
            if *applied > 0 {
                self.metrics[ti].applied.increment(*applied);
            }
        }
        self.consumed.fetch_add(tally.messages, Ordering::Relaxed);
    }

    /// Applies every event of one message; the message counts as consumed
    /// once, whatever it held.
    fn handle(
        &mut self,
        ti: usize,
        partition: i32,
        offset: i64,
        payload: &[u8],
        now: i64,
        tally: &mut Tally,
    ) {
        let origin = (ti, partition, offset);
        for frame in frames(self.setup.kafka.topics[ti].format, payload) {
            match frame {
                Ok(event) => self.apply_event(origin, event, now, tally),
                Err(rest) => self.skip(origin, SkipReason::Undecodable, rest),
            }
        }
        tally.messages += 1;
    }

    fn apply_event(
        &mut self,
        (ti, partition, offset): (usize, i32, i64),
        payload: &[u8],
        now: i64,
        tally: &mut Tally,
    ) {
        let topic = &self.setup.kafka.topics[ti];
        let ctx = DecodeContext {
            taxonomy: &self.taxonomy,
            now_ms: now,
            retention_days: u32::from(self.setup.retention.behaviour_days),
        };
        let result = decode(topic.kind, topic.format, payload, &ctx).and_then(|event| {
            let actx = ApplyContext {
                today: day_of(now.div_euclid(1000), self.setup.tz_offset_secs),
                tz_offset_secs: self.setup.tz_offset_secs,
                retention_days: self.setup.retention.behaviour_days,
            };
            apply(&self.index, &event, &actx).map(|()| event)
        });
        match result {
            Ok(event) => {
                if let Some(o) = &self.setup.observer {
                    match &event {
                        Event::Feedback(f) => o.on_feedback(f),
                        Event::Control(c) => o.on_control(c),
                        _ => {}
                    }
                }
                if tally.applied.len() <= ti {
                    tally.applied.resize(ti + 1, 0);
                }
                tally.applied[ti] += 1;
                if let Some(t) = event_time(&event) {
                    self.metrics[ti]
                        .freshness
                        .record((now - t).max(0) as f64 / 1000.0);
                }
            }
            Err(reason) => self.skip((ti, partition, offset), reason, payload),
        }
    }

    /// Counts, logs (without ids) and dead-letters an event that is not applied.
    fn skip(
        &mut self,
        (ti, partition, offset): (usize, i32, i64),
        reason: SkipReason,
        payload: &[u8],
    ) {
        self.metrics[ti].skipped.increment(1);
        let name = &self.setup.kafka.topics[ti].name;
        EventSkipped {
            topic: name,
            position: (partition, offset),
            reason: reason.label(),
        }
        .emit();
        self.dead.record(
            Origin {
                topic: name,
                partition,
                offset,
            },
            reason,
            payload,
        );
    }

    fn update_lag(&mut self, consumer: &IngestConsumer) {
        let known = consumer
            .context()
            .high
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let mut all_within = true;
        for &(ti, p) in &self.partitions {
            let name = &self.setup.kafka.topics[ti].name;
            let Some(&(low, high)) = known.get(&(name.clone(), p)) else {
                all_within = false; // no statistics for this partition yet
                continue;
            };
            let pos = self
                .positions
                .get(&(ti, p))
                .copied()
                .unwrap_or(low)
                .max(low);
            let lag = (high - pos).max(0);
            metrics::gauge!(telemetry::INGEST_LAG, "topic" => name.clone(), "partition" => p.to_string()).set(lag as f64);
            if lag > self.setup.kafka.ready_max_lag {
                all_within = false;
            }
        }
        if all_within && !*self.caught_up.borrow() {
            tracing::info!("caught up with all partitions");
            self.caught_up.send_replace(true);
        }
    }

    fn offsets(&self) -> Offsets {
        self.positions
            .iter()
            .map(|(&(ti, p), &o)| ((self.setup.kafka.topics[ti].name.clone(), p), o))
            .collect()
    }

    fn snapshot(&mut self, consumer: &IngestConsumer) {
        let Some(cfg) = &self.setup.snapshot else {
            return;
        };
        let offsets = self.offsets();
        let (result, secs) =
            snapshot::timed(|| snapshot::write(&cfg.dir, &self.index, &offsets, cfg.keep));
        match result {
            Ok(path) => {
                SnapshotWritten {
                    path: &path,
                    users: self.index.users() as u64,
                    seconds: secs,
                    at_unix_seconds: now_ms() as f64 / 1000.0,
                }
                .emit();
                // only now are these offsets safe to commit
                let mut tpl = TopicPartitionList::new();
                for ((topic, p), o) in &offsets {
                    let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
                }
                if tpl.count() > 0
                    && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
                {
                    tracing::warn!(error = %e, "offset commit failed; the snapshot still covers them");
                }
            }
            Err(e) => {
                SnapshotFailed { error: &e }.emit();
            }
        }
    }

    fn sweep(&mut self) {
        let today = day_of(now_ms().div_euclid(1000), self.setup.tz_offset_secs);
        let r = self.setup.retention;
        let dropped = self.index.expire(
            today.saturating_sub(r.profile_ttl_days),
            today.saturating_sub(r.behaviour_days),
        );
        if dropped > 0 {
            tracing::info!(dropped, "expired untouched profiles");
        }
    }
}

fn event_time(e: &Event) -> Option<i64> {
    Some(match e {
        Event::Tags(t) => t.time_ms,
        Event::Behaviour(b) => b.time_ms,
        Event::Feedback(f) => f.time_ms,
        Event::Identity(
            IdentityEvent::Link { time_ms, .. } | IdentityEvent::Delete { time_ms, .. },
        ) => *time_ms,
        Event::Identity(IdentityEvent::Unlink { .. }) => return None,
        Event::Vector(v) => v.time_ms,
        Event::Control(ControlEvent::List { time_ms, .. }) => *time_ms,
        Event::Control(ControlEvent::Unlist { .. }) => return None,
    })
}
