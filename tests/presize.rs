//! `users.expected` pre-sizes the index of an engine process that starts with
//! no users (a node about to fill from Kafka), as `/metrics` shows.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the engine however the test ends.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The engine's `rta_index_table_bytes` per table, once it serves metrics.
async fn table_bytes(expected: Option<u64>) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let strategies = dir.path().join("strategies.toml");
    std::fs::write(
        &strategies,
        "version = \"v\"\n[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\naudience = \"age >= 18\"\n",
    )
    .unwrap();
    let admin_port = common::free_port();
    let config = dir.path().join("engine.toml");
    let users = expected.map_or(String::new(), |n| format!("[users]\nexpected = {n}\n"));
    std::fs::write(
        &config,
        format!(
            "[server]\ngrpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{admin_port}\"\ndrain_seconds = 0\n[strategies]\npath = \"{}\"\n{users}",
            common::free_port(),
            common::free_port(),
            strategies.display()
        ),
    )
    .unwrap();
    let _engine = Engine(
        Command::new(env!("CARGO_BIN_EXE_rta-engine"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = match http
            .get(format!("http://127.0.0.1:{admin_port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let gauge = |table: &str| {
            let name = format!("rta_index_table_bytes{{table=\"{table}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        if let (Some(devices), Some(profiles)) = (gauge("devices"), gauge("profiles")) {
            assert!(text.contains("rta_index_users 0"), "no user was loaded");
            return (devices, profiles);
        }
        assert!(Instant::now() < deadline, "no table gauges in /metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn expected_users_pre_size_an_empty_index() {
    let (devices, profiles) = table_bytes(Some(300_000)).await;
    // at least a slot per user (12 bytes) and per expected device (16 bytes,
    // 1.57 devices per user), and a control byte each
    assert!(
        profiles >= 300_000.0 * 13.0,
        "profile tables: {profiles} bytes"
    );
    assert!(
        devices >= 300_000.0 * 1.5 * 17.0,
        "device tables: {devices} bytes"
    );
    // without it, an empty index starts small and grows as users arrive
    let (devices, profiles) = table_bytes(None).await;
    assert!(
        profiles + devices < 300_000.0,
        "{profiles} + {devices} bytes"
    );
}
