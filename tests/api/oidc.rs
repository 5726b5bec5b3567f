//! The whole OIDC sign-in, driven over HTTP the way a browser would, against
//! a real `oidc-provider` of the test's own (`backends/oidc/server.js`):
//! authorize → the provider's login form → its consent form → our callback
//! → a linked identity → a decision for it through a policy on its group.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use portcullis::config::{BackendConfig, DirectoryConfig, OidcConfig, Secret};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "oidc-admin-token-0123456789";

/// oidc-provider of this test's own; stopped when dropped.
struct OwnProvider(Child);

impl OwnProvider {
    fn start(port: u16, redirect_uri: &str) -> OwnProvider {
        let dir = repo_path("backends/oidc");
        let installed = Command::new(dir.join("install.sh"))
            .status()
            .expect("backends/oidc/install.sh runs");
        assert!(installed.success(), "the test OIDC provider installs");
        let child = Command::new("node")
            .arg(dir.join("server.js"))
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_REDIRECT_URIS", redirect_uri)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed");
        wait_for_port(port, "oidc-provider");
        OwnProvider(child)
    }
}

impl Drop for OwnProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser's cookie jar, enough for one host: name → value.
struct Browser {
    jar: BTreeMap<String, String>,
    client: reqwest::Client,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            jar: BTreeMap::new(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || text.contains("Max-Age=0") {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    fn cookies(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .client
            .get(url)
            .header(COOKIE, self.cookies())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.remember(&response);
        response
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .client
            .post(url)
            .header(COOKIE, self.cookies())
            .form(form)
            .send()
            .await
            .unwrap();
        self.remember(&response);
        response
    }

    /// Follows redirects until one leaves `origin` or a page is shown.
    async fn follow(&mut self, origin: &str, mut response: reqwest::Response) -> Outcome {
        loop {
            if !response.status().is_redirection() {
                let url = response.url().to_string();
                return Outcome::Page(url, response.text().await.unwrap());
            }
            let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
            let next = if location.starts_with('/') {
                format!("{origin}{location}")
            } else {
                location
            };
            if !next.starts_with(origin) {
                return Outcome::Left(next);
            }
            response = self.get(&next).await;
        }
    }
}

enum Outcome {
    Page(String, String),
    Left(String),
}

/// The provider's form on `page`: its action URL.
fn form_action(origin: &str, page: &str) -> String {
    let start = page.find("action=\"").expect("the page has a form") + "action=\"".len();
    let end = start + page[start..].find('"').unwrap();
    let action = &page[start..end];
    if action.starts_with('/') {
        format!("{origin}{action}")
    } else {
        action.to_owned()
    }
}

const GROUP_POLICY: &str = r#"
@id("op-engineering-writes")
permit(
  principal in Portcullis::Group::"op:engineering",
  action == Docs::Action::"write",
  resource
);
"#;

/// Starts Portcullis with provider `op` and the provider itself.
async fn setup() -> (TestApp, OwnProvider, String) {
    setup_with(|_| {}).await
}

/// Like `setup`, after `adjust` has changed the test configuration.
async fn setup_with(
    adjust: impl FnOnce(&mut portcullis::config::Config),
) -> (TestApp, OwnProvider, String) {
    let provider_port = spare_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let app_port = spare_port();
    let redirect = format!("http://127.0.0.1:{app_port}/auth/oauth/op/callback");
    let config: OidcConfig = toml::from_str(&format!(
        r#"
        issuer = "{issuer}"
        client_id = "portcullis"
        client_secret = "portcullis-test-secret"
        redirect_url = "{redirect}"
        scopes = ["openid", "email", "profile", "groups"]
        display_name = "Test provider"

        [bearer]
        audiences = ["portcullis"]
        algorithms = ["RS256"]
        "#
    ))
    .unwrap();
    let app = spawn_app_with(move |c| {
        c.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], app_port));
        c.server.admin_token = Some(Secret::new(TOKEN));
        c.backends.insert(
            "op".into(),
            BackendConfig::Directory(Box::new(DirectoryConfig::Oidc(config))),
        );
        adjust(c);
    })
    .await;
    let provider = OwnProvider::start(provider_port, &redirect);
    app.write_policy_file("oidc.cedar", GROUP_POLICY);
    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (app, provider, issuer)
}

