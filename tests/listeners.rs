//! The listeners under a hostile client: connection caps, silent and idle
//! connections, trickled bodies, source allow-lists and oversized gRPC
//! messages, all through real sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rta_engine::serve::listener::{AllowList, ConnectionsConfig};
use rta_engine::serve::node::ServeOptions;
use rta_engine::serve::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for any close the server owes us, on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; returns what it sent first.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {PATIENCE:?}"),
        }
    }
}

fn limits(f: impl FnOnce(&mut ConnectionsConfig)) -> ServeOptions {
    let mut connections = ConnectionsConfig::default();
    f(&mut connections);
    ServeOptions {
        connections,
        ..test_options()
    }
}

#[tokio::test]
async fn idle_connections_do_not_lock_out_health_checks_or_decide() {
    const CAP: usize = 8;
    let node = start_serving(limits(|c| c.max_media = CAP)).await;
    let media = node.running.http_addr;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(media).await.unwrap());
    }
    // the listener has accepted all eight once one more is refused: the
    // next connection is accepted and closed at once, with nothing said
    let mut extra = TcpStream::connect(media).await.unwrap();
    let said = read_until_closed(&mut extra).await;
    assert!(said.is_empty(), "{}", String::from_utf8_lossy(&said));

    let health = reqwest::get(node.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let mut grpc = node.client().await;
    let answer = grpc
        .decide(request(
            "after-flood",
            vec![device(
                pb::DeviceIdType::ImeiMd5,
                imei_md5("860000000000001"),
            )],
        ))
        .await;
    assert!(answer.is_ok(), "{answer:?}");

    let metrics = metrics_text(&node).await;
    assert!(
        metric_value(
            &metrics,
            "rta_connections_refused_total{listener=\"media\",reason=\"at_capacity\"}"
        ) >= 1.0,
        "{metrics}"
    );
    // a slot frees when an idle socket closes
    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let ok = reqwest::get(node.http_url("/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed() {
    let node = start_serving(limits(|c| c.header_read_timeout_ms = 200)).await;
    for addr in [
        node.running.http_addr,
        node.running.grpc_addr,
        node.running.admin_addr,
    ] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        read_until_closed(&mut silent).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
    let metrics = metrics_text(&node).await;
    assert!(
        metric_value(
            &metrics,
            "rta_connections_closed_total{listener=\"grpc\",reason=\"no_request\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    let node = start_serving(limits(|c| c.header_read_timeout_ms = 300)).await;
    let mut slow = TcpStream::connect(node.running.http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // the head is never finished; the server must not wait for it
    let said = read_until_closed(&mut slow).await;
    let said = String::from_utf8_lossy(&said);
    assert!(!said.contains("200 OK"), "{said}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let node = start_serving(limits(|c| c.idle_timeout_seconds = 1)).await;
    let mut conn = TcpStream::connect(node.running.http_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let said = read_until_closed(&mut conn).await;
    assert!(String::from_utf8_lossy(&said).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    let metrics = metrics_text(&node).await;
    assert!(
        metric_value(
            &metrics,
            "rta_connections_closed_total{listener=\"media\",reason=\"idle\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn an_admin_body_that_trickles_in_gets_408() {
    let node = start_serving(limits(|c| c.admin_request_timeout_ms = 300)).await;
    let mut conn = TcpStream::connect(node.running.admin_addr).await.unwrap();
    let head = format!(
        "POST /blacklist HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
        .await
        .expect("an answer before the patience runs out")
        .unwrap();
    let said = String::from_utf8_lossy(&buf[..n]);
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
}

#[tokio::test]
async fn the_media_allow_list_closes_other_sources_and_leaves_admin_open() {
    let allow = AllowList::parse("server.media_allow", &["10.0.0.0/8".to_string()]).unwrap();
    let node = start_serving(ServeOptions {
        media_allow: Some(Arc::new(allow)),
        ..test_options()
    })
    .await;
    let mut conn = TcpStream::connect(node.running.http_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let said = read_until_closed(&mut conn).await;
    assert!(said.is_empty(), "{}", String::from_utf8_lossy(&said));
    let health = reqwest::get(node.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = metrics_text(&node).await;
    assert!(
        metric_value(
            &metrics,
            "rta_connections_refused_total{listener=\"media\",reason=\"not_allowed\"}"
        ) >= 1.0,
        "{metrics}"
    );

    let loopback = AllowList::parse("server.media_allow", &["127.0.0.0/8".to_string()]).unwrap();
    let open = start_serving(ServeOptions {
        media_allow: Some(Arc::new(loopback)),
        ..test_options()
    })
    .await;
    let health = reqwest::get(open.http_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_grpc_message_over_4_mib_is_resource_exhausted() {
    let node = start_serving(test_options()).await;
    let mut grpc = node.client().await;
    let mut big = request(
        "big",
        vec![device(
            pb::DeviceIdType::ImeiMd5,
            imei_md5("860000000000001"),
        )],
    );
    big.strategy_ids = vec!["x".repeat(5 * 1024 * 1024)];
    let status = grpc.decide(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // the connection and the server are fine afterwards
    let ok = grpc
        .decide(request(
            "small",
            vec![device(
                pb::DeviceIdType::ImeiMd5,
                imei_md5("860000000000001"),
            )],
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn an_idle_grpc_channel_is_closed_with_goaway_and_the_client_reconnects() {
    let node = start_serving(limits(|c| c.idle_timeout_seconds = 1)).await;
    let mut grpc = node.client().await;
    let ask = || {
        request(
            "idle",
            vec![device(
                pb::DeviceIdType::ImeiMd5,
                imei_md5("860000000000001"),
            )],
        )
    };
    assert!(grpc.decide(ask()).await.is_ok());
    let closed = "rta_connections_closed_total{listener=\"grpc\",reason=\"idle\"}";
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = metrics_text(&node).await;
        if metric_value(&metrics, closed) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle channel was not closed: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the same client goes on, over a new connection
    let again = grpc.decide(ask()).await;
    assert!(again.is_ok(), "{again:?}");
}
