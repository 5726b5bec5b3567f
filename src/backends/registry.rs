//! The backend registry: named stores from config, the one that is active,
//! and the runtime switch between them.
//!
//! Everything else reaches the store through [`ActiveStore`], which reads
//! from the active store and passes writes through a gate. A switch closes
//! the gate (writes wait, none fail), copies every namespace with its
//! versions, verifies the copy key by key, records the choice in the state
//! file, flips the active pointer and opens the gate. The store switched
//! away from stays open, holding the data as of the switch, so a switch
//! back is another copy the other way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Mutex, OnceCell, RwLock};

use super::ldap::LdapDirectory;
use super::oidc::OidcDirectory;
use super::resilience::{BreakerState, Guard, Resilient};
use super::{Expect, Op, ScanPage, Store, StoreError, Versioned, scan_all};
use crate::config::{BackendConfig, DirectoryConfig, ResilienceConfig, StoreConfig};

/// The name of the `[store]` backend.
pub const DEFAULT_BACKEND: &str = "default";

/// How long opening a backend may take before it counts as unavailable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no backend named `{0}` is configured")]
    UnknownBackend(String),
    #[error("backend `{0}` is already the active store")]
    AlreadyActive(String),
    #[error("backend `{name}` is a {kind} directory, not a store")]
    NotAStore { name: String, kind: &'static str },
    #[error("backend `{name}` is unavailable")]
    Unavailable {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("copy to `{name}` failed")]
    Copy {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("copy to `{name}` does not match the source: {detail}")]
    Verify { name: String, detail: String },
    #[error("cannot record the active store in {path}")]
    StateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Slot {
    config: StoreConfig,
    resilience: ResilienceConfig,
    store: OnceCell<Arc<Resilient>>,
}

impl Slot {
    /// The backend behind its resilience wrapper, opened on first use.
    async fn connect(&self, name: &str) -> Result<Arc<Resilient>, RegistryError> {
        let unavailable = |source| RegistryError::Unavailable {
            name: name.to_owned(),
            source,
        };
        self.store
            .get_or_try_init(|| async {
                let store = tokio::time::timeout(OPEN_TIMEOUT, self.config.build())
                    .await
                    .map_err(|_| StoreError::Unavailable("timed out opening the store".into()))??;
                Ok(Arc::new(Resilient::new(name, store, &self.resilience)))
            })
            .await
            .cloned()
            .map_err(unavailable)
    }

    fn kind(&self) -> &'static str {
        self.config.kind()
    }
}

/// An identity directory. Opening one connects to nothing: each call
/// connects as it needs.
#[derive(Clone)]
pub enum Directory {
    Ldap(Arc<LdapDirectory>),
    Oidc(Arc<OidcDirectory>),
}

impl Directory {
    fn open(
        name: &str,
        config: &DirectoryConfig,
        resilience: &ResilienceConfig,
    ) -> Result<Directory, RegistryError> {
        Ok(match config {
            DirectoryConfig::Ldap(c) => {
                Directory::Ldap(Arc::new(LdapDirectory::new(name, c.clone(), resilience)))
            }
            DirectoryConfig::Oidc(c) => Directory::Oidc(Arc::new(
                OidcDirectory::new(name, c.clone(), resilience).map_err(|source| {
                    RegistryError::Unavailable {
                        name: name.to_owned(),
                        source,
                    }
                })?,
            )),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Directory::Ldap(_) => "ldap",
            Directory::Oidc(_) => "oidc",
        }
    }

    fn guard(&self) -> &Guard {
        match self {
            Directory::Ldap(d) => &d.guard,
            Directory::Oidc(d) => &d.guard,
        }
    }

    pub async fn health(&self) -> Result<(), StoreError> {
        match self {
            Directory::Ldap(d) => d.health().await,
            Directory::Oidc(d) => d.health().await,
        }
    }
}

struct Active {
    name: String,
    store: Arc<Resilient>,
}

pub struct Registry {
    slots: BTreeMap<String, Slot>,
    directories: BTreeMap<String, Directory>,
    active: ArcSwap<Active>,
    previous: ArcSwapOption<Active>,
    /// Writes hold it shared; a switch holds it exclusively.
    gate: RwLock<()>,
    switching: Mutex<()>,
    state_file: PathBuf,
}

/// One backend as `GET /storage/backends` shows it.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub kind: &'static str,
    /// `active`, `previous` (holds the data as of the last switch),
    /// `standby` (another store) or `directory`.
    pub role: &'static str,
    /// `up` or `down`.
    pub health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `closed`, `half_open` or `open`; absent until the backend was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerState>,
    /// Retried calls and calls that failed after their retries.
    pub retries: u64,
    pub failures: u64,
}

/// What a switch did.
#[derive(Debug, Serialize)]
pub struct SwitchReport {
    pub from: String,
    pub to: String,
    /// Keys copied, per namespace.
    pub namespaces: BTreeMap<String, usize>,
    pub keys: usize,
    /// How long writes were held.
    pub duration_ms: u128,
}

