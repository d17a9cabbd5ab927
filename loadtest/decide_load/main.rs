//! `rta-load`: a load generator for `Decide`, over gRPC (`rta.v1.RtaService`)
//! or the Tencent endpoint (`POST /rta/tencent`, protobuf over HTTP/1.1).
//!
//! * **Open loop** (`--rate N`): a pacer releases requests at fixed intervals,
//!   and latency is measured from each request's *scheduled* send time, so a
//!   stalled server is charged for the requests it made wait (coordinated
//!   omission corrected, as in wrk2). At most `--concurrency` requests are in
//!   flight; the rest queue, and their wait counts. The pacer busy-polls
//!   (`--pacer spin`, one core) or sleeps between ticks (`--pacer sleep`).
//! * **Closed loop** (`--rate 0` or `--closed`): `--concurrency` workers each send
//!   as fast as answers come back; this finds the saturation rate.
//!
//! Device ids come from the `demo` population (same `--users` and `--seed` as the
//! server): a `--hit-ratio` share belongs to known users, drawn uniformly or with
//! Zipf skew (`--zipf s`: user 1 the hottest), and the rest are random unknown ids.
//!
//! ```text
//! rta-load --closed --concurrency 50 --duration 10
//! rta-load --rate 20000 --concurrency 50 --deadline-ms 2 --json target/load.json
//! rta-load --target tencent --http-addr 127.0.0.1:8080 --rate 5000
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;
use tokio::net::TcpStream;
use tonic::codegen::http;

use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::serve::pb;
use rta_engine::serve::tencent::{self, pb as tpb};

/// The generator's allocator: it shares the machine with the server, and
/// its per-call allocations (HTTP/2 frames, messages) cost less on mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "rta-load",
    about = "Load generator for rta-engine Decide (gRPC or Tencent HTTP)"
)]
struct Args {
    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Target::Grpc)]
    target: Target,
    /// The engine's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The engine's HTTP address, for `--target tencent`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Requests per second to schedule (open loop); 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Closed loop regardless of `--rate`: each worker sends as fast as it can.
    #[arg(long)]
    closed: bool,
    /// gRPC connections (HTTP/2); the in-flight requests are spread over them.
    /// Tencent over HTTP/1.1 carries one request per connection, so it opens
    /// `--concurrency` connections instead.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight at most, in total (the closed loop's worker count).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Open loop: how the pacer waits for the next scheduled request.
    #[arg(long, value_enum, default_value_t = Pacer::Spin)]
    pacer: Pacer,
    /// Open loop: the pacer releases requests in batches at most this often
    /// (µs); lateness it adds is charged to the reported latency. Default: 0
    /// (each request when due) with `--pacer spin`, 100 with `--pacer sleep`.
    #[arg(long)]
    tick_us: Option<u64>,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Answers slower than this (from the scheduled send) count as late.
    #[arg(long, default_value_t = 2.0)]
    deadline_ms: f64,
    /// A request unanswered after this many ms is abandoned and counted as an error.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Share of requests carrying a known user's device id; the rest are unknown ids.
    #[arg(long, default_value_t = 0.9)]
    hit_ratio: f64,
    /// Zipf exponent over known users (0 = uniform).
    #[arg(long, default_value_t = 0.0)]
    zipf: f64,
    /// Users of the server's generated population (`demo --users`).
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Seed of the server's generated population (`demo --seed`).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seed of this generator's own draws (ids, hits).
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
    /// Tokio worker threads (also used to precompute device ids).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The API under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    /// `rta.v1.RtaService/Decide` over gRPC.
    Grpc,
    /// `POST /rta/tencent` (Tencent RTA protobuf) over HTTP/1.1.
    Tencent,
}

/// How the open loop's pacer waits between scheduled requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Pacer {
    /// A task on the generator's own runtime that polls the clock between
    /// its other tasks and never sleeps: each request leaves when due, and
    /// nothing wakes a thread per request, at the price of one busy core.
    Spin,
    /// A thread that sleeps until the next tick and hands the runtime each
    /// tick's requests in one batch: leaves the core idle between ticks,
    /// but its wake-ups cost CPU and its sleeps overshoot on a busy machine,
    /// lateness the report charges to the server.
    Sleep,
}

impl Args {
    /// The open loop's batching tick.
    fn tick(&self) -> Duration {
        let default = match self.pacer {
            Pacer::Spin => 0,
            Pacer::Sleep => 100,
        };
        Duration::from_micros(self.tick_us.unwrap_or(default))
    }

