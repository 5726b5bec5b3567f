//! The store's key and cursor codecs, on SQLite: any keys are written to
//! a namespace, then read back by prefix, page by page through the scan
//! cursors. The pages must hold exactly the keys with that prefix, in
//! byte order, each once (a key with a NUL is refused, with the whole
//! write); every cursor must decode to the key it encodes,
//! and a cursor that decodes must be the one its key encodes to.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::backends::{
    Expect, Op, SqliteStore, Store, StoreError, decode_cursor, encode_cursor,
};

#[derive(Arbitrary, Debug)]
struct Input {
    keys: Vec<String>,
    prefix: String,
    page: u8,
    cursor: String,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = runtime
            .block_on(SqliteStore::open(&dir.path().join("keys.db")))
            .expect("open SQLite");
        Fixture {
            runtime,
            store,
            _dir: dir,
        }
    })
}

fuzz_target!(|input: Input| {
    // The cursor codec on its own.
    if let Ok(key) = decode_cursor(&input.cursor) {
        assert_eq!(encode_cursor(&key), input.cursor, "one encoding per key");
    }
    let fixture = fixture();
    let store = &fixture.store;
    let keys: BTreeSet<String> = input.keys.into_iter().take(64).collect();
    let limit = usize::from(input.page % 8) + 1;
    fixture.runtime.block_on(async {
        let mut ops = vec![Op::Clear { ns: "fuzz".into() }];
        ops.extend(keys.iter().map(|key| Op::Put {
            ns: "fuzz".into(),
            key: key.clone(),
            value: key.as_bytes().to_vec(),
            expect: Expect::Any,
        }));
        // No store holds a NUL: such a write is refused whole.
        let holdable = keys.iter().all(|k| !k.contains('\0'));
        match store.transact(ops).await {
            Ok(_) => assert!(holdable, "a key with a NUL was written"),
            Err(StoreError::InvalidKey(_)) if !holdable => return,
            Err(e) => panic!("write refused: {e:?}"),
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .scan("fuzz", &input.prefix, cursor.as_deref(), limit)
                .await
                .expect("scan");
            assert!(page.items.len() <= limit, "a page holds at most its limit");
            for (key, item) in &page.items {
                assert_eq!(
                    item.value,
                    key.as_bytes(),
                    "the value written under {key:?}"
                );
            }
            seen.extend(page.items.into_iter().map(|(k, _)| k));
            match page.next {
                Some(next) => {
                    let last = decode_cursor(&next).expect("the store's cursor decodes");
                    assert_eq!(Some(&last), seen.last(), "the cursor names the last key");
                    cursor = Some(next);
                }
                None => break,
            }
        }
        let expected: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&input.prefix))
            .collect();
        let seen: Vec<&String> = seen.iter().collect();
        assert_eq!(
            seen, expected,
            "prefix {:?}, pages of {limit}",
            input.prefix
        );
    });
});
