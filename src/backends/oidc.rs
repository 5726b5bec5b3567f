//! An OpenID Connect provider (oauth2): authorization code with PKCE and
//! state, then the userinfo endpoint, whose claims are mapped to a
//! [`DirectoryIdentity`] by config.
//!
//! The provider's endpoints come from its discovery document, read on first
//! use and kept; its `issuer` must be the configured one. Every call to the
//! provider runs through the backend's [`Guard`].

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::resilience::{Guard, read_retry};
use super::{StoreError, unavailable, unreachable};
use crate::config::{OidcConfig, ResilienceConfig};
use crate::domain::DirectoryIdentity;

pub struct OidcDirectory {
    name: String,
    config: OidcConfig,
    http: reqwest::Client,
    metadata: OnceCell<Metadata>,
    pub guard: Guard,
}

/// The parts of the discovery document that are used.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
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
            guard: Guard::new(name, resilience),
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

    fn map_claims(&self, claims: &serde_json::Value) -> Result<DirectoryIdentity, String> {
        let c = &self.config.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let subject = text(&c.subject)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("userinfo has no `{}` claim", c.subject))?;
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