    fn closed_loop(&self) -> bool {
        self.closed || self.rate <= 0.0
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.hit_ratio) {
            bail!("--hit-ratio must be within 0..=1, got {}", self.hit_ratio);
        }
        if self.zipf < 0.0 || !self.zipf.is_finite() {
            bail!("--zipf must be >= 0, got {}", self.zipf);
        }
        if self.concurrency == 0 || self.connections == 0 || self.threads == 0 {
            bail!("--concurrency, --connections and --threads must be at least 1");
        }
        if !(self.duration > 0.0 && self.warmup >= 0.0 && self.deadline_ms > 0.0) {
            bail!("--duration and --deadline-ms must be > 0 and --warmup >= 0");
        }
        if !self.rate.is_finite() {
            bail!("--rate must be finite");
        }
        if self.users == 0 && self.hit_ratio > 0.0 {
            bail!("--hit-ratio > 0 needs --users >= 1");
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.validate()?;
    let started = Instant::now();
    let population = Population::generate(&args)?;
    eprintln!(
        "device ids of {} users (seed {}) ready in {:.1}s",
        population.known.len(),
        args.seed,
        started.elapsed().as_secs_f64()
    );
    // the engine's own runtime choice: answers leave in batches (see serve::runtime)
    let rt = rta_engine::serve::runtime::build(args.threads)?;
    let report = rt.block_on(run(&args, Arc::new(population)))?;
    print_report(&report);
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Device ids

/// A known user's primary device id, and whether it is an Android (IMEI) or an
/// iOS (IDFA) device, so that the request carries the matching type and OS.
#[derive(Clone, Copy)]
struct KnownDevice {
    key: DeviceKey,
    android: bool,
}

/// The device ids requests are drawn from.
struct Population {
    /// `known[i]` is user `i + 1`'s first device.
    known: Vec<KnownDevice>,
    /// Cumulative Zipf weights over `known` (None: uniform).
    zipf_cdf: Option<Vec<f64>>,
    hit_ratio: f64,
}

/// One drawn device id.
struct Draw {
    key: DeviceKey,
    android: bool,
}

impl Population {
    /// Regenerates the server's population (the same public generator `demo`
    /// uses) to learn each user's device id; on `--threads` threads.
    fn generate(args: &Args) -> Result<Self> {
        let taxonomy = Taxonomy::default_taxonomy();
        // device ids do not depend on the day, only on (seed, user)
        let today = 20_000;
        let users = if args.hit_ratio > 0.0 { args.users } else { 0 };
        let threads = args.threads as u64;
        let chunk = users.div_ceil(threads).max(1);
        let parts: Vec<Vec<KnownDevice>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let taxonomy = &taxonomy;
                    let (lo, hi) = (t * chunk + 1, ((t + 1) * chunk).min(users));
                    s.spawn(move || {
                        (lo..=hi)
                            .map(|id| known_device(args.seed, id, today, taxonomy))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let known: Vec<KnownDevice> = parts.into_iter().flatten().collect();
        if known.len() as u64 != users {
            bail!("generated {} of {users} users' device ids", known.len());
        }
        let zipf_cdf = (args.zipf > 0.0 && !known.is_empty()).then(|| {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=known.len())
                .map(|rank| {
                    acc += (rank as f64).powf(-args.zipf);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            cdf
        });
        Ok(Self {
            known,
            zipf_cdf,
            hit_ratio: args.hit_ratio,
        })
    }

    /// A device id: a known user's with probability `hit_ratio`, else a random one.
    fn draw(&self, rng: &mut Pcg64Mcg) -> Draw {
        if !self.known.is_empty() && rng.random_bool(self.hit_ratio) {
            let i = match &self.zipf_cdf {
                Some(cdf) => {
                    let u: f64 = rng.random();
                    cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
                }
                None => rng.random_range(0..self.known.len()),
            };
            let d = self.known[i];
            Draw {
                key: d.key,
                android: d.android,
            }
        } else {
            // a random md5 belongs to no user; Android-heavy like the population
            Draw {
                key: DeviceKey(rng.random()),
                android: rng.random_bool(0.7),
            }
        }
    }
}

/// User `id`'s first device: its IMEI on Android, else its IDFA.
fn known_device(seed: u64, id: u64, today: u16, taxonomy: &Taxonomy) -> KnownDevice {
    let profile = population::generate_user(seed, id, today, taxonomy);
    let first = profile.devices().next().unwrap_or(DeviceKey([0; 16]));
    // the generator derives Android users' IMEI from the user id, as `demo` prints
    let imei = DeviceKey::from_raw(
        DeviceIdKind::Imei,
        &format!("86{:013}", id % 10_000_000_000_000),
    );
    KnownDevice {
        key: first,
        android: imei.is_ok_and(|k| k == first),
    }
}

// ---------------------------------------------------------------------------
// Clients

/// What one answer said.
struct Answer {
    take: bool,
    /// The server's own time for the decision, when the protocol reports it in µs.
    server_us: Option<u64>,
}

/// A failed request, by kind (gRPC status code, transport, protocol).
type CallError = String;

/// One worker's connection to the engine.
enum Client {
    Grpc(GrpcConnection),
    Tencent(Http1),
}

impl Client {
    async fn decide(&mut self, draw: &Draw, request_id: String) -> Result<Answer, CallError> {
        let md5 = draw.key.to_hex();
        match self {
            Client::Grpc(client) => {
                let kind = if draw.android {
                    pb::DeviceIdType::ImeiMd5
                } else {
                    pb::DeviceIdType::IdfaMd5
                };
                let os = if draw.android {
                    pb::Os::Android
                } else {
                    pb::Os::Ios
                };
                let req = pb::DecideRequest {
                    request_id,
                    device_ids: vec![pb::DeviceId {
                        r#type: kind as i32,
                        value: md5,
                    }],
                    os: os as i32,
                    media_id: "rta-load".into(),
                    ..Default::default()
                };
                let resp = client.decide(&req).await?;
                Ok(Answer {
                    take: resp.take,
                    server_us: Some(u64::from(resp.processing_time_us)),
                })
            }
            Client::Tencent(http) => {
                use tpb::rta_request::device::CacheDeviceIdType as Cache;
                use tpb::rta_request::{Device, OperatingSystem};
                let mut device = Device::default();
                if draw.android {
                    device.os = Some(OperatingSystem::OsAndroid as i32);
                    device.imei_md5sum = Some(md5);
                    device.cached_deviceid_type = Some(Cache::ImeiMd5 as i32);
                } else {
                    device.os = Some(OperatingSystem::OsIos as i32);
                    device.idfa_md5sum = Some(md5);
                    device.cached_deviceid_type = Some(Cache::IdfaMd5 as i32);
                }
                let req = tpb::RtaRequest {
                    id: Some(request_id),
                    device: Some(device),
                    ..Default::default()
                };
                let body = http.post(req.encode_to_vec()).await?;
                let resp = tpb::RtaResponse::decode(body)
                    .map_err(|_| "tencent_undecodable".to_string())?;
                match resp.code.unwrap_or(tencent::code::TAKE) {
                    tencent::code::TAKE => Ok(Answer {
                        take: true,
                        server_us: None,
                    }),
                    tencent::code::NO_MATCH => Ok(Answer {
                        take: false,
                        server_us: None,
                    }),
                    // shed or out of time: the server's default answer, not a decision
                    other => Err(format!("tencent_code_{other}")),
                }
            }
        }
    }
}

/// The gRPC path of `Decide`.
const DECIDE_PATH: &str = "/rta.v1.RtaService/Decide";

/// One HTTP/2 connection that makes unary gRPC calls straight on the `h2`
/// crate: a call is a HEADERS frame, one DATA frame with the length-prefixed
/// request, and an answer of HEADERS, DATA and trailers carrying
/// `grpc-status`, as the gRPC-over-HTTP/2 protocol defines it. tonic's
/// generated client over hyper spawned a task per call and moved its future
/// into it (memmove was 14 % of the generator's CPU), and on a machine the
/// generator shares with the server that CPU comes out of the server's share.
/// The server is the same tonic server either way. No reconnecting: a broken
/// connection fails its calls, and they are counted as errors.
#[derive(Clone)]
struct GrpcConnection {
    send: h2::client::SendRequest<Bytes>,
    /// `http://host:port/rta.v1.RtaService/Decide`.
    uri: http::Uri,
}

impl GrpcConnection {
    /// Connects to `addr` (`http://host:port`) with TCP_NODELAY and drives the
    /// connection on a task of its own.
    async fn connect(addr: &str) -> Result<Self> {
        let uri: http::Uri = addr.parse().with_context(|| format!("bad --addr {addr}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            bail!("--addr {addr}: expected http://host:port");
        };
        let port = authority.port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            // its calls see the error; nothing else to do with it here
            let _ = connection.await;
        });
        let uri = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(DECIDE_PATH)
            .build()
            .context("building the Decide URI")?;
        Ok(Self { send, uri })
    }

    /// One `Decide` call; errors are named by kind (`grpc_<code>` for a gRPC
    /// status other than OK).
    async fn decide(&mut self, req: &pb::DecideRequest) -> Result<pb::DecideResponse, CallError> {
        let len = req.encoded_len();
        let mut frame = Vec::with_capacity(5 + len);
        frame.push(0); // not compressed
        frame.extend_from_slice(
            &u32::try_from(len)
                .map_err(|_| "grpc_too_large")?
                .to_be_bytes(),
        );
        req.encode(&mut frame).map_err(|_| "grpc_encode")?;
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|_| "grpc_bad_request")?;
        std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(|_| "h2_closed")?;
        let (response, mut body_out) = self
            .send
            .send_request(request, false)
            .map_err(|_| "h2_send")?;
        body_out
            .send_data(Bytes::from(frame), true)
            .map_err(|_| "h2_send")?;
        let response = response.await.map_err(|_| "h2_response")?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("http_{}", response.status().as_u16()));
        }
        // an error may come as headers only, its status among them
        let in_headers = grpc_status(response.headers());
        if let Some(code) = in_headers.filter(|&c| c != 0) {
            return Err(grpc_error(code));
        }
        let mut body = response.into_body();
        let mut message = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|_| "h2_read")?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() {
                chunk
            } else {
                [message, chunk].concat().into()
            };
        }
        let trailers = body.trailers().await.map_err(|_| "h2_read")?;
        match trailers.as_ref().and_then(grpc_status).or(in_headers) {
            Some(0) => {}
            Some(code) => return Err(grpc_error(code)),
            None => return Err("grpc_no_status".into()),
        }
        // one message: not compressed, then its length (big-endian), then it
        let payload = match message.get(..5) {
            Some(&[0, a, b, c, d])
                if message.len() == 5 + u32::from_be_bytes([a, b, c, d]) as usize =>
            {
                message.slice(5..)
            }
            _ => return Err("grpc_bad_frame".into()),
        };
        pb::DecideResponse::decode(payload).map_err(|_| "grpc_undecodable".into())
    }
}

