//! Two instances sharing one Postgres store and a Redis change bus: a
//! change made through one shows in the other's decisions.

use std::time::{Duration, Instant};

use portcullis::config::{BusConfig, StoreConfig};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

use crate::helpers::*;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn eventually(app: &TestApp, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let verdict = app.verdict(ALICE, WRITE, ONBOARDING).await;
        if verdict == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {verdict}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_instance_reaches_the_other() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let schema = format!("pc_bus_{}_{nanos}", std::process::id());
    let channel = format!("pc-test:{schema}");
    let configure = |config: &mut portcullis::config::Config| {
        config.store = StoreConfig::Postgres {
            url: POSTGRES_URL.into(),
            schema: schema.clone(),
            max_connections: 4,
        };
        config.bus = Some(BusConfig {
            url: "redis://127.0.0.1:6379".into(),
            channel: channel.clone(),
        });
    };
    let first = spawn_app_with(configure).await;
    let second = spawn_app_with(configure).await;
    assert_eq!(second.verdict(ALICE, WRITE, ONBOARDING).await, "Deny");

    first.seed_sample_entities().await;
    eventually(&second, "Allow").await;

    let (status, body) = first
        .post_json(
            "/v1/policies",
            &json!({"id": "no-alice", "content": "forbid (principal == Portcullis::User::\"alice\", action, resource);"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually(&second, "Deny").await;
    assert_eq!(second.get("/v1/policies/no-alice").await.0, StatusCode::OK);

    drop((first, second));
    let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}
