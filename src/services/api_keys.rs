//! API keys: long-lived credentials a user creates for programs. The key
//! is `pcl_<id>_<secret>`; it is shown once, at creation, and stored only
//! as the SHA-256 of its secret, compared in constant time.
//!
//! - `api_keys/<user id>:<key id>`: the key's record (no secret);
//! - `api_key_index/<key id>`: its user, for authentication.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::accounts::{AccountError, Accounts, Authenticated, Via, decode, encode};
use super::tokens::{digest, now, random_id, random_token};
use crate::backends::{Expect, Op, scan_prefix};

pub const API_KEYS: &str = "api_keys";
pub const API_KEY_INDEX: &str = "api_key_index";

/// What a key may be limited to. No scopes: everything its user may do.
pub const SCOPES: &[&str] = &["decide", "profile", "keys", "admin"];

const PREFIX: &str = "pcl_";
const MAX_KEYS_PER_USER: usize = 100;
const MAX_NAME: usize = 100;

/// A key as stored and listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The key's visible start, `pcl_<id>`, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
}

/// A key as stored: with the digest of its secret.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(flatten)]
    key: ApiKey,
    digest: String,
}

#[derive(Deserialize)]
pub struct NewApiKey {
    pub name: String,
    /// Days until it stops working; absent: it does not expire.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The user's password: a signed-in session creates a key only with it.
    #[serde(default)]
    pub current_password: Option<String>,
}

/// A created key: the only time its secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub api_key: String,
}

fn record_key(user_id: &str, key_id: &str) -> String {
    format!("{user_id}:{key_id}")
}

impl Accounts {
    pub async fn create_api_key(
        &self,
        user_id: &str,
        input: NewApiKey,
    ) -> Result<CreatedApiKey, AccountError> {
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(AccountError::InvalidField(format!(
                "`name` must have 1 to {MAX_NAME} characters"
            )));
        }
        if let Some(unknown) = input.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(AccountError::InvalidField(format!(
                "unknown scope `{unknown}`; scopes are {}",
                SCOPES.join(", ")
            )));
        }
        let days = match input.expires_in_days {
            Some(0) | Some(3651..) => {
                return Err(AccountError::InvalidField(
                    "`expires_in_days` must be between 1 and 3650".into(),
                ));
            }
            other => other,
        };
        if self.list_api_keys(user_id).await?.len() >= MAX_KEYS_PER_USER {
            return Err(AccountError::ApiKeyLimit(MAX_KEYS_PER_USER));
        }
        let id = random_id();
        let secret = random_token();
        let created_at = now();
        let mut scopes = input.scopes;
        scopes.sort_unstable();
        scopes.dedup();
        let key = ApiKey {
            prefix: format!("{PREFIX}{id}"),
            id: id.clone(),
            name,
            scopes,
            created_at,
            expires_at: days.map(|d| created_at + u64::from(d) * 86_400),
        };
        let stored = StoredKey {
            key: key.clone(),
            digest: digest(&secret),
        };
        let ops = vec![
            Op::Put {
                ns: API_KEYS.into(),
                key: record_key(user_id, &id),
                value: encode(&stored)?,
                expect: Expect::Absent,
            },
            Op::Put {
                ns: API_KEY_INDEX.into(),
                key: id.clone(),
                value: user_id.as_bytes().to_vec(),
                expect: Expect::Absent,
            },
        ];
        self.store.transact(ops).await?;
        Ok(CreatedApiKey {
            api_key: format!("{PREFIX}{id}_{secret}"),
            key,
        })
    }

    /// A user's keys, oldest first.
    pub async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKey>, AccountError> {
        let prefix = format!("{user_id}:");
        let mut keys = Vec::new();
        for (key, item) in scan_prefix(self.store.as_ref(), API_KEYS, &prefix).await? {
            keys.push(decode::<StoredKey>(API_KEYS, &key, &item)?.key);
        }
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    /// Revokes one of the user's keys: it stops working at once.
    pub async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<(), AccountError> {
        let ops = vec![
            Op::Delete {
                ns: API_KEYS.into(),
                key: record_key(user_id, key_id),
                expect: Expect::Any,
            },
            Op::Delete {
                ns: API_KEY_INDEX.into(),
                key: key_id.to_owned(),
                expect: Expect::Any,
            },
        ];
        if self
            .store
            .get(API_KEYS, &record_key(user_id, key_id))
            .await?
            .is_none()
        {
            return Err(AccountError::ApiKeyNotFound(key_id.to_owned()));
        }
        self.store.transact(ops).await?;
        self.changed().await;
        Ok(())
    }

    /// The user behind a presented API key, if it is known, unexpired,
    /// its secret matches and its user is active.
    pub async fn authenticate_api_key(
        &self,
        presented: &str,
    ) -> Result<Authenticated, AccountError> {
        let ticket = match self.cached_caller(presented) {
            Ok(caller) => return Ok(caller),
            Err(ticket) => ticket,
        };
        let (found, expires_at) = self.authenticate_api_key_uncached(presented).await?;
        self.remember_caller(ticket, &found, expires_at.unwrap_or(u64::MAX));
        Ok(found)
    }

    async fn authenticate_api_key_uncached(
        &self,
        presented: &str,
    ) -> Result<(Authenticated, Option<u64>), AccountError> {
        let unauthenticated = || AccountError::Unauthenticated;
        let rest = presented.strip_prefix(PREFIX).ok_or_else(unauthenticated)?;
        let (key_id, secret) = rest.split_once('_').ok_or_else(unauthenticated)?;
        if key_id.len() != 16 || secret.is_empty() {
            return Err(unauthenticated());
        }
        let Some(owner) = self.store.get(API_KEY_INDEX, key_id).await? else {
            return Err(unauthenticated());
        };
        let user_id = String::from_utf8_lossy(&owner.value).into_owned();
        let record_at = record_key(&user_id, key_id);
        let Some(item) = self.store.get(API_KEYS, &record_at).await? else {
            return Err(unauthenticated());
        };
        let StoredKey {
            key,
            digest: stored,
        } = decode(API_KEYS, &record_at, &item)?;
        let matches: bool = digest(secret).as_bytes().ct_eq(stored.as_bytes()).into();
        if !matches || key.expires_at.is_some_and(|at| at <= now()) {
            return Err(unauthenticated());
        }
        match self.user(&user_id).await? {
            Some((user, version)) if user.is_active => {
                let via = Via::ApiKey {
                    key_id: key.id,
                    scopes: key.scopes,
                };
                Ok((Authenticated::new(user, version, via)?, key.expires_at))
            }
            Some(_) | None => Err(unauthenticated()),
        }
    }
}
