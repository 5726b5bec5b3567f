//! Faults on a real backend: a `redis-server` of the test's own, on a spare
//! port, is the active store and gets killed. Writes fail with 503 (never a
//! 500), the breaker opens and shows in /health and /metrics, decisions keep
//! being answered from memory, and after a restart the breaker closes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::config::{Secret, StoreConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "fault-admin-token-0123456789";

struct OwnRedis(Child);

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        wait_for_port(port, "redis-server");
        OwnRedis(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn write(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/storage/things/{key}")))
        .bearer_auth(TOKEN)
        .body("v")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_outage_and_closes_after_recovery() {
    let port = spare_port();
    let mut redis = OwnRedis::start(port);
    let app = spawn_app_with(|config| {
        config.server.admin_token = Some(Secret::new(TOKEN));
        config.store = StoreConfig::Redis {
            url: format!("redis://127.0.0.1:{port}"),
            prefix: "fault:".into(),
            max_connections: 2,
        };
        config.resilience.retries = 1;
        config.resilience.retry_min_delay_ms = 5;
        config.resilience.retry_max_delay_ms = 20;
        config.resilience.breaker_failures = 2;
        config.resilience.breaker_cooldown_ms = 300;
    })
    .await;
    app.seed_sample_entities().await;
    assert_eq!(write(&app, "before").await.0, StatusCode::OK);

    redis.kill();
    for i in 0..3 {
        let (status, body) = write(&app, &format!("during{i}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE");
    }

    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["status"], "down", "{health}");
    assert_eq!(health["store"]["breaker"], "open", "{health}");
    assert_eq!(health["status"], "degraded");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"portcullis_backend_breaker_state{backend="default"} 2"#),
        "{metrics}"
    );
    // The first write's attempt and its retry are the two failures in a
    // row that open it; the writes after it fail fast, never sent.
    let counted = |series: &str| metric_value(&metrics, series).unwrap_or(0.0);
    assert!(counted(r#"portcullis_backend_errors_total{backend="default"}"#) >= 1.0);
    assert!(counted(r#"portcullis_backend_retries_total{backend="default"}"#) >= 1.0);
    // Decisions need no store round trip: they keep coming, and stay right.
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");

    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = write(&app, "after").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never came back: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["breaker"], "closed", "{health}");
    assert_eq!(health["store"]["status"], "up");
}
