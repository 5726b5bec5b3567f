//! Storage seams: the versioned key-value [`Store`] trait and its
//! implementations, one file per technology.
//!
//! Owns: how Portcullis's state (policies, entities, schema, and later users,
//! keys, grants) is persisted. Must not: interpret the values it stores.
//!
//! Every value carries a version drawn from one store-wide, strictly increasing
//! sequence. Writes state what they expect to find ([`Expect`]) and fail with
//! [`StoreError::Conflict`] otherwise, which gives optimistic concurrency to
//! every caller and makes copying between stores verifiable.

mod bus;
mod cursor;
mod ldap;
mod oidc;
mod postgres;
mod redis;
mod registry;
mod resilience;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use bus::{Notice, RedisBus};
pub use cursor::{decode_cursor, encode_cursor};
pub use ldap::{LdapDirectory, ListedGroup, ListedUser, Listing, UserDetails};
pub use oidc::{Authorization, OidcDirectory};
pub use postgres::{PostgresStore, valid_schema_name};
pub use redis::RedisStore;
pub use registry::{
    ActiveStore, BackendStatus, DEFAULT_BACKEND, Directory, Registry, RegistryError, SwitchReport,
};
pub use resilience::{BackendStats, BreakerState, Guard, Resilient, read_retry, write_retry};
pub use sqlite::SqliteStore;

use crate::config::StoreConfig;

/// One stored value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// What a write expects to find before it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this version.
    Version(u64),
}

/// One operation of an atomic [`Store::transact`].
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        ns: String,
        key: String,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        ns: String,
        key: String,
        expect: Expect,
    },
    /// Removes every key of a namespace.
    Clear { ns: String },
}

impl Op {
    /// Writes `value` as JSON under `ns/key`, whatever is there; a change
    /// that must not overwrite another sets `expect` afterwards.
    pub fn put_json(ns: &str, key: String, value: &impl serde::Serialize) -> Op {
        Op::Put {
            ns: ns.to_owned(),
            key,
            // Plain data structures always serialize.
            value: serde_json::to_vec(value).unwrap_or_default(),
            expect: Expect::Any,
        }
    }

    /// Removes `ns/key` if it is there.
    pub fn remove(ns: &str, key: String) -> Op {
        Op::Delete {
            ns: ns.to_owned(),
            key,
            expect: Expect::Any,
        }
    }
}

/// One page of a [`Store::scan`].
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    pub items: Vec<(String, Versioned)>,
    /// Pass back to continue after the last item; `None` at the end.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict on {ns}/{key}: expected {expected:?}, found {found:?}")]
    Conflict {
        ns: String,
        key: String,
        expected: Expect,
        found: Option<u64>,
    },
    #[error("invalid cursor")]
    BadCursor,
    /// The operation failed on the way; whether it applied is unknown.
    #[error("store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No connection could be had: the operation was never sent.
    #[error("store is unreachable")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend's circuit breaker is open: the call was not attempted.
    #[error("circuit breaker of backend `{0}` is open")]
    CircuitOpen(String),
    #[error("store holds invalid data: {0}")]
    Corrupt(String),
    /// A namespace or key no store can hold (one with a NUL character).
    #[error("invalid key {0:?}: keys and namespaces cannot contain a NUL character")]
    InvalidKey(String),
}

impl StoreError {
    /// Worth trying again: the backend may answer next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Unreachable(_)
        )
    }
}

/// Whether a store can hold `text` as a namespace or key: any UTF-8
/// without NUL. Postgres's `text` cannot hold a NUL and SQLite's string
/// functions stop at one, so every store refuses it alike, and a switch
/// can always copy one store into another.
pub(crate) fn holdable(text: &str) -> bool {
    !text.contains('\0')
}

/// Refuses a write naming a namespace or key no store can hold, before
/// anything is sent.
pub(crate) fn check_ops(ops: &[Op]) -> Result<(), StoreError> {
    for op in ops {
        let (ns, key) = match op {
            Op::Put { ns, key, .. } | Op::Delete { ns, key, .. } => (ns, Some(key)),
            Op::Clear { ns } => (ns, None),
        };
        for text in std::iter::once(ns).chain(key) {
            if !holdable(text) {
                return Err(StoreError::InvalidKey(text.clone()));
            }
        }
    }
    Ok(())
}