/// Runs the browser part of a sign-in as `login`; returns the callback URL
/// the provider sent the browser to.
async fn sign_in(browser: &mut Browser, app: &TestApp, issuer: &str, login: &str) -> String {
    let started = browser.get(&app.url("/auth/oauth/op/authorize")).await;
    assert_eq!(started.status(), StatusCode::FOUND);
    assert!(browser.jar.contains_key("portcullis_oauth_state"));
    let to_provider = started.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        to_provider.starts_with(&format!("{issuer}/auth?")),
        "{to_provider}"
    );
    assert!(to_provider.contains("code_challenge_method=S256"));
    assert!(to_provider.contains("state="));

    let first = browser.get(&to_provider).await;
    let Outcome::Page(_, login_page) = browser.follow(issuer, first).await else {
        panic!("the provider shows its login form");
    };
    let action = form_action(issuer, &login_page);
    let submitted = browser
        .post_form(
            &action,
            &[("prompt", "login"), ("login", login), ("password", "any")],
        )
        .await;
    let Outcome::Page(_, consent_page) = browser.follow(issuer, submitted).await else {
        panic!("the provider asks for consent");
    };
    assert!(consent_page.contains("consent"), "{consent_page}");
    let action = form_action(issuer, &consent_page);
    let confirmed = browser.post_form(&action, &[("prompt", "consent")]).await;
    match browser.follow(issuer, confirmed).await {
        Outcome::Left(url) => url,
        Outcome::Page(url, page) => panic!("expected the callback, got {url}: {page}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_oidc_sign_in_links_an_identity_that_decisions_see() {
    let (app, _provider, issuer) = setup().await;
    app.seed_sample_entities().await;
    let principal = r#"Portcullis::User::"op:erin""#;
    // Not linked yet: the provider's users are unknown until they sign in.
    assert_eq!(app.verdict(principal, WRITE, ONBOARDING).await, "Deny");

    let mut browser = Browser::new();
    let callback = sign_in(&mut browser, &app, &issuer, "erin").await;
    assert!(callback.starts_with(&app.url("/auth/oauth/op/callback?")));
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["principal"], principal);
    assert_eq!(body["identity"]["email"], "erin@portcullis.test");
    assert_eq!(body["identity"]["name"], "Erin Example");
    assert_eq!(body["identity"]["member_of"], json!(["engineering"]));
    assert!(
        !browser.jar.contains_key("portcullis_oauth_state"),
        "state cookie cleared"
    );

    // The link is stored, and the next decision sees her group.
    let stored = app
        .client
        .get(app.url("/storage/identities/op:erin"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    let (_, decided) = app.decide(principal, WRITE, ONBOARDING, json!({})).await;
    assert_eq!(decided["decision"], "Allow", "{decided}");
    assert_eq!(
        decided["diagnostics"]["reason"],
        json!(["op-engineering-writes"])
    );

    // A code and state are single-use.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["error"]["code"], "OAUTH_INVALID_STATE");

    // Another user of the provider, in another group: linked, not allowed.
    let mut other = Browser::new();
    let callback = sign_in(&mut other, &app, &issuer, "frank").await;
    assert_eq!(other.get(&callback).await.status(), StatusCode::OK);
    assert_eq!(
        app.verdict(r#"Portcullis::User::"op:frank""#, WRITE, ONBOARDING)
            .await,
        "Deny"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_from_another_browser_or_without_state_is_refused() {
    let (app, _provider, issuer) = setup().await;
    let mut victim = Browser::new();
    let callback = sign_in(&mut victim, &app, &issuer, "erin").await;

    // An attacker's browser replaying the victim's callback has no state cookie.
    let mut attacker = Browser::new();
    let stolen = attacker.get(&callback).await;
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    let body: Value = stolen.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OAUTH_INVALID_STATE");

    let missing = victim.get(&app.url("/auth/oauth/op/callback?code=x")).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let denied = victim
        .get(&app.url("/auth/oauth/op/callback?error=access_denied&error_description=nope"))
        .await;
    assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OAUTH_REJECTED");
    let unknown = victim.get(&app.url("/auth/oauth/nope/authorize")).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The providers list is what a login page renders its buttons from.
    let (status, list) = app.get("/auth/oauth/providers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["providers"],
        json!([{"name": "op", "display_name": "Test provider", "authorize": "/auth/oauth/op/authorize"}])
    );
}

const GATEWAY_POLICY: &str = r#"
@id("gateways-read")
permit(
  principal in Portcullis::Group::"op:gateways",
  action == Docs::Action::"read",
  resource
);
"#;

/// An access token of the provider's `gateway` client: an RS256 JWT for
/// audience `portcullis`, in group `gateways`.
async fn gateway_token(issuer: &str) -> String {
    let response: Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("gateway", Some("gateway-test-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "api")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {response}"))
        .to_owned()
}

/// The token with its payload's `sub` changed and the signature kept.
fn tampered(token: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("root");
    let payload = engine.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn provider_jwts_are_bearer_credentials_for_checks_and_decisions() {
    let (app, _provider, issuer) = setup_with(|c| {
        c.ext_authz = portcullis::config::Config::from_toml_str(
            r#"
[[ext_authz.rules]]
path = "/documents/{id}"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{id}" }
"#,
        )
        .unwrap()
        .ext_authz;
    })
    .await;
    app.write_policy_file("gateway.cedar", GATEWAY_POLICY);
    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = gateway_token(&issuer).await;
    let check = |token: String| {
        app.client
            .get(app.url("/ext_authz/documents/onboarding"))
            .bearer_auth(token)
            .send()
    };

    let allowed = check(token.clone()).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed.headers()["x-portcullis-principal"],
        r#"Portcullis::User::"op:gateway""#
    );
    // Again, from the verified-token cache.
    assert_eq!(check(token.clone()).await.unwrap().status(), StatusCode::OK);

    // The decision API takes it too, and decides for it when no principal is named.
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/v1/is_authorized",
            Auth::Bearer(&token),
            Some(json!({"action": READ, "resource": ONBOARDING})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "Allow", "{body}");

    // A changed payload breaks the signature.
    let forged = check(tampered(&token)).await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // A shared-secret token naming the provider is refused whatever its key.
    let claims = json!({"iss": issuer, "aud": "portcullis", "sub": "gateway", "groups": ["gateways"],
        "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300});
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guessed"),
    )
    .unwrap();
    assert_eq!(
        check(hs256).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}
