//! Directory identities: logins against LDAP, OIDC sign-ins linked into
//! the store, and the resolver that gives a decision its principal's user
//! and groups.
//!
//! A principal `Portcullis::User::"<directory>:<subject>"` whose directory
//! is configured, and which the stored entities do not hold, is read from
//! the directory (LDAP) or from its link in the store (OIDC), then kept in
//! the identity cache for `cache.identity_ttl_seconds`. While the directory
//! is down, cached identities keep deciding until their TTL; an identity
//! that is not cached gets a deny that says why (fail closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use super::tokens::{digest, now};
use crate::authz::{
    EntitySnapshot, ResolvedIdentity, USER_TYPE, UidInput, entity_key, identity_entities,
    parse_uid, user_uid,
};
use crate::backends::{Directory, Expect, OidcDirectory, Registry, Store, StoreError};
use crate::domain::{DirectoryIdentity, qualified};

/// OIDC identities linked by a sign-in, by `<provider>:<subject>`.
pub const IDENTITIES: &str = "identities";
/// Pending OAuth authorizations, by the SHA-256 of their state.
pub const OAUTH_STATES: &str = "oauth_states";

/// How long a started OAuth authorization may take to come back.
const OAUTH_STATE_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no {kind} directory named `{name}` is configured")]
    UnknownDirectory { name: String, kind: &'static str },
    #[error("bad credentials")]
    BadCredentials,
    #[error("directory `{name}` is unavailable: {source}")]
    Unavailable {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("the sign-in state is missing, expired, already used or not this browser's")]
    InvalidState,
    #[error("the provider did not complete the sign-in: {0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the decision path learns about a principal.
pub enum Resolution {
    /// Not a directory identity: decide on the stored entities alone.
    NotDirectory,
    /// The directory's answer (no entities when it has no such user).
    Resolved {
        identity: Arc<ResolvedIdentity>,
        cached: bool,
    },
    /// The directory could not be read and nothing is cached: deny.
    Unavailable { directory: String, error: String },
}

/// A pending OAuth authorization, as stored.
#[derive(Serialize, Deserialize)]
struct PendingAuthorization {
    provider: String,
    verifier: String,
    expires_at: u64,
    /// Started from the web UI's sign-in page: the callback opens a
    /// browser session instead of answering JSON.
    #[serde(default)]
    web: bool,
    /// Started from the dashboard by this user, who gave the password: the
    /// identity is to be linked to that account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_to: Option<String>,
}

/// Where a sign-in was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OAuthFor {
    /// `GET /auth/oauth/{provider}/authorize`: the callback answers JSON.
    Api,
    /// The web UI's button: the callback signs the browser in.
    Web,
    /// The dashboard's "link": the callback links the identity to this
    /// user (who re-entered the password to start it).
    Link(String),
}

/// A linked OIDC identity, as stored.
#[derive(Serialize, Deserialize)]
struct Link {
    identity: DirectoryIdentity,
    linked_at: u64,
}

/// A caller known by a provider's JWT (`[backends.<name>.bearer]`).
pub struct BearerCaller {
    /// `Portcullis::User::"<provider>:<subject>"`.
    pub principal: cedar_policy::EntityUid,
    /// The user and its groups as Cedar entities, with their own stamp.
    pub identity: Arc<ResolvedIdentity>,
    /// The token's `exp`.
    pub expires_at: u64,
}

/// What a bearer token is to the configured providers.
pub enum Bearer {
    /// No provider that accepts bearer tokens issued it: it may be one of
    /// this server's own tokens, or an API key.
    NotIssued,
    Valid(Arc<BearerCaller>),
    /// Issued by a configured provider, but not valid (401).
    Invalid(String),
    /// The provider's key set cannot be read (fail closed).
    Unavailable {
        directory: String,
        error: StoreError,
    },
}

pub struct Identities {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    cache: Cache<String, Arc<ResolvedIdentity>>,
    /// Verified provider tokens, by the SHA-256 of the token.
    bearers: Cache<String, Arc<BearerCaller>>,
    stamps: AtomicU64,
}

