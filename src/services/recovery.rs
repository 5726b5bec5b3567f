//! Backups of the active store, and restores from them.
//!
//! A backup is a consistent read of every namespace (writes are held while
//! it is read, as during a store switch), streamed page by page as JSON
//! lines through gzip into `<dir>/<id>.backup.gz`, never whole in memory.
//! Its manifest, `<dir>/<id>.json`, holds the counts per namespace, the
//! size and the SHA-256 of the file.
//!
//! A restore checks the file against its manifest before anything else,
//! backs up the current contents, then replaces them in one store
//! transaction (all or nothing) and reloads everything served from them,
//! here and, through the change bus, on the other instances.
//!
//! Owns: the backup format and the order of a restore. Must not: know HTTP.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::accounts::Accounts;
use super::catalog::{Catalog, ServiceError};
use super::journal::{self, JOURNAL};
use super::recovery_settings::RecoverySettings;
use super::sealed::{Opener, SealKey, Sealer};
use super::tokens::{hex, now, now_nanos, random_id};
use crate::backends::{Expect, Notice, Op, Registry, StoreError};

/// The first line of every backup.
const FORMAT: &str = "portcullis-backup";
const FORMAT_VERSION: u32 = 1;
/// Keys read per store round trip while backing up.
const PAGE: usize = 1000;
/// A progress line about every this many keys of a namespace.
const PROGRESS_EVERY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no backup `{0}`")]
    NotFound(String),
    #[error("backup `{id}` is damaged or was altered: {reason}; nothing was restored")]
    Corrupt { id: String, reason: String },
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("backup `{0}` is encrypted and no `recovery.key` is configured; nothing was restored")]
    KeyRequired(String),
    #[error("backup files could not be written or read: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for RecoveryError {
    fn from(e: StoreError) -> Self {
        RecoveryError::Service(ServiceError::Store(e))
    }
}

/// What a backup holds, kept beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Unix seconds.
    pub created: u64,
    /// The store it was taken from: `sqlite`, `postgres` or `redis`.
    pub store: String,
    /// Bytes of the backup file.
    pub size: u64,
    /// Hex SHA-256 of the backup file.
    pub checksum: String,
    /// Keys per namespace.
    pub namespaces: BTreeMap<String, usize>,
    pub format: u32,
    /// Sealed with the configured key (AES-256-GCM).
    #[serde(default)]
    pub encrypted: bool,
}

/// One stored key, as a backup line.
#[derive(Serialize, Deserialize)]
struct Record {
    ns: String,
    key: String,
    /// Base64 of the stored bytes.
    value: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub restored: Manifest,
    /// The backup of what it replaced.
    pub previous_backup: String,
    pub keys: usize,
    pub duration_ms: u128,
}

pub struct Recovery<'a> {
    pub registry: &'a Arc<Registry>,
    pub catalog: &'a Catalog,
    pub accounts: &'a Accounts,
    /// The settings in force (see [`RecoverySettings::load`]).
    pub settings: RecoverySettings,
    /// `recovery.key`: opens sealed backups, and seals new ones when the
    /// settings say so.
    pub key: Option<&'a SealKey>,
}

/// The size and hex SHA-256 of a file, read in 64 KiB pieces.
fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((size, hex(&hash.finalize())));
        }
        hash.update(&buffer[..n]);
        size += n as u64;
    }
}

/// A backup id: hex and `-` only, so it can name a file.
fn check_id(id: &str) -> Result<(), RecoveryError> {
    let ok =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RecoveryError::NotFound(id.to_owned()))
    }
}

