//! Federation sync: users and groups read from the configured LDAP
//! directories and imported as identities, so Cedar sees them (and their
//! group memberships, as entity parents) without asking the directory at
//! decision time.
//!
//! Imported records live in namespace `iam` beside the identity graph
//! (`dir/user/<directory>:<login>`, `dir/group/<directory>:<id>`, and the
//! change-stamp cursor `dir/cursor/<directory>`), so a sync is one
//! versioned catalog change: one transaction, one snapshot swap, announced
//! to every instance. A user the directory disables or no longer holds is
//! kept inactive, never deleted; the built-in guard then denies it
//! everything at once.
//!
//! A `changed` sync reads attributes only of users whose `modifyTimestamp`
//! is at or after the cursor; the listing of every user's DN and of every
//! group still comes whole, which is what finds removals and membership
//! changes. Reports go to namespace `sync_runs`; a lease there keeps two
//! syncs, on any instances, from running at once.
//!
//! Owns: turning a directory listing into identity records, and the run
//! reports. Must not: know HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::catalog::{Catalog, ServiceError};
use super::graph::IAM;
use super::tokens::{now, now_nanos, random_id};
use crate::authz::{
    GROUP_TYPE, USER_TYPE, directory_group_refs, directory_user_attrs, error_chain, portcullis_uid,
};
use crate::backends::{
    Directory, Expect, LdapDirectory, Listing, Op, Registry, StoreError, scan_prefix,
};
use crate::domain::{SyncedGroup, SyncedUser};

/// Run reports and the run lease.
pub const SYNC_RUNS: &str = "sync_runs";
const RUN: &str = "run/";
const LEASE: &str = "lease";
/// A lease left by a process that died mid-run expires after this long.
const LEASE_SECONDS: u64 = 600;
/// Reports kept; older ones are deleted as new ones come.
const KEEP_RUNS: usize = 100;

const USER: &str = "dir/user/";
const GROUP: &str = "dir/group/";
const CURSOR: &str = "dir/cursor/";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no LDAP directory named `{0}` is configured")]
    UnknownDirectory(String),
    #[error("no LDAP directory is configured")]
    NoDirectory,
    #[error("a sync is already running (run {0})")]
    Running(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        SyncError::Service(ServiceError::Store(e))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every user's attributes are read.
    #[default]
    Full,
    /// Only users changed since the last sync are read in full.
    Changed,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// One directory; every LDAP directory when absent.
    #[serde(default)]
    pub directory: Option<String>,
    #[serde(default)]
    pub mode: SyncMode,
    /// Work out and report the changes without writing them.
    #[serde(default)]
    pub dry_run: bool,
}

/// What one run did (or, with `dry_run`, would do). Counts are over users
/// and groups; `disabled` counts users that became inactive, `removed`
/// groups the directory no longer holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncReport {
    pub id: String,
    pub directories: Vec<String>,
    pub mode: SyncMode,
    pub dry_run: bool,
    /// `api`, `cli` or `schedule`.
    pub trigger: String,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub duration_ms: u64,
    /// `succeeded`, or `failed` when any directory could not be synced
    /// (its changes are then not written; the others' are).
    pub status: String,
    pub created: usize,
    pub updated: usize,
    pub disabled: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub errors: Vec<String>,
    /// Things worth knowing that are not errors.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The counts of one directory's plan.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    created: usize,
    updated: usize,
    disabled: usize,
    unchanged: usize,
    removed: usize,
}

/// What a sync imported, as the catalog serves it (part of the graph).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectoryState {
    /// By `<directory>:<login>`.
    pub users: BTreeMap<String, SyncedUser>,
    /// By `<directory>:<group id>`.
    pub groups: BTreeMap<String, SyncedGroup>,
    /// The newest `modifyTimestamp` each directory's last sync saw.
    pub cursors: BTreeMap<String, String>,
}

