//! The `rta-engine` command line: `demo`, `serve`, `decide`, `check`, `gen`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use rta_engine::app::config::Config;
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::os::Os;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::record::UserRecord;
use rta_engine::ingest::kafka::{self, IngestSetup};
use rta_engine::serve::node::{self, Node, ServeOptions, StrategySource};
use rta_engine::serve::{pb, runtime};
use rta_engine::telemetry;

/// The process's allocator: the request path's HTTP/2 and gRPC framing
/// allocates, and mimalloc costs less per request than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rta-engine",
    version,
    about = "Streaming real-time targeting (RTA) engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run on the embedded default: a generated population and the demo strategies.
    Demo {
        /// Users in the generated population.
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Seed of the generated population.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// gRPC listen address.
        #[arg(long, default_value = "0.0.0.0:50051")]
        grpc_addr: SocketAddr,
        /// HTTP (admin) listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// A strategy file to use instead of the embedded demo strategies.
        #[arg(long)]
        strategies: Option<PathBuf>,
        /// Threads serving requests (default: one per core).
        #[arg(long)]
        worker_threads: Option<usize>,
    },
    /// Run from a configuration file.
    Serve {
        /// The TOML configuration (see deploy/rta-engine.toml).
        #[arg(long)]
        config: PathBuf,
        /// Overrides server.grpc_addr.
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Overrides server.http_addr.
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// Overrides server.worker_threads.
        #[arg(long)]
        worker_threads: Option<usize>,
    },
    /// Ask a running engine for a decision over gRPC.
    Decide {
        /// The engine's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Device ids: `<kind>:<32 hex md5>` (kind: imei, oaid, idfa, caid, android_id, mac),
        /// or `oaid_raw:<oaid>`; a bare 32-hex id is taken as an IMEI md5.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
        /// android, ios, harmony or other.
        #[arg(long)]
        os: Option<String>,
        /// Restrict to these strategy ids.
        #[arg(long = "strategy")]
        strategies: Vec<String>,
    },
    /// Check a strategy file (and taxonomy) without serving; exit 1 on errors.
    Check {
        /// The strategy file.
        strategies: PathBuf,
        /// A taxonomy file instead of the shipped one.
        #[arg(long)]
        taxonomy: Option<PathBuf>,
    },
    /// Write the generated population as JSON-lines user records.
    Gen {
        /// Users to generate.
        #[arg(long, default_value_t = 1000)]
        users: u64,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            strategies,
            taxonomy,
        } => check(&strategies, taxonomy.as_deref()),
        Command::Gen { users, seed, out } => gen_users(users, seed, &out),
        Command::Demo {
            users,
            seed,
            grpc_addr,
            http_addr,
            strategies,
            worker_threads,
        } => {
            let mut cfg = Config::default();
            cfg.server.grpc_addr = grpc_addr;
            cfg.server.http_addr = http_addr;
            cfg.server.worker_threads = worker_threads;
            cfg.strategies.path = strategies;
            cfg.users.generate = users;
            cfg.users.seed = seed;
            serve(cfg, true)
        }
        Command::Serve {
            config,
            grpc_addr,
            http_addr,
            worker_threads,
        } => {
            let mut cfg = Config::from_path(&config)?;
            if let Some(a) = grpc_addr {
                cfg.server.grpc_addr = a;
            }
            if let Some(a) = http_addr {
                cfg.server.http_addr = a;
            }
            if worker_threads.is_some() {
                cfg.server.worker_threads = worker_threads;
            }
            serve(cfg, false)
        }
        Command::Decide {
            addr,
            devices,
            os,
            strategies,
        } => runtime::build(1)?.block_on(decide(addr, devices, os, strategies)),
    }
}

/// Runs the engine on a runtime with the configured number of worker threads.
fn serve(cfg: Config, demo: bool) -> Result<()> {
    cfg.validate()?;
    runtime::build(cfg.server.worker_threads())?.block_on(run(cfg, demo))
}

