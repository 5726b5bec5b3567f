//! `[backends.<name>]`: a store the active one can be switched to, or a
//! directory that identities come from. Tagged by `kind`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::{Secret, StoreConfig};

/// One named backend.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    Store(StoreConfig),
    Directory(Box<DirectoryConfig>),
}

/// A read-mostly identity source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DirectoryConfig {
    Ldap(LdapConfig),
    Oidc(OidcConfig),
}

impl<'de> Deserialize<'de> for BackendConfig {
    /// Reads `kind` first, so a store's or a directory's own error message
    /// (unknown field, missing field) reaches the user unchanged.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(deserializer)?;
        match value.get("kind").and_then(toml::Value::as_str) {
            Some("ldap" | "oidc") => DirectoryConfig::deserialize(value)
                .map(|d| BackendConfig::Directory(Box::new(d)))
                .map_err(|e| D::Error::custom(e.message())),
            Some(_) => StoreConfig::deserialize(value)
                .map(BackendConfig::Store)
                .map_err(|e| D::Error::custom(e.message())),
            None => Err(D::Error::custom(
                "missing `kind`: one of sqlite, postgres, redis, ldap, oidc",
            )),
        }
    }
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Store(store) => store.kind(),
            BackendConfig::Directory(directory) => match directory.as_ref() {
                DirectoryConfig::Ldap(_) => "ldap",
                DirectoryConfig::Oidc(_) => "oidc",
            },
        }
    }
}

/// An LDAP directory: passwords are checked by binding as the user, users
/// and their groups are read with the service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The service account that searches the directory.
    pub bind_dn: String,
    pub bind_password: Secret,
    /// Where users are searched (subtree).
    pub user_base: String,
    /// `{username}` is replaced by the escaped login name.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are searched (subtree).
    pub group_base: String,
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The group attribute that lists member DNs (users and nested groups).
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
    /// When set (e.g. `memberOf`), a user's groups are read from this
    /// attribute of the user entry instead of searched by member.
    #[serde(default)]
    pub member_of_attribute: Option<String>,
    /// Users this filter matches (e.g. `(employeeType=disabled)`, or
    /// `(userAccountControl:1.2.840.113556.1.4.803:=2)` on Active
    /// Directory) are disabled by a sync.
    #[serde(default)]
    pub disabled_filter: Option<String>,
    /// How many levels of nested groups are followed.
    #[serde(default = "default_max_group_depth")]
    pub max_group_depth: u32,
    #[serde(default)]
    pub attributes: LdapAttributes,
    /// Each directory call (connect, bind, search) gives up after this long.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Which LDAP attribute fills which identity field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapAttributes {
    pub username: String,
    pub email: String,
    pub name: String,
    pub group_name: String,
}

impl Default for LdapAttributes {
    fn default() -> Self {
        Self {
            username: "uid".into(),
            email: "mail".into(),
            name: "cn".into(),
            group_name: "cn".into(),
        }
    }
}

fn default_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(uid={username}))".into()
}

fn default_group_filter() -> String {
    "(objectClass=groupOfNames)".into()
}

fn default_member_attribute() -> String {
    "member".into()
}

fn default_max_group_depth() -> u32 {
    8
}

fn default_timeout_ms() -> u64 {
    5000
}

/// An OpenID Connect provider: authorization code with PKCE and state,
/// then userinfo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; its `/.well-known/openid-configuration` names the endpoints.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Where the provider sends the browser back: this server's
    /// `/auth/oauth/<name>/callback`, as an absolute URL.
    pub redirect_url: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A label for login pages.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub claims: OidcClaims,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Accept this provider's signed JWTs as bearer credentials of ext_authz
    /// checks, verified against its JWKS; absent: not accepted.
    #[serde(default)]
    pub bearer: Option<BearerConfig>,
}

/// `[backends.<name>.bearer]`: how this provider's JWTs are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// `aud` must name one of these; empty: the `client_id`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The signature algorithms accepted, pinned: a token signed otherwise
    /// is refused whatever its key. Asymmetric only (RS*, PS*, ES*, EdDSA).
    #[serde(default = "default_bearer_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// How long the fetched key set is used before it is read again. A
    /// token naming an unknown `kid` reads it again sooner, at most once
    /// every `jwks_min_refresh_seconds`.
    #[serde(default = "default_jwks_ttl_seconds")]
    pub jwks_ttl_seconds: u64,
    #[serde(default = "default_jwks_min_refresh_seconds")]
    pub jwks_min_refresh_seconds: u64,
}

