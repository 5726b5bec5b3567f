//! Accounts signed into through an OIDC provider: `account_links/<identity
//! id>` (`op:erin`) names the local user a provider's identity signs in
//! as, so that a browser signing in with "Sign in with …" gets an account
//! session, a dashboard and a second factor like any other.
//!
//! The first sign-in of an identity links it:
//! - to the user who started it from the dashboard, password re-entered
//!   (a stolen session alone cannot plant a way back in);
//! - else to a new account for the identity's e-mail address, made only
//!   when the provider vouches for the address (`email_verified`) and no
//!   account has it yet. An existing account is never taken over by a
//!   provider's say-so: its owner signs in and links it first (Keycloak's
//!   "first broker login" asks the same).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Accounts, check_name, decode, encode, new_user_id};
use super::mfa::LoginOutcome;
use super::passwords;
use super::tokens::{now, random_token};
use crate::backends::{Expect, Op, StoreError};
use crate::domain::{DirectoryIdentity, User, normalize_email};

pub const ACCOUNT_LINKS: &str = "account_links";

#[derive(Serialize, Deserialize)]
struct AccountLink {
    user_id: String,
    linked_at: u64,
}

/// What an OIDC sign-in in a browser led to.
#[derive(Debug)]
pub enum Federated {
    /// A sign-in: tokens, or a second factor to ask for.
    Login(LoginOutcome),
    /// The identity is now linked to the signed-in user.
    Linked,
}

/// Links identity `key` to `user_id`, unless it is linked already.
fn link_op(key: &str, user_id: &str) -> Result<Op, AccountError> {
    Ok(Op::Put {
        ns: ACCOUNT_LINKS.into(),
        key: key.to_owned(),
        value: encode(&AccountLink {
            user_id: user_id.to_owned(),
            linked_at: now(),
        })?,
        expect: Expect::Absent,
    })
}

impl Accounts {
    /// Signs in with a provider's identity, linking it first when it is
    /// new (see the module's notes), or links it to `link_to`.
    pub async fn federated_login(
        &self,
        identity: &DirectoryIdentity,
        link_to: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Federated, AccountError> {
        let key = identity.user_id();
        if let Some(item) = self.store.get(ACCOUNT_LINKS, &key).await? {
            let link: AccountLink = decode(ACCOUNT_LINKS, &key, &item)?;
            match self.user(&link.user_id).await? {
                Some((user, _)) if link_to == Some(user.id.as_str()) => {
                    return Ok(Federated::Linked);
                }
                // Linked to someone else: one identity, one account.
                Some(_) if link_to.is_some() => {
                    return Err(AccountError::FederatedLinkedElsewhere);
                }
                Some((user, _)) => {
                    if !user.is_active {
                        return Err(AccountError::BadCredentials);
                    }
                    tracing::info!(user = %user.id, identity = %key, "Provider sign-in.");
                    return Ok(Federated::Login(self.finish_login(&user, address).await?));
                }
                // The account was deleted: the link is stale.
                None => {
                    self.store
                        .delete(ACCOUNT_LINKS, &key, Expect::Version(item.version))
                        .await?;
                }
            }
        }
        if let Some(user_id) = link_to {
            let link = link_op(&key, user_id)?;
            match self.store.transact(vec![link]).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    return Err(AccountError::FederatedLinkedElsewhere);
                }
                Err(e) => return Err(e.into()),
            }
            tracing::info!(user = %user_id, identity = %key, "Provider identity linked.");
            return Ok(Federated::Linked);
        }
        let user = self.account_for(identity).await?;
        let link = link_op(&key, &user.id)?;
        let user = match self.insert_user(user, vec![link]).await {
            Ok(user) => user,
            Err(AccountError::UserAlreadyExists) => return Err(AccountError::FederatedEmailTaken),
            Err(e) => return Err(e),
        };
        self.changed().await;
        tracing::info!(user = %user.id, identity = %key, "Account made for a provider's identity.");
        Ok(Federated::Login(self.finish_login(&user, address).await?))
    }

    /// A new account for `identity`: its vouched-for address and name, and
    /// a password nobody knows (a reset sets one).
    async fn account_for(&self, identity: &DirectoryIdentity) -> Result<User, AccountError> {
        let email = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
            .and_then(normalize_email)
            .ok_or(AccountError::FederatedNoEmail)?;
        if self.user_by_email(&email).await?.is_some() {
            return Err(AccountError::FederatedEmailTaken);
        }
        if !self.settings().registration_open {
            return Err(AccountError::RegistrationClosed);
        }
        let name = check_name(identity.name.clone()).unwrap_or(None);
        let created_at = now();
        Ok(User {
            id: new_user_id(),
            email,
            hashed_password: passwords::hash(random_token()).await?,
            is_active: true,
            is_verified: true,
            is_superuser: false,
            name,
            created_at,
            updated_at: created_at,
        })
    }
}
