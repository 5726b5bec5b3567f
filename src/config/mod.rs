//! Typed settings: the TOML file (`config/portcullis.toml`) plus `PORTCULLIS_*`
//! environment overrides, validated before anything starts.
//!
//! Owns: the shape of the configuration and its validation. Must not: open
//! sockets, files other than the config file, or stores.
//!
//! Environment overrides name a key by its path with `__` between levels:
//! `PORTCULLIS_SERVER__LISTEN=0.0.0.0:8180`, `PORTCULLIS_CACHE__DECISION_CAPACITY=0`.
//! The value is read as a TOML value when it parses as one (`true`, `42`,
//! `"text"`), otherwise as a plain string.

mod backend;
mod decision_log;
mod env;
mod ext_authz;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use backend::{
    BackendConfig, BearerConfig, DirectoryConfig, LdapAttributes, LdapConfig, OidcClaims,
    OidcConfig, stores,
};
pub use decision_log::{DecisionLogConfig, Sink};
pub use env::ENV_PREFIX;
pub use ext_authz::{
    ExtAuthzConfig, PathPattern, ResourceTemplate, RouteRule, Segment, UnmatchedRoute,
};

/// The default location of the configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/portcullis.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub policies: PoliciesConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    /// More named backends besides `[store]` (named `default`): stores the
    /// active one can be switched to at runtime, and identity directories.
    pub backends: BTreeMap<String, BackendConfig>,
    pub registry: RegistryConfig,
    pub resilience: ResilienceConfig,
    /// Change notices between instances that share one store.
    pub bus: Option<BusConfig>,
    pub accounts: AccountsConfig,
    pub mail: MailConfig,
    pub ext_authz: ExtAuthzConfig,
    pub decision_log: DecisionLogConfig,
    pub iam: IamConfig,
    pub recovery: RecoveryConfig,
    pub sync: SyncConfig,
}

/// Scheduled federation sync (`/iam/sync/run` runs one at any time).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Seconds between scheduled syncs of every LDAP directory; 0: none.
    pub interval_seconds: u64,
    /// `changed` (only users changed since the last sync are read in
    /// full) or `full`.
    pub mode: String,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 0,
            mode: "changed".into(),
        }
    }
}

/// Backups of the active store (`/iam/recovery/...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Where backups are written: `<id>.backup.gz` and its `<id>.json`
    /// manifest.
    pub dir: PathBuf,
    /// Base64 of 32 random bytes (`openssl rand -base64 32`): backups are
    /// then sealed with AES-256-GCM, and sealed ones can be restored.
    pub key: Option<Secret>,
    /// Seal new backups with `key`; unset: whenever a key is configured.
    pub encrypt: Option<bool>,
    /// A scheduled backup this often; 0: none (at least 60 otherwise).
    pub backup_interval_seconds: u64,
    /// Backups kept, newest first; 0: no limit.
    pub retention_count: u32,
    /// Backups older than this are deleted after the next backup; 0: kept.
    pub retention_days: u64,
    /// Change-journal entries older than this are deleted; 0: kept forever.
    pub journal_retention_days: u64,
}

impl RecoveryConfig {
    /// The raw bytes of `key`, checked to be 32 of them.
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        use base64::Engine as _;
        let Some(key) = &self.key else {
            return Ok(None);
        };
        match base64::engine::general_purpose::STANDARD.decode(key.expose().trim()) {
            Ok(bytes) if bytes.len() == 32 => Ok(Some(bytes)),
            _ => Err(ConfigError::Invalid {
                key: "recovery.key".into(),
                message: "must be the base64 of exactly 32 bytes (openssl rand -base64 32)".into(),
            }),
        }
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/backups"),
            key: None,
            encrypt: None,
            backup_interval_seconds: 0,
            retention_count: 0,
            retention_days: 0,
            journal_retention_days: 90,
        }
    }
}

/// The identity graph (service accounts, AI agents, providers, links).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// How long a rotated-out credential secret keeps working.
    pub rotation_grace_seconds: u64,
    /// Deepest a graph traversal (memberships, dependents) goes.
    pub max_traversal_depth: usize,
    /// Most identities a traversal answers; past it the answer says
    /// `truncated`.
    pub max_traversal_results: usize,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            rotation_grace_seconds: 86_400,
            max_traversal_depth: 32,
            max_traversal_results: 10_000,
        }
    }
}