/// Like [`check_ops`], for an import.
pub(crate) fn check_items(ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
    std::iter::once(ns)
        .chain(items.iter().map(|(key, _)| key.as_str()))
        .find(|text| !holdable(text))
        .map_or(Ok(()), |text| Err(StoreError::InvalidKey(text.to_owned())))
}

/// The least string above every string that starts with `prefix`: its
/// last character incremented (dropping trailing `char::MAX`es), so a
/// prefix scan is a key range in byte order. `None`: no bound (an empty
/// prefix, or one of only `char::MAX`es).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value: surrogates are not characters.
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// For connection acquisition: nothing was sent, so any op may be retried.
pub(crate) fn unreachable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unreachable(Box::new(e))
}

/// For a failure on the way: the op may or may not have applied.
pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// A version as SQL stores it (signed 64-bit).
pub(crate) fn version_of(raw: i64) -> Result<u64, StoreError> {
    u64::try_from(raw).map_err(|_| StoreError::Corrupt(format!("negative version {raw}")))
}

impl ScanPage {
    /// A page from `limit + 1` fetched items: the extra one only says that
    /// more follow, and the cursor points after the last one kept.
    pub(crate) fn from_overfetch(mut items: Vec<(String, Versioned)>, limit: usize) -> ScanPage {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|(k, _)| encode_cursor(k))
        } else {
            None
        };
        ScanPage { items, next }
    }
}

/// The versioned key-value store. Implemented by SQLite now; Postgres and
/// Redis implement the same contract.
#[async_trait]
pub trait Store: Send + Sync {
    /// The technology, e.g. `"sqlite"`.
    fn kind(&self) -> &'static str;

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `value` and returns its new version. By default a one-op
    /// [`Store::transact`].
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let op = Op::Put {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value: value.to_vec(),
            expect,
        };
        Ok(self.transact(vec![op]).await?[0])
    }

    /// Removes `key`; returns whether it existed. With [`Expect::Version`] a
    /// missing key is a conflict. By default a one-op [`Store::transact`].
    async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<bool, StoreError> {
        let op = Op::Delete {
            ns: ns.to_owned(),
            key: key.to_owned(),
            expect,
        };
        Ok(self.transact(vec![op]).await?[0] == 1)
    }

    /// Keys of `ns` starting with `prefix`, in byte order, after `cursor`.
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError>;

    /// Applies all `ops` or none. Returns one number per op, in order: the new
    /// version of a put, 1 or 0 for whether a delete removed a key, 0 for a clear.
    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError>;

    /// Writes `items` into `ns` keeping their versions (overwriting what is
    /// there), and moves the version sequence past the largest of them so
    /// later writes still get new versions. Used to copy one store into
    /// another during a switch.
    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError>;

    /// Namespaces holding at least one key.
    async fn namespaces(&self) -> Result<Vec<String>, StoreError>;

    /// Cheap round trip proving the store answers.
    async fn health(&self) -> Result<(), StoreError>;
}

/// Reads a whole namespace through [`Store::scan`] pages.
pub async fn scan_all(store: &dyn Store, ns: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
    scan_prefix(store, ns, "").await
}

/// Every key of a namespace that starts with `prefix`, page by page.
pub async fn scan_prefix(
    store: &dyn Store,
    ns: &str,
    prefix: &str,
) -> Result<Vec<(String, Versioned)>, StoreError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.scan(ns, prefix, cursor.as_deref(), 1000).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
}

impl StoreConfig {
    /// Opens the configured store and brings its schema up to date.
    pub async fn build(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            StoreConfig::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path).await?)),
            StoreConfig::Postgres {
                url,
                schema,
                max_connections,
            } => Ok(Arc::new(
                PostgresStore::open(url, schema, *max_connections).await?,
            )),
            StoreConfig::Redis {
                url,
                prefix,
                max_connections,
            } => Ok(Arc::new(
                RedisStore::open(url, prefix, *max_connections as usize).await?,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
