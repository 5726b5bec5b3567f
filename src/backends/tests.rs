//! The store contract, written once against `&dyn Store` so every backend
//! runs the same checks.

use std::sync::Arc;

use super::*;

async fn sqlite() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(Path::new(":memory:")).await.unwrap())
}

use std::path::Path;

#[tokio::test]
async fn put_get_and_versions_increase() {
    let store = sqlite().await;
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
}

#[tokio::test]
async fn stale_version_and_existing_key_conflict() {
    let store = sqlite().await;
    let v1 = store.put("ns", "k", b"one", Expect::Any).await.unwrap();
    store
        .put("ns", "k", b"two", Expect::Version(v1))
        .await
        .unwrap();
    let stale = store.put("ns", "k", b"three", Expect::Version(v1)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let exists = store.put("ns", "k", b"four", Expect::Absent).await;
    assert!(
        matches!(exists, Err(StoreError::Conflict { .. })),
        "{exists:?}"
    );
    assert_eq!(store.get("ns", "k").await.unwrap().unwrap().value, b"two");
}

#[tokio::test]
async fn recreated_key_never_reuses_a_version() {
    let store = sqlite().await;
    let v1 = store.put("ns", "k", b"a", Expect::Absent).await.unwrap();
    assert!(store.delete("ns", "k", Expect::Version(v1)).await.unwrap());
    let v2 = store.put("ns", "k", b"b", Expect::Absent).await.unwrap();
    assert_ne!(v1, v2);
    assert!(!store.delete("ns", "gone", Expect::Any).await.unwrap());
    let missing = store.delete("ns", "gone", Expect::Version(1)).await;
    assert!(matches!(missing, Err(StoreError::Conflict { .. })));
}

#[tokio::test]
async fn scan_pages_through_every_key_in_order() {
    let store = sqlite().await;
    let mut ops = Vec::new();
    for i in 0..250 {
        ops.push(Op::Put {
            ns: "ns".into(),
            key: format!("k{i:04}"),
            value: vec![1],
            expect: Expect::Absent,
        });
    }
    ops.push(Op::Put {
        ns: "ns".into(),
        key: "other".into(),
        value: vec![],
        expect: Expect::Any,
    });
    store.transact(ops).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.scan("ns", "k", cursor.as_deref(), 100).await.unwrap();
        assert!(page.items.len() <= 100);
        seen.extend(page.items.into_iter().map(|(k, _)| k));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..250).map(|i| format!("k{i:04}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(scan_all(store.as_ref(), "ns").await.unwrap().len(), 251);
    assert!(matches!(
        store.scan("ns", "", Some("zz"), 10).await,
        Err(StoreError::BadCursor)
    ));
}

#[tokio::test]
async fn transact_is_all_or_nothing() {
    let store = sqlite().await;
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

    store
        .transact(vec![
            Op::Clear { ns: "ns".into() },
            Op::Put {
                ns: "ns".into(),
                key: "only".into(),
                value: vec![],
                expect: Expect::Absent,
            },
        ])
        .await
        .unwrap();
    let keys: Vec<String> = scan_all(store.as_ref(), "ns")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["only".to_string()]);
    assert_eq!(store.namespaces().await.unwrap(), vec!["ns".to_string()]);
}

#[tokio::test]
async fn concurrent_writers_on_one_version_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap(),
    );
    let v = store.put("ns", "k", b"0", Expect::Absent).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.put("ns", "k", &[i], Expect::Version(v)).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    store.health().await.unwrap();
}
