//! The composition root: configuration from the file and the command line
//! ([`config`]), and the order in which a node starts and stops ([`start`],
//! [`App::stop`]), so that `main.rs` keeps the command line only and tests
//! can start and stop a whole node.
//!
//! Start-up order: tracing and the metrics recorder; taxonomy and strategies
//! (a bad file fails here, before anything listens); the index, pre-sized for
//! the expected users, the generated population or the snapshot about to be
//! restored; generated users, a user file, the newest snapshot; the decision
//! engine and its blacklist (restored from beside the snapshots); the upkeep
//! task; the listeners; Kafka ingestion from the snapshot's offsets. The node
//! is ready when all of that is done and, with Kafka, once ingestion caught
//! up. Stop order: not ready while serving on for `server.drain_seconds`,
//! listeners closed (in-flight requests finish), blacklist saved, ingestion
//! stopped with a final snapshot.

pub mod config;
mod error;
mod fd_limit;
pub mod overrides;
mod signals;
mod upkeep;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::StartError;
pub use signals::wait_for_signals;
pub use users::{load_user_file, memory_report, resident_bytes};

use crate::app::config::{Config, ConfigError, MAX_EXPECTED_USERS};
use crate::decision::{Clock, DecisionEngine};
use crate::demo::{DEMO_STRATEGIES, population};
use crate::domain::taxonomy::Taxonomy;
use crate::index::UserIndex;
use crate::index::snapshot::{self, Offsets};
use crate::ingest::kafka::{self, IngestSetup, KafkaIngest};
use crate::serve::listener::TlsFiles;
use crate::serve::node::{self, Node, Running, ServeOptions, StrategySource};
use crate::serve::tokens::{self, BearerTokens};

/// File descriptors kept free of connections: Kafka's sockets, snapshot and
/// log files, the blacklist file.
const FD_RESERVE: u64 = 256;
use crate::telemetry;

/// A started node: its servers, engine and ingestion, stopped in order by
/// [`App::stop`].
pub struct App {
    node: Arc<Node>,
    running: Running,
    ingest: Option<KafkaIngest>,
    upkeep: upkeep::Upkeep,
    blacklist_file: Option<PathBuf>,
    drain: Duration,
}

impl App {
    /// The node the servers share (engine, taxonomy, readiness).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Where gRPC listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.running.grpc_addr
    }

    /// Where the media HTTP endpoints listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.running.http_addr
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr
    }

    /// Stops in order: not ready (`/readyz` 503) while serving on for the
    /// drain time, listeners closed with in-flight requests finished, upkeep
    /// stopped (and any blacklist save of its own finished), blacklist saved,
    /// ingestion stopped with a final snapshot.
    pub async fn stop(self) -> Result<(), StartError> {
        self.node.set_ready(false);
        if !self.drain.is_zero() {
            tracing::info!(
                drain_seconds = self.drain.as_secs(),
                "draining: /readyz answers 503, requests are still served"
            );
            tokio::time::sleep(self.drain).await;
        }
        tracing::info!("shutting down");
        self.running.shutdown().await;
        self.upkeep.stop().await;
        let engine = &self.node.engine;
        if let Some(path) = &self.blacklist_file
            && let Err(e) = engine.blacklist().save_to(path, engine.clock().now_ms())
        {
            tracing::error!(path = %path.display(), error = %e, "cannot save the blacklist");
        }
        if let Some(ingest) = self.ingest {
            // stops consuming and writes a final snapshot
            tokio::task::spawn_blocking(move || ingest.stop()).await?;
        }
        Ok(())
    }
}

/// Where the strategies come from: the configured file, or the demo's.
pub fn strategy_source(cfg: &Config) -> StrategySource {
    match &cfg.strategies.path {
        Some(p) => StrategySource::File(p.clone()),
        None => StrategySource::Embedded(DEMO_STRATEGIES),
    }
}

/// The configured taxonomy, or the embedded default.
pub fn load_taxonomy(path: Option<&std::path::Path>) -> Result<Taxonomy, StartError> {
    Ok(match path {
        Some(p) => Taxonomy::from_toml(&std::fs::read_to_string(p).map_err(|source| {
            StartError::Read {
                path: p.to_path_buf(),
                source,
            }
        })?)?,
        None => Taxonomy::default_taxonomy(),
    })
}

