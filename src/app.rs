//! Wiring: config → store → catalog (policies, schema, entities) → engine →
//! HTTP server, plus the policy-directory watcher and graceful shutdown.
//! Tests build the same `App` on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::authz::{CacheSettings, dir_fingerprint};
use crate::backends::{Notice, RedisBus, Registry, Store};
use crate::config::Config;
use crate::services::journal::{self, Journaled};
use crate::services::{
    Accounts, Catalog, Identities, Mailer, SyncError, SyncMode, SyncRequest, TOPIC_ACCOUNTS, Tokens,
};
use crate::telemetry::{DecisionLog, Metrics};

pub struct App {
    listener: TcpListener,
    /// Envoy's ext_authz gRPC service, when `ext_authz.grpc_listen` is set.
    grpc_listener: Option<TcpListener>,
    state: Arc<AppState>,
    /// Background tasks stopped with the server: policy watcher, bus listener.
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
    /// `server.max_connections`, per listener.
    max_connections: usize,
}

/// The accounts service on `store`: signing keys loaded (the first one
/// made), mail set up.
async fn accounts_on(store: Arc<dyn Store>, config: &Config) -> anyhow::Result<Accounts> {
    let tokens = Arc::new(
        Tokens::open(store.clone(), &config.accounts)
            .await
            .context("cannot load the token signing keys")?,
    );
    let mailer = Arc::new(Mailer::new(&config.mail).context("cannot set up account mail")?);
    let accounts = Accounts::new(
        store,
        tokens,
        mailer,
        config.accounts.clone(),
        &config.server.public_url,
    );
    accounts
        .load_settings()
        .await
        .context("cannot load the stored account settings")?;
    Ok(accounts)
}

/// The accounts service on the configured active store, without serving:
/// for the CLI.
pub async fn open_accounts(config: &Config) -> anyhow::Result<Accounts> {
    accounts_on(
        Journaled::wrap(open_registry(config).await?.store(), &config.recovery),
        config,
    )
    .await
}

/// What `portcullis backup` and `restore` work on: the active store, and
/// the catalog and accounts over it as the server opens them, with the
/// change bus when one is configured (so running servers reload after a
/// restore).
pub async fn open_recovery(config: &Config) -> anyhow::Result<(Arc<Registry>, Catalog, Accounts)> {
    let registry = open_registry(config).await?;
    let store = Journaled::wrap(registry.store(), &config.recovery);
    let accounts = accounts_on(store.clone(), config).await?;
    let cache = CacheSettings {
        decision_capacity: 0,
        decision_ttl: Duration::from_secs(1),
        entity_capacity: 0,
        entity_ttl: Duration::from_secs(1),
    };
    let mut catalog = Catalog::open(store, &config.policies, &cache)
        .await
        .map_err(describe)?;
    if let Some(bus) = &config.bus {
        let bus = Arc::new(
            RedisBus::new(&bus.url, &bus.channel).context("cannot configure the change bus")?,
        );
        accounts.attach_bus(bus.clone());
        catalog = catalog.with_bus(bus);
    }
    Ok((registry, catalog, accounts))
}

/// The configured backends, with the active store open; the `[recovery]`
/// defaults are checked first, as the settings API checks changes.
async fn open_registry(config: &Config) -> anyhow::Result<Arc<Registry>> {
    crate::services::RecoverySettings::from_config(&config.recovery)
        .validate(config.recovery.key.is_some())
        .context("invalid [recovery] settings in the config")?;
    Registry::open(
        &config.store,
        &config.backends,
        &config.registry.state_file,
        &config.resilience,
    )
    .await
    .context("cannot open the active store")
}