/// Where account mail (verification, password reset, magic links) goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The sender, e.g. `Portcullis <no-reply@example.com>`.
    pub from: String,
    /// Without `smtp_url`, each message is written here as an `.eml` file.
    pub outbox_dir: PathBuf,
    /// `smtp://host:25`, `smtp://host:587?tls=required` or
    /// `smtps://user:password@host:465`. A secret: it may hold a password.
    pub smtp_url: Option<Secret>,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: "Portcullis <portcullis@localhost>".into(),
            outbox_dir: PathBuf::from("var/outbox"),
            smtp_url: None,
        }
    }
}

/// User accounts: registration, passwords, tokens and lockout. These are
/// the defaults of the account settings, which admins change at runtime
/// with `PATCH /management/settings/` (all but `issuer` and `audience`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Whether `POST /auth/register` is open to anyone.
    pub registration_open: bool,
    /// Whether login needs a verified e-mail address.
    pub require_verification: bool,
    /// Shortest password accepted (longest: 128 characters).
    pub password_min_length: usize,
    /// Lifetime of an access token (a JWT signed with EdDSA).
    pub access_token_ttl_seconds: u64,
    /// Lifetime of a session, however active (its refresh tokens end with it).
    pub refresh_token_ttl_seconds: u64,
    /// A session ends when its refresh token is not used for this long
    /// (ASVS 3.3.2: re-authentication after 30 minutes idle).
    pub session_idle_seconds: u64,
    /// `iss` and `aud` of the tokens this server issues and accepts.
    pub issuer: String,
    pub audience: String,
    /// How long the single-use tokens mailed for each purpose stay valid.
    pub verify_token_ttl_seconds: u64,
    pub reset_token_ttl_seconds: u64,
    pub magic_link_ttl_seconds: u64,
    /// Failed logins for one account within the window that lock it.
    pub lockout_threshold: u32,
    /// Failed logins from one IP address within the window that lock it out.
    pub ip_lockout_threshold: u32,
    pub lockout_window_seconds: u64,
    /// How long a lock lasts.
    pub lockout_duration_seconds: u64,
}

impl AccountsConfig {
    /// The first setting that is out of range: `(key, why)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let range = |key, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err((key, format!("must be between {low} and {high}")))
            }
        };
        range(
            "password_min_length",
            self.password_min_length as u64,
            12,
            128,
        )?;
        range(
            "access_token_ttl_seconds",
            self.access_token_ttl_seconds,
            30,
            86_400,
        )?;
        range(
            "refresh_token_ttl_seconds",
            self.refresh_token_ttl_seconds,
            self.access_token_ttl_seconds,
            366 * 86_400,
        )?;
        range(
            "session_idle_seconds",
            self.session_idle_seconds,
            1,
            self.refresh_token_ttl_seconds,
        )?;
        range(
            "verify_token_ttl_seconds",
            self.verify_token_ttl_seconds,
            60,
            7 * 86_400,
        )?;
        range(
            "reset_token_ttl_seconds",
            self.reset_token_ttl_seconds,
            60,
            7 * 86_400,
        )?;
        range(
            "magic_link_ttl_seconds",
            self.magic_link_ttl_seconds,
            60,
            7 * 86_400,
        )?;
        range(
            "lockout_threshold",
            u64::from(self.lockout_threshold),
            1,
            1000,
        )?;
        range(
            "ip_lockout_threshold",
            u64::from(self.ip_lockout_threshold),
            1,
            100_000,
        )?;
        range(
            "lockout_window_seconds",
            self.lockout_window_seconds,
            1,
            86_400,
        )?;
        range(
            "lockout_duration_seconds",
            self.lockout_duration_seconds,
            1,
            86_400,
        )?;
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(("issuer", "issuer and audience must not be empty".into()));
        }
        Ok(())
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            registration_open: true,
            require_verification: false,
            password_min_length: 12,
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 12 * 3600,
            session_idle_seconds: 1800,
            issuer: "portcullis".into(),
            audience: "portcullis".into(),
            verify_token_ttl_seconds: 24 * 3600,
            reset_token_ttl_seconds: 3600,
            magic_link_ttl_seconds: 900,
            lockout_threshold: 5,
            ip_lockout_threshold: 50,
            lockout_window_seconds: 900,
            lockout_duration_seconds: 900,
        }
    }
}

/// Redis pub/sub for change notices: every policy, schema or entity write
/// is announced, and every other instance reloads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// e.g. `redis://127.0.0.1:6379`
    pub url: String,
    #[serde(default = "default_bus_channel")]
    pub channel: String,
}

fn default_bus_channel() -> String {
    "portcullis:changes".into()
}