/// The `grpc-status` code in `headers`, if there is a valid one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The error kind of a gRPC status code other than OK: `grpc_unimplemented`.
fn grpc_error(code: i32) -> CallError {
    format!("grpc_{:?}", tonic::Code::from(code)).to_lowercase()
}

/// A keep-alive HTTP/1.1 connection (hyper's client) for `POST /rta/tencent`:
/// one request at a time, as the media's callers send them; reconnects after
/// an error or when the server closes the connection.
struct Http1 {
    addr: SocketAddr,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Http1 {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    async fn post(&mut self, body: Vec<u8>) -> Result<Bytes, CallError> {
        let result = self.exchange(body).await;
        if result.is_err() {
            self.conn = None; // the connection's state is unknown: start afresh
        }
        result
    }

    async fn exchange(&mut self, body: Vec<u8>) -> Result<Bytes, CallError> {
        let sender = match &mut self.conn {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(|_| "http_connect".to_string())?;
                let _ = stream.set_nodelay(true);
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| "http_connect".to_string())?;
                tokio::spawn(connection);
                self.conn.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|_| "http_closed".to_string())?;
        let request = hyper::Request::post(tencent::PATH)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, tencent::CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "http_bad_request".to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| "http_exchange".to_string())?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("http_{}", response.status().as_u16()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "http_read".to_string())?;
        Ok(body.to_bytes())
    }
}