impl App {
    /// Opens the store, loads and validates policies and entities, and binds
    /// the listener. Any invalid part stops here with its diagnostics.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let registry = open_registry(&config).await?;
        // Everything the server writes is journaled (restores and
        // rollbacks write the registry's store directly, with their own
        // entries).
        let store = Journaled::wrap(registry.store(), &config.recovery);
        let identities = Arc::new(Identities::new(
            registry.clone(),
            store.clone(),
            config.cache.identity_capacity,
            Duration::from_secs(config.cache.identity_ttl_seconds),
        ));
        let accounts = Arc::new(accounts_on(store.clone(), &config).await?);
        let cache = CacheSettings {
            decision_capacity: config.cache.decision_capacity,
            decision_ttl: Duration::from_secs(config.cache.decision_ttl_seconds),
            entity_capacity: config.cache.entity_capacity,
            entity_ttl: Duration::from_secs(config.cache.entity_ttl_seconds),
        };
        let mut catalog = Catalog::open(store, &config.policies, &cache)
            .await
            .map_err(describe)?;
        let mut notices = None;
        if let Some(bus) = &config.bus {
            let bus = Arc::new(
                RedisBus::new(&bus.url, &bus.channel).context("cannot configure the change bus")?,
            );
            notices = Some(
                bus.subscribe()
                    .await
                    .context("cannot subscribe to the change bus")?,
            );
            accounts.attach_bus(bus.clone());
            catalog = catalog.with_bus(bus);
        }
        let catalog = Arc::new(catalog);
        let listener_task = notices.map(|rx| spawn_listener(catalog.clone(), accounts.clone(), rx));
        let served = api::served_routes(&config.ext_authz.prefix);
        let served: Vec<(&str, &str)> = served.iter().map(|(m, p)| (*m, p.as_str())).collect();
        let metrics = Arc::new(Metrics::new(&served));
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let grpc_listener = match config.ext_authz.grpc_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for ext_authz gRPC on {addr}"))?,
            ),
            None => None,
        };
        let watcher = config.policies.watch.then(|| {
            spawn_watcher(
                catalog.clone(),
                metrics.clone(),
                config.policies.dir.clone(),
                Duration::from_millis(config.policies.watch_interval_ms),
            )
        });
        let state = Arc::new(AppState {
            catalog,
            metrics,
            body_limit: config.server.body_limit_bytes,
            batch_limit: config.server.batch_limit,
            started: Instant::now(),
            admin_token: config.server.admin_token.clone(),
            open_data_routes: config.server.open_data_routes,
            limits: api::RequestLimits::from_config(&config.server),
            registry,
            identities,
            accounts,
            ext_authz: Arc::new(config.ext_authz.clone()),
            iam: config.iam.clone(),
            recovery: config.recovery.clone(),
            recovery_key: config
                .recovery
                .key_bytes()?
                .and_then(|bytes| crate::services::SealKey::new(&bytes))
                .map(Arc::new),
            backup_schedule: Arc::new(tokio::sync::Notify::new()),
            decision_log: Arc::new(
                DecisionLog::start(&config.decision_log).context("cannot open the decision log")?,
            ),
        });
        let schedule = (config.sync.interval_seconds > 0).then(|| {
            spawn_sync_schedule(
                state.clone(),
                Duration::from_secs(config.sync.interval_seconds),
                sync_mode(&config.sync.mode),
            )
        });
        let backups = spawn_backup_schedule(state.clone());
        Ok(App {
            listener,
            grpc_listener,
            state,
            tasks: watcher
                .into_iter()
                .chain(listener_task)
                .chain(schedule)
                .chain([backups])
                .collect(),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
            max_connections: config.server.max_connections,
        })
    }

    /// The state the routes serve, for callers that drive the router in
    /// process (the fuzz targets).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Where the ext_authz gRPC service listens, when it is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_listener.as_ref()?.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// in-flight requests finish within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            grpc_listener,
            state,
            tasks,
            grace,
            max_connections,
        } = self;
        let admission = |listener: &str| {
            let (open, refused) = state.metrics.connections(listener);
            api::Admission::new(max_connections, open, refused)
        };
        tracing::info!(addr = %listener.local_addr()?, "Portcullis is listening.");
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        // Both servers stop on the same signal.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let grpc = match grpc_listener {
            Some(grpc_listener) => {
                tracing::info!(addr = %grpc_listener.local_addr()?, "ext_authz gRPC is listening.");
                // Over the connection limit, a connection is closed.
                let admission = admission("grpc");
                let incoming = tokio_stream::StreamExt::filter_map(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    move |accepted| match accepted {
                        Ok(stream) => admission.admit_or_close(stream).map(Ok),
                        Err(e) => Some(Err(e)),
                    },
                );
                let server = tonic::transport::Server::builder()
                    .add_service(api::ExtAuthzGrpc::server(state.clone()))
                    .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
                Some(tokio::spawn(server))
            }
            None => None,
        };
        let listener = api::LimitedListener::new(listener, admission("http"));
        let decision_log = state.decision_log.clone();
        let app = api::PerConnection(api::router(state));
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("Shutting down: no new connections, finishing in-flight requests.");
            let _ = stop_tx.send(true);
            let _ = stopping_tx.send(());
        });
        drop(stop_rx);
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = server.into_future() => result.context("server failed"),
            () = deadline => {
                tracing::warn!(grace_seconds = grace.as_secs(), "Grace period over; dropping remaining connections.");
                Ok(())
            }
        };
        if let Some(grpc) = grpc {
            grpc.abort();
        }
        for task in tasks {
            task.abort();
        }
        // The writer sleeps between batches; what the last requests queued
        // is written before the process ends.
        let flushed = tokio::task::spawn_blocking(move || decision_log.flush(LOG_FLUSH_TIMEOUT))
            .await
            .unwrap_or(false);
        if !flushed {
            tracing::warn!("The decision log's last entries were not written before exit.");
        }
        result
    }
}

