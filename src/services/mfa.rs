//! Second factors: TOTP enrolment and login challenges, completed either
//! with a code or by approval from another signed-in session of the same
//! user (or an admin).
//!
//! - `mfa/<user id>`: the TOTP secret, whether it is confirmed, and the last
//!   time step used (a code is accepted once: no replay within its window);
//! - `mfa_challenges/<id>`: a login waiting for its second factor. The
//!   login client holds `mfa_<id>_<secret>`; the store keeps only the
//!   digest of the secret. Challenges expire after 5 minutes, allow 5 wrong
//!   codes, and are spent by the login they complete.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::accounts::{AccountError, Accounts, Authenticated, TokenPair, Via, decode, encode};
use super::tokens::{digest, now, random_bytes, random_id, random_token};
use super::totp;
use crate::backends::{Expect, Op, StoreError};
use crate::domain::User;

pub const MFA: &str = "mfa";
pub const MFA_CHALLENGES: &str = "mfa_challenges";

const CHALLENGE_TTL: u64 = 300;
const MAX_ATTEMPTS: u32 = 5;
const PREFIX: &str = "mfa_";

#[derive(Serialize, Deserialize)]
struct MfaRecord {
    /// Base32, as authenticator apps take it.
    secret: String,
    confirmed: bool,
    last_step: u64,
    created_at: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Challenge {
    user_id: String,
    secret_digest: String,
    created_at: u64,
    expires_at: u64,
    attempts: u32,
    approved: bool,
    address: Option<String>,
}

/// `POST /mfa/totp/enroll`: shown once, to be put in an authenticator app.
#[derive(Debug, Serialize)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

/// A login that needs its second factor.
#[derive(Debug, Serialize)]
pub struct PendingLogin {
    pub mfa_required: bool,
    pub challenge: String,
    pub methods: [&'static str; 2],
    pub expires_in: u64,
}

/// A waiting login, as the approving session sees it.
#[derive(Debug, Serialize)]
pub struct PendingApproval {
    pub id: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub address: Option<String>,
}

/// What a password (or magic-link) login leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    Tokens(TokenPair),
    SecondFactor(PendingLogin),
}

/// What completing a delegated challenge found.
#[derive(Debug)]
pub enum Delegated {
    Tokens(TokenPair),
    Waiting,
}

fn uri_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Accounts {
    async fn mfa_record(&self, user_id: &str) -> Result<Option<(MfaRecord, u64)>, AccountError> {
        let Some(item) = self.store.get(MFA, user_id).await? else {
            return Ok(None);
        };
        Ok(Some((decode(MFA, user_id, &item)?, item.version)))
    }

    pub async fn mfa_enabled(&self, user_id: &str) -> Result<bool, AccountError> {
        Ok(self
            .mfa_record(user_id)
            .await?
            .is_some_and(|(record, _)| record.confirmed))
    }

    /// Starts (or restarts) TOTP enrolment; confirmed by a first code.
    pub async fn mfa_enroll(&self, user: &User) -> Result<Enrollment, AccountError> {
        let existing = self.mfa_record(&user.id).await?;
        if existing.as_ref().is_some_and(|(r, _)| r.confirmed) {
            return Err(AccountError::MfaAlreadyEnrolled);
        }
        // 20 random bytes (160 bits), the size RFC 4226 recommends for
        // HMAC-SHA-1.
        let secret = totp::base32(&random_bytes::<20>());
        let record = MfaRecord {
            secret: secret.clone(),
            confirmed: false,
            last_step: 0,
            created_at: now(),
        };
        let expect = existing.map_or(Expect::Absent, |(_, v)| Expect::Version(v));
        self.store
            .put(MFA, &user.id, &encode(&record)?, expect)
            .await?;
        let issuer = self.settings().issuer.clone();
        let otpauth_uri = format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={}&period={}",
            uri_component(&issuer),
            uri_component(&user.email),
            uri_component(&issuer),
            totp::DIGITS,
            totp::STEP_SECONDS,
        );
        Ok(Enrollment {
            secret,
            otpauth_uri,
        })
    }