fn load_taxonomy(path: Option<&std::path::Path>) -> Result<Taxonomy> {
    Ok(match path {
        Some(p) => Taxonomy::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => Taxonomy::default_taxonomy(),
    })
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident bytes per user the index added (process RSS now minus `rss_before`,
/// so allocator overhead and slack included) and where they went.
fn memory_report(index: &UserIndex, rss_before: Option<u64>) -> String {
    let users = index.users().max(1) as f64;
    let (device_table, profile_table) = index.table_bytes();
    let per_user = |b: u64| b as f64 / users;
    match resident_bytes().zip(rss_before) {
        Some((now, before)) => {
            let added = now.saturating_sub(before);
            format!(
                "{:.0} bytes/user resident ({:.0} MiB; process {:.0} MiB): device table {:.0}, \
                 profile table {:.0}, profile bodies {:.0}, allocator overhead and rest {:.0}",
                per_user(added),
                added as f64 / 1048576.0,
                now as f64 / 1048576.0,
                per_user(device_table),
                per_user(profile_table),
                per_user(index.profile_heap_bytes()),
                per_user(
                    added.saturating_sub(device_table + profile_table + index.profile_heap_bytes())
                ),
            )
        }
        None => "resident size unknown".into(),
    }
}

async fn run(cfg: Config, demo: bool) -> Result<()> {
    telemetry::init_tracing();
    let _ = telemetry::prometheus();
    let taxonomy = Arc::new(load_taxonomy(cfg.taxonomy.path.as_deref())?);
    let source = match &cfg.strategies.path {
        Some(p) => StrategySource::File(p.clone()),
        None => StrategySource::Embedded(DEMO_STRATEGIES),
    };
    let set = source.load(&taxonomy)?;
    let clock = Clock::System {
        tz_offset_secs: i32::from(cfg.time.tz_offset_hours) * 3600,
    };
    let today = clock.today();

    let rss_before = resident_bytes();
    // pre-size for the expected users, the generated population or the
    // snapshot about to be restored
    let (restoring_users, restoring_devices) = cfg
        .snapshot
        .as_ref()
        .and_then(|s| rta_engine::index::snapshot::newest_counts(&s.dir))
        .unwrap_or((0, 0));
    let sized_for = cfg.users.generate.max(cfg.users.expected);
    let expected_devices = (sized_for as f64 * population::DEVICES_PER_USER) as u64;
    let index = Arc::new(UserIndex::with_capacities(
        sized_for
            .max(restoring_users)
            .min(rta_engine::app::config::MAX_EXPECTED_USERS) as usize,
        expected_devices.max(restoring_devices).min(1 << 32) as usize,
    ));
    if cfg.users.generate > 0 {
        let started = Instant::now();
        eprintln!(
            "generating {} users (seed {}) ...",
            cfg.users.generate, cfg.users.seed
        );
        let idx = index.clone();
        let (n, seed, tax) = (cfg.users.generate, cfg.users.seed, taxonomy.clone());
        tokio::task::spawn_blocking(move || population::populate(&idx, n, seed, today, &tax))
            .await?;
        eprintln!(
            "generated {} users, {} devices in {:.1}s; {}",
            index.users(),
            index.devices(),
            started.elapsed().as_secs_f64(),
            memory_report(&index, rss_before)
        );
    }
    if let Some(path) = &cfg.users.file {
        let started = Instant::now();
        let (loaded, skipped) = load_user_file(&index, path, &taxonomy, today)?;
        eprintln!(
            "loaded {loaded} users from {} in {:.1}s ({skipped} invalid lines skipped)",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }

    let mut start_offsets = rta_engine::index::snapshot::Offsets::new();
    if let Some(snap) = &cfg.snapshot {
        let started = Instant::now();
        let (idx, dir) = (index.clone(), snap.dir.clone());
        let restored = tokio::task::spawn_blocking(move || {
            rta_engine::index::snapshot::restore_newest(&dir, &idx, |n| {
                eprintln!("restoring snapshot: {n} users ...")
            })
        })
        .await??;
        match restored {
            Some(r) => {
                for s in &r.skipped {
                    eprintln!("skipped {s}");
                }
                eprintln!(
                    "restored {} users from {} in {:.2}s; resuming {} partitions at offset total {}",
                    r.users,
                    r.path.display(),
                    started.elapsed().as_secs_f64(),
                    r.offsets.len(),
                    r.offsets.values().sum::<i64>()
                );
                start_offsets = r.offsets;
            }
            None => eprintln!(
                "no snapshot in {}: starting from the topics' beginning",
                snap.dir.display()
            ),
        }
    }

    let engine = Arc::new(DecisionEngine::with_rules(
        index.clone(),
        set,
        clock,
        cfg.blacklist.clone(),
        cfg.calibration.clone(),
    ));
    // the blacklist is kept beside the snapshots, saved on the feedback loop's
    // cadence and at shutdown, and loaded here (expired entries stay out)
    let blacklist_file = cfg.snapshot.as_ref().map(|s| s.dir.join("blacklist.jsonl"));
    if let Some(path) = &blacklist_file {
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("blacklist: cannot create {}: {e}", dir.display());
        }
        match engine.blacklist().load_from(path, engine.clock().now_ms()) {
            Ok((0, 0)) => {}
            Ok((loaded, skipped)) => eprintln!(
                "blacklist: {loaded} entries restored from {} ({skipped} expired or unreadable skipped)",
                path.display()
            ),
            Err(e) => eprintln!(
                "blacklist: cannot read {}: {e}; starting empty",
                path.display()
            ),
        }
    }
    spawn_feedback_loop(engine.clone(), &cfg.calibration, blacklist_file.clone());
    let node = Arc::new(Node::new(engine.clone(), taxonomy.clone(), source));
    let opts = ServeOptions {
        grpc_addr: cfg.server.grpc_addr,
        http_addr: cfg.server.http_addr,
        request_timeout: Duration::from_millis(cfg.server.request_timeout_ms),
        max_batch: cfg.server.max_batch,
    };
    let running = node::start_with(node.clone(), &opts, &cfg.tencent).await?;
    let ingest = match &cfg.kafka {
        Some(kafka) => {
            let setup = IngestSetup {
                kafka: kafka.clone(),
                snapshot: cfg.snapshot.clone(),
                retention: cfg.retention,
                tz_offset_secs: i32::from(cfg.time.tz_offset_hours) * 3600,
                start_offsets,
                observer: Some(engine.clone()),
            };
            let (idx, tax) = (index.clone(), taxonomy.clone());
            let ingest =
                tokio::task::spawn_blocking(move || kafka::start(setup, idx, tax)).await??;
            let mut caught_up = ingest.caught_up_signal();
            let ready_node = node.clone();
            tokio::spawn(async move {
                if caught_up.wait_for(|v| *v).await.is_ok() {
                    eprintln!("caught up with Kafka: ready");
                    ready_node.set_ready(true);
                }
            });
            Some(ingest)
        }
        None => {
            node.set_ready(true);
            None
        }
    };
    let set = engine.strategies();
    eprintln!(
        "rta-engine ready: gRPC on {} (rta.v1.RtaService, health, reflection), HTTP on {} (POST /rta/tencent; /metrics /healthz /readyz /strategies /users/<device> /explain); {} strategies (version {})",
        running.grpc_addr,
        running.http_addr,
        set.strategies().len(),
        set.version
    );
    if demo {
        print_demo_commands(
            &engine,
            &cfg,
            running.grpc_addr,
            running.http_addr,
            today,
            &taxonomy,
        );
    }

    wait_for_signals(&node).await;
    eprintln!("shutting down");
    node.set_ready(false);
    running.shutdown().await;
    if let Some(path) = &blacklist_file
        && let Err(e) = engine.blacklist().save_to(path, engine.clock().now_ms())
    {
        eprintln!("blacklist: cannot save {}: {e}", path.display());
    }
    if let Some(ingest) = ingest {
        // stops consuming and writes a final snapshot
        tokio::task::spawn_blocking(move || ingest.stop()).await?;
    }
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signals(node: &Arc<Node>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // compiling strategies is CPU work: off the serving threads
                let reloading = node.clone();
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Err(e)) => {
                        eprintln!("reload rejected, previous strategies keep serving: {e}");
                    }
                    Err(e) => eprintln!("reload failed: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_node: &Arc<Node>) {
    let _ = tokio::signal::ctrl_c().await;
}

fn load_user_file(
    index: &UserIndex,
    path: &std::path::Path,
    taxonomy: &Taxonomy,
    today: u16,
) -> Result<(u64, u64)> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut loaded, mut skipped) = (0u64, 0u64);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<UserRecord>(&line)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.to_profile(taxonomy, today)
                    .map(|p| (r.user_id, p))
                    .map_err(|e| e.to_string())
            })
            .and_then(|(u, p)| index.upsert(u, p).map_err(|e| e.to_string()));
        match result {
            Ok(()) => loaded += 1,
            Err(e) => {
                skipped += 1;
                tracing::warn!(file = %path.display(), line = n + 1, error = %e, "skipping invalid user record");
            }
        }
    }
    Ok((loaded, skipped))
}