use std::future::IntoFuture as _;

/// How long shutdown waits for the decision log's last batch.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A startup error with every diagnostic on its own line.
pub fn describe(e: crate::services::ServiceError) -> anyhow::Error {
    use crate::authz::AuthzError;
    use crate::services::ServiceError;
    match &e {
        ServiceError::Authz(AuthzError::PoliciesInvalid(d) | AuthzError::SchemaInvalid(d)) => {
            let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{e}:\n  {}", lines.join("\n  "))
        }
        _ => anyhow::Error::new(e),
    }
}

/// Polls the policy directory and reloads when a file changes. Polling a
/// handful of files costs nothing and works on every filesystem.
fn spawn_watcher(
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = dir_fingerprint(&dir);
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = dir_fingerprint(&dir);
            if now == seen {
                continue;
            }
            seen = now;
            match catalog.reload().await {
                Ok(snapshot) => {
                    metrics.policy_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(
                        generation = snapshot.generation,
                        policies = snapshot.policies.len(),
                        "Policy directory changed; new set is serving."
                    );
                }
                Err(e) => {
                    metrics
                        .policy_reloads
                        .with_label_values(&["rejected"])
                        .inc();
                    tracing::warn!(error = %describe(e), "Policy directory changed but the new set is invalid; the previous set keeps serving.");
                }
            }
        }
    })
}

/// `sync.mode` (validated to be one of the two).
pub fn sync_mode(mode: &str) -> SyncMode {
    if mode == "full" {
        SyncMode::Full
    } else {
        SyncMode::Changed
    }
}

/// Runs a sync of every LDAP directory at each interval. A run still going
/// (here or on another instance) makes this one skip.
fn spawn_sync_schedule(state: Arc<AppState>, every: Duration, mode: SyncMode) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let request = SyncRequest {
            directory: None,
            mode,
            dry_run: false,
        };
        loop {
            ticker.tick().await;
            let context = journal::Context::new("sync schedule", Some("scheduler".into()));
            let federation = api::federation(&state);
            match journal::within(context, federation.run(&request, "schedule")).await {
                Ok(_) => {}
                Err(SyncError::Running(run)) => {
                    tracing::info!(running = %run, "A sync is running; the scheduled one is skipped.");
                }
                Err(e) => tracing::warn!(error = %e, "Scheduled sync could not run."),
            }
        }
    })
}

/// Takes a backup whenever the newest one is older than the interval in
/// force. The settings are read again each time it wakes: at the due time,
/// at least every minute (another instance may have changed them), and at
/// once when they are changed here.
fn spawn_backup_schedule(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = scheduled_backup(&state).await.unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "Scheduled backup could not run.");
                LOOK_AGAIN
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.backup_schedule.notified() => {}
            }
        }
    })
}

/// The longest the backup schedule sleeps before reading its settings again.
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// Takes the scheduled backup if one is due; answers how long to wait
/// before looking again.
async fn scheduled_backup(state: &AppState) -> anyhow::Result<Duration> {
    let recovery = api::recovery(state).await?;
    let every = recovery.settings.backup_interval_seconds;
    if every == 0 {
        return Ok(LOOK_AGAIN);
    }
    let due = recovery
        .list()?
        .first()
        .map_or(0, |newest| newest.created + every);
    let now = crate::services::now();
    if now < due {
        return Ok(Duration::from_secs(due - now).min(LOOK_AGAIN));
    }
    let manifest = recovery.backup(Some("scheduled".into())).await?;
    tracing::info!(backup = %manifest.id, "Scheduled backup taken.");
    Ok(Duration::from_secs(every).min(LOOK_AGAIN))
}

/// Applies change notices from other instances as they arrive.
fn spawn_listener(
    catalog: Arc<Catalog>,
    accounts: Arc<Accounts>,
    mut notices: tokio::sync::mpsc::Receiver<Notice>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match &notice {
                Notice::Changed(topic) if topic == TOPIC_ACCOUNTS => {
                    accounts.forget_credentials();
                    continue;
                }
                Notice::Resync => accounts.forget_credentials(),
                Notice::Changed(_) => {}
            }
            match catalog.apply(&notice).await {
                Ok(()) => tracing::debug!(?notice, "Applied a change from another instance."),
                Err(e) => {
                    tracing::warn!(?notice, error = %describe(e), "Could not apply a change from another instance.")
                }
            }
        }
    })
}
