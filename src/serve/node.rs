//! A running rta-engine node: the decision engine plus what its serving
//! layers share (taxonomy, where strategies reload from, readiness), and the
//! start-up of the gRPC and admin HTTP servers on real sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::serve::admin_policy::AdminLimits;
use crate::serve::listener::{AllowList, ConnectionsConfig, Kind, Listener, TlsFiles};
use crate::telemetry::event::TlsReloaded;

use crate::decision::DecisionEngine;
use crate::domain::taxonomy::Taxonomy;
use crate::serve::endpoints::MediaEndpoints;
use crate::serve::tokens::BearerTokens;
use crate::serve::{admin, grpc::RtaGrpc, pb};
use crate::strategy::{StrategyError, StrategySet};
use crate::telemetry;
use crate::telemetry::event::{StrategiesReloaded, StrategyReloadRejected};

/// Where the strategy set is loaded and reloaded from.
#[derive(Debug, Clone)]
pub enum StrategySource {
    /// Text built into the binary (the demo strategies).
    Embedded(&'static str),
    /// A file, re-read on every reload.
    File(PathBuf),
}

impl StrategySource {
    /// Reads and compiles the set.
    pub fn load(&self, taxonomy: &Taxonomy) -> Result<StrategySet, StrategyError> {
        match self {
            Self::Embedded(text) => {
                StrategySet::from_toml(text, "<embedded demo strategies>", taxonomy)
            }
            Self::File(path) => StrategySet::from_path(path, taxonomy),
        }
    }
}

/// What a successful reload installed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadSummary {
    /// The new set's version.
    pub version: String,
    /// Its number of live strategies.
    pub strategies: usize,
}

/// State shared by a node's serving layers.
pub struct Node {
    /// The decision engine.
    pub engine: Arc<DecisionEngine>,
    /// The tag vocabulary.
    pub taxonomy: Arc<Taxonomy>,
    /// Where strategies reload from.
    pub source: StrategySource,
    ready: AtomicBool,
}

impl Node {
    /// A node, not yet ready.
    pub fn new(
        engine: Arc<DecisionEngine>,
        taxonomy: Arc<Taxonomy>,
        source: StrategySource,
    ) -> Self {
        // feedback reports break down by target group when the taxonomy has them
        engine.group_feedback_by(taxonomy.clone(), "target_group");
        Self {
            engine,
            taxonomy,
            source,
            ready: AtomicBool::new(false),
        }
    }

    /// Compiles the source aside and swaps it in; on error the old set keeps serving.
    pub fn reload(&self) -> Result<ReloadSummary, StrategyError> {
        match self.source.load(&self.taxonomy) {
            Ok(set) => {
                let summary = ReloadSummary {
                    version: set.version.clone(),
                    strategies: set.strategies().len(),
                };
                self.engine.swap_strategies(set);
                StrategiesReloaded {
                    version: &summary.version,
                    strategies: summary.strategies,
                }
                .emit();
                Ok(summary)
            }
            Err(e) => {
                StrategyReloadRejected { error: &e }.emit();
                Err(e)
            }
        }
    }

    /// Marks the node ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        metrics::gauge!(telemetry::READY).set(if ready { 1.0 } else { 0.0 });
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Publishes index and strategy gauges and the per-strategy counts.
    pub fn update_gauges(&self) {
        self.engine.publish_counts();
        metrics::gauge!(telemetry::READY).set(if self.is_ready() { 1.0 } else { 0.0 });
        metrics::gauge!(telemetry::STRATEGIES_LIVE)
            .set(self.engine.strategies().strategies().len() as f64);
        let idx = self.engine.index();
        metrics::gauge!(telemetry::INDEX_USERS).set(idx.users() as f64);
        metrics::gauge!(telemetry::INDEX_DEVICES).set(idx.devices() as f64);
        metrics::gauge!(telemetry::INDEX_PROFILE_BYTES).set(idx.profile_heap_bytes() as f64);
        let (devices, profiles) = idx.table_bytes();
        metrics::gauge!(telemetry::INDEX_TABLE_BYTES, "table" => "devices").set(devices as f64);
        metrics::gauge!(telemetry::INDEX_TABLE_BYTES, "table" => "profiles").set(profiles as f64);
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// gRPC listen address (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Media HTTP listen address: the media endpoints, `/healthz`, `/readyz`.
    pub http_addr: SocketAddr,
    /// Admin HTTP listen address: the admin API, `/metrics`, `/healthz`,
    /// `/readyz`. Never the media listener: a media or DSP client that can
    /// reach the media port must not reach the control plane.
    pub admin_addr: SocketAddr,
    /// Who may use the admin API.
    pub admin_auth: Arc<BearerTokens>,
    /// What operators may do in how much (TTL, entries, mutation rate).
    pub admin_limits: AdminLimits,
    /// Who may call `Decide` (empty: anyone who reaches the port).
    pub grpc_callers: Arc<BearerTokens>,
    /// Deadline for one gRPC call when the client sends none shorter.
    pub request_timeout: Duration,
    /// Most requests in one BatchDecide.
    pub max_batch: usize,
    /// Connection caps and timeouts of the three listeners.
    pub connections: ConnectionsConfig,
    /// Certificates, when the listeners speak TLS.
    pub tls: Option<Arc<TlsFiles>>,
    /// Who may connect to the media listener (none: anyone).
    pub media_allow: Option<Arc<AllowList>>,
}

impl Default for ServeOptions {
    /// Loopback on free ports, nobody admitted to the admin API, anyone to
    /// `Decide`, no TLS.
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_addr: local,
            http_addr: local,
            admin_addr: local,
            admin_auth: Arc::new(BearerTokens::default()),
            admin_limits: AdminLimits::default(),
            grpc_callers: Arc::new(BearerTokens::default()),
            request_timeout: Duration::from_millis(50),
            max_batch: 1000,
            connections: ConnectionsConfig::default(),
            tls: None,
            media_allow: None,
        }
    }
}