/// Retries and circuit breaking, applied to every backend call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Retries after the first attempt, for transient errors only.
    pub retries: u32,
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Transient failures in a row that open a backend's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls at once before one probe.
    pub breaker_cooldown_ms: u64,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            retry_min_delay_ms: 10,
            retry_max_delay_ms: 200,
            breaker_failures: 5,
            breaker_cooldown_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Records which backend is active after a switch, so a restart keeps
    /// serving from it.
    pub state_file: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            state_file: PathBuf::from("var/active-store"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on; port 8180 as cedar-agent uses.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Most requests accepted in one `/v1/is_authorized/batch` call.
    pub batch_limit: usize,
    /// How long in-flight requests may run after SIGINT/SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// How clients reach this server: the base of links in account mail.
    pub public_url: String,
    /// Bearer token for admin routes (`/storage/...`). Unset: admin routes
    /// answer 401. Replaced by admin principals once accounts exist.
    pub admin_token: Option<Secret>,
    /// cedar-agent's data routes (`/v1/policies`, `/v1/entities`,
    /// `/v1/data`, `/v1/schema`) open to anyone, as in cedar-agent without
    /// `--authentication`. Off: they need an admin, as every admin route.
    /// Only allowed when `listen` is a loopback address.
    pub open_data_routes: bool,
    /// Deepest nesting of arrays and objects in a JSON body (400 above it).
    pub max_json_depth: usize,
    /// Most inline entities (`entities` plus `additional_entities`) in one
    /// decision request (413 above it).
    pub max_request_entities: usize,
    /// Most headers in one request (431 above it; hyper itself stops at 100).
    pub max_headers: usize,
    /// Most bytes of header names and values in one request (431 above it).
    pub max_header_bytes: usize,
    /// Most open connections per listener (HTTP, and gRPC); one more is
    /// answered 503 and closed. Keep it under the process's open-files limit.
    pub max_connections: usize,
}

/// A configured secret: compared in constant time, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Constant-time equality with `candidate`.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(candidate).into()
    }

    /// The secret itself, for handing to the backend that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8180)),
            body_limit_bytes: 1024 * 1024,
            batch_limit: 100,
            shutdown_grace_seconds: 10,
            public_url: "http://127.0.0.1:8180".into(),
            admin_token: None,
            open_data_routes: false,
            max_json_depth: 32,
            max_request_entities: 1000,
            max_headers: 64,
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
        }
    }
}

/// Which key-value store holds Portcullis's state. Tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded default: one SQLite file, no external service.
    Sqlite {
        /// Database file; `:memory:` keeps everything in memory.
        path: PathBuf,
    },
    /// Postgres, pooled; everything lives in one schema.
    Postgres {
        /// e.g. `postgres://user@127.0.0.1:5432/portcullis`
        url: String,
        #[serde(default = "default_pg_schema")]
        schema: String,
        #[serde(default = "default_max_connections")]
        max_connections: u32,
    },
    /// Redis; every key starts with `prefix`.
    Redis {
        /// e.g. `redis://127.0.0.1:6379/0`
        url: String,
        #[serde(default = "default_redis_prefix")]
        prefix: String,
        #[serde(default = "default_max_connections")]
        max_connections: u32,
    },
}

fn default_pg_schema() -> String {
    "portcullis".into()
}

fn default_redis_prefix() -> String {
    "portcullis:".into()
}

fn default_max_connections() -> u32 {
    10
}

impl StoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Sqlite { .. } => "sqlite",
            StoreConfig::Postgres { .. } => "postgres",
            StoreConfig::Redis { .. } => "redis",
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite {
            path: PathBuf::from("var/portcullis.db"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    /// Directory holding the application's `*.cedar` policies and `*.cedarschema` schema.
    pub dir: PathBuf,
    /// Reload when a file in `dir` changes.
    pub watch: bool,
    /// How often `dir` is checked for changes.
    pub watch_interval_ms: u64,
    /// Most application policies (files, API and RBAC grants together); a
    /// change past it is refused with 409 `TOO_MANY_POLICIES`.
    pub max_count: usize,
    /// Most bytes of one policy written through the API (413
    /// `POLICY_TOO_LARGE`).
    pub max_policy_bytes: usize,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        let limits = crate::authz::PolicyLimits::default();
        Self {
            dir: PathBuf::from("policies"),
            watch: true,
            watch_interval_ms: 1000,
            max_count: limits.max_count,
            max_policy_bytes: limits.max_policy_bytes,
        }
    }
}

