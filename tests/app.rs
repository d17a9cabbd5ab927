//! The composition root's start-up and stop order, through real sockets: a
//! node started from a configuration is ready and answers on its listeners;
//! stopping it saves the blacklist beside the snapshots; a node started again
//! from the same configuration restores it; a bad strategy file fails the
//! start before anything listens.

use rta_engine::app::{self, StartError, config::Config};
use rta_engine::decision::blacklist::{Listed, Reason};

fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "[server]\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\ndrain_seconds = 0\n\
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

#[tokio::test]
async fn on_stop_readyz_turns_503_at_once_and_requests_are_served_through_the_drain() {
    use rta_engine::serve::pb;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(dir.path(), "");
    cfg.server.drain_seconds = 5;
    let node = app::start(&cfg).await.expect("the node starts");
    let (http, grpc) = (node.http_addr(), node.grpc_addr());
    let client = reqwest::Client::new();
    let mut decide = pb::rta_service_client::RtaServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("gRPC connects");
    let ask = || pb::DecideRequest {
        request_id: "drain".into(),
        device_ids: vec![pb::DeviceId {
            r#type: pb::DeviceIdType::ImeiMd5 as i32,
            value: "0123456789abcdef0123456789abcdef".into(),
        }],
        ..Default::default()
    };
    assert!(decide.decide(ask()).await.is_ok());

    let stopping = tokio::spawn(node.stop());
    // not ready at once, long before the drain ends
    loop {
        let ready = client
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .expect("the media listener still answers");
        if ready.status() == 503 {
            break;
        }
        assert!(!stopping.is_finished(), "stopped before /readyz said 503");
        tokio::task::yield_now().await;
    }
    // still serving: health and decisions, on connections old and new
    let health = client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .expect("health answers while draining");
    assert_eq!(health.status(), 200);
    assert!(
        decide.decide(ask()).await.is_ok(),
        "an open channel is served"
    );
    let mut fresh = pb::rta_service_client::RtaServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("a new gRPC connection is taken while draining");
    assert!(fresh.decide(ask()).await.is_ok());
    assert!(
        !stopping.is_finished(),
        "the drain lasted through the checks"
    );

    stopping
        .await
        .expect("the stop task")
        .expect("the node stops");
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "the media listener is closed after the drain"
    );
    assert!(
        dir.path().join("blacklist.jsonl").exists(),
        "and the blacklist saved"
    );
}
