//! The change journal: every write to the store's records, with who made
//! it, from where, and each key's value before and after, kept in
//! namespace `journal` in the same transaction as the write itself (so a
//! write is never applied without its entry, nor an entry kept for a write
//! that failed).
//!
//! [`Journaled`] wraps the active store for everything the server and the
//! CLI write through. Who and where come from a task-local [`Context`] that
//! the HTTP layer opens for each request (route and, once authenticated,
//! the actor), the CLI for each command, and the scheduler for each sync.
//!
//! Not journaled: one-time and short-lived records (sign-in states,
//! pending MFA challenges, mailed tokens, login-failure counters), sync
//! reports and the journal itself. Values of namespaces holding secrets
//! (signing keys, MFA secrets) are kept only as SHA-256 digests, and an
//! entry holding such a digest cannot be rolled back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::recovery_settings::RecoverySettings;
use super::tokens::{hex, now, now_nanos, random_id};
use super::{Secrecy, secrecy};
use crate::backends::{Expect, Op, ScanPage, Store, StoreError, Versioned};
use crate::config::RecoveryConfig;

/// The namespace of journal entries.
pub const JOURNAL: &str = "journal";

/// Written but never journaled.
const UNJOURNALED: &[&str] = &[
    JOURNAL,
    super::federation::SYNC_RUNS,
    super::identity::OAUTH_STATES,
    super::mfa::MFA_CHALLENGES,
    super::accounts::ACTION_TOKENS,
    super::throttle::LOGIN_FAILURES,
    super::web_sessions::WEB_SESSIONS,
];

/// An entry whose values together pass this many bytes keeps only its
/// keys; it cannot be rolled back (a backup can restore such a change).
const MAX_ENTRY_VALUES: usize = 4 * 1024 * 1024;

/// Keys an entry lists at most.
const MAX_ENTRY_KEYS: usize = 10_000;

tokio::task_local! {
    static CONTEXT: Arc<Context>;
}

/// Who writes, and from where, for the writes of one task.
#[derive(Debug)]
pub struct Context {
    /// `POST /users/{id}`, `cli user create`, `sync 5c1e…`, …
    pub source: String,
    actor: Mutex<Option<String>>,
}

impl Context {
    pub fn new(source: impl Into<String>, actor: Option<String>) -> Arc<Context> {
        Arc::new(Context {
            source: source.into(),
            actor: Mutex::new(actor),
        })
    }
}

/// Runs `work` with `context` as the journal's who and where.
pub async fn within<F: Future>(context: Arc<Context>, work: F) -> F::Output {
    CONTEXT.scope(context, work).await
}

/// Names the caller of the current request (once it is authenticated);
/// `actor` runs only where there is a context (never for decisions).
pub fn set_actor(actor: impl FnOnce() -> String) {
    let _ = CONTEXT.try_with(|c| {
        if let Ok(mut slot) = c.actor.lock() {
            *slot = Some(actor());
        }
    });
}

/// The current `(source, actor)`.
fn current() -> (String, String) {
    CONTEXT
        .try_with(|c| {
            let actor = c.actor.lock().ok().and_then(|a| a.clone());
            (
                c.source.clone(),
                actor.unwrap_or_else(|| "anonymous".into()),
            )
        })
        .unwrap_or_else(|_| ("internal".into(), "system".into()))
}

/// One key's change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyChange {
    pub ns: String,
    pub key: String,
    /// The value before (`null`: absent). JSON values as they are, other
    /// bytes as `{"base64": …}`, secrets as `{"sha256": …}`.
    pub before: Value,
    pub after: Value,
}

/// One journaled write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// Sorts newest first.
    pub id: String,
    /// Unix seconds.
    pub time: u64,
    pub actor: String,
    pub source: String,
    /// Every key written, as `<ns>/<key>`.
    pub keys: Vec<String>,
    /// The values; empty when too large to keep (see `complete`).
    pub changes: Vec<KeyChange>,
    /// Whether before and after values are all here, as they were: only
    /// then can the change be rolled back.
    pub complete: bool,
    /// The change this one rolled back, when it is a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverts: Option<Vec<String>>,
}

