//! The decision-intelligence simulation: a generated population whose true
//! click and conversion propensities are known, the engine deciding on a
//! stream of requests, and media feedback drawn from the truth and fed back
//! through Kafka (librdkafka's mock cluster, consumed by the engine's own
//! ingestion). Compared with a tag-only baseline deciding on the same
//! requests, it reports CTR and CVR of the traffic each one took, how fast
//! calibration converges, and checks from its own bookkeeping that the
//! frequency caps and the blacklist held exactly.
//!
//! ```text
//! cargo run --release --bin rta-simulate
//! cargo run --release --bin rta-simulate -- --users 50000 --rounds 30 --json target/sim.json
//! ```
//!
//! The world: users have a true latent vector `z` (`--dims` values, N(0, 1));
//! each strategy has true head vectors and biases, so a user's true pCTR is
//! `sigmoid(z . w_ctr + b_ctr)` and pCVR (per click) likewise. The offline
//! model the engine is given knows `z` and `w` only up to noise (`--noise`)
//! and has biases off by `--bias-error` logits (it underpredicts by about
//! e^bias-error): calibration has to find that out from feedback. A share of
//! users (`--bots`) are click bots: they click half of what they see and
//! never convert. The media shows the first strategy of a taken answer with
//! probability `--win-rate` (its auction), then clicks and conversions follow
//! the truth. Each round a random `--share` of users sends one request each;
//! feedback of a round is consumed before the next round starts and the model
//! is recalibrated, so caps and rules can be checked exactly.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use prost::Message;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rta_engine::decision::blacklist::{BlacklistConfig, Listed};
use rta_engine::decision::ledger::CalibrationConfig;
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::profile::{ProfileBuilder, UserVector, model_tag};
use rta_engine::ingest::event::{Format, TopicKind};
use rta_engine::ingest::kafka::{
    self, DeadLetterConfig, IngestSetup, KafkaConfig, RetentionConfig, TopicConfig,
};
use rta_engine::ingest::pb;
use rta_engine::strategy::score::sigmoid;
use rta_engine::strategy::{Os, StrategySet};

