//! Admin user management: list and search, read, change (flags included),
//! and delete. Deactivating or deleting a user ends its sessions and its
//! API keys stop working at once.

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Accounts, Flags, ProfileUpdate, USER_EMAILS, USERS, decode};
use super::api_keys::{API_KEY_INDEX, API_KEYS};
use crate::backends::{Expect, Op, encode_cursor};
use crate::domain::User;

/// `PATCH /users/{id}`: a profile change and flag changes.
#[derive(Debug, Default, Deserialize)]
pub struct AdminUpdate {
    #[serde(flatten)]
    pub profile: ProfileUpdate,
    #[serde(flatten)]
    pub flags: Flags,
}

/// A page of users.
#[derive(Debug, Serialize)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next_cursor: Option<String>,
}

impl Accounts {
    /// Users in id order, a page at a time; `query` keeps those whose
    /// e-mail or name contains it (case-insensitive).
    pub async fn list_users(
        &self,
        cursor: Option<&str>,
        limit: usize,
        query: Option<&str>,
    ) -> Result<UserPage, AccountError> {
        let query = query.map(str::to_lowercase).filter(|q| !q.is_empty());
        let mut users = Vec::new();
        let mut cursor = cursor.map(str::to_owned);
        // Filtering may skip many users: keep reading until the page is
        // full or the users run out.
        loop {
            let page = self.store.scan(USERS, "", cursor.as_deref(), limit).await?;
            for (index, (key, item)) in page.items.iter().enumerate() {
                let user: User = decode(USERS, key, item)?;
                let matches = query.as_deref().is_none_or(|q| {
                    user.email.contains(q)
                        || user
                            .name
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(q))
                });
                if matches {
                    users.push(user);
                }
                if users.len() == limit {
                    let more = index + 1 < page.items.len() || page.next.is_some();
                    return Ok(UserPage {
                        users,
                        next_cursor: more.then(|| encode_cursor(key)),
                    });
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => {
                    return Ok(UserPage {
                        users,
                        next_cursor: None,
                    });
                }
            }
        }
    }

    async fn existing(&self, id: &str) -> Result<(User, u64), AccountError> {
        self.user(id)
            .await?
            .ok_or_else(|| AccountError::UserNotFound(id.to_owned()))
    }

    pub async fn get_user(&self, id: &str) -> Result<User, AccountError> {
        Ok(self.existing(id).await?.0)
    }

    pub async fn admin_update_user(
        &self,
        id: &str,
        update: AdminUpdate,
    ) -> Result<User, AccountError> {
        let (user, version) = self.existing(id).await?;
        self.update_user(user, version, update.profile, Some(update.flags), None)
            .await
    }

    /// Deletes a user with its e-mail index and API keys, then ends its
    /// sessions.
    pub async fn delete_user(&self, id: &str) -> Result<(), AccountError> {
        let (user, version) = self.existing(id).await?;
        let mut ops = vec![
            Op::Delete {
                ns: USERS.into(),
                key: user.id.clone(),
                expect: Expect::Version(version),
            },
            Op::Delete {
                ns: USER_EMAILS.into(),
                key: user.email.clone(),
                expect: Expect::Any,
            },
        ];
        for key in self.list_api_keys(&user.id).await? {
            ops.push(Op::Delete {
                ns: API_KEYS.into(),
                key: format!("{}:{}", user.id, key.id),
                expect: Expect::Any,
            });
            ops.push(Op::Delete {
                ns: API_KEY_INDEX.into(),
                key: key.id,
                expect: Expect::Any,
            });
        }
        self.store.transact(ops).await?;
        // Ends the sessions and announces the change.
        self.revoke_all_sessions(&user.id).await
    }
}