/// The id prefix of an entry made at `nanos`: later times sort first.
fn id_prefix(nanos: u64) -> String {
    format!("{:020}", u64::MAX - nanos)
}

/// A new entry id: newer ids sort first (the store scans in key order).
fn new_id() -> String {
    format!("{}-{}", id_prefix(now_nanos()), random_id())
}

/// Journaled writes between two prunes of old entries.
const PRUNE_EVERY: u64 = 256;
/// Entries a prune deletes per transaction.
const PRUNE_BATCH: usize = 500;

/// Deletes the entries made before `cutoff_nanos`; answers how many. They
/// sort after every newer one, so they are found without reading the rest.
pub async fn prune(store: &dyn Store, cutoff_nanos: u64) -> Result<usize, StoreError> {
    let after = crate::backends::encode_cursor(&format!("{}~", id_prefix(cutoff_nanos)));
    let mut removed = 0;
    loop {
        let page = store.scan(JOURNAL, "", Some(&after), PRUNE_BATCH).await?;
        if page.items.is_empty() {
            return Ok(removed);
        }
        let ops: Vec<Op> = page
            .items
            .iter()
            .map(|(key, _)| Op::Delete {
                ns: JOURNAL.into(),
                key: key.clone(),
                expect: Expect::Any,
            })
            .collect();
        removed += ops.len();
        store.transact(ops).await?;
    }
}

/// Deletes the entries older than the journal retention in force (the
/// stored recovery settings over `config`); answers how many.
pub async fn prune_expired(
    store: &dyn Store,
    config: &RecoveryConfig,
) -> Result<usize, StoreError> {
    let days = RecoverySettings::load(store, config)
        .await?
        .journal_retention_days;
    if days == 0 {
        return Ok(0);
    }
    prune(
        store,
        now_nanos().saturating_sub(days * 86_400 * 1_000_000_000),
    )
    .await
}

/// How a stored value appears in the journal.
pub fn show(ns: &str, bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else {
        return Value::Null;
    };
    let digest = |bytes: &[u8]| serde_json::json!({"sha256": hex(&Sha256::digest(bytes))});
    let fields = match secrecy(ns) {
        Secrecy::Whole => return digest(bytes),
        Secrecy::Fields(fields) => fields,
        Secrecy::None => &[],
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut value) if !value.is_null() => {
            for field in fields {
                if let Some(secret) = value.get_mut(*field) {
                    *secret = digest(secret.to_string().as_bytes());
                }
            }
            value
        }
        _ => serde_json::json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

/// The bytes a journal value stands for; `None` for absent. A value
/// journaled as a digest cannot be restored; a record with secret fields
/// takes them from `current`, what the store holds now (a rollback never
/// brings back an old password hash), and cannot be restored without it.
pub(super) fn stored_bytes(
    ns: &str,
    value: &Value,
    current: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, ()> {
    if value.is_null() {
        return Ok(None);
    }
    match secrecy(ns) {
        Secrecy::Whole => return Err(()),
        Secrecy::Fields(fields) => {
            let current: Value = serde_json::from_slice(current.ok_or(())?).map_err(|_| ())?;
            let mut value = value.clone();
            for field in fields {
                let kept = current.get(*field).ok_or(())?.clone();
                *value.get_mut(*field).ok_or(())? = kept;
            }
            return serde_json::to_vec(&value).map(Some).map_err(|_| ());
        }
        Secrecy::None => {}
    }
    if let Some(b64) = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("base64"))
        .and_then(Value::as_str)
    {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Some)
            .map_err(|_| ());
    }
    serde_json::to_vec(value).map(Some).map_err(|_| ())
}

/// The active store, journaling every write that passes through, and
/// pruning entries older than the retention now and then.
pub struct Journaled {
    inner: Arc<dyn Store>,
    /// `[recovery]`, under the stored settings that give the retention.
    recovery: Arc<RecoveryConfig>,
    writes: std::sync::atomic::AtomicU64,
}

