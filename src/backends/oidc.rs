//! An OpenID Connect provider (oauth2): authorization code with PKCE and
//! state, then the userinfo endpoint, whose claims are mapped to a
//! [`DirectoryIdentity`] by config.
//!
//! The provider's endpoints come from its discovery document, read on first
//! use and kept; its `issuer` must be the configured one. Every call to the
//! provider runs through the backend's [`Guard`].
//!
//! With `[backends.<name>.bearer]`, the provider's signed JWTs are also
//! bearer credentials ([`OidcDirectory::verify_bearer`]): checked against
//! its JWKS (`jwks_uri` from discovery), with the algorithms pinned by
//! config, then mapped by the same claims as a sign-in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::resilience::{Guard, read_retry};
use super::{StoreError, unavailable, unreachable};
use crate::config::{BearerConfig, OidcConfig, ResilienceConfig};
use crate::domain::DirectoryIdentity;

pub struct OidcDirectory {
    name: String,
    config: OidcConfig,
    http: reqwest::Client,
    metadata: OnceCell<Metadata>,
    /// The provider's signing keys, by `kid`, when bearer tokens are on.
    keys: ArcSwapOption<KeySet>,
    /// Serializes key-set reads; holds when the last one started.
    keys_read: tokio::sync::Mutex<Option<Instant>>,
    pub guard: Guard,
}

/// The provider's public keys as last read from its JWKS.
struct KeySet {
    /// By `kid`; a key without one is under "".
    keys: HashMap<String, DecodingKey>,
    read: Instant,
}

/// A verified bearer token: who it names, and until when it is valid.
pub struct BearerIdentity {
    pub identity: DirectoryIdentity,
    /// The token's `exp` (seconds since the epoch).
    pub expires_at: u64,
}

/// The parts of the discovery document that are used.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    #[serde(default)]
    jwks_uri: Option<String>,
}

/// Where to send the browser, and what the callback needs to finish.
pub struct Authorization {
    pub url: String,
    /// The `state` parameter: checked on the callback.
    pub state: String,
    /// The PKCE verifier: sent with the code.
    pub verifier: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OidcFailure(String);

fn failure(what: &str, e: impl std::fmt::Display) -> StoreError {
    unavailable(OidcFailure(format!("{what}: {e}")))
}

impl OidcDirectory {
    pub fn new(
        name: &str,
        config: OidcConfig,
        resilience: &ResilienceConfig,
    ) -> Result<OidcDirectory, StoreError> {
        let http = reqwest::Client::builder()
            // The token endpoint must not redirect the code elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| failure("HTTP client", e))?;
        Ok(OidcDirectory {
            name: name.to_owned(),
            config,
            http,
            metadata: OnceCell::new(),
            keys: ArcSwapOption::empty(),
            keys_read: tokio::sync::Mutex::new(None),
            guard: Guard::new(name, resilience),
        })
    }

    /// The configured issuer, when its JWTs are accepted as bearer tokens.
    pub fn bearer_issuer(&self) -> Option<&str> {
        self.config
            .bearer
            .as_ref()
            .map(|_| self.config.issuer.trim_end_matches('/'))
    }

    /// Checks a bearer JWT of this provider: the algorithm is one of those
    /// pinned, the key is in the provider's JWKS, the signature holds, and
    /// `iss`, `aud`, `exp` and `nbf` are right. `Ok(Err(reason))`: not a
    /// valid token (401); `Err`: the key set cannot be read (fail closed).
    pub async fn verify_bearer(
        &self,
        token: &str,
    ) -> Result<Result<BearerIdentity, String>, StoreError> {
        let Some(bearer) = &self.config.bearer else {
            return Ok(Err("this provider's tokens are not accepted".into()));
        };
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(e) => return Ok(Err(format!("not a JWT: {e}"))),
        };
        if !pinned(bearer).contains(&header.alg) {
            return Ok(Err(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.unwrap_or_default();
        let Some(keys) = self.keys_with(&kid, bearer).await? else {
            return Ok(Err(
                "the token's key is not in the provider's key set".into()
            ));
        };
        let Some(key) = keys.keys.get(&kid) else {
            return Ok(Err(
                "the token's key is not in the provider's key set".into()
            ));
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = bearer.leeway_seconds;
        validation.validate_nbf = true;
        let issuer = self.config.issuer.trim_end_matches('/');
        validation.set_issuer(&[issuer.to_owned(), format!("{issuer}/")]);
        if bearer.audiences.is_empty() {
            validation.set_audience(&[&self.config.client_id]);
        } else {
            validation.set_audience(&bearer.audiences);
        }
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return Ok(Err(format!("the token is not valid: {e}"))),
        };
        let expires_at = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(self.map_claims(&claims).map(|identity| BearerIdentity {
            identity,
            expires_at,
        }))
    }

    /// The key set, read again when it is older than its TTL, or when it
    /// lacks `kid` and was not read in the last `jwks_min_refresh_seconds`.
    async fn keys_with(
        &self,
        kid: &str,
        bearer: &BearerConfig,
    ) -> Result<Option<Arc<KeySet>>, StoreError> {
        let ttl = Duration::from_secs(bearer.jwks_ttl_seconds);
        let min_refresh = Duration::from_secs(bearer.jwks_min_refresh_seconds);
        let fresh = |set: &KeySet| set.read.elapsed() < ttl && set.keys.contains_key(kid);
        if let Some(set) = self.keys.load_full().filter(|s| fresh(s)) {
            return Ok(Some(set));
        }
        let mut last = self.keys_read.lock().await;
        // Another caller may have read it while this one waited.
        if let Some(set) = self.keys.load_full().filter(|s| fresh(s)) {
            return Ok(Some(set));
        }
        let current = self.keys.load_full();
        let stale = current.as_ref().is_none_or(|s| s.read.elapsed() >= ttl);
        let may_read = stale || last.is_none_or(|at| at.elapsed() >= min_refresh);
        if !may_read {
            return Ok(current);
        }
        *last = Some(Instant::now());
        let set = Arc::new(self.guard.call(read_retry, || self.read_keys()).await?);
        self.keys.store(Some(set.clone()));
        Ok(Some(set))
    }

    async fn read_keys(&self) -> Result<KeySet, StoreError> {
        let metadata = self.metadata().await?;
        let uri = metadata
            .jwks_uri
            .as_deref()
            .ok_or_else(|| StoreError::Corrupt("the discovery document has no jwks_uri".into()))?;
        let document: serde_json::Value = self
            .http
            .get(uri)
            .send()
            .await
            .map_err(unreachable)?
            .error_for_status()
            .map_err(|e| failure("JWKS", e))?
            .json()
            .await
            .map_err(|e| failure("JWKS", e))?;
        let listed = document
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| failure("JWKS", "no `keys` list"))?;
        let mut keys = HashMap::new();
        for value in listed {
            // Keys of a type this cannot use, and shared secrets, are skipped.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
                continue;
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
            }
        }
        Ok(KeySet {
            keys,
            read: Instant::now(),
        })
    }

