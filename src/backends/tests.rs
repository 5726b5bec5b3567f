//! The store contract, written once against `&dyn Store` and run unchanged
//! against SQLite, Postgres and Redis (the machine's own servers: each test
//! gets its own Postgres schema or Redis key prefix and removes it after).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A store for one test, and how to remove what it created.
struct TestStore {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    None(#[allow(dead_code)] Option<tempfile::TempDir>),
    Postgres(String),
    Redis(Arc<RedisStore>),
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    TestStore {
        store: Arc::new(store),
        cleanup: Cleanup::None(Some(dir)),
    }
}

async fn sqlite_memory() -> TestStore {
    let store = SqliteStore::open(Path::new(":memory:")).await.unwrap();
    TestStore {
        store: Arc::new(store),
        cleanup: Cleanup::None(None),
    }
}

async fn postgres() -> TestStore {
    let schema = format!("pc_test_{}", unique_name());
    let store = PostgresStore::open(POSTGRES_URL, &schema, 8).await.unwrap();
    TestStore {
        store: Arc::new(store),
        cleanup: Cleanup::Postgres(schema),
    }
}

async fn redis() -> TestStore {
    let prefix = format!("pc-test:{}:", unique_name());
    let store = Arc::new(RedisStore::open(REDIS_URL, &prefix, 8).await.unwrap());
    TestStore {
        store: store.clone(),
        cleanup: Cleanup::Redis(store),
    }
}

impl TestStore {
    async fn finish(self) {
        match self.cleanup {
            Cleanup::None(_) => {}
            Cleanup::Postgres(schema) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Cleanup::Redis(store) => store.purge().await.unwrap(),
        }
    }
}

async fn put_get_and_versions_increase(store: &dyn Store) {
    let v1 = store.put("ns", "k", b"one", Expect::Absent).await.unwrap();
    let v2 = store
        .put("ns", "k", b"two", Expect::Version(v1))
        .await
        .unwrap();
    assert!(v2 > v1);
    let got = store.get("ns", "k").await.unwrap().unwrap();
    assert_eq!(
        got,
        Versioned {
            value: b"two".to_vec(),
            version: v2
        }
    );
    assert_eq!(store.get("ns", "missing").await.unwrap(), None);
    assert_eq!(store.get("other", "k").await.unwrap(), None);
    // Binary values survive untouched.
    let binary: Vec<u8> = (0..=255).collect();
    store.put("ns", "bin", &binary, Expect::Any).await.unwrap();
    assert_eq!(store.get("ns", "bin").await.unwrap().unwrap().value, binary);
}

async fn stale_version_and_existing_key_conflict(store: &dyn Store) {
    let v1 = store.put("ns", "k", b"one", Expect::Any).await.unwrap();
    let v2 = store
        .put("ns", "k", b"two", Expect::Version(v1))
        .await
        .unwrap();
    let stale = store.put("ns", "k", b"three", Expect::Version(v1)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { found: Some(f), .. }) if f == v2),
        "{stale:?}"
    );
    let exists = store.put("ns", "k", b"four", Expect::Absent).await;
    assert!(
        matches!(exists, Err(StoreError::Conflict { .. })),
        "{exists:?}"
    );
    let missing = store.put("ns", "nope", b"x", Expect::Version(v2)).await;
    assert!(
        matches!(missing, Err(StoreError::Conflict { found: None, .. })),
        "{missing:?}"
    );
    assert_eq!(store.get("ns", "k").await.unwrap().unwrap().value, b"two");
}

async fn recreated_key_never_reuses_a_version(store: &dyn Store) {
    let v1 = store.put("ns", "k", b"a", Expect::Absent).await.unwrap();
    assert!(store.delete("ns", "k", Expect::Version(v1)).await.unwrap());
    let v2 = store.put("ns", "k", b"b", Expect::Absent).await.unwrap();
    assert!(v2 > v1);
    assert!(!store.delete("ns", "gone", Expect::Any).await.unwrap());
    let missing = store.delete("ns", "gone", Expect::Version(1)).await;
    assert!(matches!(missing, Err(StoreError::Conflict { .. })));
    let stale = store.delete("ns", "k", Expect::Version(v1)).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    assert!(store.get("ns", "k").await.unwrap().is_some());
}

