//! Login throttling: failed logins are counted per account and per client
//! address, in the store (so a restart or another instance does not reset
//! them). Past a threshold within the window, logins are refused with 429
//! and `Retry-After` until the lock ends. Unknown accounts are counted
//! like known ones, so a lock tells nothing about whether one exists.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Accounts, decode, encode};
use super::tokens::now;
use crate::backends::{Expect, StoreError};

pub const LOGIN_FAILURES: &str = "login_failures";

/// Tries of a compare-and-set before giving up on counting one failure.
const CAS_TRIES: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Failures {
    count: u32,
    window_start: u64,
    locked_until: u64,
}

/// A name as the counters know it: trimmed, lower-cased, bounded.
fn normalized(username: &str) -> String {
    username.trim().to_lowercase().chars().take(320).collect()
}

/// The counter keys of one login attempt.
pub struct Attempt {
    account: String,
    address: Option<String>,
}

impl Attempt {
    pub fn new(username: &str, address: Option<IpAddr>) -> Attempt {
        Attempt {
            account: format!("account:{}", normalized(username)),
            address: address.map(|ip| format!("ip:{ip}")),
        }
    }

    /// The same attempt by a directory's sign-in: its own count, apart from
    /// the local account of the same name.
    pub fn in_directory(directory: &str, username: &str, address: Option<IpAddr>) -> Attempt {
        Attempt {
            account: format!("directory:{directory}:{}", normalized(username)),
            ..Attempt::new(username, address)
        }
    }

    /// The account name tried, for logs: a short digest, since it may be a
    /// password typed in the wrong field.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(self.account.as_bytes());
        hash[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.account).chain(self.address.as_ref())
    }
}

impl Accounts {
    /// Seconds until the attempt's account or address may try again, if
    /// either is locked.
    pub async fn locked_for(&self, attempt: &Attempt) -> Result<Option<u64>, AccountError> {
        let now = now();
        let mut wait = None;
        for key in attempt.keys() {
            if let Some(item) = self.store.get(LOGIN_FAILURES, key).await? {
                let failures: Failures = decode(LOGIN_FAILURES, key, &item)?;
                if failures.locked_until > now {
                    wait = wait.max(Some(failures.locked_until - now));
                }
            }
        }
        Ok(wait)
    }

    /// Counts a failed login against the account and the address.
    pub async fn count_failure(&self, attempt: &Attempt) -> Result<(), AccountError> {
        let settings = self.settings();
        let account = (&attempt.account, settings.lockout_threshold);
        let address = attempt
            .address
            .as_ref()
            .map(|key| (key, settings.ip_lockout_threshold));
        for (key, threshold) in std::iter::once(account).chain(address) {
            self.bump(
                key,
                threshold,
                settings.lockout_window_seconds,
                settings.lockout_duration_seconds,
            )
            .await?;
        }
        Ok(())
    }

    async fn bump(
        &self,
        key: &str,
        threshold: u32,
        window: u64,
        duration: u64,
    ) -> Result<(), AccountError> {
        for _ in 0..CAS_TRIES {
            let now = now();
            let found = self.store.get(LOGIN_FAILURES, key).await?;
            let (mut failures, expect) = match &found {
                Some(item) => (
                    decode::<Failures>(LOGIN_FAILURES, key, item)?,
                    Expect::Version(item.version),
                ),
                None => (Failures::default(), Expect::Absent),
            };
            if now.saturating_sub(failures.window_start) >= window {
                failures.count = 0;
                failures.window_start = now;
            }
            failures.count += 1;
            if failures.count >= threshold {
                failures.locked_until = now + duration;
                failures.count = 0;
                failures.window_start = now;
                tracing::warn!(key = %key.split(':').next().unwrap_or_default(), "Logins locked after repeated failures.");
            }
            match self
                .store
                .put(LOGIN_FAILURES, key, &encode(&failures)?, expect)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A successful login clears its account's count (not the address's).
    pub async fn clear_failures(&self, attempt: &Attempt) -> Result<(), AccountError> {
        self.store
            .delete(LOGIN_FAILURES, &attempt.account, Expect::Any)
            .await?;
        Ok(())
    }
}
