//! Shared harness: starts a real node on free loopback ports.
#![allow(dead_code)]

pub mod kafka;
pub mod raw_http;
#[allow(unused_imports)]
pub use raw_http::RawHttp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use rta_engine::decision::{Clock, DecisionEngine};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::index::record::UserRecord;
use rta_engine::serve::node::{self, Node, Running, ServeOptions, StrategySource};
use rta_engine::serve::pb;
use rta_engine::serve::tokens::{BearerTokens, Role, TokenEntry, token_sha256_hex};

/// The admin tokens of test nodes: one that may write, one that may only read.
pub const WRITE_TOKEN: &str = "test-write-token";
pub const READ_TOKEN: &str = "test-read-token";

/// The admin tokens of test nodes, as a node holds them (hashes).
pub fn admin_auth() -> BearerTokens {
    BearerTokens::from_entries(&[
        TokenEntry {
            name: "tester".into(),
            role: Role::Write,
            sha256: token_sha256_hex(WRITE_TOKEN),
            strategies: Vec::new(),
        },
        TokenEntry {
            name: "viewer".into(),
            role: Role::Read,
            sha256: token_sha256_hex(READ_TOKEN),
            strategies: Vec::new(),
        },
    ])
    .expect("test tokens are valid")
}

/// An HTTP client that sends `token` as its bearer token.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a valid header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("the client builds")
}

/// The day the golden population is evaluated on.
pub const TODAY: u16 = 2000;

pub const GOLDEN_USERS: &str = include_str!("../fixtures/golden_users.jsonl");

pub struct TestNode {
    pub running: Running,
    pub node: Arc<Node>,
}

impl TestNode {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running.grpc_addr)
    }
    /// A URL on the media HTTP listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.http_addr, path)
    }
    /// A URL on the admin HTTP listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.admin_addr, path)
    }
    /// A client of the admin API with the write token.
    pub fn admin_client(&self) -> reqwest::Client {
        client_with(WRITE_TOKEN)
    }
    pub async fn client(
        &self,
    ) -> pb::rta_service_client::RtaServiceClient<tonic::transport::Channel> {
        pb::rta_service_client::RtaServiceClient::connect(self.grpc_url())
            .await
            .expect("connect to the node")
    }
}

/// Loads JSON-lines user records into a fresh index.
pub fn index_from(records: &str, taxonomy: &Taxonomy) -> UserIndex {
    let idx = UserIndex::default();
    for line in records.lines().filter(|l| !l.trim().is_empty()) {
        let rec: UserRecord = serde_json::from_str(line).expect("fixture line parses");
        let p = rec
            .to_profile(taxonomy, TODAY)
            .expect("fixture line is valid");
        idx.upsert(rec.user_id, p).expect("fixture fits");
    }
    idx
}

/// Starts a node over the golden population with the given strategy source.
pub async fn start_with(source: StrategySource) -> TestNode {
    let taxonomy = Taxonomy::default_taxonomy();
    let index = Arc::new(index_from(GOLDEN_USERS, &taxonomy));
    start_node(index, source, Clock::Fixed(TODAY)).await
}

/// Starts a node over `index` on free loopback ports.
pub async fn start_node(index: Arc<UserIndex>, source: StrategySource, clock: Clock) -> TestNode {
    start_node_with(index, source, clock, &Default::default(), test_options()).await
}

/// Starts a node over `index` with the media endpoints configured by `media`.
async fn start_node_with(
    index: Arc<UserIndex>,
    source: StrategySource,
    clock: Clock,
    media: &rta_engine::serve::endpoints::MediaEndpoints,
    opts: ServeOptions,
) -> TestNode {
    let taxonomy = Arc::new(Taxonomy::default_taxonomy());
    let set = source.load(&taxonomy).expect("strategies load");
    let engine = Arc::new(DecisionEngine::new(index, set, clock));
    let node = Arc::new(Node::new(engine, taxonomy, source));
    let running = node::start_with(node.clone(), &opts, media)
        .await
        .expect("node starts");
    node.set_ready(true);
    TestNode { running, node }
}