impl Identities {
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        capacity: u64,
        ttl: Duration,
    ) -> Identities {
        Identities {
            registry,
            store,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            bearers: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            stamps: AtomicU64::new(0),
        }
    }

    /// Whether any directory is configured; when none is, decisions skip
    /// the resolver entirely.
    pub fn enabled(&self) -> bool {
        !self.registry.directories().is_empty()
    }

    /// The directory entities of `principal`, when it is a directory user.
    pub async fn resolve(&self, principal: &UidInput, stored: &EntitySnapshot) -> Resolution {
        let Ok(uid) = parse_uid(principal) else {
            return Resolution::NotDirectory; // the engine names the error
        };
        if uid.type_name().to_string() != USER_TYPE {
            return Resolution::NotDirectory;
        }
        let id: &str = uid.id().as_ref();
        let Some((name, subject)) = id.split_once(':') else {
            return Resolution::NotDirectory;
        };
        let Some(directory) = self.registry.directory(name) else {
            return Resolution::NotDirectory;
        };
        // Identities stored through /v1/entities or imported by a sync are
        // decided from there. An RBAC assignment or a graph link alone does
        // not count: it only adds to what the directory says. An imported
        // user always carries `active`; RBAC's stand-ins carry nothing.
        let key = entity_key(&uid);
        let imported = stored
            .overlay
            .get(&key)
            .is_some_and(|doc| doc["attrs"].get("active").is_some());
        if imported || stored.docs.contains_key(&key) {
            return Resolution::NotDirectory;
        }
        if let Some(identity) = self.cache.get(id) {
            return Resolution::Resolved {
                identity,
                cached: true,
            };
        }
        let read = match directory {
            Directory::Ldap(ldap) => ldap.lookup(subject).await,
            Directory::Oidc(_) => self.linked(id).await,
        };
        match read.and_then(|found| self.remember(id, found.as_ref())) {
            Ok(identity) => Resolution::Resolved {
                identity,
                cached: false,
            },
            Err(e) => {
                tracing::warn!(directory = %name, error = %e, "Directory unavailable; deciding deny for an uncached identity.");
                Resolution::Unavailable {
                    directory: name.to_owned(),
                    error: e.to_string(),
                }
            }
        }
    }

    /// A bearer JWT checked by the provider whose issuer it names, when
    /// that provider accepts bearer tokens. Verified tokens are kept (by
    /// digest) for the identity TTL, never past their `exp`.
    pub async fn bearer(&self, token: &str) -> Bearer {
        let Some((name, oidc)) = self.bearer_provider(token) else {
            return Bearer::NotIssued;
        };
        let key = digest(token);
        if let Some(known) = self.bearers.get(&key) {
            if known.expires_at > now() {
                return Bearer::Valid(known);
            }
            self.bearers.invalidate(&key);
        }
        let verified = match oidc.verify_bearer(token).await {
            Ok(Ok(verified)) => verified,
            Ok(Err(reason)) => return Bearer::Invalid(reason),
            Err(e) => {
                tracing::warn!(directory = %name, error = %e, "Provider keys unavailable; the bearer token is refused.");
                return Bearer::Unavailable {
                    directory: name,
                    error: e,
                };
            }
        };
        let entities = match identity_entities(&verified.identity) {
            Ok(entities) => entities,
            Err(e) => return Bearer::Invalid(e.to_string()),
        };
        let caller = Arc::new(BearerCaller {
            principal: user_uid(&verified.identity.user_id()),
            identity: Arc::new(ResolvedIdentity {
                entities: entities.into(),
                stamp: self.stamps.fetch_add(1, Ordering::Relaxed) + 1,
            }),
            expires_at: verified.expires_at,
        });
        self.bearers.insert(key, caller.clone());
        Bearer::Valid(caller)
    }

    /// The provider that accepts bearer tokens and whose issuer the token
    /// names (unverified: its keys then check the token).
    fn bearer_provider(&self, token: &str) -> Option<(String, Arc<OidcDirectory>)> {
        let accepting: Vec<(&String, &Arc<OidcDirectory>)> = self
            .registry
            .directories()
            .iter()
            .filter_map(|(name, directory)| match directory {
                Directory::Oidc(oidc) if oidc.bearer_issuer().is_some() => Some((name, oidc)),
                _ => None,
            })
            .collect();
        // Most deployments have none: then the token is not even decoded.
        if accepting.is_empty() {
            return None;
        }
        let issuer = unverified_issuer(token)?;
        let issuer = issuer.trim_end_matches('/');
        accepting
            .into_iter()
            .find(|(_, oidc)| oidc.bearer_issuer() == Some(issuer))
            .map(|(name, oidc)| (name.clone(), oidc.clone()))
    }

    /// Caches what the directory said about `id` under a new stamp.
    fn remember(
        &self,
        id: &str,
        found: Option<&DirectoryIdentity>,
    ) -> Result<Arc<ResolvedIdentity>, StoreError> {
        let entities = match found {
            Some(identity) => {
                identity_entities(identity).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => Vec::new(),
        };
        let resolved = Arc::new(ResolvedIdentity {
            entities: entities.into(),
            stamp: self.stamps.fetch_add(1, Ordering::Relaxed) + 1,
        });
        self.cache.insert(id.to_owned(), resolved.clone());
        Ok(resolved)
    }

    async fn linked(&self, id: &str) -> Result<Option<DirectoryIdentity>, StoreError> {
        let Some(found) = self.store.get(IDENTITIES, id).await? else {
            return Ok(None);
        };
        let link: Link = serde_json::from_slice(&found.value)
            .map_err(|e| StoreError::Corrupt(format!("{IDENTITIES}/{id}: {e}")))?;
        Ok(Some(link.identity))
    }

    fn ldap(&self, name: &str) -> Result<&Arc<crate::backends::LdapDirectory>, IdentityError> {
        match self.registry.directory(name) {
            Some(Directory::Ldap(ldap)) => Ok(ldap),
            _ => Err(IdentityError::UnknownDirectory {
                name: name.to_owned(),
                kind: "ldap",
            }),
        }
    }

    fn oidc(&self, name: &str) -> Result<&Arc<crate::backends::OidcDirectory>, IdentityError> {
        match self.registry.directory(name) {
            Some(Directory::Oidc(oidc)) => Ok(oidc),
            _ => Err(IdentityError::UnknownDirectory {
                name: name.to_owned(),
                kind: "oidc",
            }),
        }
    }

    /// Checks a password against an LDAP directory; on success the identity
    /// is read afresh and its cached copy replaced.
    pub async fn ldap_login(
        &self,
        directory: &str,
        username: &str,
        password: &str,
    ) -> Result<DirectoryIdentity, IdentityError> {
        let ldap = self.ldap(directory)?;
        let identity = ldap
            .authenticate(username, password)
            .await
            .map_err(|source| IdentityError::Unavailable {
                name: directory.to_owned(),
                source,
            })?
            .ok_or(IdentityError::BadCredentials)?;
        self.remember(&identity.user_id(), Some(&identity))?;
        Ok(identity)
    }

    /// Starts a sign-in with `provider`: stores the state's digest with the
    /// PKCE verifier and returns the provider URL and the state (for the
    /// browser-binding cookie).
    pub async fn oauth_start(
        &self,
        provider: &str,
        started_by: OAuthFor,
    ) -> Result<crate::backends::Authorization, IdentityError> {
        let oidc = self.oidc(provider)?;
        let authorization =
            oidc.authorize()
                .await
                .map_err(|source| IdentityError::Unavailable {
                    name: provider.to_owned(),
                    source,
                })?;
        let pending = PendingAuthorization {
            provider: provider.to_owned(),
            verifier: authorization.verifier.clone(),
            expires_at: now() + OAUTH_STATE_TTL.as_secs(),
            web: started_by != OAuthFor::Api,
            link_to: match started_by {
                OAuthFor::Link(user_id) => Some(user_id),
                _ => None,
            },
        };
        let value = serde_json::to_vec(&pending).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store
            .put(
                OAUTH_STATES,
                &digest(&authorization.state),
                &value,
                Expect::Absent,
            )
            .await?;
        self.sweep_expired_states().await;
        Ok(authorization)
    }

    /// Completes a sign-in: the state must be pending, unexpired, for this
    /// provider, and the one the browser's cookie holds; it is used up
    /// whatever happens next. The identity is linked in the store.
    pub async fn oauth_finish(
        &self,
        provider: &str,
        state: &str,
        browser_state: Option<&str>,
        code: &str,
    ) -> Result<(DirectoryIdentity, OAuthFor), IdentityError> {
        let oidc = self.oidc(provider)?;
        let same_browser = browser_state.is_some_and(|cookie| {
            use subtle::ConstantTimeEq;
            bool::from(cookie.as_bytes().ct_eq(state.as_bytes()))
        });
        if !same_browser || state.is_empty() {
            return Err(IdentityError::InvalidState);
        }
        let key = digest(state);
        let Some(found) = self.store.get(OAUTH_STATES, &key).await? else {
            return Err(IdentityError::InvalidState);
        };
        // Single use: whoever deletes this version owns the state.
        match self
            .store
            .delete(OAUTH_STATES, &key, Expect::Version(found.version))
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(StoreError::Conflict { .. }) => {
                return Err(IdentityError::InvalidState);
            }
            Err(e) => return Err(e.into()),
        }
        let pending: PendingAuthorization =
            serde_json::from_slice(&found.value).map_err(|_| IdentityError::InvalidState)?;
        if pending.provider != provider || pending.expires_at < now() {
            return Err(IdentityError::InvalidState);
        }
        let identity = oidc
            .finish(code, &pending.verifier)
            .await
            .map_err(|source| IdentityError::Unavailable {
                name: provider.to_owned(),
                source,
            })?
            .map_err(IdentityError::Rejected)?;
        let link = Link {
            identity,
            linked_at: now(),
        };
        let value = serde_json::to_vec(&link).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = link.identity.user_id();
        self.store.put(IDENTITIES, &id, &value, Expect::Any).await?;
        self.remember(&id, Some(&link.identity))?;
        let started_by = match (pending.link_to, pending.web) {
            (Some(user_id), _) => OAuthFor::Link(user_id),
            (None, true) => OAuthFor::Web,
            (None, false) => OAuthFor::Api,
        };
        Ok((link.identity, started_by))
    }

    /// Deletes a page of expired pending authorizations; abandoned sign-ins
    /// would otherwise stay forever. Failures are left for the next sweep.
    async fn sweep_expired_states(&self) {
        let Ok(page) = self.store.scan(OAUTH_STATES, "", None, 100).await else {
            return;
        };
        let now = now();
        for (key, item) in page.items {
            let expired = serde_json::from_slice::<PendingAuthorization>(&item.value)
                .map_or(true, |p| p.expires_at < now);
            if expired {
                let _ = self
                    .store
                    .delete(OAUTH_STATES, &key, Expect::Version(item.version))
                    .await;
            }
        }
    }

    /// The names of the configured OIDC providers with their labels.
    pub fn providers(&self) -> Vec<(String, String)> {
        self.registry
            .directories()
            .iter()
            .filter_map(|(name, d)| match d {
                Directory::Oidc(oidc) => Some((name.clone(), oidc.display_name().to_owned())),
                Directory::Ldap(_) => None,
            })
            .collect()
    }
}

/// The Cedar uid string of a directory user.
pub fn principal_of(identity: &DirectoryIdentity) -> String {
    user_uid(&qualified(&identity.directory, &identity.subject)).to_string()
}

/// The `iss` claim of a JWT, read without checking anything: only to pick
/// the provider whose keys then check the token.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(Deserialize)]
    struct Issuer {
        iss: String,
    }
    serde_json::from_slice::<Issuer>(&bytes).ok().map(|i| i.iss)
}