/// Finds a matching and a non-matching demo user and prints commands that show both.
fn print_demo_commands(
    engine: &DecisionEngine,
    cfg: &Config,
    grpc: SocketAddr,
    http: SocketAddr,
    today: u16,
    taxonomy: &Taxonomy,
) {
    let mut hit = None;
    let mut miss = None;
    for id in 1..=cfg.users.generate.min(100_000) {
        let imei = format!("86{:013}", id % 10_000_000_000_000);
        let Ok(key) = DeviceKey::from_raw(DeviceIdKind::Imei, &imei) else {
            continue;
        };
        let p = population::generate_user(cfg.users.seed, id, today, taxonomy);
        if !p.devices().any(|d| d == key) {
            continue; // iOS user: keep the example to one id type
        }
        // uncounted: the search must not show up as traffic in /metrics
        let d = engine.decide_uncounted(&DecisionRequest {
            devices: &[key],
            os: Os::Android,
            experiments: &[],
            only_strategies: &[],
        });
        if d.take && hit.is_none() {
            hit = Some((
                key,
                d.matches
                    .iter()
                    .map(|m| m.strategy_id.to_string())
                    .collect::<Vec<_>>(),
            ));
        } else if !d.take && miss.is_none() {
            miss = Some(key);
        }
        if hit.is_some() && miss.is_some() {
            break;
        }
    }
    let port = grpc.port();
    let http_port = http.port();
    let mut out = String::from("\nTry it (in another terminal):\n");
    if let Some((key, strategies)) = &hit {
        out += &format!(
            "  # a matching device (strategies: {})\n  cargo run --release -- decide --addr http://127.0.0.1:{port} --device imei:{}\n",
            strategies.join(", "),
            key.to_hex()
        );
        out += &format!(
            "  curl -s 'http://127.0.0.1:{http_port}/explain?device={}&os=android'\n",
            key.to_hex()
        );
    }
    if let Some(key) = miss {
        out += &format!(
            "  # a device that matches nothing\n  cargo run --release -- decide --addr http://127.0.0.1:{port} --device imei:{}\n  curl -s http://127.0.0.1:{http_port}/users/{}\n",
            key.to_hex(),
            key.to_hex()
        );
    }
    out += &format!("  curl -s http://127.0.0.1:{http_port}/metrics | grep ^rta_\n");
    eprintln!("{out}");
}