/// Errors starting the servers.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The reflection service could not be built.
    #[error("grpc reflection: {0}")]
    Reflection(String),
}

/// The servers of a started node.
pub struct Running {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the media HTTP endpoints listen.
    pub http_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits for every server.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the gRPC, media HTTP and admin HTTP listeners and starts serving in
/// the background, with every media endpoint on its default settings.
pub async fn start(node: Arc<Node>, opts: &ServeOptions) -> Result<Running, ServeError> {
    start_with(node, opts, &MediaEndpoints::default()).await
}

/// As [`start`], with the media endpoints on the media listener configured
/// by `media`.
pub async fn start_with(
    node: Arc<Node>,
    opts: &ServeOptions,
    media: &MediaEndpoints,
) -> Result<Running, ServeError> {
    telemetry::register_failure_counters();
    let (grpc_tcp, grpc_addr) = bind(opts.grpc_addr).await?;
    let (http_tcp, http_addr) = bind(opts.http_addr).await?;
    let (admin_tcp, admin_addr) = bind(opts.admin_addr).await?;
    let (shutdown, rx) = watch::channel(false);
    let listener = |kind, tcp, allow: Option<&Arc<AllowList>>| {
        let tls = opts.tls.clone().filter(|t| t.applies_to(kind));
        Listener::new(kind, tcp, &opts.connections, tls, allow.cloned())
    };
    let grpc_listener = listener(Kind::Grpc, grpc_tcp, None);
    let http_listener = listener(Kind::Media, http_tcp, opts.media_allow.as_ref());
    let admin_listener = listener(Kind::Admin, admin_tcp, None);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::rta_service_server::RtaServiceServer<RtaGrpc>>()
        .await;
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    // older tools (grpcurl before 1.9, many IDE plugins) still ask v1alpha
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let rta = pb::rta_service_server::RtaServiceServer::new(RtaGrpc::new(
        node.engine.clone(),
        opts.max_batch,
    ))
    .max_decoding_message_size(MAX_GRPC_MESSAGE);
    let rta = tonic::service::interceptor::InterceptedService::new(
        rta,
        crate::serve::grpc::check_caller(opts.grpc_callers.clone()),
    );
    let grpc_app = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(rta)
        .prepare()
        .into_axum_router()
        .layer(crate::serve::grpc_edge::GrpcEdgeLayer {
            server_budget: opts.request_timeout,
        });
    let grace = Duration::from_secs(10);
    let grpc_task = tokio::spawn(grpc_listener.serve(grpc_app, rx.clone(), grace));

    let media_app = admin::health_router(node.clone()).merge(media.router(&node.engine));
    let http_task = tokio::spawn(http_listener.serve(media_app, rx.clone(), grace));
    let admin_app = admin::router(
        node.clone(),
        opts.admin_auth.clone(),
        opts.admin_limits,
        Duration::from_millis(opts.connections.admin_request_timeout_ms),
    );
    let admin_task = tokio::spawn(admin_listener.serve(admin_app, rx.clone(), grace));
    let mut tasks = vec![grpc_task, http_task, admin_task];
    if let Some(tls) = opts.tls.clone() {
        tasks.push(tokio::spawn(reload_tls(tls, rx.clone())));
    }

    let gauges_node = node.clone();
    let mut gauges_rx = rx;
    let gauges_task = tokio::spawn(async move {
        let handle = telemetry::prometheus();
        loop {
            gauges_node.update_gauges();
            handle.run_upkeep();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = gauges_rx.changed() => break,
            }
        }
    });

    Ok(Running {
        grpc_addr,
        http_addr,
        admin_addr,
        shutdown,
        tasks: {
            tasks.push(gauges_task);
            tasks
        },
    })
}

/// Largest gRPC request message (bigger: `RESOURCE_EXHAUSTED`).
pub const MAX_GRPC_MESSAGE: usize = 4 * 1024 * 1024;

/// Checks the certificate files every `reload_interval` and swaps in new
/// ones when they changed.
async fn reload_tls(tls: Arc<TlsFiles>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tls.reload_interval()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let files = tls.clone();
        match tokio::task::spawn_blocking(move || files.reload_if_changed()).await {
            Ok(Ok(true)) => TlsReloaded { error: None }.emit(),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => TlsReloaded { error: Some(&e) }.emit(),
            Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
        }
    }
}

/// Binds `addr` and reads back the address bound (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bind_error = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}