fn default_bearer_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

fn default_leeway_seconds() -> u64 {
    30
}

fn default_jwks_ttl_seconds() -> u64 {
    600
}

fn default_jwks_min_refresh_seconds() -> u64 {
    30
}

/// The algorithms `[backends.<name>.bearer] algorithms` may name.
pub const BEARER_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Which userinfo claim fills which identity field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcClaims {
    pub subject: String,
    pub username: String,
    pub email: String,
    pub name: String,
    /// A claim holding a list of group names; missing means no groups.
    pub groups: String,
}

impl Default for OidcClaims {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            username: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

/// Checks one backend's settings; `at` is its key path.
pub(super) fn validate(
    at: &str,
    backend: &BackendConfig,
    invalid: impl Fn(String, &str) -> super::ConfigError,
) -> Result<(), super::ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let directory = match backend {
        BackendConfig::Store(store) => return super::validate_store(at, store),
        BackendConfig::Directory(directory) => directory.as_ref(),
    };
    match directory {
        DirectoryConfig::Ldap(l) => {
            if !(l.url.starts_with("ldap://") || l.url.starts_with("ldaps://")) {
                return Err(invalid(key("url"), "must be an ldap:// or ldaps:// URL"));
            }
            if l.starttls && l.url.starts_with("ldaps://") {
                return Err(invalid(
                    key("starttls"),
                    "is for ldap:// URLs; ldaps:// is already TLS",
                ));
            }
            if !l.user_filter.contains("{username}") {
                return Err(invalid(key("user_filter"), "must contain {username}"));
            }
            if let Some(filter) = &l.disabled_filter
                && !(filter.starts_with('(') && filter.ends_with(')'))
            {
                return Err(invalid(
                    key("disabled_filter"),
                    "must be an LDAP filter in parentheses",
                ));
            }
            for (k, v) in [
                ("bind_dn", &l.bind_dn),
                ("user_base", &l.user_base),
                ("group_base", &l.group_base),
                ("member_attribute", &l.member_attribute),
            ] {
                if v.trim().is_empty() {
                    return Err(invalid(key(k), "must not be empty"));
                }
            }
            if l.timeout_ms == 0 {
                return Err(invalid(key("timeout_ms"), "must be greater than 0"));
            }
            Ok(())
        }
        DirectoryConfig::Oidc(o) => {
            for (k, v) in [("issuer", &o.issuer), ("redirect_url", &o.redirect_url)] {
                if !(v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(invalid(key(k), "must be an http:// or https:// URL"));
                }
            }
            if o.client_id.is_empty() {
                return Err(invalid(key("client_id"), "must not be empty"));
            }
            if !o.scopes.iter().any(|s| s == "openid") {
                return Err(invalid(key("scopes"), "must include `openid`"));
            }
            if o.timeout_ms == 0 {
                return Err(invalid(key("timeout_ms"), "must be greater than 0"));
            }
            if let Some(bearer) = &o.bearer {
                if bearer.algorithms.is_empty() {
                    return Err(invalid(key("bearer.algorithms"), "must name at least one"));
                }
                if let Some(bad) = bearer
                    .algorithms
                    .iter()
                    .find(|a| !BEARER_ALGORITHMS.contains(&a.as_str()))
                {
                    return Err(invalid(
                        key("bearer.algorithms"),
                        &format!(
                            "`{bad}` is not one of {}; shared-secret (HS*) and `none` are never accepted",
                            BEARER_ALGORITHMS.join(", ")
                        ),
                    ));
                }
                if bearer.audiences.iter().any(String::is_empty) {
                    return Err(invalid(
                        key("bearer.audiences"),
                        "must not hold an empty name",
                    ));
                }
                if bearer.jwks_ttl_seconds == 0 {
                    return Err(invalid(
                        key("bearer.jwks_ttl_seconds"),
                        "must be greater than 0",
                    ));
                }
            }
            Ok(())
        }
    }
}

/// The stores among `backends`, by name.
pub fn stores(backends: &BTreeMap<String, BackendConfig>) -> BTreeMap<String, StoreConfig> {
    backends
        .iter()
        .filter_map(|(name, b)| match b {
            BackendConfig::Store(s) => Some((name.clone(), s.clone())),
            BackendConfig::Directory(_) => None,
        })
        .collect()
}
