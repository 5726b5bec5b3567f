//! Passwords: the policy a new password must meet, and Argon2id hashing at
//! OWASP's parameters (m = 19 MiB, t = 2, p = 1), always on the blocking
//! pool so a hash never stalls the async workers.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

/// OWASP Password Storage Cheat Sheet, Argon2id: 19 MiB, 2 iterations, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// Longest password accepted: hashing cost must stay bounded.
pub const MAX_LENGTH: usize = 128;

/// The leaked passwords of at least 12 characters (the floor of
/// `accounts.password_min_length`) among the million most common:
/// lower-cased, sorted bytewise, one per line. `scripts/breached-passwords.sh`
/// makes the file from SecLists' list (ASVS 2.1.7).
const BREACHED: &str = include_str!("breached-passwords.txt");

/// Whether `lower`, a lower-cased password, is on the breached list.
fn breached(lower: &str) -> bool {
    static LIST: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| BREACHED.lines().collect());
    LIST.binary_search(&lower).is_ok()
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("{0}")]
    Weak(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
        .unwrap_or_else(|_| unreachable!("the OWASP parameters are valid"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why `password` is too weak for the account `email`, if it is.
pub fn check_policy(password: &str, email: &str, min_length: usize) -> Result<(), PasswordError> {
    let length = password.chars().count();
    let weak = |reason: &str| Err(PasswordError::Weak(reason.to_owned()));
    if length < min_length {
        return Err(PasswordError::Weak(format!(
            "the password must have at least {min_length} characters"
        )));
    }
    if length > MAX_LENGTH {
        return Err(PasswordError::Weak(format!(
            "the password must have at most {MAX_LENGTH} characters"
        )));
    }
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if local.len() >= 3 && lower.contains(local) {
        return weak("the password must not contain the e-mail address");
    }
    let mut distinct: Vec<char> = lower.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return weak("the password must have at least 4 different characters");
    }
    if breached(&lower) {
        return weak("the password is on a list of leaked passwords");
    }
    Ok(())
}

/// The Argon2id PHC string of `password`, with a fresh random salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Hash("no randomness for the salt".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// What checking a password found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Right, but hashed with other parameters: store a new hash.
    YesRehash,
}

/// Checks `password` against `stored`; with no stored hash (unknown user),
/// checks against a fixed hash anyway so the answer takes as long.
pub async fn verify(password: String, stored: Option<String>) -> Verified {
    tokio::task::spawn_blocking(move || verify_now(&password, stored.as_deref()))
        .await
        .unwrap_or(Verified::No)
}

fn verify_now(password: &str, stored: Option<&str>) -> Verified {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_now("portcullis-dummy-password").unwrap_or_default());
    let Ok(parsed) = PasswordHash::new(stored.unwrap_or(dummy)) else {
        return Verified::No;
    };
    let matches = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    match (stored.is_some() && matches, current_params(&parsed)) {
        (false, _) => Verified::No,
        (true, true) => Verified::Yes,
        (true, false) => Verified::YesRehash,
    }
}

fn current_params(hash: &PasswordHash) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm.as_str() == "argon2id"
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == ITERATIONS
        && params.p_cost() == LANES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        let reason = |p: &str| match check_policy(p, "alice@example.com", 12) {
            Err(PasswordError::Weak(reason)) => reason,
            other => panic!("{p:?} should be weak, got {other:?}"),
        };
        assert!(reason("Password123").contains("at least 12"));
        assert!(reason(&"x".repeat(129)).contains("at most 128"));
        assert!(reason("alice-is-the-best").contains("e-mail"));
        assert!(reason("aaaaabbbbbbb").contains("different"));
        // Leaked, whatever the case: the list's first, a middle and its last.
        for leaked in ["!2h7=aol64#exq0q", "Qwerty123456", "~WILL5melvin"] {
            assert!(reason(leaked).contains("leaked"), "{leaked}");
        }
        assert!(check_policy("correct horse battery", "alice@example.com", 12).is_ok());
    }

    #[test]
    fn hashes_are_argon2id_at_owasp_parameters_and_verify() {
        let hash = hash_now("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            verify_now("correct horse battery", Some(&hash)),
            Verified::Yes
        );
        assert_eq!(verify_now("wrong horse battery", Some(&hash)), Verified::No);
        assert_eq!(verify_now("portcullis-dummy-password", None), Verified::No);
        // Weaker parameters verify but ask for a rehash.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-123456789", &SaltString::encode_b64(&[7; 16]).unwrap())
        .unwrap()
        .to_string();
        assert_eq!(verify_now("pw-123456789", Some(&weak)), Verified::YesRehash);
    }
}
