//! Accounts: registration, password login, sessions with rotating refresh
//! tokens, logout, and the signed-in user's own profile.
//!
//! Everything lives in the active store, so it survives restarts and store
//! switches:
//! - `users/<id>`: the [`User`];
//! - `user_emails/<email>`: the id, so an address is unique (both written in
//!   one transaction, so a failed registration leaves nothing);
//! - `sessions/<user id>:<sid>`: a sign-in; access tokens carry its `sid`
//!   and stop working the moment it is revoked;
//! - `refresh_tokens/<sha-256>`: one per refresh token, used once. Using one
//!   twice means it was stolen: the whole session is revoked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use cedar_policy::Entity;
use moka::sync::Cache;

use serde::{Deserialize, Serialize};

use super::mail::Mailer;
use super::mfa::LoginOutcome;
use super::passwords::{self, PasswordError, Verified};
use super::throttle::Attempt;
use super::tokens::{AccessClaims, TokenError, Tokens, digest, now, random_token};
use crate::authz::{ResolvedIdentity, user_entity};
use crate::backends::{Expect, Op, RedisBus, Store, StoreError, Versioned, scan_prefix};
use crate::config::AccountsConfig;
use crate::domain::{User, normalize_email};

pub const USERS: &str = "users";
pub const USER_EMAILS: &str = "user_emails";
pub const SESSIONS: &str = "sessions";
pub const REFRESH_TOKENS: &str = "refresh_tokens";
/// Single-use mailed tokens (verification, reset, magic link), by digest.
pub const ACTION_TOKENS: &str = "action_tokens";
/// Settings changed at runtime; key `accounts`.
pub const SETTINGS: &str = "settings";
const SETTINGS_KEY: &str = "accounts";

/// The bus topic of account changes.
pub const TOPIC_ACCOUNTS: &str = "accounts";
/// Cached credentials: how many, and how long another instance's change
/// can go unseen when no bus is configured.
const CREDENTIAL_CACHE_CAPACITY: u64 = 100_000;
const CREDENTIAL_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest display name accepted.
const MAX_NAME: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("a user with this e-mail address already exists")]
    UserAlreadyExists,
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    #[error("invalid password: {0}")]
    UpdateInvalidPassword(String),
    #[error("a user with this e-mail address already exists")]
    UpdateEmailExists,
    #[error("this change needs the user's password as `current_password`")]
    CurrentPasswordRequired,
    #[error("`current_password` is not the user's password")]
    CurrentPasswordWrong,
    #[error("not a valid e-mail address")]
    InvalidEmail,
    #[error("{0}")]
    InvalidField(String),
    #[error("bad credentials")]
    BadCredentials,
    #[error("the user's e-mail address is not verified")]
    NotVerified,
    #[error("the access token is missing, invalid, expired or revoked")]
    Unauthenticated,
    #[error("the refresh token is invalid, expired or already used")]
    InvalidRefreshToken,
    #[error("the verification token is invalid, expired or already used")]
    VerifyBadToken,
    #[error("the user is already verified")]
    AlreadyVerified,
    #[error("the reset token is invalid, expired or already used")]
    ResetBadToken,
    #[error("invalid password: {0}")]
    ResetInvalidPassword(String),
    #[error("the magic link is invalid, expired or already used")]
    MagicLinkBadToken,
    #[error("too many failed logins; try again in {0} seconds")]
    Locked(u64),
    #[error("this needs a signed-in session, not an API key")]
    NotASession,
    #[error("the API key's scopes do not include `{0}`")]
    InsufficientScope(String),
    #[error("a second factor is already enrolled; remove it first")]
    MfaAlreadyEnrolled,
    #[error("no second factor is enrolled")]
    MfaNotEnrolled,
    #[error("the code is not valid")]
    MfaBadCode,
    #[error("the login challenge is invalid, expired, already used or denied")]
    MfaBadChallenge,
    #[error("user `{0}` not found")]
    UserNotFound(String),
    #[error(
        "an account with the provider's e-mail address exists: sign in to it, then link the provider"
    )]
    FederatedEmailTaken,
    #[error("the provider did not share a verified e-mail address")]
    FederatedNoEmail,
    #[error("this provider identity is linked to another account")]
    FederatedLinkedElsewhere,
    #[error("API key `{0}` not found")]
    ApiKeyNotFound(String),
    #[error("session `{0}` not found")]
    SessionNotFound(String),
    #[error("a user may hold at most {0} API keys")]
    ApiKeyLimit(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<TokenError> for AccountError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(_) => AccountError::Unauthenticated,
            TokenError::Store(e) => AccountError::Store(e),
            TokenError::Sign(e) => AccountError::Internal(e),
        }
    }
}

impl From<PasswordError> for AccountError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Weak(reason) => AccountError::InvalidPassword(reason),
            PasswordError::Hash(e) => AccountError::Internal(e),
        }
    }
}

/// What `POST /auth/jwt/login` and `/refresh` answer.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Registration {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `PATCH /users/me`: only these fields; privilege flags are not among them.
#[derive(Debug, Default, Deserialize)]
pub struct ProfileUpdate {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The caller's password, needed to change their own password or
    /// e-mail address (not an admin's change to another user).
    #[serde(default)]
    pub current_password: Option<String>,
}

