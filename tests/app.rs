//! The composition root's start-up and stop order, through real sockets: a
//! node started from a configuration is ready and answers on its listeners;
//! stopping it saves the blacklist beside the snapshots; a node started again
//! from the same configuration restores it; a bad strategy file fails the
//! start before anything listens.

use rta_engine::app::{self, StartError, config::Config};
use rta_engine::decision::blacklist::{Listed, Reason};

fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "[server]\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [users]\ngenerate = 300\nseed = 5\n\
         [snapshot]\ndir = \"{}\"\n{extra}",
        dir.display()
    );
    toml::from_str(&text).expect("the test config parses")
}

#[tokio::test]
async fn a_node_starts_ready_and_stops_keeping_its_blacklist_for_the_next_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), "");

    let first = app::start(&cfg).await.expect("the node starts");
    assert!(first.node().is_ready(), "no Kafka: ready once listening");
    assert_eq!(first.node().engine.index().users(), 300);
    let ready = reqwest::get(format!("http://{}/readyz", first.http_addr()))
        .await
        .expect("the HTTP listener answers");
    assert_eq!(ready.status(), 200);
    let engine = &first.node().engine;
    let now = engine.clock().now_ms();
    engine
        .blacklist()
        .add(Listed::User(7), Reason::Operator, now, None)
        .expect("the blacklist has room");
    first.stop().await.expect("the node stops");
    let saved = std::fs::read_to_string(dir.path().join("blacklist.jsonl"))
        .expect("stopping saved the blacklist beside the snapshots");
    assert_eq!(saved.lines().count(), 1, "{saved}");

    let second = app::start(&cfg).await.expect("the node starts again");
    let engine = &second.node().engine;
    let restored = engine
        .blacklist()
        .get(Listed::User(7), engine.clock().now_ms())
        .expect("the entry was restored at start");
    assert_eq!(restored.reason, Reason::Operator);
    second.stop().await.expect("the node stops again");
}

#[tokio::test]
async fn a_strategy_file_that_does_not_read_fails_the_start_with_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-strategies.toml");
    let cfg = config(
        dir.path(),
        &format!("[strategies]\npath = \"{}\"\n", missing.display()),
    );
    let err = match app::start(&cfg).await {
        Ok(_) => panic!("a missing strategy file must fail the start"),
        Err(e) => e,
    };
    assert!(matches!(err, StartError::Strategies(_)), "{err:?}");
    assert!(err.to_string().contains("no-such-strategies.toml"), "{err}");
}
