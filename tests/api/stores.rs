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