/// What only an admin may change about a user.
#[derive(Debug, Default, Deserialize)]
pub struct Flags {
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub is_superuser: Option<bool>,
    #[serde(default)]
    pub is_verified: Option<bool>,
}

#[derive(Serialize, Deserialize)]
struct Session {
    created_at: u64,
    expires_at: u64,
    revoked: bool,
}

/// One live session of a user, as `GET /auth/sessions` lists it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// The caller's own session.
    pub current: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct RefreshRecord {
    user_id: String,
    sid: String,
    expires_at: u64,
    used: bool,
    /// Unused until then, the session has been idle too long. Records
    /// written before there was an idle limit have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idle_until: Option<u64>,
}

/// What a mailed single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Verify,
    Reset,
    MagicLink,
}

#[derive(Serialize, Deserialize)]
struct ActionToken {
    user_id: String,
    purpose: Purpose,
    /// The address it was sent to: a token outlives no change of address.
    email: String,
    expires_at: u64,
}

/// A mailed token found valid, not yet used: the caller spends it in the
/// same transaction as the change it makes.
struct Redeemable {
    key: String,
    version: u64,
    user: User,
    user_version: u64,
}

impl Redeemable {
    /// The ops that spend the token and store `user`, all or nothing.
    fn spend_with(&self, user: &User) -> Result<Vec<Op>, AccountError> {
        Ok(vec![
            Op::Delete {
                ns: ACTION_TOKENS.into(),
                key: self.key.clone(),
                expect: Expect::Version(self.version),
            },
            Op::Put {
                ns: USERS.into(),
                key: user.id.clone(),
                value: encode(user)?,
                expect: Expect::Version(self.user_version),
            },
        ])
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone)]
pub enum Via {
    /// A session's access token.
    Session(AccessClaims),
    /// An API key, limited to its scopes (none: all of the user's rights).
    ApiKey { key_id: String, scopes: Vec<String> },
}

/// A caller found behind some credentials, cached.
pub(super) struct CachedCaller {
    caller: Authenticated,
    valid_until: u64,
    generation: u64,
}

/// What a cache miss hands to the lookup, to cache its result under.
pub(super) struct CacheTicket {
    key: String,
    generation: u64,
}

/// The user behind a request's credentials.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub version: u64,
    pub via: Via,
    /// The user as a Cedar entity, built once per credential lookup (and
    /// kept with it in the credential cache), for decisions.
    pub entities: Arc<[Entity]>,
}

impl Authenticated {
    pub fn new(user: User, version: u64, via: Via) -> Result<Authenticated, AccountError> {
        let entity = user_entity(&user).map_err(|e| AccountError::Internal(e.to_string()))?;
        Ok(Authenticated {
            user,
            version,
            via,
            entities: vec![entity].into(),
        })
    }

    /// Whether the credentials cover `scope`: sessions cover everything,
    /// an API key what it was created with.
    pub fn allows(&self, scope: &str) -> bool {
        match &self.via {
            Via::Session(_) => true,
            Via::ApiKey { scopes, .. } => scopes.is_empty() || scopes.iter().any(|s| s == scope),
        }
    }
}