impl Journaled {
    pub fn wrap(inner: Arc<dyn Store>, recovery: &RecoveryConfig) -> Arc<dyn Store> {
        Arc::new(Journaled {
            inner,
            recovery: Arc::new(recovery.clone()),
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Every [`PRUNE_EVERY`] journaled writes, old entries are deleted in
    /// the background; a failure is left for the next time.
    fn maybe_prune(&self) {
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !n.is_multiple_of(PRUNE_EVERY) {
            return;
        }
        let store = self.inner.clone();
        let recovery = self.recovery.clone();
        tokio::spawn(async move {
            match prune_expired(store.as_ref(), &recovery).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "Pruned old change-journal entries."),
                Err(e) => tracing::warn!(error = %e, "Could not prune the change journal."),
            }
        });
    }

    /// The entry for `ops`, or `None` when none of them is journaled.
    async fn entry(&self, ops: &[Op]) -> Result<Option<Change>, StoreError> {
        let mut keys: BTreeMap<(String, String), Option<Vec<u8>>> = BTreeMap::new();
        let mut cleared: BTreeSet<String> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Put { ns, key, .. } | Op::Delete { ns, key, .. } => {
                    if !UNJOURNALED.contains(&ns.as_str()) {
                        keys.insert((ns.clone(), key.clone()), None);
                    }
                }
                Op::Clear { ns } => {
                    if !UNJOURNALED.contains(&ns.as_str()) {
                        cleared.insert(ns.clone());
                    }
                }
            }
        }
        if keys.is_empty() && cleared.is_empty() {
            return Ok(None);
        }
        // Values before.
        for ns in &cleared {
            for (key, item) in crate::backends::scan_all(self.inner.as_ref(), ns).await? {
                keys.insert((ns.clone(), key), Some(item.value));
            }
        }
        for ((ns, key), before) in keys.iter_mut() {
            if before.is_none() && !cleared.contains(ns) {
                *before = self.inner.get(ns, key).await?.map(|v| v.value);
            }
        }
        // Values after: apply the ops in order to the befores.
        let mut after: BTreeMap<(String, String), Option<Vec<u8>>> = keys.clone();
        for op in ops {
            match op {
                Op::Put { ns, key, value, .. } => {
                    if let Some(slot) = after.get_mut(&(ns.clone(), key.clone())) {
                        *slot = Some(value.clone());
                    }
                }
                Op::Delete { ns, key, .. } => {
                    if let Some(slot) = after.get_mut(&(ns.clone(), key.clone())) {
                        *slot = None;
                    }
                }
                Op::Clear { ns } => {
                    for ((k_ns, _), slot) in after.iter_mut() {
                        if k_ns == ns {
                            *slot = None;
                        }
                    }
                }
            }
        }
        let mut size = 0;
        let mut changes = Vec::new();
        for ((ns, key), before) in &keys {
            let after = &after[&(ns.clone(), key.clone())];
            if before == after {
                continue;
            }
            size += before.as_ref().map_or(0, Vec::len) + after.as_ref().map_or(0, Vec::len);
            changes.push(KeyChange {
                ns: ns.clone(),
                key: key.clone(),
                before: show(ns, before.as_deref()),
                after: show(ns, after.as_deref()),
            });
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let secret = changes.iter().any(|c| secrecy(&c.ns) == Secrecy::Whole);
        let fits = size <= MAX_ENTRY_VALUES && changes.len() <= MAX_ENTRY_KEYS;
        let mut made = entry(changes, fits && !secret, None);
        // A huge change (a bulk replace) keeps its first keys, no values.
        made.keys.truncate(MAX_ENTRY_KEYS);
        if !fits {
            made.changes.clear();
        }
        Ok(Some(made))
    }
}