    /// Checks a code against the user's secret and spends its time step.
    async fn use_code(
        &self,
        user_id: &str,
        code: &str,
        extra: Vec<Op>,
    ) -> Result<bool, AccountError> {
        let Some((mut record, version)) = self.mfa_record(user_id).await? else {
            return Err(AccountError::MfaNotEnrolled);
        };
        let secret = totp::base32_decode(&record.secret)
            .ok_or_else(|| StoreError::Corrupt(format!("{MFA}/{user_id}: secret")))?;
        let step = match totp::matching_step(&secret, code, now()) {
            Some(step) if step > record.last_step => step,
            _ => return Ok(false),
        };
        record.last_step = step;
        record.confirmed = true;
        let mut ops = extra;
        ops.push(Op::Put {
            ns: MFA.into(),
            key: user_id.to_owned(),
            value: encode(&record)?,
            expect: Expect::Version(version),
        });
        match self.store.transact(ops).await {
            Ok(_) => Ok(true),
            // The same code raced itself, or the challenge was spent.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Confirms enrolment with a first code.
    pub async fn mfa_confirm(&self, user_id: &str, code: &str) -> Result<(), AccountError> {
        if self.use_code(user_id, code, Vec::new()).await? {
            Ok(())
        } else {
            Err(AccountError::MfaBadCode)
        }
    }

    /// Removes the second factor: by the user with a valid code, or by an
    /// admin (`code` = `None`).
    pub async fn mfa_disable(&self, user_id: &str, code: Option<&str>) -> Result<(), AccountError> {
        if self.mfa_record(user_id).await?.is_none() {
            return Err(AccountError::MfaNotEnrolled);
        }
        if let Some(code) = code
            && !self.use_code(user_id, code, Vec::new()).await?
        {
            return Err(AccountError::MfaBadCode);
        }
        self.store.delete(MFA, user_id, Expect::Any).await?;
        Ok(())
    }

    /// A login that passed its first factor: tokens, or a challenge when
    /// the user has a second factor.
    pub(super) async fn finish_login(
        &self,
        user: &User,
        address: Option<IpAddr>,
    ) -> Result<LoginOutcome, AccountError> {
        if !self.mfa_enabled(&user.id).await? {
            return Ok(LoginOutcome::Tokens(self.start_session(&user.id).await?));
        }
        let id = random_id();
        let secret = random_token();
        let created_at = now();
        let challenge = Challenge {
            user_id: user.id.clone(),
            secret_digest: digest(&secret),
            created_at,
            expires_at: created_at + CHALLENGE_TTL,
            attempts: 0,
            approved: false,
            address: address.map(|a| a.to_string()),
        };
        self.store
            .put(MFA_CHALLENGES, &id, &encode(&challenge)?, Expect::Absent)
            .await?;
        Ok(LoginOutcome::SecondFactor(PendingLogin {
            mfa_required: true,
            challenge: format!("{PREFIX}{id}_{secret}"),
            methods: ["totp", "delegated"],
            expires_in: CHALLENGE_TTL,
        }))
    }

    /// The live challenge a login client holds, with its version.
    async fn held_challenge(&self, token: &str) -> Result<(String, Challenge, u64), AccountError> {
        let bad = || AccountError::MfaBadChallenge;
        let rest = token.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        if id.len() != 16 {
            return Err(bad());
        }
        let Some(item) = self.store.get(MFA_CHALLENGES, id).await? else {
            return Err(bad());
        };
        let challenge: Challenge = decode(MFA_CHALLENGES, id, &item)?;
        let matches: bool = digest(secret)
            .as_bytes()
            .ct_eq(challenge.secret_digest.as_bytes())
            .into();
        if !matches || challenge.expires_at < now() || challenge.attempts >= MAX_ATTEMPTS {
            return Err(bad());
        }
        Ok((id.to_owned(), challenge, item.version))
    }

    /// Completes a login with a TOTP code; wrong codes count against the
    /// challenge.
    pub async fn complete_with_code(
        &self,
        token: &str,
        code: &str,
    ) -> Result<TokenPair, AccountError> {
        let (id, mut challenge, version) = self.held_challenge(token).await?;
        let spend = vec![Op::Delete {
            ns: MFA_CHALLENGES.into(),
            key: id.clone(),
            expect: Expect::Version(version),
        }];
        if self.use_code(&challenge.user_id, code, spend).await? {
            return self.start_session(&challenge.user_id).await;
        }
        challenge.attempts += 1;
        let _ = self
            .store
            .put(
                MFA_CHALLENGES,
                &id,
                &encode(&challenge)?,
                Expect::Version(version),
            )
            .await;
        Err(AccountError::MfaBadCode)
    }

    /// Logins of `user_id` waiting for a second factor.
    pub async fn pending_approvals(
        &self,
        user_id: &str,
    ) -> Result<Vec<PendingApproval>, AccountError> {
        let now = now();
        let mut out = Vec::new();
        for (id, item) in crate::backends::scan_all(self.store.as_ref(), MFA_CHALLENGES).await? {
            let challenge: Challenge = decode(MFA_CHALLENGES, &id, &item)?;
            if challenge.expires_at < now {
                // Abandoned logins would otherwise pile up.
                let _ = self
                    .store
                    .delete(MFA_CHALLENGES, &id, Expect::Version(item.version))
                    .await;
            } else if challenge.user_id == user_id && !challenge.approved {
                out.push(PendingApproval {
                    id,
                    created_at: challenge.created_at,
                    expires_at: challenge.expires_at,
                    address: challenge.address,
                });
            }
        }
        Ok(out)
    }

    /// Approves (or denies) a waiting login from a signed-in session of the
    /// same user, or of an admin. Someone else's challenge is "not found".
    pub async fn decide_challenge(
        &self,
        approver: &Authenticated,
        id: &str,
        approve: bool,
    ) -> Result<(), AccountError> {
        if !matches!(approver.via, Via::Session(_)) {
            return Err(AccountError::NotASession);
        }
        let Some(item) = self.store.get(MFA_CHALLENGES, id).await? else {
            return Err(AccountError::MfaBadChallenge);
        };
        let mut challenge: Challenge = decode(MFA_CHALLENGES, id, &item)?;
        let allowed = challenge.user_id == approver.user.id || approver.user.is_superuser;
        if !allowed || challenge.expires_at < now() || challenge.approved {
            return Err(AccountError::MfaBadChallenge);
        }
        let expect = Expect::Version(item.version);
        let result = if approve {
            challenge.approved = true;
            self.store
                .put(MFA_CHALLENGES, id, &encode(&challenge)?, expect)
                .await
                .map(|_| ())
        } else {
            self.store
                .delete(MFA_CHALLENGES, id, expect)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(AccountError::MfaBadChallenge),
            Err(e) => Err(e.into()),
        }
    }

    /// The waiting login asks whether it was approved: tokens once (the
    /// challenge is spent), `Waiting` until then.
    pub async fn complete_delegated(&self, token: &str) -> Result<Delegated, AccountError> {
        let (id, challenge, version) = self.held_challenge(token).await?;
        if !challenge.approved {
            return Ok(Delegated::Waiting);
        }
        match self
            .store
            .delete(MFA_CHALLENGES, &id, Expect::Version(version))
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(StoreError::Conflict { .. }) => {
                return Err(AccountError::MfaBadChallenge);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Delegated::Tokens(
            self.start_session(&challenge.user_id).await?,
        ))
    }
}