pub struct Accounts {
    pub(super) store: Arc<dyn Store>,
    pub tokens: Arc<Tokens>,
    /// Who presented credentials were found to be, by the credentials'
    /// digest, with when they stop being valid. Emptied on every account
    /// change here, and on other instances through the bus.
    credentials: Cache<String, Arc<CachedCaller>>,
    /// Bumped by every account change: an entry cached under an older
    /// generation is never served, even one inserted after the change by a
    /// lookup that began before it.
    generation: AtomicU64,
    /// Local users as decision principals (`None`: no such user), each with
    /// the generation it was read under.
    principals: Cache<String, (u64, Option<Arc<ResolvedIdentity>>)>,
    bus: OnceLock<Arc<RedisBus>>,
    mailer: Arc<Mailer>,
    /// The config's defaults with the stored settings over them.
    settings: ArcSwap<AccountsConfig>,
    pub(super) public_url: String,
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AccountError> {
    serde_json::to_vec(value).map_err(|e| AccountError::Internal(e.to_string()))
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    ns: &str,
    key: &str,
    item: &Versioned,
) -> Result<T, StoreError> {
    serde_json::from_slice(&item.value).map_err(|e| StoreError::Corrupt(format!("{ns}/{key}: {e}")))
}

fn session_key(user_id: &str, sid: &str) -> String {
    format!("{user_id}:{sid}")
}

/// A random UUID (version 4), the form user ids take.
pub(super) fn new_user_id() -> String {
    let token = digest(&random_token());
    let hex = token.as_bytes();
    let text =
        |r: std::ops::Range<usize>| std::str::from_utf8(&hex[r]).unwrap_or_default().to_owned();
    // Version nibble 4, variant bits 10xx.
    let variant = ["8", "9", "a", "b"][usize::from(hex[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        text(0..8),
        text(8..12),
        text(13..16),
        variant,
        text(17..20),
        text(20..32)
    )
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<Tokens>,
        mailer: Arc<Mailer>,
        config: AccountsConfig,
        public_url: &str,
    ) -> Accounts {
        Accounts {
            store,
            tokens,
            credentials: Cache::builder()
                .max_capacity(CREDENTIAL_CACHE_CAPACITY)
                .time_to_live(CREDENTIAL_CACHE_TTL)
                .build(),
            generation: AtomicU64::new(0),
            principals: Cache::builder()
                .max_capacity(CREDENTIAL_CACHE_CAPACITY)
                .time_to_live(CREDENTIAL_CACHE_TTL)
                .build(),
            bus: OnceLock::new(),
            mailer,
            settings: ArcSwap::from_pointee(config),
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Announce account changes to other instances on `bus` from now on.
    pub fn attach_bus(&self, bus: Arc<RedisBus>) {
        let _ = self.bus.set(bus);
    }

    /// Forgets every cached credential (a change here or elsewhere).
    pub fn forget_credentials(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.credentials.invalidate_all();
    }

    /// Something about users, sessions or keys changed: cached credentials
    /// are forgotten here, and the other instances are told to.
    pub(super) async fn changed(&self) {
        self.forget_credentials();
        if let Some(bus) = self.bus.get()
            && let Err(e) = bus.publish(TOPIC_ACCOUNTS).await
        {
            tracing::warn!(error = %e, "Could not announce an account change to other instances.");
        }
    }

    /// The cached caller behind `credential`, while still valid; on a miss,
    /// the ticket to remember what the lookup finds.
    pub(super) fn cached_caller(&self, credential: &str) -> Result<Authenticated, CacheTicket> {
        let key = digest(credential);
        let generation = self.generation.load(Ordering::Acquire);
        match self.credentials.get(&key) {
            Some(entry) if entry.generation == generation && entry.valid_until > now() => {
                Ok(entry.caller.clone())
            }
            _ => Err(CacheTicket { key, generation }),
        }
    }

    pub(super) fn remember_caller(
        &self,
        ticket: CacheTicket,
        caller: &Authenticated,
        valid_until: u64,
    ) {
        self.credentials.insert(
            ticket.key,
            Arc::new(CachedCaller {
                caller: caller.clone(),
                valid_until,
                generation: ticket.generation,
            }),
        );
    }

    /// The local user `id` as a decision principal: its Cedar entity
    /// (attributes, `active`, the admin role), stamped with its stored
    /// version; `None` when there is no such user. Kept until the next
    /// account change, here or on another instance.
    pub async fn principal(&self, id: &str) -> Result<Option<Arc<ResolvedIdentity>>, AccountError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((seen, found)) = self.principals.get(id)
            && seen == generation
        {
            return Ok(found);
        }
        let found = match self.user(id).await? {
            Some((user, version)) => {
                let entity =
                    user_entity(&user).map_err(|e| AccountError::Internal(e.to_string()))?;
                Some(Arc::new(ResolvedIdentity {
                    entities: vec![entity].into(),
                    stamp: version,
                }))
            }
            None => None,
        };
        self.principals
            .insert(id.to_owned(), (generation, found.clone()));
        Ok(found)
    }

    /// The account settings in force.
    pub fn settings(&self) -> Arc<AccountsConfig> {
        self.settings.load_full()
    }

    /// Applies the stored settings over the config's, at start-up.
    pub async fn load_settings(&self) -> Result<(), AccountError> {
        let Some(item) = self.store.get(SETTINGS, SETTINGS_KEY).await? else {
            return Ok(());
        };
        let stored: serde_json::Value = decode(SETTINGS, SETTINGS_KEY, &item)?;
        let merged = merge_settings(&*self.settings(), &stored)
            .map_err(|e| StoreError::Corrupt(format!("{SETTINGS}/{SETTINGS_KEY}: {e}")))?;
        self.settings.store(Arc::new(merged));
        Ok(())
    }

    /// `PATCH /management/settings/`: validates the changed settings as a
    /// whole, stores them and puts them in force.
    pub async fn update_settings(
        &self,
        changes: &serde_json::Value,
    ) -> Result<Arc<AccountsConfig>, AccountError> {
        let Some(map) = changes.as_object() else {
            return Err(AccountError::InvalidField(
                "settings must be a JSON object".into(),
            ));
        };
        if let Some(fixed) = map.keys().find(|k| *k == "issuer" || *k == "audience") {
            return Err(AccountError::InvalidField(format!(
                "`{fixed}` is set in the config file only: changing it would end every session"
            )));
        }
        let current = self.settings();
        let next = merge_settings(&*current, changes).map_err(AccountError::InvalidField)?;
        next.validate()
            .map_err(|(key, why)| AccountError::InvalidField(format!("`{key}` {why}")))?;
        self.store
            .put(SETTINGS, SETTINGS_KEY, &encode(&next)?, Expect::Any)
            .await?;
        let next = Arc::new(next);
        self.settings.store(next.clone());
        Ok(next)
    }

    pub async fn register(&self, input: Registration) -> Result<User, AccountError> {
        if !self.settings().registration_open {
            return Err(AccountError::RegistrationClosed);
        }
        self.create_user(input, false).await
    }

    /// Creates an account whatever the registration setting; only a
    /// superuser (or the CLI) may pass `superuser`.
    pub async fn create_user(
        &self,
        input: Registration,
        superuser: bool,
    ) -> Result<User, AccountError> {
        let email = normalize_email(&input.email).ok_or(AccountError::InvalidEmail)?;
        let name = check_name(input.name)?;
        passwords::check_policy(&input.password, &email, self.settings().password_min_length)?;
        if self.store.get(USER_EMAILS, &email).await?.is_some() {
            return Err(AccountError::UserAlreadyExists);
        }
        let hashed_password = passwords::hash(input.password).await?;
        let created_at = now();
        let user = User {
            id: new_user_id(),
            email,
            hashed_password,
            is_active: true,
            // An account made by an operator needs no mailed proof.
            is_verified: superuser,
            is_superuser: superuser,
            name,
            created_at,
            updated_at: created_at,
        };
        self.insert_user(user, Vec::new()).await
    }

    /// Stores a new user with its e-mail index, and `extra` in the same
    /// transaction; a taken address is `UserAlreadyExists`.
    pub(super) async fn insert_user(
        &self,
        user: User,
        extra: Vec<Op>,
    ) -> Result<User, AccountError> {
        let mut ops = vec![
            Op::Put {
                ns: USERS.into(),
                key: user.id.clone(),
                value: encode(&user)?,
                expect: Expect::Absent,
            },
            Op::Put {
                ns: USER_EMAILS.into(),
                key: user.email.clone(),
                value: user.id.clone().into_bytes(),
                expect: Expect::Absent,
            },
        ];
        ops.extend(extra);
        match self.store.transact(ops).await {
            Ok(_) => Ok(user),
            Err(StoreError::Conflict { .. }) => Err(AccountError::UserAlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The user with this e-mail address, with its stored version.
    pub(super) async fn user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<(User, u64)>, AccountError> {
        let Some(id) = self.store.get(USER_EMAILS, email).await? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id.value).into_owned();
        self.user(&id).await
    }

    pub async fn user(&self, id: &str) -> Result<Option<(User, u64)>, AccountError> {
        let Some(item) = self.store.get(USERS, id).await? else {
            return Ok(None);
        };
        Ok(Some((decode(USERS, id, &item)?, item.version)))
    }

    /// Password login. Unknown users, wrong passwords and inactive users
    /// get the same answer after the same work (a hash is checked either
    /// way); failures count towards the account's and the address's lock.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<LoginOutcome, AccountError> {
        let attempt = Attempt::new(username, address);
        if let Some(wait) = self.locked_for(&attempt).await? {
            tracing::warn!(name = %attempt.digest(), address = ?address, "Password sign-in refused: locked.");
            return Err(AccountError::Locked(wait));
        }
        let result = self.check_password(username, password).await;
        match &result {
            Ok(user) => {
                self.clear_failures(&attempt).await?;
                tracing::info!(user = %user.id, address = ?address, "Password sign-in.");
            }
            Err(e) => {
                if matches!(e, AccountError::BadCredentials) {
                    self.count_failure(&attempt).await?;
                }
                // The name tried, as a digest: it may be a mistyped password.
                tracing::warn!(name = %attempt.digest(), address = ?address, error = %e, "Password sign-in refused.");
            }
        }
        self.finish_login(&result?, address).await
    }

    async fn check_password(&self, username: &str, password: &str) -> Result<User, AccountError> {
        let found = match normalize_email(username) {
            Some(email) => self.user_by_email(&email).await?,
            None => None,
        };
        let stored = found.as_ref().map(|(u, _)| u.hashed_password.clone());
        let verified = passwords::verify(password.to_owned(), stored).await;
        let (user, version) = match (found, &verified) {
            (Some((user, version)), Verified::Yes | Verified::YesRehash) if user.is_active => {
                (user, version)
            }
            _ => return Err(AccountError::BadCredentials),
        };
        if self.settings().require_verification && !user.is_verified {
            return Err(AccountError::NotVerified);
        }
        if verified == Verified::YesRehash {
            self.rehash(user.clone(), version, password).await;
        }
        Ok(user)
    }

    /// Stores a hash at the current parameters; a concurrent change wins.
    async fn rehash(&self, mut user: User, version: u64, password: &str) {
        let Ok(hash) = passwords::hash(password.to_owned()).await else {
            return;
        };
        user.hashed_password = hash;
        if let Ok(value) = encode(&user) {
            let _ = self
                .store
                .put(USERS, &user.id, &value, Expect::Version(version))
                .await;
        }
    }

    pub(super) async fn start_session(&self, user_id: &str) -> Result<TokenPair, AccountError> {
        let sid = random_token();
        let created_at = now();
        let expires_at = created_at + self.settings().refresh_token_ttl_seconds;
        let refresh = random_token();
        let ops = vec![
            Op::Put {
                ns: SESSIONS.into(),
                key: session_key(user_id, &sid),
                value: encode(&Session {
                    created_at,
                    expires_at,
                    revoked: false,
                })?,
                expect: Expect::Absent,
            },
            Op::Put {
                ns: REFRESH_TOKENS.into(),
                key: digest(&refresh),
                value: encode(&RefreshRecord {
                    user_id: user_id.to_owned(),
                    sid: sid.clone(),
                    expires_at,
                    used: false,
                    idle_until: Some(created_at + self.settings().session_idle_seconds),
                })?,
                expect: Expect::Absent,
            },
        ];
        self.store.transact(ops).await?;
        self.pair(user_id, &sid, refresh)
    }

    fn pair(&self, user_id: &str, sid: &str, refresh: String) -> Result<TokenPair, AccountError> {
        let ttl = self.settings().access_token_ttl_seconds;
        let (access_token, _) = self.tokens.issue(user_id, sid, ttl)?;
        Ok(TokenPair {
            access_token,
            token_type: "bearer",
            refresh_token: refresh,
            expires_in: ttl,
        })
    }

    /// Trades a refresh token for a new pair. A token used a second time
    /// revokes its whole session.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, AccountError> {
        let key = digest(token);
        let Some(item) = self.store.get(REFRESH_TOKENS, &key).await? else {
            return Err(AccountError::InvalidRefreshToken);
        };
        let record: RefreshRecord = decode(REFRESH_TOKENS, &key, &item)?;
        if record.used {
            tracing::warn!(user = %record.user_id, "A refresh token was used twice; revoking its session.");
            self.revoke_session(&record.user_id, &record.sid).await?;
            return Err(AccountError::InvalidRefreshToken);
        }
        let at = now();
        if record.expires_at < at || !self.session_live(&record.user_id, &record.sid).await? {
            return Err(AccountError::InvalidRefreshToken);
        }
        if record.idle_until.is_some_and(|idle| idle < at) {
            tracing::info!(user = %record.user_id, "A session ended, idle too long.");
            self.revoke_session(&record.user_id, &record.sid).await?;
            return Err(AccountError::InvalidRefreshToken);
        }
        match self.user(&record.user_id).await? {
            Some((user, _)) if user.is_active => {}
            _ => return Err(AccountError::InvalidRefreshToken),
        }
        let next = random_token();
        let rotated = RefreshRecord {
            user_id: record.user_id.clone(),
            sid: record.sid.clone(),
            expires_at: record.expires_at,
            used: false,
            idle_until: Some(at + self.settings().session_idle_seconds),
        };
        let spent = RefreshRecord {
            used: true,
            ..rotated.clone()
        };
        let ops = vec![
            Op::Put {
                ns: REFRESH_TOKENS.into(),
                key: key.clone(),
                value: encode(&spent)?,
                expect: Expect::Version(item.version),
            },
            Op::Put {
                ns: REFRESH_TOKENS.into(),
                key: digest(&next),
                value: encode(&rotated)?,
                expect: Expect::Absent,
            },
        ];
        match self.store.transact(ops).await {
            Ok(_) => self.pair(&record.user_id, &record.sid, next),
            // Two refreshes raced with one token: one of them is a thief.
            Err(StoreError::Conflict { .. }) => {
                self.revoke_session(&record.user_id, &record.sid).await?;
                Err(AccountError::InvalidRefreshToken)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn session_live(
        &self,
        user_id: &str,
        sid: &str,
    ) -> Result<bool, AccountError> {
        let key = session_key(user_id, sid);
        let Some(item) = self.store.get(SESSIONS, &key).await? else {
            return Ok(false);
        };
        let session: Session = decode(SESSIONS, &key, &item)?;
        Ok(!session.revoked && session.expires_at >= now())
    }

    /// Ends a session: its access tokens and refresh tokens stop working.
    pub async fn revoke_session(&self, user_id: &str, sid: &str) -> Result<(), AccountError> {
        let key = session_key(user_id, sid);
        let Some(item) = self.store.get(SESSIONS, &key).await? else {
            return Ok(());
        };
        if self.mark_revoked(&key, &item).await? {
            self.changed().await;
        }
        Ok(())
    }

    /// The caller's live sessions, the newest first.
    pub async fn sessions(&self, me: &Authenticated) -> Result<Vec<SessionView>, AccountError> {
        let Via::Session(claims) = &me.via else {
            return Err(AccountError::NotASession);
        };
        let prefix = session_key(&me.user.id, "");
        let now = now();
        let mut live = Vec::new();
        for (key, item) in scan_prefix(self.store.as_ref(), SESSIONS, &prefix).await? {
            let session: Session = decode(SESSIONS, &key, &item)?;
            if session.revoked || session.expires_at < now {
                continue;
            }
            let id = key[prefix.len()..].to_owned();
            live.push(SessionView {
                current: id == claims.sid,
                id,
                created_at: session.created_at,
                expires_at: session.expires_at,
            });
        }
        live.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(live)
    }

    /// Ends one of the caller's live sessions (its own too, as a logout).
    pub async fn end_session(&self, me: &Authenticated, sid: &str) -> Result<(), AccountError> {
        if !matches!(me.via, Via::Session(_)) {
            return Err(AccountError::NotASession);
        }
        let key = session_key(&me.user.id, sid);
        let live = match self.store.get(SESSIONS, &key).await? {
            Some(item) => self.mark_revoked(&key, &item).await?,
            None => false,
        };
        if !live {
            return Err(AccountError::SessionNotFound(sid.to_owned()));
        }
        self.changed().await;
        Ok(())
    }

    /// Stores the session `key` (as read: `item`) revoked; whether it was live.
    async fn mark_revoked(&self, key: &str, item: &Versioned) -> Result<bool, AccountError> {
        let mut session: Session = decode(SESSIONS, key, item)?;
        if session.revoked {
            return Ok(false);
        }
        session.revoked = true;
        self.store
            .put(SESSIONS, key, &encode(&session)?, Expect::Any)
            .await?;
        Ok(true)
    }

    /// The user behind a bearer access token, if the token verifies, its
    /// session is live and the user is active.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AccountError> {
        let ticket = match self.cached_caller(token) {
            Ok(caller) => return Ok(caller),
            Err(ticket) => ticket,
        };
        let found = self.authenticate_uncached(token).await?;
        if let Via::Session(claims) = &found.via {
            self.remember_caller(ticket, &found, claims.exp);
        }
        Ok(found)
    }

    async fn authenticate_uncached(&self, token: &str) -> Result<Authenticated, AccountError> {
        let claims = self.tokens.verify(token).await?;
        if !self.session_live(&claims.sub, &claims.sid).await? {
            return Err(AccountError::Unauthenticated);
        }
        match self.user(&claims.sub).await? {
            Some((user, version)) if user.is_active => {
                Authenticated::new(user, version, Via::Session(claims))
            }
            _ => Err(AccountError::Unauthenticated),
        }
    }

    /// Changes the signed-in user's own e-mail, password or name.
    /// The caller's own change. A new password or e-mail address needs the
    /// current password, so a stolen session cannot take the account over;
    /// it then ends every other session of the user (not the caller's).
    pub async fn update_me(
        &self,
        me: &Authenticated,
        mut update: ProfileUpdate,
    ) -> Result<User, AccountError> {
        let new_email = update
            .email
            .as_deref()
            .and_then(normalize_email)
            .is_some_and(|email| email != me.user.email);
        let caller = match &me.via {
            Via::Session(claims) => Some(claims.sid.as_str()),
            Via::ApiKey { .. } => None,
        };
        if update.password.is_some() || new_email {
            // An API key is a credential of its own, not a sign-in.
            if caller.is_none() {
                return Err(AccountError::NotASession);
            }
            self.reauthenticate(me, update.current_password.take())
                .await?;
        }
        self.update_user(me.user.clone(), me.version, update, None, caller)
            .await
    }

    /// Checks `current`, the password a signed-in user gave again before a
    /// sensitive change (ASVS 3.7.1). Wrong ones count towards the
    /// account's login lock.
    pub async fn reauthenticate(
        &self,
        me: &Authenticated,
        current: Option<String>,
    ) -> Result<(), AccountError> {
        let current = current.ok_or(AccountError::CurrentPasswordRequired)?;
        let attempt = Attempt::new(&me.user.email, None);
        if let Some(wait) = self.locked_for(&attempt).await? {
            return Err(AccountError::Locked(wait));
        }
        let stored = Some(me.user.hashed_password.clone());
        if passwords::verify(current, stored).await == passwords::Verified::No {
            self.count_failure(&attempt).await?;
            tracing::warn!(user = %me.user.id, "Re-authentication refused: wrong password.");
            return Err(AccountError::CurrentPasswordWrong);
        }
        Ok(())
    }

    /// Applies a profile change, and for admins flag changes, to `user` as
    /// stored at `version`: all or nothing. A new password or e-mail address
    /// ends the user's sessions but `keep` (the caller's own), and
    /// deactivation ends them all, in the same write.
    pub(super) async fn update_user(
        &self,
        mut user: User,
        version: u64,
        update: ProfileUpdate,
        flags: Option<Flags>,
        keep: Option<&str>,
    ) -> Result<User, AccountError> {
        let mut ops = Vec::new();
        let mut credentials_changed = update.password.is_some();
        if let Some(name) = update.name {
            user.name = check_name(Some(name))?;
        }
        if let Some(raw) = update.email {
            let email = normalize_email(&raw).ok_or(AccountError::InvalidEmail)?;
            if email != user.email {
                ops.push(Op::Delete {
                    ns: USER_EMAILS.into(),
                    key: user.email.clone(),
                    expect: Expect::Any,
                });
                ops.push(Op::Put {
                    ns: USER_EMAILS.into(),
                    key: email.clone(),
                    value: user.id.clone().into_bytes(),
                    expect: Expect::Absent,
                });
                user.email = email;
                // A new address has to be verified again.
                user.is_verified = false;
                credentials_changed = true;
            }
        }
        if let Some(password) = update.password {
            passwords::check_policy(&password, &user.email, self.settings().password_min_length)
                .map_err(|e| match e {
                    PasswordError::Weak(reason) => AccountError::UpdateInvalidPassword(reason),
                    other => other.into(),
                })?;
            user.hashed_password = passwords::hash(password).await?;
        }
        let deactivated =
            flags.as_ref().is_some_and(|f| f.is_active == Some(false)) && user.is_active;
        if let Some(flags) = flags {
            user.is_active = flags.is_active.unwrap_or(user.is_active);
            user.is_superuser = flags.is_superuser.unwrap_or(user.is_superuser);
            user.is_verified = flags.is_verified.unwrap_or(user.is_verified);
        }
        user.updated_at = now();
        ops.push(Op::Put {
            ns: USERS.into(),
            key: user.id.clone(),
            value: encode(&user)?,
            expect: Expect::Version(version),
        });
        if deactivated {
            ops.extend(self.revocations(&user.id, None).await?);
        } else if credentials_changed {
            ops.extend(self.revocations(&user.id, keep).await?);
        }
        match self.store.transact(ops).await {
            Ok(_) => {}
            Err(StoreError::Conflict { ns, .. }) if ns == USER_EMAILS => {
                return Err(AccountError::UpdateEmailExists);
            }
            Err(e) => return Err(e.into()),
        }
        self.changed().await;
        Ok(user)
    }
}

impl Accounts {
    /// Mails a single-use token for `purpose` to the user with this
    /// address, when there is one it applies to. Callers answer the same
    /// whatever happens here, and run it off the request (no enumeration,
    /// by content or by timing).
    pub async fn mail_token(&self, email: &str, purpose: Purpose) -> Result<(), AccountError> {
        let Some(email) = normalize_email(email) else {
            return Ok(());
        };
        let Some((user, _)) = self.user_by_email(&email).await? else {
            return Ok(());
        };
        let applies = user.is_active
            && match purpose {
                Purpose::Verify => !user.is_verified,
                Purpose::Reset | Purpose::MagicLink => true,
            };
        if !applies {
            return Ok(());
        }
        let ttl = match purpose {
            Purpose::Verify => self.settings().verify_token_ttl_seconds,
            Purpose::Reset => self.settings().reset_token_ttl_seconds,
            Purpose::MagicLink => self.settings().magic_link_ttl_seconds,
        };
        let token = random_token();
        let record = ActionToken {
            user_id: user.id.clone(),
            purpose,
            email: user.email.clone(),
            expires_at: now() + ttl,
        };
        self.store
            .put(
                ACTION_TOKENS,
                &digest(&token),
                &encode(&record)?,
                Expect::Absent,
            )
            .await?;
        let (subject, page, what) = match purpose {
            Purpose::Verify => (
                "Verify your e-mail address",
                "verify",
                "verify your e-mail address",
            ),
            Purpose::Reset => (
                "Reset your password",
                "reset-password",
                "choose a new password",
            ),
            Purpose::MagicLink => ("Your sign-in link", "magic-link", "sign in"),
        };
        let minutes = ttl / 60;
        let body = format!(
            "Hello,\n\nTo {what}, open this link within {minutes} minutes:\n\n\
             {base}/{page}?token={token}\n\n\
             or enter this token:\n\nToken: {token}\n\n\
             If you did not ask for this, ignore this message.\n",
            base = self.public_url,
        );
        self.mailer
            .send(&user.email, subject, body)
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        tracing::info!(user = %user.id, purpose = ?purpose, "Account mail sent.");
        Ok(())
    }

    /// Finds a mailed token valid for `purpose` without spending it.
    async fn redeemable(
        &self,
        token: &str,
        purpose: Purpose,
    ) -> Result<Option<Redeemable>, AccountError> {
        let key = digest(token);
        let Some(item) = self.store.get(ACTION_TOKENS, &key).await? else {
            return Ok(None);
        };
        let record: ActionToken = decode(ACTION_TOKENS, &key, &item)?;
        if record.purpose != purpose || record.expires_at < now() {
            return Ok(None);
        }
        match self.user(&record.user_id).await? {
            Some((user, user_version)) if user.is_active && user.email == record.email => {
                Ok(Some(Redeemable {
                    key,
                    version: item.version,
                    user,
                    user_version,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Spends the token and stores `user`; a lost race is a used token.
    async fn spend(
        &self,
        redeemable: &Redeemable,
        user: &User,
        bad: AccountError,
    ) -> Result<(), AccountError> {
        match self.store.transact(redeemable.spend_with(user)?).await {
            Ok(_) => {
                self.changed().await;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(bad),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<User, AccountError> {
        let found = self
            .redeemable(token, Purpose::Verify)
            .await?
            .ok_or(AccountError::VerifyBadToken)?;
        if found.user.is_verified {
            return Err(AccountError::AlreadyVerified);
        }
        let mut user = found.user.clone();
        user.is_verified = true;
        user.updated_at = now();
        self.spend(&found, &user, AccountError::VerifyBadToken)
            .await?;
        Ok(user)
    }

    /// Sets a new password with a reset token, then ends every session.
    pub async fn reset_password(
        &self,
        token: &str,
        password: String,
    ) -> Result<User, AccountError> {
        let found = self
            .redeemable(token, Purpose::Reset)
            .await?
            .ok_or(AccountError::ResetBadToken)?;
        passwords::check_policy(
            &password,
            &found.user.email,
            self.settings().password_min_length,
        )
        .map_err(|e| match e {
            PasswordError::Weak(reason) => AccountError::ResetInvalidPassword(reason),
            other => other.into(),
        })?;
        let mut user = found.user.clone();
        user.hashed_password = passwords::hash(password).await?;
        user.updated_at = now();
        self.spend(&found, &user, AccountError::ResetBadToken)
            .await?;
        self.revoke_all_sessions(&user.id).await?;
        Ok(user)
    }

    /// Signs in with a magic link; it proves the mailbox, so the address
    /// counts as verified.
    pub async fn magic_login(
        &self,
        token: &str,
        address: Option<IpAddr>,
    ) -> Result<LoginOutcome, AccountError> {
        let found = self
            .redeemable(token, Purpose::MagicLink)
            .await?
            .ok_or(AccountError::MagicLinkBadToken)?;
        let mut user = found.user.clone();
        if !user.is_verified {
            user.is_verified = true;
            user.updated_at = now();
        }
        self.spend(&found, &user, AccountError::MagicLinkBadToken)
            .await?;
        self.finish_login(&user, address).await
    }

    /// Ends every session of a user.
    pub async fn revoke_all_sessions(&self, user_id: &str) -> Result<(), AccountError> {
        let ops = self.revocations(user_id, None).await?;
        if !ops.is_empty() {
            self.store.transact(ops).await?;
        }
        // One announcement for all of them, made also when there were none:
        // callers rely on it for the user change that preceded.
        self.changed().await;
        Ok(())
    }

    /// The writes that end each live session of a user but `keep`, each
    /// expecting the version read, so a session changed meanwhile makes
    /// the whole write fail rather than be overwritten.
    async fn revocations(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<Vec<Op>, AccountError> {
        let prefix = format!("{user_id}:");
        let mut ops = Vec::new();
        for (key, item) in scan_prefix(self.store.as_ref(), SESSIONS, &prefix).await? {
            if keep.is_some_and(|sid| key == session_key(user_id, sid)) {
                continue;
            }
            let mut session: Session = decode(SESSIONS, &key, &item)?;
            if session.revoked {
                continue;
            }
            session.revoked = true;
            ops.push(Op::Put {
                ns: SESSIONS.into(),
                value: encode(&session)?,
                key,
                expect: Expect::Version(item.version),
            });
        }
        Ok(ops)
    }
}

/// `changes` (a JSON object) over `base`; unknown keys are refused (the
/// settings types deny unknown fields).
pub(super) fn merge_settings<T: Serialize + for<'de> Deserialize<'de>>(
    base: &T,
    changes: &serde_json::Value,
) -> Result<T, String> {
    let mut value = serde_json::to_value(base).map_err(|e| e.to_string())?;
    if let (Some(target), Some(changes)) = (value.as_object_mut(), changes.as_object()) {
        for (key, change) in changes {
            target.insert(key.clone(), change.clone());
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

pub(super) fn check_name(name: Option<String>) -> Result<Option<String>, AccountError> {
    match name.map(|n| n.trim().to_owned()) {
        Some(n) if n.chars().count() > MAX_NAME => Err(AccountError::InvalidField(format!(
            "`name` must have at most {MAX_NAME} characters"
        ))),
        Some(n) if n.chars().any(char::is_control) => Err(AccountError::InvalidField(
            "`name` must not contain control characters".into(),
        )),
        Some(n) if n.is_empty() => Ok(None),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::SqliteStore;
    use crate::config::MailConfig;

    #[tokio::test]
    async fn mailed_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("accounts.db"))
                .await
                .unwrap(),
        );
        let config = AccountsConfig::default();
        let tokens = Arc::new(Tokens::open(store.clone(), &config).await.unwrap());
        let mailer = Arc::new(
            Mailer::new(&MailConfig {
                outbox_dir: dir.path().join("outbox"),
                ..MailConfig::default()
            })
            .unwrap(),
        );
        let accounts = Accounts::new(store.clone(), tokens, mailer, config, "http://localhost");
        let user = accounts
            .register(Registration {
                email: "ada@example.com".into(),
                password: "correct horse battery".into(),
                name: None,
            })
            .await
            .unwrap();
        for (token, expires_at) in [("expired", now() - 1), ("fresh", now() + 60)] {
            let record = ActionToken {
                user_id: user.id.clone(),
                purpose: Purpose::Reset,
                email: user.email.clone(),
                expires_at,
            };
            store
                .put(
                    ACTION_TOKENS,
                    &digest(token),
                    &encode(&record).unwrap(),
                    Expect::Absent,
                )
                .await
                .unwrap();
        }
        let reset =
            |token: &'static str| accounts.reset_password(token, "a brand new phrase".into());
        assert!(matches!(
            reset("expired").await,
            Err(AccountError::ResetBadToken)
        ));
        assert!(reset("fresh").await.is_ok());
    }
}