/// Starts a node from a validated configuration, in the order of the module
/// docs. Call from within a Tokio runtime.
pub async fn start(cfg: &Config) -> Result<App, StartError> {
    cfg.validate()?;
    telemetry::init_tracing();
    let _ = telemetry::prometheus();
    let mut connections = cfg.connections.clone();
    match fd_limit::raise_open_files() {
        Some((soft, hard)) => {
            tracing::info!(soft, hard, "open-file limit");
            if connections.fit_to_fd_limit(soft, FD_RESERVE) {
                tracing::warn!(
                    open_file_limit = soft,
                    max_grpc = connections.max_grpc,
                    max_media = connections.max_media,
                    max_admin = connections.max_admin,
                    "connection caps lowered to fit the open-file limit"
                );
            }
        }
        None => tracing::warn!("open-file limit unknown"),
    }
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(TlsFiles::load(t.clone())?)),
        None => None,
    };
    let media_allow = cfg.media_allow()?.map(Arc::new);
    let taxonomy = Arc::new(load_taxonomy(cfg.taxonomy.path.as_deref())?);
    let source = strategy_source(cfg);
    let set = source.load(&taxonomy)?;
    let clock = Clock::System {
        tz_offset_secs: i32::from(cfg.time.tz_offset_hours) * 3600,
    };
    let today = clock.today();

    let rss_before = resident_bytes();
    let index = Arc::new(presized_index(cfg));
    if cfg.users.generate > 0 {
        let started = Instant::now();
        tracing::info!(
            users = cfg.users.generate,
            seed = cfg.users.seed,
            "generating users"
        );
        let idx = index.clone();
        let (n, seed, tax) = (cfg.users.generate, cfg.users.seed, taxonomy.clone());
        tokio::task::spawn_blocking(move || population::populate(&idx, n, seed, today, &tax))
            .await?;
        tracing::info!(
            users = index.users(),
            devices = index.devices(),
            seconds = started.elapsed().as_secs_f64(),
            memory = %memory_report(&index, rss_before),
            "generated users"
        );
    }
    if let Some(path) = &cfg.users.file {
        let started = Instant::now();
        let (loaded, skipped) = load_user_file(&index, path, &taxonomy, today)?;
        tracing::info!(
            loaded,
            skipped,
            file = %path.display(),
            seconds = started.elapsed().as_secs_f64(),
            "loaded users"
        );
    }
    let start_offsets = restore_snapshot(cfg, &index).await?;

    let engine = Arc::new(DecisionEngine::with_rules(
        index.clone(),
        set,
        clock,
        cfg.blacklist.clone(),
        cfg.calibration.clone(),
    ));
    let blacklist_file = restore_blacklist(cfg, &engine);
    let upkeep = upkeep::spawn(engine.clone(), &cfg.calibration, blacklist_file.clone());
    let node = Arc::new(Node::new(engine.clone(), taxonomy.clone(), source));
    let admin_auth = BearerTokens::from_config(
        &cfg.admin,
        std::env::var(tokens::TOKENS_ENV).ok().as_deref(),
    )
    .and_then(|t| t.without_scopes("admin.tokens"))
    .map_err(ConfigError::from)?;
    if admin_auth.is_empty() {
        tracing::warn!(
            "no admin tokens configured ([admin] tokens, tokens_file or {}): the admin API refuses every request",
            tokens::TOKENS_ENV
        );
    }
    let opts = ServeOptions {
        grpc_addr: cfg.server.grpc_addr,
        http_addr: cfg.server.http_addr,
        admin_addr: cfg.server.admin_addr,
        admin_auth: Arc::new(admin_auth),
        admin_limits: cfg.admin.limits(),
        grpc_callers: Arc::new(
            BearerTokens::from_entries(&cfg.grpc.client_tokens).map_err(ConfigError::from)?,
        ),
        request_timeout: Duration::from_millis(cfg.server.request_timeout_ms),
        max_batch: cfg.server.max_batch,
        connections: connections.clone(),
        tls,
        media_allow,
    };
    let media = cfg.media_endpoints();
    let running = match node::start_with(node.clone(), &opts, &media).await {
        Ok(r) => r,
        Err(e) => {
            upkeep.stop().await;
            return Err(e.into());
        }
    };
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
            let started = tokio::task::spawn_blocking(move || kafka::start(setup, idx, tax))
                .await
                .map_err(StartError::from)
                .and_then(|r| r.map_err(StartError::from));
            let ingest = match started {
                Ok(ingest) => ingest,
                Err(e) => {
                    // nothing may be left listening or saving after a failed start
                    running.shutdown().await;
                    upkeep.stop().await;
                    return Err(e);
                }
            };
            let mut caught_up = ingest.caught_up_signal();
            let ready_node = node.clone();
            tokio::spawn(async move {
                if caught_up.wait_for(|v| *v).await.is_ok() {
                    tracing::info!("caught up with Kafka: ready");
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
    tracing::info!(
        grpc = %running.grpc_addr,
        media = %running.http_addr,
        admin = %running.admin_addr,
        tls = ?cfg.tls.as_ref().map(|t| &t.listeners),
        mtls = cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        media_allow = cfg.server.media_allow.len(),
        max_connections = ?(connections.max_grpc, connections.max_media, connections.max_admin),
        strategies = set.strategies().len(),
        version = %set.version,
        media_endpoints = ?media.enabled_paths(),
        "rta-engine ready: gRPC rta.v1.RtaService, health, reflection; media HTTP POST (media_endpoints) /healthz /readyz; admin HTTP /metrics /strategies /users/<device> /explain /blacklist /calibration"
    );
    Ok(App {
        node,
        running,
        ingest,
        upkeep,
        blacklist_file,
        drain: Duration::from_secs(cfg.server.drain_seconds),
    })
}

/// An index pre-sized for the expected users, the generated population or
/// the snapshot about to be restored, whichever is largest.
fn presized_index(cfg: &Config) -> UserIndex {
    let (restoring_users, restoring_devices) = cfg
        .snapshot
        .as_ref()
        .and_then(|s| snapshot::newest_counts(&s.dir))
        .unwrap_or((0, 0));
    let sized_for = cfg.users.generate.max(cfg.users.expected);
    let expected_devices = (sized_for as f64 * population::DEVICES_PER_USER) as u64;
    UserIndex::with_capacities(
        sized_for.max(restoring_users).min(MAX_EXPECTED_USERS) as usize,
        expected_devices.max(restoring_devices).min(1 << 32) as usize,
    )
}

/// Restores the newest snapshot, when snapshots are configured; returns the
/// Kafka offsets it covers (empty: start from the topics' beginning).
async fn restore_snapshot(cfg: &Config, index: &Arc<UserIndex>) -> Result<Offsets, StartError> {
    let Some(snap) = &cfg.snapshot else {
        return Ok(Offsets::new());
    };
    let started = Instant::now();
    let (idx, dir) = (index.clone(), snap.dir.clone());
    let restored = tokio::task::spawn_blocking(move || {
        snapshot::restore_newest(&dir, &idx, |users| {
            tracing::info!(users, "restoring snapshot");
        })
    })
    .await??;
    Ok(match restored {
        Some(r) => {
            tracing::info!(
                users = r.users,
                path = %r.path.display(),
                seconds = started.elapsed().as_secs_f64(),
                partitions = r.offsets.len(),
                offset_total = r.offsets.values().sum::<i64>(),
                "snapshot restored"
            );
            r.offsets
        }
        None => {
            tracing::info!(dir = %snap.dir.display(), "no snapshot: starting from the topics' beginning");
            Offsets::new()
        }
    })
}

/// The blacklist is kept beside the snapshots, saved on the upkeep cadence
/// and at shutdown, and loaded here (expired entries stay out). Returns its
/// file, when snapshots are configured.
fn restore_blacklist(cfg: &Config, engine: &DecisionEngine) -> Option<PathBuf> {
    let path = cfg.snapshot.as_ref()?.dir.join("blacklist.jsonl");
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::error!(dir = %dir.display(), error = %e, "blacklist: cannot create the directory");
    }
    match engine.blacklist().load_from(&path, engine.clock().now_ms()) {
        Ok((0, 0)) => {}
        Ok((loaded, skipped)) => tracing::info!(
            loaded,
            skipped,
            path = %path.display(),
            "blacklist restored (expired or unreadable entries skipped)"
        ),
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            "blacklist: cannot read; starting empty"
        ),
    }
    Some(path)
}
