//! Backup and restore on each store, with 10,000 users and 100,000
//! entities (plus 100 folders): time to back up, backup size, time to
//! restore (checking, the automatic backup of the current contents, the
//! one-transaction replace, and reloading the served snapshots).
//!
//! Needs the machine's Postgres and Redis; each store gets its own schema
//! or key prefix, removed afterwards.
//!
//! `cargo bench --bench recovery`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use portcullis::authz::entity_key;
use portcullis::backends::{Expect, Op, RedisStore};
use portcullis::config::{Config, StoreConfig};
use portcullis::domain::User;
use portcullis::services::{Recovery, RecoverySettings, USER_EMAILS, USERS};
use serde_json::json;

/// Users and documents measured by `cargo bench`. Under `cargo test`
/// (no `--bench` argument) the same code runs on a hundredth of them, so
/// CI checks it works without spending minutes on it.
const USERS_MEASURED: usize = 10_000;
const DOCUMENTS_MEASURED: usize = 100_000;

fn scale() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    }
}
const FOLDERS: usize = 100;
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn put(ns: &str, key: String, value: Vec<u8>) -> Op {
    Op::Put {
        ns: ns.into(),
        key,
        value,
        expect: Expect::Any,
    }
}

/// Users (one shared, real Argon2id hash: nobody logs in here) with their
/// e-mail index, folders and documents, as the server stores them.
fn records() -> Vec<Op> {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Zk1l9TXf8S8XHdNH0bKM4c8Yd3S3QzS9ItFmZbhYgkM";
    let (user_count, documents) = (USERS_MEASURED / scale(), DOCUMENTS_MEASURED / scale());
    let mut ops = Vec::with_capacity(2 * user_count + FOLDERS + documents);
    for u in 0..user_count {
        let user = User {
            id: format!("{u:016x}"),
            email: format!("user{u}@example.com"),
            hashed_password: hash.into(),
            is_active: true,
            is_verified: true,
            is_superuser: false,
            name: Some(format!("User {u}")),
            created_at: 1_790_000_000,
            updated_at: 1_790_000_000,
        };
        ops.push(put(
            USER_EMAILS,
            user.email.clone(),
            user.id.clone().into_bytes(),
        ));
        ops.push(put(
            USERS,
            user.id.clone(),
            serde_json::to_vec(&user).unwrap(),
        ));
    }
    let owner = |i: usize| json!({"__entity": {"type": "Portcullis::User", "id": format!("{:016x}", i % user_count)}});
    let mut entity = |doc: serde_json::Value| {
        let uid = format!(
            "{}::\"{}\"",
            doc["uid"]["type"].as_str().unwrap(),
            doc["uid"]["id"].as_str().unwrap()
        );
        let key = entity_key(&uid.parse().unwrap());
        ops.push(put("entities", key, serde_json::to_vec(&doc).unwrap()));
    };
    for f in 0..FOLDERS {
        entity(
            json!({"uid": {"type": "Docs::Folder", "id": format!("f{f}")},
            "attrs": {"owner": owner(f)}, "parents": []}),
        );
    }
    for d in 0..documents {
        entity(
            json!({"uid": {"type": "Docs::Document", "id": format!("d{d}")},
            "attrs": {"owner": owner(d), "classification": "internal", "public": d % 10 == 0},
            "parents": [{"type": "Docs::Folder", "id": format!("f{}", d % FOLDERS)}]}),
        );
    }
    ops
}

async fn measure(name: &str, store: StoreConfig) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let mut config = Config {
        store,
        ..Config::default()
    };
    config.policies.dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    config.registry.state_file = work.path().join("active-store");
    config.recovery.dir = work.path().join("backups");
    let (registry, catalog, accounts) = portcullis::app::open_recovery(&config).await?;
    let store = registry.store();
    let filling = Instant::now();
    let ops = records();
    let keys = ops.len();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        store.transact(ops.by_ref().take(5000).collect()).await?;
    }
    let filled = filling.elapsed();
    let recovery = Recovery {
        registry: &registry,
        catalog: &catalog,
        accounts: &accounts,
        settings: RecoverySettings::from_config(&config.recovery),
        key: None,
    };
    let started = Instant::now();
    let manifest = recovery.backup(None).await?;
    let backup = started.elapsed();
    let started = Instant::now();
    let restored = recovery.restore(&manifest.id).await?;
    let restore = started.elapsed();
    // Opening the store adds its own records (a signing key).
    assert!(
        restored.keys >= keys,
        "{} restored of {keys}",
        restored.keys
    );
    let keys = restored.keys;
    println!(
        "RESULT {name}: {keys} keys (filled in {:.1} s), backup {:.2} s, {:.1} MB ({} bytes), restore {:.2} s",
        filled.as_secs_f64(),
        backup.as_secs_f64(),
        manifest.size as f64 / 1e6,
        manifest.size,
        restore.as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sqlite = tempfile::tempdir()?;
        measure(
            "sqlite",
            StoreConfig::Sqlite {
                path: sqlite.path().join("bench.db"),
            },
        )
        .await?;

        let schema = format!("pc_bench_recovery_{}", std::process::id());
        let postgres = measure(
            "postgres",
            StoreConfig::Postgres {
                url: POSTGRES_URL.into(),
                schema: schema.clone(),
                max_connections: 4,
            },
        )
        .await;
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
        postgres?;

        let prefix = format!("pc-bench-recovery:{}:", std::process::id());
        let redis = measure(
            "redis",
            StoreConfig::Redis {
                url: REDIS_URL.into(),
                prefix: prefix.clone(),
                max_connections: 4,
            },
        )
        .await;
        RedisStore::open(REDIS_URL, &prefix, 1)
            .await?
            .purge()
            .await?;
        redis
    })
}
