//! Tokens: the EdDSA keys access tokens are signed with, the access tokens
//! themselves, and the random secrets (refresh tokens, states) that are
//! stored only as digests.
//!
//! The signing key is generated on first start and kept in the store
//! (namespace `signing_keys`), so every instance on one store signs and
//! verifies with the same keys, and a store switch takes them along. The
//! newest key signs; every stored key verifies, so a new key can be added
//! without ending the sessions signed by the old one. Verification pins
//! `EdDSA`: `none`, HMAC and RSA tokens are refused whatever they claim.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::backends::{Expect, Store, StoreError, scan_all};
use crate::config::AccountsConfig;

/// EdDSA signing keys by key id.
pub const SIGNING_KEYS: &str = "signing_keys";

/// A new unknown `kid` re-reads the keys at most this often.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session (and refresh-token family) the token belongs to.
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// A signing key as stored: the PKCS#8 document holds the private key.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    pkcs8: String,
    public: String,
    created_at: u64,
}

struct KeyRing {
    signing: Option<(String, EncodingKey)>,
    verifying: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Tokens {
    store: Arc<dyn Store>,
    ring: ArcSwap<KeyRing>,
    reloaded: Mutex<Instant>,
    issuer: String,
    audience: String,
}

impl Tokens {
    /// Loads the signing keys from the store, creating the first one.
    pub async fn open(
        store: Arc<dyn Store>,
        config: &AccountsConfig,
    ) -> Result<Tokens, TokenError> {
        let tokens = Tokens {
            store,
            ring: ArcSwap::from_pointee(KeyRing {
                signing: None,
                verifying: HashMap::new(),
                jwks: serde_json::json!({"keys": []}),
            }),
            reloaded: Mutex::new(Instant::now()),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        };
        tokens.reload().await?;
        if tokens.ring.load().signing.is_none() {
            tokens.add_key().await?;
        }
        Ok(tokens)
    }

    /// Generates a new signing key and signs with it from now on; the old
    /// keys keep verifying.
    pub async fn add_key(&self) -> Result<(), TokenError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| TokenError::Sign("cannot generate an Ed25519 key".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| TokenError::Sign("generated key does not parse".into()))?;
        let created_at = now();
        // Ids sort by creation, so the newest key is the last one: a
        // millisecond clock, and past the newest id there is.
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let newest = self
            .signing_kid()
            .and_then(|kid| kid.split('-').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let kid = format!("{:015}-{}", millis.max(newest + 1), &random_token()[..8]);
        let stored = StoredKey {
            pkcs8: URL_SAFE_NO_PAD.encode(pkcs8.as_ref()),
            public: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            created_at,
        };
        let value = serde_json::to_vec(&stored).map_err(|e| TokenError::Sign(e.to_string()))?;
        self.store
            .put(SIGNING_KEYS, &kid, &value, Expect::Absent)
            .await?;
        tracing::info!(kid = %kid, "New token signing key.");
        self.reload().await
    }

    async fn reload(&self) -> Result<(), TokenError> {
        let stored = scan_all(self.store.as_ref(), SIGNING_KEYS).await?;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for (kid, item) in stored {
            let key: StoredKey = serde_json::from_slice(&item.value)
                .map_err(|e| StoreError::Corrupt(format!("{SIGNING_KEYS}/{kid}: {e}")))?;
            let decode = |text: &str| {
                URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|e| StoreError::Corrupt(format!("{SIGNING_KEYS}/{kid}: {e}")))
            };
            let public = decode(&key.public)?;
            verifying.insert(kid.clone(), DecodingKey::from_ed_der(&public));
            jwks.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": kid, "x": key.public,
            }));
            // Scans are in key order: the last key is the newest.
            signing = Some((kid.clone(), EncodingKey::from_ed_der(&decode(&key.pkcs8)?)));
        }
        self.ring.store(Arc::new(KeyRing {
            signing,
            verifying,
            jwks: serde_json::json!({ "keys": jwks }),
        }));
        Ok(())
    }

    /// The id of the key that signs new tokens.
    pub fn signing_kid(&self) -> Option<String> {
        self.ring
            .load()
            .signing
            .as_ref()
            .map(|(kid, _)| kid.clone())
    }

    /// `GET /.well-known/jwks.json`: every verifying key, public parts only.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring.load().jwks.clone()
    }

    /// A signed access token for `user_id` in session `sid`, valid for
    /// `ttl` seconds, and its claims.
    pub fn issue(
        &self,
        user_id: &str,
        sid: &str,
        ttl: u64,
    ) -> Result<(String, AccessClaims), TokenError> {
        let ring = self.ring.load();
        let Some((kid, key)) = &ring.signing else {
            return Err(TokenError::Sign("no signing key".into()));
        };
        let iat = now();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_owned(),
            sid: sid.to_owned(),
            jti: random_token(),
            iat,
            nbf: iat,
            exp: iat + ttl,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks signature (EdDSA only), issuer, audience, expiry and
    /// not-before; returns the claims.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let invalid = |e: &dyn std::fmt::Display| TokenError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token names no key".into()))?;
        if !self.ring.load().verifying.contains_key(&kid) {
            self.reload_for_unknown_kid().await?;
        }
        let ring = self.ring.load();
        let key = ring
            .verifying
            .get(&kid)
            .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss", "aud"]);
        jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| invalid(&e))
    }

    /// Another instance may have added a key: re-read, at most once a second.
    async fn reload_for_unknown_kid(&self) -> Result<(), TokenError> {
        let mut last = self.reloaded.lock().await;
        if last.elapsed() < KEY_RELOAD_INTERVAL {
            return Ok(());
        }
        *last = Instant::now();
        self.reload().await
    }
}

/// 256 random bits, URL-safe base64: refresh tokens, states, key ids.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `N` bytes from the system's randomness.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system's randomness failing is not something to serve through.
    SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| panic!("the system random number generator failed"));
    bytes
}

/// 64 random bits in hex: ids that need to be unique, not secret.
pub fn random_id() -> String {
    hex(&random_bytes::<8>())
}

/// The hex SHA-256 of a secret: how secrets are stored and looked up.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since the Unix epoch: the order of ids made one after
/// another.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_ids_are_lower_case_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 16);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