fn parse_cli_device(s: &str) -> Result<pb::DeviceId> {
    use pb::DeviceIdType as T;
    let (kind, value) = s.split_once(':').unwrap_or(("imei", s));
    let t = match kind {
        "imei" => T::ImeiMd5,
        "oaid" => T::OaidMd5,
        "idfa" => T::IdfaMd5,
        "caid" => T::Caid,
        "android_id" => T::AndroidIdMd5,
        "mac" => T::MacMd5,
        "oaid_raw" => T::OaidRaw,
        other => bail!("unknown device kind `{other}` in `{s}`"),
    };
    Ok(pb::DeviceId {
        r#type: t as i32,
        value: value.to_string(),
    })
}

async fn decide(
    addr: String,
    devices: Vec<String>,
    os: Option<String>,
    strategies: Vec<String>,
) -> Result<()> {
    let device_ids = devices
        .iter()
        .map(|d| parse_cli_device(d))
        .collect::<Result<Vec<_>>>()?;
    let os = match os.as_deref() {
        None => pb::Os::Unspecified,
        Some("android") => pb::Os::Android,
        Some("ios") => pb::Os::Ios,
        Some("harmony") => pb::Os::Harmony,
        Some("other") => pb::Os::Other,
        Some(o) => bail!("unknown os `{o}`"),
    };
    let mut client = pb::rta_service_client::RtaServiceClient::connect(addr.clone())
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let resp = client
        .decide(pb::DecideRequest {
            request_id: format!("cli-{}", std::process::id()),
            device_ids,
            os: os as i32,
            strategy_ids: strategies,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "take: {}  cache: {}s  server time: {}us",
        resp.take, resp.cache_seconds, resp.processing_time_us
    )?;
    for m in &resp.matches {
        writeln!(
            out,
            "  matched {} (target_id {}) bid factor {:.2}",
            m.strategy_id, m.target_id, m.bid_factor
        )?;
    }
    Ok(())
}

fn check(strategies: &std::path::Path, taxonomy: Option<&std::path::Path>) -> Result<()> {
    let taxonomy = load_taxonomy(taxonomy)?;
    match StrategySource::File(strategies.to_path_buf()).load(&taxonomy) {
        Ok(set) => {
            println!(
                "ok: {} strategies, version {}",
                set.strategies().len(),
                set.version
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn gen_users(users: u64, seed: u64, out: &str) -> Result<()> {
    let taxonomy = Taxonomy::default_taxonomy();
    let today = Clock::System {
        tz_offset_secs: 8 * 3600,
    }
    .today();
    let mut w: Box<dyn Write> = if out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("creating {out}"))?,
        ))
    };
    for id in 1..=users {
        let p = population::generate_user(seed, id, today, &taxonomy);
        serde_json::to_writer(&mut w, &UserRecord::from_profile(id, &p, &taxonomy, today))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// Recalibrates the model on the configured cadence, and keeps the
/// blacklist purged of expired entries and its gauge current.
fn spawn_feedback_loop(
    engine: Arc<DecisionEngine>,
    cfg: &rta_engine::strategy::score::CalibrationConfig,
    blacklist_file: Option<std::path::PathBuf>,
) {
    let every = Duration::from_secs(cfg.interval_seconds.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            engine.recalibrate();
            let now = engine.clock().now_ms();
            let blacklist = engine.blacklist();
            blacklist.purge_expired(now);
            for (reason, n) in blacklist.count_by_reason(now) {
                metrics::gauge!(rta_engine::telemetry::BLACKLIST_ENTRIES, "reason" => reason.label())
                    .set(n as f64);
            }
            if let Some(path) = &blacklist_file {
                let (bl, path) = (blacklist.clone(), path.clone());
                // file I/O off the async workers
                let saved = tokio::task::spawn_blocking(move || bl.save_to(&path, now)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %e, "cannot save the blacklist");
                }
            }
        }
    });
}