/// The serve options of test nodes: free loopback ports, the test admin
/// tokens, a 5 s gRPC deadline.
pub fn test_options() -> ServeOptions {
    ServeOptions {
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_auth: Arc::new(admin_auth()),
        request_timeout: Duration::from_secs(5),
        max_batch: 100,
        ..ServeOptions::default()
    }
}

/// Starts a node over the golden population with the demo strategies,
/// served with `opts` (see [`test_options`]). Installs the metrics recorder
/// first.
pub async fn start_serving(opts: ServeOptions) -> TestNode {
    start_golden_with(&Default::default(), opts).await
}

/// The golden population and demo strategies behind `media` and `opts`,
/// with the metrics recorder installed first so that every request counts.
async fn start_golden_with(
    media: &rta_engine::serve::endpoints::MediaEndpoints,
    opts: ServeOptions,
) -> TestNode {
    let _ = rta_engine::telemetry::prometheus();
    let index = Arc::new(index_from(GOLDEN_USERS, &Taxonomy::default_taxonomy()));
    start_node_with(
        index,
        StrategySource::Embedded(DEMO_STRATEGIES),
        Clock::Fixed(TODAY),
        media,
        opts,
    )
    .await
}

/// Starts a node over the golden population with the demo strategies.
pub async fn start_golden() -> TestNode {
    start_with(StrategySource::Embedded(DEMO_STRATEGIES)).await
}

/// Starts a node over the golden population with the demo strategies and the
/// Tencent RTA endpoint configured by `tencent`. Installs the metrics recorder
/// first, so that every request of the test is counted.
pub async fn start_tencent(tencent: rta_engine::serve::tencent::TencentConfig) -> TestNode {
    start_media(rta_engine::serve::endpoints::MediaEndpoints {
        tencent,
        ..Default::default()
    })
    .await
}

/// Starts a node over the golden population with the demo strategies and
/// the media endpoints configured by `media`, metrics recorder first.
pub async fn start_media(media: rta_engine::serve::endpoints::MediaEndpoints) -> TestNode {
    start_golden_with(&media, test_options()).await
}

/// Starts a node over the golden population with the demo strategies whose
/// `Decide` takes only callers holding one of `callers`.
pub async fn start_with_callers(callers: BearerTokens) -> TestNode {
    start_serving(ServeOptions {
        grpc_callers: Arc::new(callers),
        ..test_options()
    })
    .await
}

/// The node's Prometheus text, as scraped from `/metrics`.
pub async fn metrics_text(node: &TestNode) -> String {
    reqwest::get(node.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// lower(md5(lower(imei))), computed independently of the engine's own hashing.
pub fn imei_md5(imei: &str) -> String {
    hex::encode(Md5::digest(imei.to_lowercase().as_bytes()))
}

/// lower(md5(upper(idfa))).
pub fn idfa_md5(idfa: &str) -> String {
    hex::encode(Md5::digest(idfa.to_uppercase().as_bytes()))
}

/// lower(md5(x)).
pub fn plain_md5(x: &str) -> String {
    hex::encode(Md5::digest(x.as_bytes()))
}

pub fn device(t: pb::DeviceIdType, value: impl Into<String>) -> pb::DeviceId {
    pb::DeviceId {
        r#type: t as i32,
        value: value.into(),
    }
}

pub fn request(id: &str, devices: Vec<pb::DeviceId>) -> pb::DecideRequest {
    pb::DecideRequest {
        request_id: id.to_string(),
        device_ids: devices,
        os: pb::Os::Android as i32,
        ..Default::default()
    }
}

pub fn matched_ids(r: &pb::DecideResponse) -> Vec<String> {
    r.matches.iter().map(|m| m.strategy_id.clone()).collect()
}

/// A port that was free a moment ago (for child processes that need a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// The value of one series in Prometheus text: `name{label="v",...}` (labels
/// in any order, a subset is enough) or a bare `name`; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, labels) = series
        .split_once('{')
        .map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .all(|p| rest.contains(p))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
