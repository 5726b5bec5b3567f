//! The whole server on each store: the same decisions, and data that
//! survives a restart, on Postgres and Redis as on SQLite. Each test uses
//! its own Postgres schema or Redis key prefix on the machine's servers and
//! removes it afterwards.

use portcullis::backends::{RedisStore, Store};
use portcullis::config::StoreConfig;

use crate::helpers::*;

async fn decisions_survive_a_restart(store: StoreConfig) {
    let app = spawn_app_with(|config| config.store = store).await;
    app.seed_sample_entities().await;
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["status"], "up");

    let app = app.restart().await;

    assert_eq!(
        app.get("/v1/entities").await.1.as_array().map(Vec::len),
        Some(9)
    );
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn postgres_store_serves_and_persists_decisions() {
    let schema = format!("pc_api_{}", unique_tag());
    decisions_survive_a_restart(StoreConfig::Postgres {
        url: POSTGRES_URL.into(),
        schema: schema.clone(),
        max_connections: 4,
    })
    .await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn redis_store_serves_and_persists_decisions() {
    let prefix = format!("pc-api:{}:", unique_tag());
    decisions_survive_a_restart(StoreConfig::Redis {
        url: REDIS_URL.into(),
        prefix: prefix.clone(),
        max_connections: 4,
    })
    .await;
    let store = RedisStore::open(REDIS_URL, &prefix, 1).await.unwrap();
    assert!(!store.namespaces().await.unwrap().is_empty());
    store.purge().await.unwrap();
}

/// A NUL in what a caller sends becomes a key Postgres cannot even be asked
/// about. It must be a client error, never a 5xx, and never count against
/// the store's breaker.
#[tokio::test]
async fn a_nul_in_a_key_is_a_client_error_on_postgres() {
    let schema = format!("pc_api_{}", unique_tag());
    let app = spawn_app_with(|config| {
        config.store = StoreConfig::Postgres {
            url: POSTGRES_URL.into(),
            schema: schema.clone(),
            max_connections: 4,
        }
    })
    .await;
    // Entity keys are Cedar uids, which escape a NUL: such an entity is kept.
    let mut entities = sample_entities();
    entities.as_array_mut().unwrap().push(
        serde_json::json!({"uid": {"type": "Portcullis::User", "id": "a\u{0}b"}, "attrs": {}, "parents": []}),
    );
    assert_eq!(
        app.put_json("/v1/entities", &entities).await.0,
        reqwest::StatusCode::OK
    );
    assert_eq!(
        app.get("/v1/entities").await.1.as_array().map(Vec::len),
        Some(10)
    );
    // A raw key with one is refused.
    let (status, body) = app
        .post_json("/storage/things/a%00b", &serde_json::json!({"v": 1}))
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    for _ in 0..5 {
        let login = serde_json::json!({"username": "a\u{0}b@example.com", "password": "x"});
        let (status, body) = app.post_json("/auth/jwt/login", &login).await;
        assert!(status.is_client_error(), "{status} {body}");
    }
    let (status, body) = app.get("/storage/settings/a%00b").await;
    assert!(status.is_client_error(), "{status} {body}");
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["status"], "up", "{health}");
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    drop(app);
    drop_schema(&schema).await;
}