// ---------------------------------------------------------------------------
// Recording

/// Latency bounds of the histograms: 1 µs .. 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// What the requests of one phase (warm-up or measured) did.
struct Phase {
    /// From the scheduled send to the answer, µs (what a caller waits).
    latency: Histogram<u64>,
    /// From the actual send to the answer, µs (without queueing in the generator).
    service: Histogram<u64>,
    /// The server's reported decision time, µs.
    server: Histogram<u64>,
    ok: u64,
    take: u64,
    late: u64,
    errors: BTreeMap<CallError, u64>,
}

impl Phase {
    fn new() -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            server: histogram(),
            ok: 0,
            take: 0,
            late: 0,
            errors: BTreeMap::new(),
        }
    }
}

/// Shared tallies of a run.
struct Recorder {
    measure_start: Instant,
    measure_end: Instant,
    deadline: Duration,
    /// Requests sent, all phases.
    sent: AtomicU64,
    /// Requests scheduled inside the measured window.
    scheduled: AtomicU64,
    /// Answers and errors received, all phases (for the progress rate).
    completed: AtomicU64,
    /// Answers and errors received inside the measured window (achieved rate).
    completed_in_window: AtomicU64,
    /// The spinning pacer's stalls inside the measured window.
    stalls: Mutex<Stalls>,
    phases: Mutex<[Phase; 2]>,
}

impl Recorder {
    fn new(window: std::ops::Range<Instant>, deadline: Duration) -> Self {
        Self {
            measure_start: window.start,
            measure_end: window.end,
            deadline,
            sent: AtomicU64::new(0),
            scheduled: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            completed_in_window: AtomicU64::new(0),
            stalls: Mutex::new(Stalls::default()),
            phases: Mutex::new([Phase::new(), Phase::new()]),
        }
    }