async fn scan_pages_through_every_key_in_order(store: &dyn Store) {
    let mut ops = Vec::new();
    for i in 0..1000 {
        ops.push(Op::Put {
            ns: "ns".into(),
            key: format!("k{i:04}"),
            value: vec![1],
            expect: Expect::Absent,
        });
    }
    for key in ["j", "other", "k", "ключ", "k\u{10FFFF}"] {
        ops.push(Op::Put {
            ns: "ns".into(),
            key: key.into(),
            value: vec![],
            expect: Expect::Any,
        });
    }
    store.transact(ops).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .scan("ns", "k0", cursor.as_deref(), 128)
            .await
            .unwrap();
        assert!(page.items.len() <= 128);
        seen.extend(page.items.into_iter().map(|(k, _)| k));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..1000).map(|i| format!("k{i:04}")).collect();
    assert_eq!(seen, expected);

    let all: Vec<String> = scan_all(store, "ns")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "byte order");
    assert_eq!(all.len(), 1005);
    assert!(matches!(
        store.scan("ns", "", Some("zz"), 10).await,
        Err(StoreError::BadCursor)
    ));
    assert!(
        store
            .scan("empty", "", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Found by the `store_keys` fuzz target: SQLite's `length()` stopped at a
/// NUL, so a prefix with one matched nothing. Now no store holds a NUL, and
/// a prefix scan is a key range: exact for any other character.
async fn nul_keys_are_refused_and_prefixes_are_exact(store: &dyn Store) {
    let put = |key: &str| Op::Put {
        ns: "ns".into(),
        key: key.into(),
        value: key.as_bytes().to_vec(),
        expect: Expect::Any,
    };
    for bad in [
        vec![put("ok"), put("a\0b")],
        vec![Op::Clear { ns: "n\0".into() }],
    ] {
        assert!(matches!(
            store.transact(bad).await,
            Err(StoreError::InvalidKey(_))
        ));
    }
    let versioned = Versioned {
        value: vec![],
        version: 1,
    };
    assert!(matches!(
        store.import("ns", &[("\0".into(), versioned)]).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert!(
        store.get("ns", "ok").await.unwrap().is_none(),
        "all or nothing"
    );
    assert!(store.get("ns", "a\0b").await.unwrap().is_none());
    assert!(
        store
            .scan("ns", "\0", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let keys = [
        "a",
        "a\u{1}",
        "ab",
        "a\u{7f}",
        "a\u{80}",
        "a\u{D7FF}",
        "a\u{E000}",
        "a\u{FFFF}",
        "a\u{10FFFF}",
        "a\u{10FFFF}\u{10FFFF}x",
        "b",
        "\u{10FFFF}",
        "ä",
        "äb",
        "",
    ];
    store
        .transact(keys.iter().map(|k| put(k)).collect())
        .await
        .unwrap();
    for prefix in ["", "a", "a\u{D7FF}", "a\u{10FFFF}", "\u{10FFFF}", "ä", "z"] {
        let mut expected: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        expected.sort_unstable();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .scan("ns", prefix, cursor.as_deref(), 2)
                .await
                .unwrap();
            seen.extend(page.items.into_iter().map(|(k, _)| k));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "prefix {prefix:?}");
    }
}

async fn transact_is_all_or_nothing(store: &dyn Store) {
    let v = store
        .put("ns", "existing", b"x", Expect::Any)
        .await
        .unwrap();
    let result = store
        .transact(vec![
            Op::Put {
                ns: "ns".into(),
                key: "new".into(),
                value: b"n".to_vec(),
                expect: Expect::Absent,
            },
            Op::Delete {
                ns: "ns".into(),
                key: "existing".into(),
                expect: Expect::Any,
            },
            Op::Put {
                ns: "ns".into(),
                key: "existing".into(),
                value: b"y".to_vec(),
                expect: Expect::Version(v),
            },
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict { .. })),
        "{result:?}"
    );
    assert_eq!(store.get("ns", "new").await.unwrap(), None);
    assert_eq!(
        store.get("ns", "existing").await.unwrap().unwrap().version,
        v
    );

    // Later ops see earlier ones: clear, then create what was there.
    let results = store
        .transact(vec![
            Op::Clear { ns: "ns".into() },
            Op::Put {
                ns: "ns".into(),
                key: "existing".into(),
                value: vec![2],
                expect: Expect::Absent,
            },
            Op::Put {
                ns: "ns".into(),
                key: "only".into(),
                value: vec![],
                expect: Expect::Absent,
            },
            Op::Put {
                ns: "other".into(),
                key: "k".into(),
                value: vec![],
                expect: Expect::Any,
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[1] > v && results[2] > results[1]);
    let keys: Vec<String> = scan_all(store, "ns")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["existing".to_string(), "only".to_string()]);
    assert_eq!(
        store.namespaces().await.unwrap(),
        vec!["ns".to_string(), "other".to_string()]
    );
    store.delete("other", "k", Expect::Any).await.unwrap();
    assert_eq!(store.namespaces().await.unwrap(), vec!["ns".to_string()]);
}

async fn concurrent_writers_on_one_version_exactly_one_wins(store: Arc<dyn Store>) {
    for round in 0..3 {
        let key = format!("k{round}");
        let v = store.put("ns", &key, b"0", Expect::Absent).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store.put("ns", &key, &[i], Expect::Version(v)).await
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(version) => winners.push(version),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(
            store.get("ns", &key).await.unwrap().unwrap().version,
            winners[0]
        );
    }
    store.health().await.unwrap();
}

async fn import_keeps_versions_and_later_writes_go_past_them(store: &dyn Store) {
    let item = |value: &[u8], version| Versioned {
        value: value.to_vec(),
        version,
    };
    store
        .put("ns", "existing", b"old", Expect::Any)
        .await
        .unwrap();
    let items: Vec<(String, Versioned)> = (0..2500)
        .map(|i| (format!("k{i:05}"), item(&[1, 2, 3], 10_000 + i)))
        .chain([("existing".to_string(), item(b"new", 7))])
        .collect();
    store.import("ns", &items).await.unwrap();

    let copied = scan_all(store, "ns").await.unwrap();
    assert_eq!(copied.len(), 2501);
    let mut expected = items.clone();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(copied, expected, "same keys, values and versions");
    let next = store
        .put("ns", "later", b"x", Expect::Absent)
        .await
        .unwrap();
    assert!(
        next > 12_499,
        "sequence moved past the imported versions: {next}"
    );
    store
        .put("ns", "existing", b"again", Expect::Version(7))
        .await
        .unwrap();
    assert_eq!(store.namespaces().await.unwrap(), vec!["ns".to_string()]);
}

/// One test per contract clause for one backend.
macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_get_and_versions_increase() {
                let t = super::$backend().await;
                super::put_get_and_versions_increase(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stale_version_and_existing_key_conflict() {
                let t = super::$backend().await;
                super::stale_version_and_existing_key_conflict(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recreated_key_never_reuses_a_version() {
                let t = super::$backend().await;
                super::recreated_key_never_reuses_a_version(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scan_pages_through_every_key_in_order() {
                let t = super::$backend().await;
                super::scan_pages_through_every_key_in_order(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nul_keys_are_refused_and_prefixes_are_exact() {
                let t = super::$backend().await;
                super::nul_keys_are_refused_and_prefixes_are_exact(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn transact_is_all_or_nothing() {
                let t = super::$backend().await;
                super::transact_is_all_or_nothing(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn import_keeps_versions_and_later_writes_go_past_them() {
                let t = super::$backend().await;
                super::import_keeps_versions_and_later_writes_go_past_them(t.store.as_ref()).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_on_one_version_exactly_one_wins() {
                let t = super::$backend().await;
                super::concurrent_writers_on_one_version_exactly_one_wins(t.store.clone()).await;
                t.finish().await;
            }
        }
    };
}

conformance!(sqlite);
conformance!(sqlite_memory);
conformance!(postgres);
conformance!(redis);
