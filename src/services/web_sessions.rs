//! Browser sessions of the web UI. A sign-in through a page opens an account
//! session, as `POST /auth/jwt/login` does, but hands the browser only a
//! random id in an HttpOnly cookie. The store keeps, under the id's digest
//! (`web_sessions`), which account session it is and the CSRF token every
//! form of that browser must carry. Ending the account session (logout, a
//! password change elsewhere, an admin disabling the user) ends the browser
//! session with it; so does `session_idle_seconds` without a page load.
//!
//! No tokens are kept: the browser's requests are checked against the
//! account session itself, on every request.

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Accounts, Authenticated, Via, decode, encode};
use super::tokens::{AccessClaims, digest, now, random_token};
use crate::backends::Expect;

pub const WEB_SESSIONS: &str = "web_sessions";

/// How often a page load records that the session is in use: idleness is
/// measured to this precision, and browsing writes at most this often.
const TOUCH_EVERY_SECONDS: u64 = 60;

#[derive(Clone, Serialize, Deserialize)]
struct WebSessionRecord {
    user_id: String,
    sid: String,
    csrf: String,
    expires_at: u64,
    last_seen: u64,
}

/// A signed-in browser: who it is, and the CSRF token its forms carry.
pub struct WebSession {
    pub me: Authenticated,
    pub csrf: String,
}

/// Whether a server reached at `public_url` needs `Secure` cookies: all but
/// plain HTTP on a loopback host.
fn secure_for(public_url: &str) -> bool {
    let Some(rest) = public_url.strip_prefix("http://") else {
        return true;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    !matches!(host, "127.0.0.1" | "localhost" | "::1")
}

impl Accounts {
    /// Whether cookies must be `Secure`: always, unless `server.public_url`
    /// is plain HTTP on a loopback address (local use).
    pub fn secure_cookies(&self) -> bool {
        secure_for(&self.public_url)
    }

    /// Opens a browser session for the account session whose first access
    /// token is `access_token`; the cookie value to set.
    pub async fn open_web_session(&self, access_token: &str) -> Result<String, AccountError> {
        let claims = self.tokens.verify(access_token).await?;
        let id = random_token();
        let record = WebSessionRecord {
            user_id: claims.sub,
            sid: claims.sid,
            csrf: random_token(),
            expires_at: now() + self.settings().refresh_token_ttl_seconds,
            last_seen: now(),
        };
        self.store
            .put(
                WEB_SESSIONS,
                &digest(&id),
                &encode(&record)?,
                Expect::Absent,
            )
            .await?;
        Ok(id)
    }

    /// The browser session behind cookie value `id`, if it is live: its
    /// account session live, its user active, and not idle too long.
    pub async fn web_session(&self, id: &str) -> Result<Option<WebSession>, AccountError> {
        let key = digest(id);
        let Some(item) = self.store.get(WEB_SESSIONS, &key).await? else {
            return Ok(None);
        };
        let mut record: WebSessionRecord = decode(WEB_SESSIONS, &key, &item)?;
        let at = now();
        let idle = record.last_seen + self.settings().session_idle_seconds < at;
        if idle || record.expires_at < at {
            self.close_record(&key, &record).await?;
            return Ok(None);
        }
        if !self.session_live(&record.user_id, &record.sid).await? {
            self.store.delete(WEB_SESSIONS, &key, Expect::Any).await?;
            return Ok(None);
        }
        let Some((user, version)) = self.user(&record.user_id).await? else {
            return Ok(None);
        };
        if !user.is_active {
            return Ok(None);
        }
        if record.last_seen + TOUCH_EVERY_SECONDS <= at {
            record.last_seen = at;
            // A lost race only means another load touched it first.
            let _ = self
                .store
                .put(
                    WEB_SESSIONS,
                    &key,
                    &encode(&record)?,
                    Expect::Version(item.version),
                )
                .await;
        }
        let settings = self.settings();
        let claims = AccessClaims {
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            sub: record.user_id.clone(),
            sid: record.sid.clone(),
            jti: String::new(),
            iat: at,
            nbf: at,
            exp: record.expires_at,
        };
        Ok(Some(WebSession {
            me: Authenticated::new(user, version, Via::Session(claims))?,
            csrf: record.csrf,
        }))
    }

    /// Signs the browser out: its account session ends too.
    pub async fn close_web_session(&self, id: &str) -> Result<(), AccountError> {
        let key = digest(id);
        let Some(item) = self.store.get(WEB_SESSIONS, &key).await? else {
            return Ok(());
        };
        let record: WebSessionRecord = decode(WEB_SESSIONS, &key, &item)?;
        self.close_record(&key, &record).await
    }

    async fn close_record(&self, key: &str, record: &WebSessionRecord) -> Result<(), AccountError> {
        self.revoke_session(&record.user_id, &record.sid).await?;
        self.store.delete(WEB_SESSIONS, key, Expect::Any).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::secure_for;

    #[test]
    fn cookies_are_secure_unless_plain_http_on_loopback() {
        for local in [
            "http://127.0.0.1:8180",
            "http://localhost/",
            "http://[::1]:8180/x",
        ] {
            assert!(!secure_for(local), "{local}");
        }
        for public in [
            "https://127.0.0.1:8180",
            "https://authz.example.com",
            "http://authz.example.com",
            "http://127.0.0.1.example.com",
            "http://10.0.0.5:8180",
        ] {
            assert!(secure_for(public), "{public}");
        }
    }
}