    pub fn display_name(&self) -> &str {
        self.config.display_name.as_deref().unwrap_or(&self.name)
    }

    /// Reads the discovery document (every time: this is the health check).
    pub async fn health(&self) -> Result<(), StoreError> {
        self.guard
            .call(read_retry, || self.discover())
            .await
            .map(|_| ())
    }

    async fn discover(&self) -> Result<Metadata, StoreError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let metadata: Metadata = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(unreachable)?
            .error_for_status()
            .map_err(|e| failure("discovery", e))?
            .json()
            .await
            .map_err(|e| failure("discovery document", e))?;
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(StoreError::Corrupt(format!(
                "the provider says its issuer is {}, not {issuer}",
                metadata.issuer
            )));
        }
        Ok(metadata)
    }

    async fn metadata(&self) -> Result<&Metadata, StoreError> {
        self.metadata
            .get_or_try_init(|| self.guard.call(read_retry, || self.discover()))
            .await
    }

    fn client(
        &self,
        metadata: &Metadata,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        StoreError,
    > {
        let bad = |what: &str, e: oauth2::url::ParseError| failure(what, e);
        let mut client = BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(metadata.authorization_endpoint.clone())
                    .map_err(|e| bad("authorization endpoint", e))?,
            )
            .set_token_uri(
                TokenUrl::new(metadata.token_endpoint.clone())
                    .map_err(|e| bad("token endpoint", e))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(self.config.redirect_url.clone())
                    .map_err(|e| bad("redirect_url", e))?,
            );
        if let Some(secret) = &self.config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        Ok(client)
    }

    /// A fresh authorization request: random state, PKCE (S256).
    pub async fn authorize(&self) -> Result<Authorization, StoreError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.config.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` (with its PKCE verifier) and reads userinfo.
    /// `Ok(Err(reason))`: the provider refused the code, or its claims
    /// lack a subject; nothing to retry.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
    ) -> Result<Result<DirectoryIdentity, String>, StoreError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata)?;
        // A code is single-use: the exchange is sent once, never retried.
        let exchanged = self
            .guard
            .call(
                |_| false,
                || async {
                    match client
                        .exchange_code(AuthorizationCode::new(code.to_owned()))
                        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
                        .request_async(&self.http)
                        .await
                    {
                        Ok(token) => Ok(Ok(token)),
                        Err(RequestTokenError::ServerResponse(e)) => {
                            Ok(Err(format!("the provider refused the code: {}", e.error())))
                        }
                        Err(RequestTokenError::Request(e)) => Err(unreachable(e)),
                        Err(e) => Err(failure("token exchange", e)),
                    }
                },
            )
            .await?;
        let token = match exchanged {
            Ok(token) => token,
            Err(reason) => return Ok(Err(reason)),
        };
        let access = token.access_token().secret();
        let claims: serde_json::Value = self
            .guard
            .call(read_retry, || async {
                self.http
                    .get(&metadata.userinfo_endpoint)
                    .bearer_auth(access)
                    .send()
                    .await
                    .map_err(unreachable)?
                    .error_for_status()
                    .map_err(|e| failure("userinfo", e))?
                    .json()
                    .await
                    .map_err(|e| failure("userinfo", e))
            })
            .await?;
        Ok(self.map_claims(&claims))
    }

    /// Maps a provider's claims (userinfo, or a verified token's) to an identity.
    fn map_claims(&self, claims: &serde_json::Value) -> Result<DirectoryIdentity, String> {
        let c = &self.config.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let subject = text(&c.subject)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the claims have no `{}`", c.subject))?;
        let groups: Vec<String> = claims
            .get(&c.groups)
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(DirectoryIdentity {
            directory: self.name.clone(),
            username: text(&c.username).unwrap_or_else(|| subject.clone()),
            subject,
            email: text(&c.email),
            email_verified: claims
                .get("email_verified")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            name: text(&c.name),
            groups: groups
                .iter()
                .map(|id| crate::domain::DirectoryGroup {
                    id: id.clone(),
                    parents: Vec::new(),
                })
                .collect(),
            member_of: groups,
        })
    }
}

/// The algorithms `bearer.algorithms` names (validated at load).
fn pinned(bearer: &BearerConfig) -> Vec<Algorithm> {
    bearer
        .algorithms
        .iter()
        .filter_map(|a| a.parse().ok())
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .collect()
}