impl PoliciesConfig {
    pub fn limits(&self) -> crate::authz::PolicyLimits {
        crate::authz::PolicyLimits {
            max_count: self.max_count,
            max_policy_bytes: self.max_policy_bytes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most decisions kept; 0 turns the decision cache off.
    pub decision_capacity: u64,
    /// Memory bound only: entries are exact by generation, the TTL just frees memory.
    pub decision_ttl_seconds: u64,
    /// Most entity slices (an entity with its ancestors) kept, and most
    /// merged entity sets of a principal with an identity and an action.
    pub entity_capacity: u64,
    pub entity_ttl_seconds: u64,
    /// Identities read from directories (LDAP users with their groups,
    /// linked OIDC identities). While a directory is down, a cached
    /// identity is served until its TTL ends; then decisions for it deny.
    pub identity_capacity: u64,
    pub identity_ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            decision_capacity: 100_000,
            decision_ttl_seconds: 300,
            entity_capacity: 10_000,
            entity_ttl_seconds: 300,
            identity_capacity: 10_000,
            identity_ttl_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive, e.g. `info` or `portcullis=debug`.
    pub level: String,
    pub format: LogFormat,
}

/// Accepts `level`, `target` and `target=level` directives, comma-separated.
/// Span and field filters (`[span{field=value}]`) are refused: their values
/// are compiled as regular expressions, and the `config` fuzz target found
/// one that took minutes to build.
fn plain_directives(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if filter.len() > 1024 {
        return Err("must be at most 1024 bytes".into());
    }
    let target_ok = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'))
    };
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match directive.split_once('=') {
            Some((target, level)) => {
                target_ok(target) && LEVELS.contains(&level.to_ascii_lowercase().as_str())
            }
            None => target_ok(directive),
        };
        if !ok {
            return Err(format!(
                "`{directive}` is not `level`, `target` or `target=level` (levels: {}); span and field filters are not accepted",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Loads `path` (or the default file when it exists), applies `PORTCULLIS_*`
    /// overrides from `vars`, and validates the result.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => read_table(path)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                read_table(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => toml::Table::new(),
        };
        env::apply_overrides(&mut table, vars)?;
        Self::from_table(table)
    }

    /// Parses a configuration from TOML text (no environment overrides).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_str_and_vars(text, [])
    }

    /// Parses a configuration from TOML text with `PORTCULLIS_*` overrides
    /// from `vars`, as [`Config::load`] does with a file.
    pub fn from_toml_str_and_vars(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<inline>"),
            source: Box::new(e),
        })?;
        env::apply_overrides(&mut table, vars)?;
        Self::from_table(table)
    }

    fn from_table(mut table: toml::Table) -> Result<Config, ConfigError> {
        // `[store]` without `kind` (e.g. only PORTCULLIS_STORE__PATH set)
        // means the default store.
        if let Some(toml::Value::Table(store)) = table.get_mut("store") {
            store
                .entry("kind")
                .or_insert_with(|| toml::Value::String("sqlite".into()));
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError::Invalid {
                    key: e.path().to_string(),
                    message: e.inner().message().to_owned(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.server.body_limit_bytes == 0 {
            return invalid("server.body_limit_bytes", "must be greater than 0");
        }
        if self
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.0.len() < 16)
        {
            return invalid(
                "server.admin_token",
                "must be at least 16 characters (use a random value)",
            );
        }
        if self.server.open_data_routes && !self.server.listen.ip().is_loopback() {
            return invalid(
                "server.open_data_routes",
                "opens policy and entity writes to anyone, so it is allowed only when server.listen is a loopback address",
            );
        }
        self.recovery.key_bytes()?;
        if !matches!(self.sync.mode.as_str(), "full" | "changed") {
            return invalid("sync.mode", "must be `full` or `changed`");
        }
        if self.sync.interval_seconds != 0 && self.sync.interval_seconds < 10 {
            return invalid("sync.interval_seconds", "must be 0 (off) or at least 10");
        }
        if self.iam.rotation_grace_seconds > 30 * 86_400 {
            return invalid("iam.rotation_grace_seconds", "must be at most 30 days");
        }
        if !(1..=256).contains(&self.iam.max_traversal_depth) {
            return invalid("iam.max_traversal_depth", "must be between 1 and 256");
        }
        if !(1..=1_000_000).contains(&self.iam.max_traversal_results) {
            return invalid("iam.max_traversal_results", "must be between 1 and 1000000");
        }
        if !(2..=128).contains(&self.server.max_json_depth) {
            return invalid("server.max_json_depth", "must be between 2 and 128");
        }
        if self.server.max_request_entities == 0 {
            return invalid("server.max_request_entities", "must be greater than 0");
        }
        if !(8..=100).contains(&self.server.max_headers) {
            return invalid(
                "server.max_headers",
                "must be between 8 and 100 (hyper refuses more than 100)",
            );
        }
        if !(1024..=256 * 1024).contains(&self.server.max_header_bytes) {
            return invalid("server.max_header_bytes", "must be between 1024 and 262144");
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return invalid("server.max_connections", "must be between 1 and 1000000");
        }
        if self.server.batch_limit == 0 {
            return invalid("server.batch_limit", "must be greater than 0");
        }
        if !(1..=10_000_000).contains(&self.policies.max_count) {
            return invalid("policies.max_count", "must be between 1 and 10000000");
        }
        if !(256..=16 * 1024 * 1024).contains(&self.policies.max_policy_bytes) {
            return invalid(
                "policies.max_policy_bytes",
                "must be between 256 and 16777216",
            );
        }
        if self.policies.watch_interval_ms < 50 {
            return invalid("policies.watch_interval_ms", "must be at least 50");
        }
        if self.cache.decision_ttl_seconds == 0 {
            return invalid("cache.decision_ttl_seconds", "must be greater than 0");
        }
        if self.cache.entity_ttl_seconds == 0 {
            return invalid("cache.entity_ttl_seconds", "must be greater than 0");
        }
        if self.cache.identity_ttl_seconds == 0 {
            return invalid("cache.identity_ttl_seconds", "must be greater than 0");
        }
        if let Err(e) = plain_directives(&self.log.level) {
            return invalid("log.level", &e);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid("log.level", &e.to_string());
        }
        let r = &self.resilience;
        if r.breaker_failures == 0 {
            return invalid("resilience.breaker_failures", "must be greater than 0");
        }
        if r.retries > 10 {
            return invalid("resilience.retries", "must be at most 10");
        }
        if r.retry_min_delay_ms > r.retry_max_delay_ms {
            return invalid(
                "resilience.retry_min_delay_ms",
                "must not exceed resilience.retry_max_delay_ms",
            );
        }
        if let Some(bus) = &self.bus {
            if !bus.url.starts_with("redis") {
                return invalid("bus.url", "must be a redis:// or rediss:// URL");
            }
            if bus.channel.is_empty() {
                return invalid("bus.channel", "must not be empty");
            }
        }
        if let Err((key, message)) = self.accounts.validate() {
            return invalid(&format!("accounts.{key}"), &message);
        }
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return invalid("server.public_url", "must be an http:// or https:// URL");
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return invalid(
                "mail.from",
                "must be a mailbox, e.g. `Name <user@example.com>`",
            );
        }
        if self
            .mail
            .smtp_url
            .as_ref()
            .is_some_and(|u| !u.expose().starts_with("smtp"))
        {
            return invalid("mail.smtp_url", "must be an smtp:// or smtps:// URL");
        }
        if let Err((key, message)) = self.decision_log.validate() {
            return invalid(&format!("decision_log.{key}"), &message);
        }
        if let Err((key, message)) = self.ext_authz.validate() {
            return invalid(&format!("ext_authz.{key}"), &message);
        }
        validate_store("store", &self.store)?;
        for (name, backend) in &self.backends {
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid_name || name == "default" {
                return invalid(
                    &format!("backends.{name}"),
                    "backend names are lowercase letters, digits, `_` and `-`; `default` is [store]",
                );
            }
            backend::validate(&format!("backends.{name}"), backend, |key, message| {
                ConfigError::Invalid {
                    key,
                    message: message.to_owned(),
                }
            })?;
        }
        Ok(())
    }
}

fn validate_store(at: &str, store: &StoreConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: &str| {
        Err(ConfigError::Invalid {
            key: format!("{at}.{key}"),
            message: message.to_owned(),
        })
    };
    match store {
        StoreConfig::Sqlite { path } if path.as_os_str().is_empty() => {
            invalid("path", "must not be empty")
        }
        StoreConfig::Postgres { url, .. } if !url.starts_with("postgres") => {
            invalid("url", "must be a postgres:// or postgresql:// URL")
        }
        StoreConfig::Postgres { schema, .. } if !crate::backends::valid_schema_name(schema) => {
            invalid(
                "schema",
                "must be a lowercase identifier (a-z, 0-9, _), at most 63 characters",
            )
        }
        StoreConfig::Redis { url, .. } if !url.starts_with("redis") => {
            invalid("url", "must be a redis:// or rediss:// URL")
        }
        StoreConfig::Postgres {
            max_connections: 0, ..
        }
        | StoreConfig::Redis {
            max_connections: 0, ..
        } => invalid("max_connections", "must be greater than 0"),
        _ => Ok(()),
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse().map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests;