impl Registry {
    /// Opens the active store: the one the state file names, or `[store]`.
    /// Other backends open when first needed.
    pub async fn open(
        default: &StoreConfig,
        backends: &BTreeMap<String, BackendConfig>,
        state_file: &Path,
        resilience: &ResilienceConfig,
    ) -> Result<Arc<Registry>, RegistryError> {
        let slot = |config: &StoreConfig| Slot {
            config: config.clone(),
            resilience: resilience.clone(),
            store: OnceCell::new(),
        };
        let mut slots = BTreeMap::new();
        let mut directories = BTreeMap::new();
        slots.insert(DEFAULT_BACKEND.to_owned(), slot(default));
        for (name, config) in backends {
            match config {
                BackendConfig::Store(store) => {
                    slots.insert(name.clone(), slot(store));
                }
                BackendConfig::Directory(directory) => {
                    directories.insert(name.clone(), Directory::open(name, directory, resilience)?);
                }
            }
        }
        let recorded = match std::fs::read_to_string(state_file) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(RegistryError::StateFile {
                    path: state_file.to_owned(),
                    source,
                });
            }
        };
        // A recorded backend that is no longer configured is an error, not
        // a fallback: serving from another store would serve stale data.
        let name = recorded.unwrap_or_else(|| DEFAULT_BACKEND.to_owned());
        if let Some(directory) = directories.get(&name) {
            return Err(RegistryError::NotAStore {
                name,
                kind: directory.kind(),
            });
        }
        let slot = slots
            .get(&name)
            .ok_or_else(|| RegistryError::UnknownBackend(name.clone()))?;
        let store = slot.connect(&name).await?;
        Ok(Arc::new(Registry {
            slots,
            directories,
            active: ArcSwap::from_pointee(Active { name, store }),
            previous: ArcSwapOption::empty(),
            gate: RwLock::new(()),
            switching: Mutex::new(()),
            state_file: state_file.to_owned(),
        }))
    }

    /// The store everything else uses: always the active one.
    pub fn store(self: &Arc<Self>) -> Arc<dyn Store> {
        Arc::new(ActiveStore {
            registry: self.clone(),
        })
    }

    pub fn active_name(&self) -> String {
        self.active.load().name.clone()
    }

    /// The directory named `name`.
    pub fn directory(&self, name: &str) -> Option<&Directory> {
        self.directories.get(name)
    }

    pub fn directories(&self) -> &BTreeMap<String, Directory> {
        &self.directories
    }

    /// Breaker state, retries and failures of every directory and every
    /// store opened so far, without calling any of them (for `/metrics`
    /// and `/health`).
    pub fn breakers(&self) -> Vec<(String, BreakerState, u64, u64)> {
        let stores = self.slots.iter().filter_map(|(name, slot)| {
            let (breaker, retries, failures) = slot.store.get()?.status();
            Some((name.clone(), breaker, retries, failures))
        });
        let directories = self.directories.iter().map(|(name, directory)| {
            let (breaker, retries, failures) = directory.guard().status();
            (name.clone(), breaker, retries, failures)
        });
        stores.chain(directories).collect()
    }

    /// Every backend's status; their health checks run concurrently, so one
    /// slow or unreachable backend does not delay the others.
    pub async fn backends(&self) -> Vec<BackendStatus> {
        let active = self.active_name();
        let previous = self.previous.load().as_ref().map(|p| p.name.clone());
        let checks = self.slots.iter().map(|(name, slot)| async {
            let opened = slot.connect(name).await;
            let health = match &opened {
                Ok(store) => store.health().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let (breaker, retries, failures) = match opened.as_deref().ok().map(Resilient::status) {
                Some((breaker, retries, failures)) => (Some(breaker), retries, failures),
                None => (None, 0, 0),
            };
            BackendStatus {
                name: name.clone(),
                kind: slot.kind(),
                role: if *name == active {
                    "active"
                } else if previous.as_deref() == Some(name) {
                    "previous"
                } else {
                    "standby"
                },
                health: if health.is_ok() { "up" } else { "down" },
                error: health.err(),
                breaker,
                retries,
                failures,
            }
        });
        let directory_checks = self.directories.iter().map(|(name, directory)| async {
            let health = directory.health().await.map_err(|e| e.to_string());
            let (breaker, retries, failures) = directory.guard().status();
            BackendStatus {
                name: name.clone(),
                kind: directory.kind(),
                role: "directory",
                health: if health.is_ok() { "up" } else { "down" },
                error: health.err(),
                breaker: Some(breaker),
                retries,
                failures,
            }
        });
        let (mut stores, directories) = futures_util::future::join(
            futures_util::future::join_all(checks),
            futures_util::future::join_all(directory_checks),
        )
        .await;
        stores.extend(directories);
        stores.sort_by(|a, b| a.name.cmp(&b.name));
        stores
    }

    /// Holds every write through the registry until the guard drops, for a
    /// consistent read of the whole store (a backup). Reads go on.
    pub async fn hold_writes(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Makes `name` the active store, losing no write.
    pub async fn switch(&self, name: &str) -> Result<SwitchReport, RegistryError> {
        let _one_at_a_time = self.switching.lock().await;
        if let Some(directory) = self.directories.get(name) {
            return Err(RegistryError::NotAStore {
                name: name.to_owned(),
                kind: directory.kind(),
            });
        }
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| RegistryError::UnknownBackend(name.to_owned()))?;
        if self.active.load().name == name {
            return Err(RegistryError::AlreadyActive(name.to_owned()));
        }
        let target = slot.connect(name).await?;
        target
            .health()
            .await
            .map_err(|source| RegistryError::Unavailable {
                name: name.to_owned(),
                source,
            })?;

        let _writes_held = self.gate.write().await;
        let started = Instant::now();
        let source = self.active.load_full();
        tracing::info!(from = %source.name, to = %name, "Switching the active store; writes are held until the copy is verified.");
        let namespaces = self.copy(&source.store, &target, name).await?;
        self.record(name)?;
        self.previous.store(Some(source.clone()));
        self.active.store(Arc::new(Active {
            name: name.to_owned(),
            store: target,
        }));
        let report = SwitchReport {
            from: source.name.clone(),
            to: name.to_owned(),
            keys: namespaces.values().sum(),
            namespaces,
            duration_ms: started.elapsed().as_millis(),
        };
        tracing::info!(from = %report.from, to = %report.to, keys = report.keys, duration_ms = report.duration_ms as u64, "Active store switched.");
        Ok(report)
    }

    /// Empties `target`, copies every namespace of `source` into it with
    /// versions, and checks the copy key by key.
    async fn copy(
        &self,
        source: &Arc<Resilient>,
        target: &Arc<Resilient>,
        name: &str,
    ) -> Result<BTreeMap<String, usize>, RegistryError> {
        let failed = |source| RegistryError::Copy {
            name: name.to_owned(),
            source,
        };
        let stale = target.namespaces().await.map_err(failed)?;
        if !stale.is_empty() {
            let clears = stale.into_iter().map(|ns| Op::Clear { ns }).collect();
            target.transact(clears).await.map_err(failed)?;
        }
        let mut copied = BTreeMap::new();
        for ns in source.namespaces().await.map_err(failed)? {
            let items = scan_all(source.as_ref(), &ns).await.map_err(failed)?;
            for chunk in items.chunks(5000) {
                target.import(&ns, chunk).await.map_err(failed)?;
            }
            let check = scan_all(target.as_ref(), &ns).await.map_err(failed)?;
            if check != items {
                return Err(RegistryError::Verify {
                    name: name.to_owned(),
                    detail: format!(
                        "namespace `{ns}`: {} keys in the source, {} in the copy, or versions differ",
                        items.len(),
                        check.len()
                    ),
                });
            }
            tracing::info!(namespace = %ns, keys = items.len(), "Namespace copied and verified.");
            copied.insert(ns, items.len());
        }
        let target_namespaces = target.namespaces().await.map_err(failed)?;
        if target_namespaces.len() != copied.len() {
            return Err(RegistryError::Verify {
                name: name.to_owned(),
                detail: format!(
                    "{} namespaces copied, the copy has {}",
                    copied.len(),
                    target_namespaces.len()
                ),
            });
        }
        Ok(copied)
    }

    /// Writes the active backend's name, atomically (temp file + rename).
    fn record(&self, name: &str) -> Result<(), RegistryError> {
        let failed = |source| RegistryError::StateFile {
            path: self.state_file.clone(),
            source,
        };
        if let Some(dir) = self
            .state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let temp = self.state_file.with_extension("tmp");
        std::fs::write(&temp, format!("{name}\n")).map_err(failed)?;
        std::fs::rename(&temp, &self.state_file).map_err(failed)
    }
}

/// The active store, whichever it is; writes wait while a switch runs.
pub struct ActiveStore {
    registry: Arc<Registry>,
}

impl ActiveStore {
    fn current(&self) -> Arc<Resilient> {
        self.registry.active.load().store.clone()
    }
}

#[async_trait]
impl Store for ActiveStore {
    fn kind(&self) -> &'static str {
        self.registry.active.load().store.kind()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.current().get(ns, key).await
    }

    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let _open = self.registry.gate.read().await;
        self.current().put(ns, key, value, expect).await
    }

    async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<bool, StoreError> {
        let _open = self.registry.gate.read().await;
        self.current().delete(ns, key, expect).await
    }

    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.current().scan(ns, prefix, cursor, limit).await
    }

    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        let _open = self.registry.gate.read().await;
        self.current().transact(ops).await
    }

    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        let _open = self.registry.gate.read().await;
        self.current().import(ns, items).await
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.current().namespaces().await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.current().health().await
    }
}
