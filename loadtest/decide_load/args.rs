//! The command line of `rta-load` ([`Args`]): the API under load
//! ([`Target`]), the open loop's pacer ([`Pacer`]), and the checks the
//! settings must pass.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;

// The command line. No `///` comment here: clap would make it help text.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "rta-load",
    about = "Load generator for rta-engine Decide (gRPC or Tencent HTTP)"
)]
pub(crate) struct Args {
    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Target::Grpc)]
    pub(crate) target: Target,
    /// The engine's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,
    /// The engine's HTTP address, for `--target tencent`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) http_addr: SocketAddr,
    /// Requests per second to schedule (open loop); 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Closed loop regardless of `--rate`: each worker sends as fast as it can.
    #[arg(long)]
    pub(crate) closed: bool,
    /// gRPC connections (HTTP/2); the in-flight requests are spread over them.
    /// Tencent over HTTP/1.1 carries one request per connection, so it opens
    /// `--concurrency` connections instead.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Requests in flight at most, in total (the closed loop's worker count).
    #[arg(long, default_value_t = 50)]
    pub(crate) concurrency: usize,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Open loop: how the pacer waits for the next scheduled request.
    #[arg(long, value_enum, default_value_t = Pacer::Spin)]
    pub(crate) pacer: Pacer,
    /// Open loop: the pacer releases requests in batches at most this often
    /// (µs); lateness it adds is charged to the reported latency. Default: 0
    /// (each request when due) with `--pacer spin`, 100 with `--pacer sleep`.
    #[arg(long)]
    pub(crate) tick_us: Option<u64>,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Answers slower than this (from the scheduled send) count as late.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) deadline_ms: f64,
    /// A request unanswered after this many ms is abandoned and counted as an error.
    #[arg(long, default_value_t = 1000)]
    pub(crate) timeout_ms: u64,
    /// Share of requests carrying a known user's device id; the rest are unknown ids.
    #[arg(long, default_value_t = 0.9)]
    pub(crate) hit_ratio: f64,
    /// Zipf exponent over known users (0 = uniform).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) zipf: f64,
    /// Users of the server's generated population (`demo --users`).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) users: u64,
    /// Seed of the server's generated population (`demo --seed`).
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Seed of this generator's own draws (ids, hits).
    #[arg(long, default_value_t = 1)]
    pub(crate) rng_seed: u64,
    /// Tokio worker threads (also used to precompute device ids).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

/// The API under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    /// `rta.v1.RtaService/Decide` over gRPC.
    Grpc,
    /// `POST /rta/tencent` (Tencent RTA protobuf) over HTTP/1.1.
    Tencent,
}

/// How the open loop's pacer waits between scheduled requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pacer {
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
    pub(crate) fn tick(&self) -> Duration {
        let default = match self.pacer {
            Pacer::Spin => 0,
            Pacer::Sleep => 100,
        };
        Duration::from_micros(self.tick_us.unwrap_or(default))
    }

    /// Whether the run is a closed loop (`--closed` or `--rate 0`).
    pub(crate) fn closed_loop(&self) -> bool {
        self.closed || self.rate <= 0.0
    }

    /// Rejects settings the generator cannot run with.
    pub(crate) fn validate(&self) -> Result<()> {
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