impl DirectoryState {
    /// Takes in one stored key of namespace `iam`; `false` when the key is
    /// not a directory record.
    pub(super) fn absorb(&mut self, key: &str, value: &[u8]) -> Result<bool, serde_json::Error> {
        if let Some(id) = key.strip_prefix(USER) {
            self.users
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(id) = key.strip_prefix(GROUP) {
            self.groups
                .insert(id.to_owned(), serde_json::from_slice(value)?);
        } else if let Some(directory) = key.strip_prefix(CURSOR) {
            let cursor: Cursor = serde_json::from_slice(value)?;
            self.cursors.insert(directory.to_owned(), cursor.stamp);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The imported users and groups as entities: `(uid, attributes,
    /// parents)`. A user always carries `active`, which is how the
    /// resolver tells an imported user from one RBAC merely names.
    pub fn entities(
        &self,
    ) -> impl Iterator<Item = (cedar_policy::EntityUid, Map<String, Value>, Vec<Value>)> {
        let users = self.users.values().map(|u| {
            (
                portcullis_uid(USER_TYPE, &u.user_id()),
                directory_user_attrs(u.email.as_deref(), u.name.as_deref(), u.active),
                directory_group_refs(&u.directory, &u.member_of),
            )
        });
        let groups = self.groups.values().map(|g| {
            let mut attrs = Map::new();
            attrs.insert("name".into(), json!(g.id));
            (
                portcullis_uid(GROUP_TYPE, &g.group_id()),
                attrs,
                directory_group_refs(&g.directory, &g.parents),
            )
        });
        users.chain(groups)
    }

    /// Whether `id` (`<directory>:<login>`) was imported and is inactive.
    pub fn inactive(&self, id: &str) -> bool {
        self.users.get(id).is_some_and(|u| !u.active)
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    stamp: String,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    run: String,
    expires_at: u64,
}

/// Runs syncs against the active store.
pub struct Federation<'a> {
    pub registry: &'a Registry,
    pub catalog: &'a Catalog,
}

impl Federation<'_> {
    /// The LDAP directories a request names.
    fn directories(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<(String, &std::sync::Arc<LdapDirectory>)>, SyncError> {
        let all = self.registry.directories();
        match name {
            Some(name) => match all.get(name) {
                Some(Directory::Ldap(ldap)) => Ok(vec![(name.to_owned(), ldap)]),
                _ => Err(SyncError::UnknownDirectory(name.to_owned())),
            },
            None => {
                let ldap: Vec<_> = all
                    .iter()
                    .filter_map(|(name, d)| match d {
                        Directory::Ldap(ldap) => Some((name.clone(), ldap)),
                        Directory::Oidc(_) => None,
                    })
                    .collect();
                if ldap.is_empty() {
                    Err(SyncError::NoDirectory)
                } else {
                    Ok(ldap)
                }
            }
        }
    }

    /// Runs one sync and keeps its report. A directory that cannot be read
    /// fails the run (its error is in the report) and changes nothing.
    pub async fn run(&self, request: &SyncRequest, trigger: &str) -> Result<SyncReport, SyncError> {
        let directories = self.directories(request.directory.as_deref())?;
        let id = random_id();
        let lease = self.acquire(&id).await?;
        let clock = Instant::now();
        let mut report = SyncReport {
            id: id.clone(),
            directories: directories.iter().map(|(name, _)| name.clone()).collect(),
            mode: request.mode,
            dry_run: request.dry_run,
            trigger: trigger.to_owned(),
            started: now(),
            status: "succeeded".into(),
            ..SyncReport::default()
        };
        for (name, ldap) in directories {
            let span =
                tracing::info_span!("sync.directory", directory = %name, mode = ?request.mode);
            let _enter = span.enter();
            match self.sync_one(&name, ldap, request, &mut report.notes).await {
                Ok(counts) => {
                    report.created += counts.created;
                    report.updated += counts.updated;
                    report.disabled += counts.disabled;
                    report.unchanged += counts.unchanged;
                    report.removed += counts.removed;
                }
                Err(e) => {
                    tracing::warn!(directory = %name, error = %e, "Sync of a directory failed; nothing of it was written.");
                    report.status = "failed".into();
                    report.errors.push(format!("{name}: {}", error_chain(&e)));
                }
            }
        }
        report.finished = now();
        report.duration_ms = clock.elapsed().as_millis() as u64;
        let kept = self.keep(&report).await;
        self.release(lease).await;
        kept?;
        tracing::info!(run = %report.id, status = %report.status, created = report.created, updated = report.updated, disabled = report.disabled, unchanged = report.unchanged, removed = report.removed, duration_ms = report.duration_ms, "Sync finished.");
        Ok(report)
    }

    async fn sync_one(
        &self,
        name: &str,
        ldap: &LdapDirectory,
        request: &SyncRequest,
        notes: &mut Vec<String>,
    ) -> Result<Counts, SyncError> {
        let served = self.catalog.rbac();
        let mut since = match request.mode {
            SyncMode::Full => None,
            SyncMode::Changed => {
                let cursor = served.graph.directory.cursors.get(name).cloned();
                if cursor.is_none() {
                    notes.push(format!(
                        "{name}: no earlier sync to compare with: read in full"
                    ));
                }
                cursor
            }
        };
        loop {
            let listing = ldap.listing(since.as_deref()).await?;
            let outcome = if request.dry_run {
                plan(&self.catalog.rbac().graph.directory, &listing).map(|(_, _, counts)| counts)
            } else {
                self.catalog
                    .change_rbac(|state| {
                        let (directory, ops, counts) = plan(&state.graph.directory, &listing)?;
                        let mut next = state.clone();
                        next.graph.directory = directory;
                        Ok::<_, PlanError>((next, ops, counts))
                    })
                    .await
            };
            match outcome {
                Ok(counts) => return Ok(counts),
                // Users the store does not hold changed before the cursor
                // (the store was restored or rolled back): read everyone.
                Err(PlanError::NeedsFull) if since.is_some() => {
                    notes.push(format!(
                        "{name}: the store lacks users older than the cursor: read in full"
                    ));
                    since = None;
                }
                Err(PlanError::NeedsFull) => {
                    return Err(SyncError::Service(ServiceError::Corrupt {
                        what: format!("directory {name}"),
                        message: "a full listing lacked user attributes".into(),
                    }));
                }
                Err(PlanError::Service(e)) => return Err(e.into()),
            }
        }
    }

    /// Takes the run lease: the store holds at most one unexpired lease.
    async fn acquire(&self, run: &str) -> Result<u64, SyncError> {
        let store = self.catalog.store();
        let lease = serde_json::to_vec(&Lease {
            run: run.to_owned(),
            expires_at: now() + LEASE_SECONDS,
        })
        .unwrap_or_default();
        match store.put(SYNC_RUNS, LEASE, &lease, Expect::Absent).await {
            Ok(version) => return Ok(version),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(held) = store.get(SYNC_RUNS, LEASE).await? else {
            return Err(SyncError::Running("just finished".into()));
        };
        let holder: Option<Lease> = serde_json::from_slice(&held.value).ok();
        if let Some(holder) = &holder
            && holder.expires_at > now()
        {
            return Err(SyncError::Running(holder.run.clone()));
        }
        // Expired (its holder died): take it over, unless another run just did.
        store
            .put(SYNC_RUNS, LEASE, &lease, Expect::Version(held.version))
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => SyncError::Running("another".into()),
                e => e.into(),
            })
    }

    async fn release(&self, version: u64) {
        if let Err(e) = self
            .catalog
            .store()
            .delete(SYNC_RUNS, LEASE, Expect::Version(version))
            .await
        {
            tracing::warn!(error = %e, "Could not release the sync lease; it expires by itself.");
        }
    }

    /// Stores the report and deletes the oldest beyond [`KEEP_RUNS`].
    async fn keep(&self, report: &SyncReport) -> Result<(), SyncError> {
        let store = self.catalog.store();
        // Keys sort as the runs finished: nanoseconds, then the id.
        let key = format!("{RUN}{:020}-{}", now_nanos(), report.id);
        let value = serde_json::to_vec(report).unwrap_or_default();
        store.put(SYNC_RUNS, &key, &value, Expect::Any).await?;
        let runs = scan_prefix(store.as_ref(), SYNC_RUNS, RUN).await?;
        let excess = runs.len().saturating_sub(KEEP_RUNS);
        for (key, _) in runs.into_iter().take(excess) {
            store.delete(SYNC_RUNS, &key, Expect::Any).await?;
        }
        Ok(())
    }

    /// The kept reports, newest first.
    pub async fn runs(&self, limit: usize) -> Result<Vec<SyncReport>, SyncError> {
        let runs = scan_prefix(self.catalog.store().as_ref(), SYNC_RUNS, RUN).await?;
        runs.into_iter()
            .rev()
            .take(limit)
            .map(|(key, v)| {
                serde_json::from_slice(&v.value).map_err(|e| {
                    SyncError::Service(ServiceError::Corrupt {
                        what: format!("{SYNC_RUNS}/{key}"),
                        message: e.to_string(),
                    })
                })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum PlanError {
    #[error("the listing lacks attributes of users the store does not hold")]
    NeedsFull,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The directory's records after applying `listing` to `current`, the
/// store writes that make them, and the counts.
fn plan(
    current: &DirectoryState,
    listing: &Listing,
) -> Result<(DirectoryState, Vec<Op>, Counts), PlanError> {
    let directory = listing.directory.as_str();
    let mut counts = Counts::default();
    let mut ops = Vec::new();
    let group_dns: HashMap<&str, &str> = listing
        .groups
        .iter()
        .map(|g| (g.dn.as_str(), g.id.as_str()))
        .collect();
    // Direct groups of every member DN (users and groups alike).
    let mut groups_of: HashMap<&str, BTreeSet<String>> = HashMap::new();
    if listing.by_member_of {
        for group in &listing.groups {
            let parents = groups_of.entry(group.dn.as_str()).or_default();
            parents.extend(
                group
                    .member_of
                    .iter()
                    .filter_map(|dn| group_dns.get(dn.as_str()).map(|id| (*id).to_owned())),
            );
        }
        for user in &listing.users {
            let parents = groups_of.entry(user.dn.as_str()).or_default();
            parents.extend(
                user.member_of
                    .iter()
                    .filter_map(|dn| group_dns.get(dn.as_str()).map(|id| (*id).to_owned())),
            );
        }
    } else {
        for group in &listing.groups {
            for member in &group.members {
                groups_of
                    .entry(member.as_str())
                    .or_default()
                    .insert(group.id.clone());
            }
        }
    }
    let mut next = current.clone();
    next.users.retain(|_, u| u.directory != directory);
    next.groups.retain(|_, g| g.directory != directory);

    let mut seen_groups = BTreeSet::new();
    for group in &listing.groups {
        if !seen_groups.insert(group.id.as_str()) {
            continue; // two groups with one name: the first one stands
        }
        let record = SyncedGroup {
            directory: directory.to_owned(),
            id: group.id.clone(),
            dn: group.dn.clone(),
            parents: groups_of
                .get(group.dn.as_str())
                .map(|p| p.iter().filter(|id| **id != group.id).cloned().collect())
                .unwrap_or_default(),
        };
        let id = record.group_id();
        match current.groups.get(&id) {
            None => counts.created += 1,
            Some(old) if *old == record => counts.unchanged += 1,
            Some(_) => counts.updated += 1,
        }
        if current.groups.get(&id) != Some(&record) {
            ops.push(Op::put_json(IAM, format!("{GROUP}{id}"), &record));
        }
        next.groups.insert(id, record);
    }
    for (id, group) in &current.groups {
        if group.directory == directory && !next.groups.contains_key(id) {
            counts.removed += 1;
            ops.push(Op::remove(IAM, format!("{GROUP}{id}")));
        }
    }

    let mut newest = current.cursors.get(directory).cloned();
    let mut stamp = |modified: &Option<String>| {
        if let Some(m) = modified
            && newest.as_ref().is_none_or(|n| m > n)
        {
            newest = Some(m.clone());
        }
    };
    for group in &listing.groups {
        stamp(&group.modified);
    }
    for user in &listing.users {
        stamp(&user.modified);
        let id = crate::domain::qualified(directory, &user.username);
        if next.users.contains_key(&id) {
            continue; // two entries with one login name: the first stands
        }
        let old = current.users.get(&id);
        let (email, name) = match (&user.details, old) {
            (Some(d), _) => (d.email.clone(), d.name.clone()),
            (None, Some(old)) => (old.email.clone(), old.name.clone()),
            (None, None) => return Err(PlanError::NeedsFull),
        };
        let disabled = listing.disabled.contains(&user.dn);
        let record = SyncedUser {
            directory: directory.to_owned(),
            subject: user.username.clone(),
            dn: user.dn.clone(),
            email,
            name,
            member_of: groups_of
                .get(user.dn.as_str())
                .map(|g| g.iter().cloned().collect())
                .unwrap_or_default(),
            active: !disabled,
            inactive_reason: disabled.then(|| "disabled".to_owned()),
        };
        count_user(&mut counts, old, &record);
        if old != Some(&record) {
            ops.push(Op::put_json(IAM, format!("{USER}{id}"), &record));
        }
        next.users.insert(id, record);
    }
    for (id, user) in &current.users {
        if user.directory == directory && !next.users.contains_key(id) {
            let gone = SyncedUser {
                active: false,
                inactive_reason: Some("gone".into()),
                member_of: Vec::new(),
                ..user.clone()
            };
            count_user(&mut counts, Some(user), &gone);
            if *user != gone {
                ops.push(Op::put_json(IAM, format!("{USER}{id}"), &gone));
            }
            next.users.insert(id.clone(), gone);
        }
    }
    if let Some(stamp) = newest {
        if current.cursors.get(directory) != Some(&stamp) {
            ops.push(Op::put_json(
                IAM,
                format!("{CURSOR}{directory}"),
                &Cursor {
                    stamp: stamp.clone(),
                },
            ));
        }
        next.cursors.insert(directory.to_owned(), stamp);
    }
    Ok((next, ops, counts))
}

fn count_user(counts: &mut Counts, old: Option<&SyncedUser>, new: &SyncedUser) {
    match old {
        None => counts.created += 1,
        Some(old) if old == new => counts.unchanged += 1,
        Some(old) if old.active && !new.active => counts.disabled += 1,
        Some(_) => counts.updated += 1,
    }
}
