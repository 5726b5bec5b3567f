//! Reading the change journal, and rolling changes back.
//!
//! A rollback restores the values a change found, if none of its keys was
//! changed since. Otherwise it is refused with the later changes that touch
//! them; with `cascade` those are reverted too, newest first, and so are
//! the changes that touch theirs. Whatever is reverted is reverted in one
//! store transaction with its own journal entry (so a rollback can itself
//! be rolled back), expecting each key's current version; then everything
//! served from the store is read again, here and on the other instances.
//!
//! Owns: which changes a rollback takes, and the values it writes. Must
//! not: know HTTP.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::accounts::Accounts;
use super::catalog::{Catalog, ServiceError};
use super::journal::{self, Change, JOURNAL, KeyChange};
use super::recovery::reload_everything;
use crate::backends::{Expect, Op, Store, StoreError, encode_cursor};

/// Entries a page answers at most.
pub const MAX_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no change `{0}` in the journal")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        message: String,
        conflicts: Vec<Summary>,
    },
    #[error(
        "change `{0}` cannot be rolled back: its values were not all kept (secrets, or too large); restore a backup instead"
    )]
    NotReversible(String),
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        ChangeError::Service(ServiceError::Store(e))
    }
}

/// A change as a conflict lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub id: String,
    pub time: u64,
    pub actor: String,
    pub source: String,
    pub keys: Vec<String>,
}

impl From<&Change> for Summary {
    fn from(c: &Change) -> Self {
        Summary {
            id: c.id.clone(),
            time: c.time,
            actor: c.actor.clone(),
            source: c.source.clone(),
            keys: c.keys.clone(),
        }
    }
}

/// `GET /iam/recovery/changes` filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeQuery {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Entries touching this `<ns>/<key>`, or keys under it when it ends
    /// with `*` (`rbac/*`).
    pub key: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: Option<usize>,
    /// From the previous page's `next`.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// Where the next page starts; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What a rollback did.
#[derive(Debug, Serialize)]
pub struct RolledBack {
    /// The rollback's own journal entry.
    pub rollback: Change,
    /// The changes reverted, newest first.
    pub reverted: Vec<String>,
}

fn decode(key: &str, bytes: &[u8]) -> Result<Change, ChangeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ChangeError::Service(ServiceError::Corrupt {
            what: format!("{JOURNAL}/{key}"),
            message: e.to_string(),
        })
    })
}

fn touches(change: &Change, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => change.keys.iter().any(|k| k.starts_with(prefix)),
        None => change.keys.iter().any(|k| k == pattern),
    }
}

/// One page of the journal, newest first.
pub async fn list_changes(
    store: &dyn Store,
    query: &ChangeQuery,
) -> Result<ChangePage, ChangeError> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ChangeError::Invalid {
            field: "limit".into(),
            message: format!("must be between 1 and {MAX_PAGE}"),
        });
    }
    let mut cursor = query.cursor.clone();
    let mut changes = Vec::new();
    loop {
        let page = store.scan(JOURNAL, "", cursor.as_deref(), 200).await?;
        let last = page.items.len() < 200;
        for (key, item) in page.items {
            cursor = Some(encode_cursor(&key));
            let change = decode(&key, &item.value)?;
            if query.since.is_some_and(|since| change.time < since) {
                return Ok(ChangePage {
                    changes,
                    next: None,
                });
            }
            let wanted = query.until.is_none_or(|until| change.time <= until)
                && query.actor.as_ref().is_none_or(|a| *a == change.actor)
                && query.key.as_ref().is_none_or(|k| touches(&change, k));
            if wanted {
                changes.push(change);
                if changes.len() == limit {
                    return Ok(ChangePage {
                        changes,
                        next: cursor,
                    });
                }
            }
        }
        if last {
            return Ok(ChangePage {
                changes,
                next: None,
            });
        }
    }
}

pub struct Rollback<'a> {
    /// The active store, not journaled: the rollback writes its own entry.
    pub store: &'a dyn Store,
    pub catalog: &'a Catalog,
    pub accounts: &'a Accounts,
}

