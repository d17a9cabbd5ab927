//! Tests of the whole generator against a real node, and that node
//! ([`start`]), which the client tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rta_engine::decision::{Clock, DecisionEngine};
use rta_engine::demo::DEMO_STRATEGIES;
use rta_engine::demo::population;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserIndex;
use rta_engine::serve::node::{self, Node, Running, ServeOptions, StrategySource};

use crate::args::Args;
use crate::devices::Population;
use crate::run::run;

/// Users of the test node's demo population.
pub(crate) const USERS: u64 = 2_000;
/// The population's seed.
pub(crate) const SEED: u64 = 42;
/// The test node's fixed day.
pub(crate) const TODAY: u16 = 20_000;

/// A real node over `USERS` demo users, on free loopback ports.
pub(crate) async fn start() -> (Running, Arc<DecisionEngine>) {
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
        admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_auth: Default::default(),
        grpc_callers: Default::default(),
        request_timeout: Duration::from_secs(5),
        max_batch: 100,
        ..ServeOptions::default()
    };
    let running = node::start_with(node.clone(), &opts, &Default::default())
        .await
        .expect("node starts");
    node.set_ready(true);
    (running, engine)
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