/// The server's allocator (`rta-engine`'s), so that what this measures
/// allocates as the server does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    about = "rta-engine decision-intelligence simulation (scored engine vs tag-only baseline)"
)]
struct Cli {
    /// Users in the population.
    #[arg(long, default_value_t = 20_000)]
    users: u64,
    /// Rounds of requests.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Share of users that send a request in a round.
    #[arg(long, default_value_t = 0.5)]
    share: f64,
    /// Dimensions of the model's vectors.
    #[arg(long, default_value_t = 8)]
    dims: usize,
    /// Standard deviation of the model's error on every vector value.
    #[arg(long, default_value_t = 0.3)]
    noise: f32,
    /// How many logits the model's biases are below the truth.
    #[arg(long, default_value_t = 1.2)]
    bias_error: f32,
    /// Share of users that are click bots.
    #[arg(long, default_value_t = 0.01)]
    bots: f64,
    /// Share of normal users the media reports as fraud (at a quarter of the run).
    #[arg(long, default_value_t = 0.002)]
    fraud_reports: f64,
    /// Probability that the media shows a taken answer's first strategy.
    #[arg(long, default_value_t = 0.5)]
    win_rate: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const STRATEGIES: usize = 4;
const CAP: u32 = 3;
const CLICK_RULE: u32 = 3;
const MODEL: &str = "sim-v1";
const FEEDBACK_TOPIC: &str = "sim.feedback";

struct Head {
    w: Vec<f32>,
    b: f32,
}

struct World {
    z: Vec<Vec<f32>>,
    group: Vec<usize>,
    bot: Vec<bool>,
    ctr: Vec<Head>,
    cvr: Vec<Head>,
    audiences: Vec<Vec<usize>>,
}

fn normal(rng: &mut Pcg64Mcg) -> f32 {
    // Box-Muller
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl World {
    fn generate(cli: &Cli, rng: &mut Pcg64Mcg) -> Self {
        let d = cli.dims;
        let scale = (1.0 / d as f32).sqrt() * 1.2;
        let vec = |rng: &mut Pcg64Mcg, s: f32| (0..d).map(|_| normal(rng) * s).collect();
        let ctr = (0..STRATEGIES)
            .map(|i| Head {
                w: vec(rng, scale),
                b: -3.0 + 0.2 * i as f32,
            })
            .collect();
        let cvr = (0..STRATEGIES)
            .map(|i| Head {
                w: vec(rng, scale),
                b: -2.5 - 0.1 * i as f32,
            })
            .collect();
        let n = cli.users as usize;
        Self {
            z: (0..n).map(|_| vec(rng, 1.0)).collect(),
            group: (0..n).map(|_| rng.random_range(0..10)).collect(),
            bot: (0..n).map(|_| rng.random_bool(cli.bots)).collect(),
            ctr,
            cvr,
            // each strategy targets three of the ten target groups
            audiences: (0..STRATEGIES)
                .map(|s| (0..3).map(|k| (3 * s + k) % 10).collect())
                .collect(),
        }
    }

    fn true_ctr(&self, u: usize, s: usize) -> f64 {
        if self.bot[u] {
            0.5
        } else {
            sigmoid(f64::from(dot(&self.z[u], &self.ctr[s].w) + self.ctr[s].b))
        }
    }

    fn true_cvr(&self, u: usize, s: usize) -> f64 {
        if self.bot[u] {
            0.0
        } else {
            sigmoid(f64::from(dot(&self.z[u], &self.cvr[s].w) + self.cvr[s].b))
        }
    }
}

fn device(u: usize) -> Result<DeviceKey> {
    DeviceKey::from_raw(DeviceIdKind::Imei, &format!("86{:013}", u + 1))
        .map_err(|e| anyhow::anyhow!("device id: {e}"))
}

fn user_id(u: usize) -> u64 {
    u as u64 + 1
}

/// The strategy file: the same audiences, with (`scored`) or without the
/// model's score section and the cap.
fn strategy_file(
    world: &World,
    cli: &Cli,
    rng: &mut Pcg64Mcg,
    scored: bool,
    taxonomy: &Taxonomy,
) -> Result<String> {
    let groups = &taxonomy
        .systems()
        .iter()
        .find(|s| s.name == "target_group")
        .context("the default taxonomy has target groups")?
        .values;
    let mut f = String::new();
    writeln!(
        f,
        "version = \"sim-{}\"",
        if scored { "scored" } else { "tags-only" }
    )?;
    if scored {
        writeln!(f, "[model]\nversion = \"{MODEL}\"\ndims = {}\n", cli.dims)?;
    }
    let noisy = |h: &Head, rng: &mut Pcg64Mcg| -> String {
        let w: Vec<String> =
            h.w.iter()
                .map(|x| format!("{:.4}", x + normal(rng) * cli.noise))
                .collect();
        format!(
            "{{ weights = [{}], bias = {:.4} }}",
            w.join(", "),
            h.b - cli.bias_error
        )
    };
    for s in 0..STRATEGIES {
        let aud: Vec<&str> = world.audiences[s]
            .iter()
            .map(|g| groups[*g].as_str())
            .collect();
        writeln!(f, "[[strategy]]\nid = \"s{s}\"\ntarget_id = \"t{s}\"")?;
        writeln!(f, "audience = \"target_group in {{{}}}\"", aud.join(", "))?;
        if scored {
            writeln!(f, "cap = {{ exposures = {CAP}, days = 1 }}")?;
            writeln!(f, "[strategy.score]")?;
            writeln!(f, "ctr = {}", noisy(&world.ctr[s], rng))?;
            writeln!(f, "cvr = {}", noisy(&world.cvr[s], rng))?;
            // about the population's median true rates
            let (bc, bv) = (world.ctr[s].b, world.cvr[s].b);
            writeln!(
                f,
                "min_pctr = {:.4}\nmin_pcvr = {:.4}\nbid_from = \"value\"\nreference = {:.6}\nfallback = \"refuse\"",
                sigmoid(f64::from(bc)),
                sigmoid(f64::from(bv)),
                sigmoid(f64::from(bc)) * sigmoid(f64::from(bv))
            )?;
        }
        writeln!(f)?;
    }
    Ok(f)
}

fn population(
    world: &World,
    cli: &Cli,
    rng: &mut Pcg64Mcg,
    taxonomy: &Taxonomy,
) -> Result<UserIndex> {
    let groups = &taxonomy
        .systems()
        .iter()
        .find(|s| s.name == "target_group")
        .context("target groups")?
        .values;
    let idx = UserIndex::with_capacity(world.z.len());
    for u in 0..world.z.len() {
        let mut b = ProfileBuilder::default();
        b.devices.push(device(u)?);
        b.tags.push(
            taxonomy
                .code("target_group", &groups[world.group[u]])
                .context("target group code")?,
        );
        // what the offline model knows of the user (nothing true of bots)
        let v: Vec<f32> = if world.bot[u] {
            (0..cli.dims).map(|_| normal(rng)).collect()
        } else {
            world.z[u]
                .iter()
                .map(|x| x + normal(rng) * cli.noise)
                .collect()
        };
        b.vector = Some(UserVector::quantise(model_tag(MODEL), &v)?);
        idx.upsert(user_id(u), b.build()?)?;
    }
    Ok(idx)
}

/// What one engine's taken traffic came to.
#[derive(Default, Clone, Copy, serde::Serialize)]
struct Outcomes {
    requests: u64,
    taken: u64,
    exposures: u64,
    clicks: u64,
    conversions: u64,
    bot_exposures: u64,
    /// Sums over scored exposures (and clicks) of what the engine served and the truth.
    served_pctr: f64,
    true_pctr: f64,
    scored_exposures: u64,
    served_pcvr: f64,
    true_pcvr: f64,
    scored_clicks: u64,
}

impl Outcomes {
    fn ctr(&self) -> f64 {
        self.clicks as f64 / self.exposures.max(1) as f64
    }
    fn cvr(&self) -> f64 {
        self.conversions as f64 / self.clicks.max(1) as f64
    }
    fn conversions_per_exposure(&self) -> f64 {
        self.conversions as f64 / self.exposures.max(1) as f64
    }
}

#[derive(serde::Serialize)]
struct Round {
    round: u32,
    scored: Outcomes,
    baseline: Outcomes,
    /// Mean served pCTR / mean true pCTR over the round's scored exposures.
    ctr_calibration: f64,
    /// Mean served pCVR / mean true pCVR over the round's scored clicks.
    cvr_calibration: f64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(0.0..=1.0).contains(&cli.share) || !(0.0..=1.0).contains(&cli.bots) || cli.users == 0 {
        bail!("--share and --bots are shares within 0..=1, --users at least 1");
    }
    let started = Instant::now();
    let mut rng = Pcg64Mcg::seed_from_u64(cli.seed);
    let taxonomy = Taxonomy::default_taxonomy();
    let world = World::generate(&cli, &mut rng);
    let scored_set = StrategySet::from_toml(
        &strategy_file(&world, &cli, &mut rng, true, &taxonomy)?,
        "<simulated scored strategies>",
        &taxonomy,
    )?;
    let base_set = StrategySet::from_toml(
        &strategy_file(&world, &cli, &mut rng, false, &taxonomy)?,
        "<simulated tag-only strategies>",
        &taxonomy,
    )?;
    let scored_index = Arc::new(population(&world, &cli, &mut rng, &taxonomy)?);
    let base_index = Arc::new(population(&world, &cli, &mut rng, &taxonomy)?);
    let clock = Clock::System { tz_offset_secs: 0 };
    let engine = Arc::new(DecisionEngine::with_rules(
        scored_index.clone(),
        scored_set,
        clock,
        BlacklistConfig {
            max_clicks_without_conversion: CLICK_RULE,
            ..Default::default()
        },
        CalibrationConfig::default(),
    ));
    let baseline = DecisionEngine::new(base_index, base_set, clock);

    let mock = MockCluster::new(1).context("mock cluster")?;
    mock.create_topic(FEEDBACK_TOPIC, 4, 1)?;
    let brokers = mock.bootstrap_servers();
    let ingest = kafka::start(
        IngestSetup {
            kafka: KafkaConfig {
                brokers: brokers.clone(),
                group_id: Some("rta-simulate".into()),
                topics: vec![TopicConfig {
                    name: FEEDBACK_TOPIC.into(),
                    kind: TopicKind::Feedback,
                    format: Format::Protobuf,
                }],
                dead_letter: DeadLetterConfig::default(),
                ready_max_lag: 0,
                properties: Default::default(),
            },
            snapshot: None,
            retention: RetentionConfig::default(),
            tz_offset_secs: 0,
            start_offsets: Default::default(),
            observer: Some(engine.clone()),
        },
        scored_index.clone(),
        Arc::new(taxonomy.clone()),
    )?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let produced = std::cell::Cell::new(0u64);
    let send = |user: u64, kind: pb::FeedbackKind, strategy: &str| -> Result<()> {
        let payload = pb::FeedbackEvent {
            user_id: user,
            device: None,
            event_time_ms: now_ms(),
            kind: kind as i32,
            strategy_id: strategy.into(),
            media_id: "sim".into(),
        }
        .encode_to_vec();
        let key = user.to_string();
        let mut record = BaseRecord::to(FEEDBACK_TOPIC).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
            }
        }
        produced.set(produced.get() + 1);
        Ok(())
    };