impl Rollback<'_> {
    pub async fn run(&self, id: &str, cascade: bool) -> Result<RolledBack, ChangeError> {
        let Some(found) = self.store.get(JOURNAL, id).await? else {
            return Err(ChangeError::NotFound(id.to_owned()));
        };
        let target = decode(id, &found.value)?;
        // Every newer entry (ids sort newest first), oldest first.
        let mut newer = Vec::new();
        let mut cursor: Option<String> = None;
        'scan: loop {
            let page = self.store.scan(JOURNAL, "", cursor.as_deref(), 200).await?;
            let last = page.items.len() < 200;
            for (key, item) in page.items {
                if key.as_str() >= id {
                    break 'scan;
                }
                cursor = Some(encode_cursor(&key));
                newer.push(decode(&key, &item.value)?);
            }
            if last {
                break;
            }
        }
        newer.reverse();
        // The later changes that touch its keys, or theirs.
        let mut keys: BTreeSet<String> = target.keys.iter().cloned().collect();
        let mut later = Vec::new();
        for change in newer {
            if change.keys.iter().any(|k| keys.contains(k)) {
                keys.extend(change.keys.iter().cloned());
                later.push(change);
            }
        }
        if !later.is_empty() && !cascade {
            return Err(ChangeError::Conflict {
                message: format!(
                    "{} later change(s) touch the same keys; roll them back first, or pass cascade=true",
                    later.len()
                ),
                conflicts: later.iter().rev().map(Summary::from).collect(),
            });
        }
        let mut all = vec![target];
        all.extend(later);
        if let Some(partial) = all.iter().find(|c| !c.complete) {
            return Err(ChangeError::NotReversible(partial.id.clone()));
        }
        // Per key: the value before the oldest change, and the value after
        // the newest, which must be what the store holds now.
        let mut plan: BTreeMap<(String, String), (Value, Value)> = BTreeMap::new();
        for change in &all {
            for kc in &change.changes {
                plan.entry((kc.ns.clone(), kc.key.clone()))
                    .and_modify(|(_, after)| *after = kc.after.clone())
                    .or_insert((kc.before.clone(), kc.after.clone()));
            }
        }
        let mut ops = Vec::new();
        let mut changes = Vec::new();
        for ((ns, key), (before, after)) in plan {
            let current = self.store.get(&ns, &key).await?;
            let now_shown = journal::show(&ns, current.as_ref().map(|v| v.value.as_slice()));
            if now_shown != after {
                return Err(ChangeError::Conflict {
                    message: format!(
                        "{ns}/{key} was changed outside the journal (a restore or a store switch) since; restore a backup instead"
                    ),
                    conflicts: Vec::new(),
                });
            }
            let held = current.as_ref().map(|v| v.value.as_slice());
            let bytes = journal::stored_bytes(&ns, &before, held)
                .map_err(|()| ChangeError::NotReversible(all[0].id.clone()))?;
            let expect = current
                .as_ref()
                .map_or(Expect::Absent, |v| Expect::Version(v.version));
            match bytes {
                Some(value) => ops.push(Op::Put {
                    ns: ns.clone(),
                    key: key.clone(),
                    value,
                    expect,
                }),
                None if current.is_some() => ops.push(Op::Delete {
                    ns: ns.clone(),
                    key: key.clone(),
                    expect,
                }),
                None => {}
            }
            changes.push(KeyChange {
                ns,
                key,
                before: now_shown,
                after: before,
            });
        }
        let mut reverted: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
        reverted.reverse();
        let entry = journal::entry(changes, true, Some(reverted.clone()));
        journal::transact_with(self.store, ops, &entry)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ChangeError::Conflict {
                    message: "the keys changed while the rollback was being made; try again".into(),
                    conflicts: Vec::new(),
                },
                e => e.into(),
            })?;
        reload_everything(self.catalog, self.accounts).await?;
        tracing::warn!(rollback = %entry.id, reverted = ?reverted, "Changes rolled back.");
        Ok(RolledBack {
            rollback: entry,
            reverted,
        })
    }
}
