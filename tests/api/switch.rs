//! The runtime store switch: SQLite → Postgres → Redis → SQLite while a
//! client keeps writing; every acknowledged write is readable afterwards and
//! no request fails. Refusals for unknown, active and unreachable backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use portcullis::config::{BackendConfig, Secret, StoreConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "switch-admin-token-0123456789";

struct Names {
    schema: String,
    prefix: String,
}

fn names() -> Names {
    let tag = unique_tag();
    Names {
        schema: format!("pc_switch_{tag}"),
        prefix: format!("pc-switch:{tag}:"),
    }
}

async fn app_with_three_stores(names: &Names) -> TestApp {
    let (schema, prefix) = (names.schema.clone(), names.prefix.clone());
    spawn_app_with(move |config| {
        config.server.admin_token = Some(Secret::new(TOKEN));
        config.backends.insert(
            "pg".into(),
            BackendConfig::Store(StoreConfig::Postgres {
                url: POSTGRES_URL.into(),
                schema,
                max_connections: 4,
            }),
        );
        config.backends.insert(
            "cache".into(),
            BackendConfig::Store(StoreConfig::Redis {
                url: REDIS_URL.into(),
                prefix,
                max_connections: 4,
            }),
        );
        config.backends.insert(
            "nowhere".into(),
            BackendConfig::Store(StoreConfig::Redis {
                url: "redis://127.0.0.1:1".into(),
                prefix: "x:".into(),
                max_connections: 1,
            }),
        );
    })
    .await
}

async fn cleanup(names: &Names) {
    drop_schema(&names.schema).await;
    purge_redis(&names.prefix).await;
}

async fn switch(app: &TestApp, backend: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/storage/switch/{backend}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn write(app: &TestApp, key: &str, value: &str) -> StatusCode {
    app.client
        .post(app.url(&format!("/storage/live/{key}")))
        .bearer_auth(TOKEN)
        .body(value.to_owned())
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

async fn read(app: &TestApp, key: &str) -> Option<String> {
    let response = app
        .client
        .get(app.url(&format!("/storage/live/{key}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (response.status() == StatusCode::OK).then_some(response.text().await.unwrap())
}

async fn active(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/storage/backends"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .find(|b| b["role"] == "active")
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_through_every_store_under_writes_loses_nothing() {
    let names = names();
    let app = Arc::new(app_with_three_stores(&names).await);
    app.seed_sample_entities().await;
    for i in 0..300 {
        assert_eq!(
            write(&app, &format!("pre{i:04}"), &i.to_string()).await,
            StatusCode::OK
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{i:06}");
                match write(&app, &key, &format!("value-{i}")).await {
                    StatusCode::OK => acked.push(i),
                    _ => failed += 1,
                }
                i += 1;
            }
            (acked, failed)
        })
    };

    let mut reports = Vec::new();
    for target in ["pg", "cache", "default"] {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let (status, report) = switch(&app, target).await;
        assert_eq!(status, StatusCode::OK, "switch to {target}: {report}");
        assert_eq!(report["to"], target);
        assert_eq!(active(&app).await, target);
        reports.push(report);
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();

    assert_eq!(failed, 0, "no request failed because of a switch");
    assert!(acked.len() > 20, "the writer kept writing: {}", acked.len());
    for i in &acked {
        assert_eq!(
            read(&app, &format!("w{i:06}")).await,
            Some(format!("value-{i}")),
            "acknowledged write {i}"
        );
    }
    for i in 0..300 {
        assert_eq!(read(&app, &format!("pre{i:04}")).await, Some(i.to_string()));
    }
    // Every switch copied the entities and policies namespaces too, and
    // decisions never noticed.
    assert!(
        reports.iter().all(|r| r["namespaces"]["entities"] == 9),
        "{reports:?}"
    );
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    let roles: Value = app
        .client
        .get(app.url("/storage/backends"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let role = |name: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()["role"]
            .clone()
    };
    assert_eq!(role("default"), "active");
    assert_eq!(role("cache"), "previous");
    drop(app);
    cleanup(&names).await;
}

#[tokio::test]
async fn switch_refuses_unknown_active_and_unreachable_backends() {
    let names = names();
    let app = app_with_three_stores(&names).await;

    let (status, body) = switch(&app, "mystery").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("BACKEND_NOT_FOUND"))
    );
    let (status, body) = switch(&app, "default").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("BACKEND_ALREADY_ACTIVE"))
    );
    let (status, body) = switch(&app, "nowhere").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("BACKEND_UNAVAILABLE"))
    );
    assert_eq!(active(&app).await, "default");
    let unauthenticated = app
        .client
        .post(app.url("/storage/switch/pg"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(active(&app).await, "default");
    drop(app);
    cleanup(&names).await;
}

#[tokio::test]
async fn the_switched_to_store_stays_active_after_a_restart() {
    let names = names();
    let app = app_with_three_stores(&names).await;
    app.seed_sample_entities().await;
    let (status, _) = switch(&app, "pg").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(write(&app, "after", "switch").await, StatusCode::OK);

    let app = app.restart().await;

    assert_eq!(active(&app).await, "pg");
    assert_eq!(read(&app, "after").await.as_deref(), Some("switch"));
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    drop(app);
    cleanup(&names).await;
}