    // the simulation's own books, to check the engine against
    let mut exposures_today: HashMap<(usize, usize), u32> = HashMap::new();
    let mut clicks_today: HashMap<usize, u32> = HashMap::new();
    let mut conversions_today: HashMap<usize, u32> = HashMap::new();
    let mut reported: Vec<usize> = Vec::new();
    let (mut cap_violations, mut blacklist_violations, mut rule_misses) = (0u64, 0u64, 0u64);
    let mut rounds = Vec::new();
    let mut total = [Outcomes::default(); 2];
    let mut order: Vec<usize> = (0..world.z.len()).collect();
    let per_round = ((world.z.len() as f64) * cli.share).round() as usize;
    println!(
        "{:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}   (rounds of {per_round} requests)",
        "round", "engine", "taken", "exposed", "CTR", "CVR", "pCTR/true", "pCVR/true"
    );
    for round in 0..cli.rounds {
        if round == cli.rounds / 4 {
            for u in 0..world.z.len() {
                if !world.bot[u] && rng.random_bool(cli.fraud_reports) {
                    send(user_id(u), pb::FeedbackKind::Fraud, "s0")?;
                    reported.push(u);
                }
            }
        }
        // who is listed now: nothing of theirs may be taken this round
        let now = now_ms();
        let listed: Vec<bool> = (0..world.z.len())
            .map(|u| {
                engine
                    .blacklist()
                    .get(Listed::User(user_id(u)), now)
                    .is_some()
            })
            .collect();
        order.shuffle(&mut rng);
        let mut out = [Outcomes::default(); 2];
        for &u in &order[..per_round] {
            let key = device(u)?;
            for (e, which) in [(&*engine, 0usize), (&baseline, 1)] {
                let d = e.decide(&DecisionRequest {
                    devices: &[key],
                    os: Os::Android,
                    experiments: &[],
                    only_strategies: &[],
                    media: None,
                });
                let o = &mut out[which];
                o.requests += 1;
                if !d.take {
                    continue;
                }
                o.taken += 1;
                if which == 0 {
                    if listed[u] {
                        blacklist_violations += 1;
                    }
                    for m in &d.matches {
                        let s: usize = m.strategy_id[1..].parse()?;
                        if exposures_today.get(&(u, s)).copied().unwrap_or(0) >= CAP {
                            cap_violations += 1;
                        }
                    }
                }
                // the media shows the first strategy if it wins its auction
                let m = &d.matches[0];
                if !rng.random_bool(cli.win_rate) {
                    continue;
                }
                let s: usize = m.strategy_id[1..].parse()?;
                o.exposures += 1;
                o.bot_exposures += u64::from(world.bot[u]);
                let (pctr, pcvr) = (world.true_ctr(u, s), world.true_cvr(u, s));
                if let Some(served) = m.pctr {
                    o.served_pctr += served;
                    o.true_pctr += pctr;
                    o.scored_exposures += 1;
                }
                let clicked = rng.random_bool(pctr);
                let converted = clicked && rng.random_bool(pcvr);
                if clicked {
                    o.clicks += 1;
                    if let Some(served) = m.pcvr {
                        o.served_pcvr += served;
                        o.true_pcvr += pcvr;
                        o.scored_clicks += 1;
                    }
                }
                if converted {
                    o.conversions += 1;
                }
                if which == 0 {
                    *exposures_today.entry((u, s)).or_default() += 1;
                    send(user_id(u), pb::FeedbackKind::Exposure, &m.strategy_id)?;
                    if clicked {
                        *clicks_today.entry(u).or_default() += 1;
                        send(user_id(u), pb::FeedbackKind::Click, &m.strategy_id)?;
                    }
                    if converted {
                        *conversions_today.entry(u).or_default() += 1;
                        send(user_id(u), pb::FeedbackKind::Conversion, &m.strategy_id)?;
                    }
                }
            }
        }
        // the round's feedback is applied before the next round decides
        producer.flush(Duration::from_secs(60))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while ingest.consumed() < produced.get() {
            if Instant::now() > deadline {
                bail!(
                    "feedback not consumed: {} of {}",
                    ingest.consumed(),
                    produced.get()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        engine.recalibrate();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let r = Round {
            round,
            scored: out[0],
            baseline: out[1],
            ctr_calibration: ratio(out[0].served_pctr, out[0].true_pctr),
            cvr_calibration: ratio(out[0].served_pcvr, out[0].true_pcvr),
        };
        for (name, o) in [("scored", &out[0]), ("tags-only", &out[1])] {
            let cal = if name == "scored" {
                format!("{:>9.3} {:>9.3}", r.ctr_calibration, r.cvr_calibration)
            } else {
                String::new()
            };
            println!(
                "{round:>5} {name:>9} {:>8} {:>8} {:>7.2}% {:>7.2}% {cal}",
                o.taken,
                o.exposures,
                100.0 * o.ctr(),
                100.0 * o.cvr()
            );
        }
        for (t, o) in total.iter_mut().zip(&out) {
            t.requests += o.requests;
            t.taken += o.taken;
            t.exposures += o.exposures;
            t.clicks += o.clicks;
            t.conversions += o.conversions;
            t.bot_exposures += o.bot_exposures;
        }
        rounds.push(r);
    }
    // every user the rule should have caught (by the simulation's books) is listed
    let now = now_ms();
    let mut flagged_bots = 0u64;
    let mut flagged_humans = 0u64;
    for u in 0..world.z.len() {
        let clicks = clicks_today.get(&u).copied().unwrap_or(0);
        let conv = conversions_today.get(&u).copied().unwrap_or(0);
        let listed = engine
            .blacklist()
            .get(Listed::User(user_id(u)), now)
            .is_some();
        if clicks > CLICK_RULE && conv == 0 && !listed {
            rule_misses += 1;
        }
        if listed && !reported.contains(&u) {
            if world.bot[u] {
                flagged_bots += 1;
            } else {
                flagged_humans += 1;
            }
        }
    }
    let unreported_missing = reported
        .iter()
        .filter(|u| {
            engine
                .blacklist()
                .get(Listed::User(user_id(**u)), now)
                .is_none()
        })
        .count();
    ingest.stop();

    let (s, b) = (&total[0], &total[1]);
    let lift = |a: f64, b: f64| 100.0 * (a / b - 1.0);
    let bots = world.bot.iter().filter(|b| **b).count();
    let converged = rounds
        .iter()
        .position(|r| (r.ctr_calibration - 1.0).abs() < 0.1)
        .map_or("never".to_string(), |i| format!("round {i}"));
    let mut summary = String::new();
    writeln!(
        summary,
        "\n== {} users ({bots} bots), {} rounds, seed {} ({:.1} s)",
        cli.users,
        cli.rounds,
        cli.seed,
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        summary,
        "{:>10} {:>9} {:>9} {:>8} {:>8} {:>12} {:>9}",
        "", "taken", "exposed", "CTR", "CVR", "conv/expo", "bot expo"
    )?;
    for (name, o) in [("tags-only", b), ("scored", s)] {
        writeln!(
            summary,
            "{name:>10} {:>9} {:>9} {:>7.2}% {:>7.2}% {:>11.3}% {:>9}",
            o.taken,
            o.exposures,
            100.0 * o.ctr(),
            100.0 * o.cvr(),
            100.0 * o.conversions_per_exposure(),
            o.bot_exposures
        )?;
    }
    writeln!(
        summary,
        "lift of scored over tags-only: CTR {:+.0}%, CVR {:+.0}%, conversions per exposure {:+.0}%",
        lift(s.ctr(), b.ctr()),
        lift(s.cvr(), b.cvr()),
        lift(s.conversions_per_exposure(), b.conversions_per_exposure())
    )?;
    writeln!(
        summary,
        "calibration: served/true pCTR {:.3} in round 0 -> {:.3} in the last; within 10 % from {converged}",
        rounds.first().map_or(f64::NAN, |r| r.ctr_calibration),
        rounds.last().map_or(f64::NAN, |r| r.ctr_calibration)
    )?;
    writeln!(
        summary,
        "caps: {cap_violations} answers over a cap of {CAP}/day; blacklist: {blacklist_violations} answers to listed users, {rule_misses} rule misses, {unreported_missing} fraud reports not listed; listed by the click rule: {flagged_bots} of {bots} bots, {flagged_humans} humans"
    )?;
    print!("{summary}");
    if let Some(path) = &cli.json {
        let doc = serde_json::json!({
            "users": cli.users, "rounds": rounds, "bots": bots,
            "cap_violations": cap_violations, "blacklist_violations": blacklist_violations,
            "rule_misses": rule_misses, "fraud_reports_not_listed": unreported_missing,
            "flagged_bots": flagged_bots, "flagged_humans": flagged_humans,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cap_violations + blacklist_violations + rule_misses + unreported_missing as u64 > 0 {
        bail!("caps or blacklist did not hold");
    }
    Ok(())
}
