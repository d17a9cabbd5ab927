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
//!
//! The modules: [`args`] (the command line), [`devices`] (the device ids
//! drawn), [`client`], [`grpc`] and [`http1`] (the connections), [`pacing`]
//! (the open loop's schedule and pacers), [`run`] (the workers),
//! [`recorder`] and [`report`] (the tallies and the results, JSON included).

mod args;
mod client;
mod devices;
mod grpc;
mod http1;
mod pacing;
mod recorder;
mod report;
mod run;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::Args;
use crate::devices::Population;
use crate::report::print_report;

/// The generator's allocator: it shares the machine with the server, and
/// its per-call allocations (HTTP/2 frames, messages) cost less on mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Generates the device ids, runs the load and prints (and writes) its report.
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
    let report = rt.block_on(run::run(&args, Arc::new(population)))?;
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