impl Recovery<'_> {
    fn dir(&self) -> &Path {
        &self.settings.dir
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.backup.gz"))
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.json"))
    }

    /// The key new backups are sealed with, if the settings seal them.
    fn sealing_key(&self) -> Result<Option<&SealKey>, RecoveryError> {
        match (self.settings.encrypt, self.key) {
            (false, _) => Ok(None),
            (true, Some(key)) => Ok(Some(key)),
            (true, None) => Err(RecoveryError::Invalid {
                field: "encrypt".into(),
                message: "backups are to be sealed but no `recovery.key` is configured".into(),
            }),
        }
    }

    /// Backs up every namespace of the active store, then deletes the
    /// backups the retention settings no longer keep.
    pub async fn backup(&self, label: Option<String>) -> Result<Manifest, RecoveryError> {
        let manifest = self.backup_only(label).await?;
        self.apply_retention(&manifest.id);
        Ok(manifest)
    }

    /// Deletes the backups retention no longer keeps, never `keep`; a
    /// failure is logged and left for the next backup.
    fn apply_retention(&self, keep: &str) {
        let backups = match self.list() {
            Ok(backups) => backups,
            Err(e) => {
                tracing::warn!(error = %e, "Backups could not be listed for retention.");
                return;
            }
        };
        for expired in self.settings.expired(&backups, keep, now()) {
            let removed = std::fs::remove_file(self.manifest_path(&expired.id))
                .and_then(|()| std::fs::remove_file(self.data_path(&expired.id)));
            match removed {
                Ok(()) => tracing::info!(backup = %expired.id, "Backup deleted by retention."),
                Err(e) => {
                    tracing::warn!(backup = %expired.id, error = %e, "A backup past retention could not be deleted.")
                }
            }
        }
    }

    async fn backup_only(&self, label: Option<String>) -> Result<Manifest, RecoveryError> {
        if let Some(label) = &label
            && (label.chars().count() > 200 || label.chars().any(char::is_control))
        {
            return Err(RecoveryError::Invalid {
                field: "label".into(),
                message: "at most 200 characters, no control characters".into(),
            });
        }
        let key = self.sealing_key()?;
        std::fs::create_dir_all(self.dir())?;
        let created = now();
        // Nanoseconds first, so ids sort in the order backups were taken
        // even within one second (retention keeps the newest by it).
        let id = format!("{:016x}-{}", now_nanos(), random_id());
        let partial = self.dir().join(format!("{id}.partial"));
        let result = self.write_backup(&id, &partial, label, created, key).await;
        if result.is_err() {
            // Best effort: a failed backup leaves no file behind.
            let _ = std::fs::remove_file(&partial);
        }
        let manifest = result?;
        std::fs::rename(&partial, self.data_path(&id))?;
        write_atomically(
            &self.manifest_path(&id),
            &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        )?;
        Ok(manifest)
    }

    async fn write_backup(
        &self,
        id: &str,
        path: &Path,
        label: Option<String>,
        created: u64,
        key: Option<&SealKey>,
    ) -> Result<Manifest, RecoveryError> {
        let started = Instant::now();
        let file = BufWriter::new(File::create(path)?);
        let namespaces = match key {
            Some(key) => {
                let mut out = GzEncoder::new(Sealer::new(file, key)?, Compression::default());
                let namespaces = self.write_records(id, &mut out).await?;
                finish_file(out.finish()?.finish()?)?;
                namespaces
            }
            None => {
                let mut out = GzEncoder::new(file, Compression::default());
                let namespaces = self.write_records(id, &mut out).await?;
                finish_file(out.finish()?)?;
                namespaces
            }
        };
        let (size, checksum) = file_digest(path)?;
        let manifest = Manifest {
            id: id.to_owned(),
            label,
            created,
            store: self.registry.store().kind().to_owned(),
            size,
            checksum,
            namespaces,
            format: FORMAT_VERSION,
            encrypted: key.is_some(),
        };
        tracing::info!(backup = %id, size = manifest.size, encrypted = manifest.encrypted, keys = manifest.namespaces.values().sum::<usize>(), duration_ms = started.elapsed().as_millis() as u64, "Backup written.");
        Ok(manifest)
    }

    /// The header and every key of every namespace, as JSON lines, read
    /// page by page with writes held; answers the counts per namespace.
    async fn write_records(
        &self,
        id: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<BTreeMap<String, usize>, RecoveryError> {
        let store = self.registry.store();
        let header = Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string(&header).unwrap_or_default()
        )?;
        let mut namespaces = BTreeMap::new();
        let _writes_held = self.registry.hold_writes().await;
        for ns in store.namespaces().await? {
            let mut cursor: Option<String> = None;
            let mut count = 0usize;
            loop {
                let page = store.scan(&ns, "", cursor.as_deref(), PAGE).await?;
                for (key, item) in &page.items {
                    let record = Record {
                        ns: ns.clone(),
                        key: key.clone(),
                        value: STANDARD.encode(&item.value),
                    };
                    serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::other)?;
                    out.write_all(b"\n")?;
                }
                count += page.items.len();
                if count % PROGRESS_EVERY < PAGE && page.next.is_some() {
                    tracing::info!(backup = %id, namespace = %ns, keys = count, "Backing up…");
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            tracing::info!(backup = %id, namespace = %ns, keys = count, "Namespace backed up.");
            namespaces.insert(ns, count);
        }
        Ok(namespaces)
    }

    /// The backups in the directory, newest first.
    pub fn list(&self) -> Result<Vec<Manifest>, RecoveryError> {
        let entries = match std::fs::read_dir(self.dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            match self.manifest(id) {
                Ok(manifest) => out.push(manifest),
                Err(e) => {
                    tracing::warn!(backup = %id, error = %e, "Skipping an unreadable backup manifest.")
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    fn manifest(&self, id: &str) -> Result<Manifest, RecoveryError> {
        check_id(id)?;
        let bytes = match std::fs::read(self.manifest_path(id)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RecoveryError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| RecoveryError::Corrupt {
            id: id.to_owned(),
            reason: format!("its manifest is not valid: {e}"),
        })
    }

    /// Replaces the active store's contents with backup `id`, all or
    /// nothing, after checking it and backing up what it replaces.
    pub async fn restore(&self, id: &str) -> Result<Restored, RecoveryError> {
        let started = Instant::now();
        let manifest = self.manifest(id)?;
        let records = self.read_verified(&manifest)?;
        tracing::info!(backup = %id, keys = records.len(), "Backup checked; backing up the current contents before restoring.");
        // Not subject to retention until the next backup: the backup being
        // restored must survive this one.
        let previous = self
            .backup_only(Some(format!("automatic, before restoring {id}")))
            .await?;
        let store = self.registry.store();
        // The journal is history, not state: it stays, and gains a marker.
        let cleared: Vec<String> = store
            .namespaces()
            .await?
            .into_iter()
            .filter(|ns| ns != JOURNAL)
            .collect();
        let marker = journal::marker(
            &format!("restore of backup {id}"),
            cleared.iter().map(|ns| format!("{ns}/*")).collect(),
        );
        let mut ops: Vec<Op> = cleared.into_iter().map(|ns| Op::Clear { ns }).collect();
        let records: Vec<Op> = records
            .into_iter()
            .filter(|op| !matches!(op, Op::Put { ns, .. } if ns == JOURNAL))
            .collect();
        let keys = records.len();
        ops.extend(records);
        journal::transact_with(store.as_ref(), ops, &marker).await?;
        reload_everything(self.catalog, self.accounts).await?;
        tracing::warn!(backup = %id, previous = %previous.id, keys, "Store restored from a backup.");
        Ok(Restored {
            restored: manifest,
            previous_backup: previous.id,
            keys,
            duration_ms: started.elapsed().as_millis(),
        })
    }

    /// The backup's records as puts, after checking the file's size and
    /// SHA-256 against the manifest and its counts against what it holds.
    fn read_verified(&self, manifest: &Manifest) -> Result<Vec<Op>, RecoveryError> {
        let id = &manifest.id;
        let corrupt = |reason: String| RecoveryError::Corrupt {
            id: id.clone(),
            reason,
        };
        let path = self.data_path(id);
        let (size, checksum) = match file_digest(&path) {
            Ok(digest) => digest,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("its data file is missing".into()));
            }
            Err(e) => return Err(e.into()),
        };
        if size != manifest.size || checksum != manifest.checksum {
            return Err(corrupt("its SHA-256 does not match the manifest".into()));
        }
        let file = BufReader::new(File::open(&path)?);
        let sealed: Box<dyn Read + '_> = match (manifest.encrypted, self.key) {
            (false, _) => Box::new(file),
            (true, Some(key)) => {
                Box::new(Opener::new(file, key).map_err(|e| corrupt(e.to_string()))?)
            }
            (true, None) => return Err(RecoveryError::KeyRequired(id.clone())),
        };
        let reader = BufReader::new(GzDecoder::new(sealed));
        let mut lines = reader.lines();
        let header: Header = lines
            .next()
            .ok_or_else(|| corrupt("it is empty".into()))?
            .map_err(|e| corrupt(e.to_string()))
            .and_then(|l| serde_json::from_str(&l).map_err(|e| corrupt(e.to_string())))?;
        if header.format != FORMAT || header.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format {} version {} is not one this server reads",
                header.format, header.version
            )));
        }
        let mut ops = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in lines {
            let line = line.map_err(|e| corrupt(e.to_string()))?;
            let record: Record = serde_json::from_str(&line).map_err(|e| corrupt(e.to_string()))?;
            let value = STANDARD
                .decode(record.value.as_bytes())
                .map_err(|e| corrupt(e.to_string()))?;
            *counts.entry(record.ns.clone()).or_default() += 1;
            ops.push(Op::Put {
                ns: record.ns,
                key: record.key,
                value,
                expect: Expect::Any,
            });
        }
        if counts != manifest.namespaces {
            return Err(corrupt("the keys it holds differ from its manifest".into()));
        }
        Ok(ops)
    }
}

/// Everything served from the store is read again, here and on the other
/// instances (after a restore or a rollback wrote the store directly).
pub(super) async fn reload_everything(
    catalog: &Catalog,
    accounts: &Accounts,
) -> Result<(), ServiceError> {
    catalog.apply(&Notice::Resync).await?;
    catalog.announce_all().await;
    accounts.changed().await;
    if let Err(e) = accounts.load_settings().await {
        tracing::warn!(error = %e, "Account settings could not be read after the store was rewritten.");
    }
    Ok(())
}

/// Flushes a finished backup file to disk.
fn finish_file(mut file: BufWriter<File>) -> std::io::Result<()> {
    file.flush()?;
    file.get_ref().sync_all()
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}
