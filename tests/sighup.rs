//! SIGHUP reloads the strategy file in a running engine process; a bad file
//! is rejected and the previous set keeps serving.

mod common;

use rta_engine::serve::tokens::{TOKENS_ENV, token_sha256_hex};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn strategies(version: &str, audience: &str) -> String {
    format!(
        "version = \"{version}\"\n[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\naudience = \"{audience}\"\n"
    )
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_strategies_and_a_bad_file_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strategies.toml");
    std::fs::write(&file, strategies("one", "age >= 18")).unwrap();
    let admin_port = common::free_port();
    let config = dir.path().join("engine.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ngrpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{admin_port}\"\ndrain_seconds = 0\n[strategies]\npath = \"{}\"\n[users]\ngenerate = 100\n",
            common::free_port(),
            common::free_port(),
            file.display()
        ),
    )
    .unwrap();
    // the admin token comes by the environment, as a hash
    let mut child = Command::new(env!("CARGO_BIN_EXE_rta-engine"))
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            TOKENS_ENV,
            format!("sighup:read:{}", token_sha256_hex(common::READ_TOKEN)),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = common::client_with(common::READ_TOKEN);
    let base = format!("http://127.0.0.1:{admin_port}");
    let version = |http: reqwest::Client, base: String| async move {
        let v: serde_json::Value = http
            .get(format!("{base}/strategies"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["version"].as_str().map(str::to_string)
    };
    let hup = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        )
    };

    assert_eq!(
        poll("the engine", async || version(http.clone(), base.clone())
            .await)
        .await,
        "one"
    );
    std::fs::write(&file, strategies("two", "age >= 30")).unwrap();
    hup(child.id());
    poll("version two", async || {
        (version(http.clone(), base.clone()).await? == "two").then_some(())
    })
    .await;

    std::fs::write(&file, strategies("broken", "age >= old")).unwrap();
    hup(child.id());
    poll("the rejected reload to be counted", async || {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("rta_strategy_reloads_total{result=\"error\"} 1")
            .then_some(())
    })
    .await;
    assert_eq!(
        version(http.clone(), base.clone()).await.as_deref(),
        Some("two")
    );

    child.kill().unwrap();
    child.wait().unwrap();
}