#[async_trait]
impl Store for Journaled {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(ns, key).await
    }

    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan(ns, prefix, cursor, limit).await
    }

    async fn transact(&self, mut ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        let Some(entry) = self.entry(&ops).await? else {
            return self.inner.transact(ops).await;
        };
        ops.push(Op::Put {
            ns: JOURNAL.into(),
            key: entry.id.clone(),
            value: serde_json::to_vec(&entry).unwrap_or_default(),
            expect: Expect::Absent,
        });
        let mut done = self.inner.transact(ops).await?;
        done.pop();
        self.maybe_prune();
        Ok(done)
    }

    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        self.inner.import(ns, items).await
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.inner.namespaces().await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

/// Writes `entry` as is (a rollback's, or a restore's marker) with `ops`.
pub async fn transact_with(
    store: &dyn Store,
    mut ops: Vec<Op>,
    entry: &Change,
) -> Result<(), StoreError> {
    ops.push(Op::Put {
        ns: JOURNAL.into(),
        key: entry.id.clone(),
        value: serde_json::to_vec(entry).unwrap_or_default(),
        expect: Expect::Absent,
    });
    store.transact(ops).await.map(|_| ())
}

/// An entry for an event that changed the store as a whole rather than
/// some keys (a restore, a store switch): it names the event and `keys`,
/// holds no values, and so cannot be rolled back.
pub fn marker(what: &str, keys: Vec<String>) -> Change {
    let mut marker = entry(Vec::new(), false, None);
    marker.source = format!("{} ({what})", marker.source);
    marker.keys = keys;
    marker
}

/// A new entry made by this task's context.
pub fn entry(changes: Vec<KeyChange>, complete: bool, reverts: Option<Vec<String>>) -> Change {
    let (source, actor) = current();
    Change {
        id: new_id(),
        time: now(),
        actor,
        source,
        keys: changes
            .iter()
            .map(|c| format!("{}/{}", c.ns, c.key))
            .collect(),
        changes,
        complete,
        reverts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::SqliteStore;

    #[tokio::test]
    async fn writes_are_journaled_with_their_values_and_old_entries_pruned() {
        let raw: Arc<dyn Store> = Arc::new(
            SqliteStore::open(std::path::Path::new(":memory:"))
                .await
                .unwrap(),
        );
        let store = Journaled::wrap(raw.clone(), &RecoveryConfig::default());
        let context = Context::new("test", Some("tester".into()));
        within(context, async {
            store
                .put("rbac", "a", b"{\"n\":1}", Expect::Any)
                .await
                .unwrap();
            store
                .put("rbac", "a", b"{\"n\":2}", Expect::Any)
                .await
                .unwrap();
            // Not journaled, and secret.
            store
                .put("login_failures", "x", b"{}", Expect::Any)
                .await
                .unwrap();
            store
                .put("signing_keys", "k", b"secret", Expect::Any)
                .await
                .unwrap();
        })
        .await;
        let entries = crate::backends::scan_all(raw.as_ref(), JOURNAL)
            .await
            .unwrap();
        let entries: Vec<Change> = entries
            .iter()
            .map(|(_, v)| serde_json::from_slice(&v.value).unwrap())
            .collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
        // Newest first.
        assert_eq!(entries[0].keys, ["signing_keys/k"]);
        assert!(!entries[0].complete);
        assert!(entries[0].changes[0].after["sha256"].is_string());
        assert_eq!(entries[1].changes[0].before, serde_json::json!({"n": 1}));
        assert_eq!(entries[1].changes[0].after, serde_json::json!({"n": 2}));
        assert_eq!(entries[2].actor, "tester");
        assert_eq!(entries[2].source, "test");

        // Nothing is older than an hour ago; everything is older than now.
        let hour = 3_600_000_000_000;
        assert_eq!(prune(raw.as_ref(), now_nanos() - hour).await.unwrap(), 0);
        assert_eq!(prune(raw.as_ref(), now_nanos() + 1).await.unwrap(), 3);
        let left = crate::backends::scan_all(raw.as_ref(), JOURNAL)
            .await
            .unwrap();
        assert!(left.is_empty());
    }
}