    fn record(&self, scheduled: Instant, sent: Instant, result: Result<Answer, CallError>) {
        let done = Instant::now();
        self.completed.fetch_add(1, Ordering::Relaxed);
        if (self.measure_start..=self.measure_end).contains(&done) {
            self.completed_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let measured = scheduled >= self.measure_start;
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let phase = &mut phases[usize::from(measured)];
        match result {
            Ok(answer) => {
                let latency = done.duration_since(scheduled);
                phase.ok += 1;
                phase.take += u64::from(answer.take);
                phase.late += u64::from(latency > self.deadline);
                phase.latency.saturating_record(micros(latency));
                phase
                    .service
                    .saturating_record(micros(done.duration_since(sent)));
                if let Some(us) = answer.server_us {
                    phase.server.saturating_record(us.max(1));
                }
            }
            Err(kind) => *phase.errors.entry(kind).or_default() += 1,
        }
    }

    /// Errors, late answers and p99 (µs) of the current phase.
    fn snapshot(&self, measured: bool) -> (u64, u64, u64) {
        let phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let p = &phases[usize::from(measured)];
        (
            p.errors.values().sum(),
            p.late,
            p.latency.value_at_quantile(0.99),
        )
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------------------
// Running

/// Where a worker's requests come from.
#[derive(Clone)]
enum Schedule {
    /// As fast as answers come back, until the measured window ends.
    Closed,
    /// Scheduled send times from the pacer, until it stops; any idle worker
    /// takes the next one.
    Open(async_channel::Receiver<Instant>),
}

async fn run(args: &Args, population: Arc<Population>) -> Result<Report> {
    let workers = args.concurrency;
    let mut clients = Vec::with_capacity(workers);
    match args.target {
        Target::Grpc => {
            let mut connections = Vec::with_capacity(args.connections);
            for _ in 0..args.connections.min(workers) {
                connections.push(GrpcConnection::connect(&args.addr).await?);
            }
            for w in 0..workers {
                clients.push(Client::Grpc(connections[w % connections.len()].clone()));
            }
        }
        Target::Tencent => {
            TcpStream::connect(args.http_addr)
                .await
                .with_context(|| format!("connecting to {}", args.http_addr))?;
            clients.extend((0..workers).map(|_| Client::Tencent(Http1::new(args.http_addr))));
        }
    }

    let start = Instant::now();
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let measure_end = measure_start + Duration::from_secs_f64(args.duration);
    let recorder = Arc::new(Recorder::new(
        measure_start..measure_end,
        Duration::from_secs_f64(args.deadline_ms / 1000.0),
    ));

    let schedule = if args.closed_loop() {
        Schedule::Closed
    } else {
        let pacing = Pacing::new(args.rate, start, recorder.clone());
        let (due, rx) = async_channel::unbounded();
        match args.pacer {
            Pacer::Spin => {
                tokio::spawn(spin(pacing, args.tick(), due));
            }
            Pacer::Sleep => {
                let (batches, mut due_batches) = tokio::sync::mpsc::unbounded_channel();
                let tick = args.tick();
                std::thread::Builder::new()
                    .name("rta-load-pacer".into())
                    .spawn(move || sleep_pace(pacing, tick, &batches))?;
                // one cross-thread wake per batch: the batch's requests then
                // wake their workers inside the runtime, and all of them are on
                // the wire before the connections flush, in one write each (a
                // wake per request from the pacer thread cost an eventfd write
                // and a socket write per request)
                tokio::spawn(async move {
                    while let Some(batch) = due_batches.recv().await {
                        for at in batch {
                            if due.try_send(at).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        }
        Schedule::Open(rx)
    };

    let timeout = Duration::from_millis(args.timeout_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for (w, client) in clients.into_iter().enumerate() {
        let (pop, rec, schedule) = (population.clone(), recorder.clone(), schedule.clone());
        let rng = Pcg64Mcg::seed_from_u64(
            args.rng_seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        tasks.spawn(worker(w, client, rng, pop, rec, schedule, timeout));
    }
    drop(schedule);

    let progress = tokio::spawn(progress(recorder.clone(), start));
    // workers end when the window closes (closed loop) or the pacer stops and its
    // queue is drained (open loop); what is still unanswered a timeout later is
    // abandoned and reported as unfinished
    let drain = tokio::time::sleep_until((measure_end + timeout + Duration::from_secs(1)).into());
    tokio::pin!(drain);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = &mut drain => { tasks.abort_all(); break }
        }
    }
    progress.abort();
    Ok(Report::new(args, &recorder))
}

/// The open loop's schedule: request `i` is due at `start + i / rate`, until
/// the measured window ends.
struct Pacing {
    rate: f64,
    start: Instant,
    /// The next request's number.
    next: u64,
    recorder: Arc<Recorder>,
}

impl Pacing {
    fn new(rate: f64, start: Instant, recorder: Arc<Recorder>) -> Self {
        Self {
            rate,
            start,
            next: 0,
            recorder,
        }
    }

    /// When the next request is due; `None` once the schedule has ended.
    fn next_due(&self) -> Option<Instant> {
        let due = self.start + Duration::from_secs_f64(self.next as f64 / self.rate);
        (due < self.recorder.measure_end).then_some(due)
    }

    /// Hands `send` every request due by `now`, in order, counting those
    /// inside the measured window as scheduled. False once the schedule has
    /// ended or `send` refused one (nobody takes requests any more).
    fn release(&mut self, now: Instant, mut send: impl FnMut(Instant) -> bool) -> bool {
        while let Some(due) = self.next_due() {
            if due > now {
                return true;
            }
            if !send(due) {
                return false;
            }
            if due >= self.recorder.measure_start {
                self.recorder.scheduled.fetch_add(1, Ordering::Relaxed);
            }
            self.next += 1;
        }
        false
    }
}

/// Gaps in the spinning pacer's look at the clock longer than [`Self::OVER`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Stalls {
    count: u64,
    total_us: u64,
    longest_us: u64,
}

impl Stalls {
    /// A gap longer than this is a stall: the pacer looks every few µs.
    const OVER: Duration = Duration::from_millis(1);

    fn add(&mut self, gap: Duration) {
        if gap > Self::OVER {
            let us = micros(gap);
            self.count += 1;
            self.total_us += us;
            self.longest_us = self.longest_us.max(us);
        }
    }
}

/// The spinning pacer (`--pacer spin`): releases what is due, at most once
/// per `tick`, then yields to the runtime's other tasks (and its I/O poll)
/// and looks again. It never parks the runtime, so the thread stays busy.
/// Long gaps between its looks are recorded as stalls.
async fn spin(mut pacing: Pacing, tick: Duration, due: async_channel::Sender<Instant>) {
    let mut released: Option<Instant> = None;
    let mut looked = pacing.start;
    loop {
        let now = Instant::now();
        if (pacing.recorder.measure_start..pacing.recorder.measure_end).contains(&looked) {
            let gap = now.duration_since(looked);
            if gap > Stalls::OVER {
                let mut stalls = pacing
                    .recorder
                    .stalls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                stalls.add(gap);
            }
        }
        looked = now;
        if released.is_none_or(|at| now >= at + tick) {
            released = Some(now);
            if !pacing.release(now, |at| due.try_send(at).is_ok()) {
                return; // dropping `due` ends the workers once they drain it
            }
        }
        tokio::task::yield_now().await;
    }
}

/// The sleeping pacer (`--pacer sleep`): a thread with `sleep` rather than a
/// tokio timer, whose 1 ms resolution would add up to 1 ms of the
/// generator's own lateness to every latency. It wakes at most once per
/// `tick` and sends everything due by then as one batch: waking per request
/// would cost a core's worth of wake-ups at high rates on a small machine.
/// A request released late is still timed from its scheduled instant, so
/// the coarser tick can only make the reported latency worse, never better.
fn sleep_pace(
    mut pacing: Pacing,
    tick: Duration,
    tx: &tokio::sync::mpsc::UnboundedSender<Vec<Instant>>,
) {
    let mut woke = pacing.start;
    while let Some(next) = pacing.next_due() {
        let wake = next.max(woke + tick);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        woke = Instant::now();
        let mut batch = Vec::new();
        let going = pacing.release(woke, |at| {
            batch.push(at);
            true
        });
        let sent = batch.is_empty() || tx.send(batch).is_ok();
        if !(going && sent) {
            return;
        }
    }
}

async fn worker(
    w: usize,
    mut client: Client,
    mut rng: Pcg64Mcg,
    population: Arc<Population>,
    recorder: Arc<Recorder>,
    schedule: Schedule,
    timeout: Duration,
) {
    let mut n: u64 = 0;
    loop {
        let scheduled = match &schedule {
            Schedule::Closed => {
                let now = Instant::now();
                if now >= recorder.measure_end {
                    return;
                }
                if now >= recorder.measure_start {
                    recorder.scheduled.fetch_add(1, Ordering::Relaxed);
                }
                now
            }
            Schedule::Open(rx) => match rx.recv().await {
                Ok(due) => due,
                Err(_) => return, // the pacer stopped and the queue is empty
            },
        };
        let draw = population.draw(&mut rng);
        n += 1;
        let sent = Instant::now();
        recorder.sent.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(
            timeout,
            client.decide(&draw, format!("load-{w}-{n}")),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                if let Client::Tencent(http) = &mut client {
                    http.conn = None; // an answer may still arrive on it
                }
                Err("timeout".into())
            }
        };
        recorder.record(scheduled, sent, result);
    }
}

/// Prints a progress line every second on stderr.
async fn progress(recorder: Arc<Recorder>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let measured = Instant::now() >= recorder.measure_start;
        let completed = recorder.completed.load(Ordering::Relaxed);
        let (errors, late, p99) = recorder.snapshot(measured);
        eprintln!(
            "{:>5.1}s {:<7} sent {:>9}  rate {:>8}/s  errors {:>6}  late {:>6}  p99 {:>7} us",
            start.elapsed().as_secs_f64(),
            if measured { "measure" } else { "warmup" },
            recorder.sent.load(Ordering::Relaxed),
            completed - last,
            errors,
            late,
            p99
        );
        last = completed;
    }
}

// ---------------------------------------------------------------------------
// Report

/// Latency percentiles, µs.
#[derive(Serialize)]
struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The measured window's results, and the settings that produced them.
#[derive(Serialize)]
struct Report {
    target: Target,
    endpoint: String,
    mode: &'static str,
    target_rate: f64,
    /// The open loop's pacer and its batching tick (µs).
    pacer: Option<Pacer>,
    tick_us: Option<u64>,
    connections: usize,
    concurrency: usize,
    threads: usize,
    duration_s: f64,
    warmup_s: f64,
    deadline_ms: f64,
    hit_ratio: f64,
    zipf: f64,
    users: u64,
    /// Requests scheduled in the measured window.
    scheduled: u64,
    /// Answers received per second during the measured window.
    achieved_rate: f64,
    ok: u64,
    /// Answers with `take` (a strategy matched).
    take: u64,
    errors: u64,
    errors_by_kind: BTreeMap<CallError, u64>,
    /// Answers later than the deadline, plus requests never answered.
    late: u64,
    /// Requests scheduled in the window and never answered (queued or abandoned).
    unfinished: u64,
    /// From the scheduled send (coordinated omission corrected).
    latency_us: Percentiles,
    /// From the actual send.
    service_us: Percentiles,
    /// The server's own decision time (gRPC `processing_time_us`).
    server_us: Option<Percentiles>,
    /// Times the spinning pacer did not get to look at the clock for more
    /// than [`Stalls::OVER`]: the generator's thread was not running (another
    /// task had the core) or its runtime was busy. Requests due meanwhile
    /// left late, and that lateness is in `latency_us`.
    pacer_stalls: Option<Stalls>,
}

impl Report {
    fn new(args: &Args, recorder: &Recorder) -> Self {
        let phases = recorder
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let m = &phases[1];
        let errors: u64 = m.errors.values().sum();
        let scheduled = recorder.scheduled.load(Ordering::Relaxed);
        let unfinished = scheduled.saturating_sub(m.ok + errors);
        Self {
            target: args.target,
            endpoint: match args.target {
                Target::Grpc => args.addr.clone(),
                Target::Tencent => format!("http://{}{}", args.http_addr, tencent::PATH),
            },
            mode: if args.closed_loop() { "closed" } else { "open" },
            target_rate: if args.closed_loop() { 0.0 } else { args.rate },
            pacer: (!args.closed_loop()).then_some(args.pacer),
            tick_us: (!args.closed_loop())
                .then(|| u64::try_from(args.tick().as_micros()).unwrap_or(u64::MAX)),
            connections: match args.target {
                Target::Grpc => args.connections.min(args.concurrency),
                Target::Tencent => args.concurrency,
            },
            concurrency: args.concurrency,
            threads: args.threads,
            duration_s: args.duration,
            warmup_s: args.warmup,
            deadline_ms: args.deadline_ms,
            hit_ratio: args.hit_ratio,
            zipf: args.zipf,
            users: args.users,
            scheduled,
            achieved_rate: recorder.completed_in_window.load(Ordering::Relaxed) as f64
                / args.duration,
            ok: m.ok,
            take: m.take,
            errors,
            errors_by_kind: m.errors.clone(),
            late: m.late + unfinished,
            unfinished,
            latency_us: Percentiles::of(&m.latency),
            service_us: Percentiles::of(&m.service),
            server_us: (!m.server.is_empty()).then(|| Percentiles::of(&m.server)),
            pacer_stalls: (!args.closed_loop() && args.pacer == Pacer::Spin).then(|| {
                *recorder
                    .stalls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            }),
        }
    }
}

fn print_report(r: &Report) {
    let mut out = std::io::stdout().lock();
    let rate = if let (Some(pacer), Some(tick)) = (r.pacer, r.tick_us) {
        format!(
            "open loop at {:.0}/s, {} pacer, tick {tick} us",
            r.target_rate,
            format!("{pacer:?}").to_lowercase()
        )
    } else {
        "closed loop".into()
    };
    let _ = writeln!(
        out,
        "{:?} {} ({rate}, {} in flight over {} connections, {} threads), {:.1}s measured",
        r.target, r.endpoint, r.concurrency, r.connections, r.threads, r.duration_s
    );
    let _ = writeln!(
        out,
        "  achieved {:.0}/s  ok {}  take {}  errors {}  late (> {} ms) {}  unfinished {}",
        r.achieved_rate, r.ok, r.take, r.errors, r.deadline_ms, r.late, r.unfinished
    );
    for (kind, n) in &r.errors_by_kind {
        let _ = writeln!(out, "    {kind}: {n}");
    }
    let line = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<8} p50 {:>6}  p90 {:>6}  p99 {:>6}  p99.9 {:>6}  max {:>7}  (us)",
            p.p50, p.p90, p.p99, p.p999, p.max
        )
    };
    let _ = writeln!(out, "{}", line("latency", &r.latency_us));
    let _ = writeln!(out, "{}", line("service", &r.service_us));
    if let Some(s) = &r.server_us {
        let _ = writeln!(out, "{}", line("server", s));
    }
    if let Some(s) = &r.pacer_stalls {
        let _ = writeln!(
            out,
            "  pacer    stalls over {} ms: {}  total {:.1} ms  longest {:.1} ms",
            Stalls::OVER.as_millis(),
            s.count,
            s.total_us as f64 / 1000.0,
            s.longest_us as f64 / 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
    use rta_engine::demo::DEMO_STRATEGIES;
    use rta_engine::domain::os::Os;
    use rta_engine::index::UserIndex;
    use rta_engine::serve::node::{self, Node, Running, ServeOptions, StrategySource};

    use super::*;

    const USERS: u64 = 2_000;
    const SEED: u64 = 42;
    const TODAY: u16 = 20_000;

    /// A real node over `USERS` demo users, on free loopback ports.
    async fn start() -> (Running, Arc<DecisionEngine>) {
        let taxonomy = Arc::new(Taxonomy::default_taxonomy());
        let index = Arc::new(UserIndex::default());
        population::populate(&index, USERS, SEED, TODAY, &taxonomy);
        let source = StrategySource::Embedded(DEMO_STRATEGIES);
        let set = source.load(&taxonomy).expect("demo strategies load");
        let engine = Arc::new(DecisionEngine::new(index, set, Clock::Fixed(TODAY)));
        let node = Arc::new(Node::new(engine.clone(), taxonomy, source));
        let opts = ServeOptions {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(5),
            max_batch: 100,
        };
        let running = node::start_with(node.clone(), &opts, &Default::default())
            .await
            .expect("node starts");
        node.set_ready(true);
        (running, engine)
    }

    async fn connect(running: &Running) -> GrpcConnection {
        GrpcConnection::connect(&format!("http://{}", running.grpc_addr))
            .await
            .expect("connects")
    }

    fn request(draw: &Draw, id: &str) -> pb::DecideRequest {
        let (kind, os) = if draw.android {
            (pb::DeviceIdType::ImeiMd5, pb::Os::Android)
        } else {
            (pb::DeviceIdType::IdfaMd5, pb::Os::Ios)
        };
        pb::DecideRequest {
            request_id: id.into(),
            device_ids: vec![pb::DeviceId {
                r#type: kind as i32,
                value: draw.key.to_hex(),
            }],
            os: os as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn grpc_calls_answer_what_the_engine_decides() {
        let (running, engine) = start().await;
        let mut conn = connect(&running).await;
        let taxonomy = Taxonomy::default_taxonomy();
        let mut takes = 0;
        for id in (1..=USERS).step_by(7) {
            let d = known_device(SEED, id, TODAY, &taxonomy);
            let draw = Draw {
                key: d.key,
                android: d.android,
            };
            let answer = conn
                .decide(&request(&draw, &format!("r{id}")))
                .await
                .unwrap();
            let expected = engine.decide_uncounted(&DecisionRequest {
                devices: std::slice::from_ref(&draw.key),
                os: if draw.android { Os::Android } else { Os::Ios },
                experiments: &[],
                only_strategies: &[],
            });
            assert_eq!(answer.request_id, format!("r{id}"));
            assert_eq!(answer.take, expected.take, "user {id}");
            let ids: Vec<&str> = answer
                .matches
                .iter()
                .map(|m| m.strategy_id.as_str())
                .collect();
            let expected: Vec<&str> = expected.matches.iter().map(|m| &*m.strategy_id).collect();
            assert_eq!(ids, expected, "user {id}");
            takes += u32::from(answer.take);
        }
        assert!(takes > 0, "some of the demo users match a demo strategy");
        running.shutdown().await;
    }

    #[tokio::test]
    async fn a_grpc_error_is_named_by_its_status_code() {
        let (running, _) = start().await;
        let mut conn = connect(&running).await;
        let bad = pb::DecideRequest {
            device_ids: vec![pb::DeviceId {
                r#type: pb::DeviceIdType::ImeiMd5 as i32,
                value: "not hex".into(),
            }],
            ..Default::default()
        };
        assert_eq!(conn.decide(&bad).await.unwrap_err(), "grpc_invalidargument");
        // a method the server does not have (tonic answers errors headers-only)
        conn.uri = format!(
            "http://{}/rta.v1.RtaService/NoSuchMethod",
            running.grpc_addr
        )
        .parse()
        .unwrap();
        assert_eq!(
            conn.decide(&pb::DecideRequest::default())
                .await
                .unwrap_err(),
            "grpc_unimplemented"
        );
        running.shutdown().await;
    }

    /// The schedule releases each request once, in order, not before it is
    /// due, and counts as scheduled only the requests due inside the window.
    #[test]
    fn pacing_releases_each_request_when_due_and_counts_the_window() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        // 1 000 per second: due at 0, 1, 2, ... 9 ms; measured from 3 ms on
        let recorder = Arc::new(Recorder::new(start + ms(3)..start + ms(10), ms(2)));
        let mut pacing = Pacing::new(1000.0, start, recorder.clone());
        let mut got = Vec::new();
        let mut take = |now: Instant, got: &mut Vec<Instant>| {
            pacing.release(now, |at| {
                got.push(at);
                true
            })
        };
        assert!(take(start + Duration::from_micros(2500), &mut got));
        assert_eq!(got, [start, start + ms(1), start + ms(2)]);
        assert_eq!(recorder.scheduled.load(Ordering::Relaxed), 0);
        // nothing new is due yet
        assert!(take(start + Duration::from_micros(2900), &mut got));
        assert_eq!(got.len(), 3);
        // far past the end: the rest, then the schedule says it is over
        assert!(!take(start + ms(60), &mut got));
        let expected: Vec<Instant> = (0..10).map(|i| start + ms(i)).collect();
        assert_eq!(got, expected);
        assert_eq!(recorder.scheduled.load(Ordering::Relaxed), 7);
        assert!(pacing.next_due().is_none());
        // a refused request is not lost: it is released again next time
        let recorder = Arc::new(Recorder::new(start..start + ms(10), ms(2)));
        let mut pacing = Pacing::new(1000.0, start, recorder);
        assert!(!pacing.release(start + ms(5), |_| false));
        assert_eq!(pacing.next_due(), Some(start));
    }

    #[test]
    fn only_gaps_over_a_millisecond_are_stalls() {
        let mut stalls = Stalls::default();
        stalls.add(Duration::from_micros(10));
        stalls.add(Stalls::OVER);
        assert_eq!(stalls.count, 0);
        stalls.add(Duration::from_micros(1500));
        stalls.add(Duration::from_millis(4));
        stalls.add(Duration::from_micros(1001));
        assert_eq!(
            (stalls.count, stalls.total_us, stalls.longest_us),
            (3, 6501, 4000)
        );
    }

    /// The spinning pacer never parks its worker: on a multi-thread runtime
    /// (`--threads` > 1) the other workers still carry the requests, and the
    /// run ends when the schedule does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spinning_pacer_runs_on_a_multi_thread_runtime() {
        let (running, _) = start().await;
        let addr = format!("http://{}", running.grpc_addr);
        let args = Args::parse_from([
            "rta-load",
            "--addr",
            &addr,
            "--users",
            "2000",
            "--seed",
            "42",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--concurrency",
            "8",
            "--rate",
            "4000",
            "--threads",
            "2",
        ]);
        let population = Arc::new(Population::generate(&args).unwrap());
        let report = run(&args, population).await.unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.errors_by_kind);
        assert_eq!(report.unfinished, 0);
        assert!(report.scheduled > 0);
        assert_eq!(report.ok, report.scheduled);
        running.shutdown().await;
    }

    /// The whole generator, closed and open loop, against a real node: every
    /// request answered, none an error.
    #[tokio::test]
    async fn closed_and_open_loop_runs_get_every_answer_from_a_real_node() {
        let (running, _) = start().await;
        let addr = format!("http://{}", running.grpc_addr);
        let open = ["--rate", "4000"];
        for mode in [
            &["--closed"][..],
            &[&open[..], &["--pacer", "spin"]].concat(),
            &[&open[..], &["--pacer", "sleep"]].concat(),
        ] {
            let mut argv = vec![
                "rta-load", "--addr", &addr, "--users", "2000", "--seed", "42",
            ];
            argv.extend(["--duration", "0.3", "--warmup", "0.1", "--concurrency", "8"]);
            argv.extend(mode);
            let args = Args::parse_from(argv);
            let population = Arc::new(Population::generate(&args).unwrap());
            let report = run(&args, population).await.unwrap();
            assert_eq!(report.errors, 0, "{mode:?}: {:?}", report.errors_by_kind);
            assert!(report.ok > 0 && report.take > 0, "{mode:?}");
            assert_eq!(report.unfinished, 0, "{mode:?}");
            assert!(report.server_us.is_some(), "{mode:?}");
            // stalls are the spinning pacer's own measure
            assert_eq!(
                report.pacer_stalls.is_some(),
                mode.contains(&"spin"),
                "{mode:?}"
            );
        }
        running.shutdown().await;
    }
}
