//! Envoy ext_authz in HTTP mode, driven the way Envoy's `http_service`
//! sends checks: the original method and path under the prefix, the
//! original `Host`, `Authorization` and the passed headers, no body.

use portcullis::config::{Config, UnmatchedRoute};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

const RULES: &str = r#"
[[ext_authz.rules]]
methods = ["GET", "HEAD"]
path = "/documents/{id}"
host = "docs.example.com"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{id}" }
context = { ip = "{source}" }

[[ext_authz.rules]]
methods = ["GET"]
path = "/public/{*rest}"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{rest}" }
require_principal = false
"#;

const POLICY: &str = r#"
@id("example-staff-read")
permit(principal is Portcullis::User, action == Docs::Action::"read", resource)
when { principal has email && principal.email like "*@example.com" && context has ip };

@id("anyone-reads-public")
permit(principal == Portcullis::User::"anonymous", action == Docs::Action::"read", resource == Docs::Document::"handbook/intro");
"#;

async fn sidecar(unmatched: UnmatchedRoute) -> TestApp {
    let app = spawn_app_with(move |config| {
        config.ext_authz = Config::from_toml_str(RULES).unwrap().ext_authz;
        config.ext_authz.unmatched = unmatched;
    })
    .await;
    app.write_policy_file("sidecar.cedar", POLICY);
    assert_eq!(
        app.post_json("/v1/policies/reload", &json!({})).await.0,
        StatusCode::OK
    );
    app
}

async fn token_for(app: &TestApp, email: &str) -> String {
    app.post_json(
        "/auth/register",
        &json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let (_, pair) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": email, "password": PASSWORD}),
        )
        .await;
    pair["access_token"].as_str().unwrap().to_owned()
}

/// A check as Envoy sends it.
async fn check(
    app: &TestApp,
    method: Method,
    path: &str,
    host: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(&format!("/ext_authz{path}")))
        .header("host", host)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-request-id", "req-1");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn envoy_checks_allow_deny_and_ask_for_credentials() {
    let app = sidecar(UnmatchedRoute::Deny).await;
    let staff = token_for(&app, "ada@example.com").await;
    let outsider = token_for(&app, "eve@elsewhere.org").await;

    let allowed = check(
        &app,
        Method::GET,
        "/documents/onboarding?page=2",
        "docs.example.com:8443",
        Some(&staff),
    )
    .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let principal = allowed.headers()["x-portcullis-principal"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(principal.starts_with("Portcullis::User::\""), "{principal}");
    assert_eq!(allowed.headers()["x-portcullis-decision-id"].len(), 16);
    assert!(allowed.bytes().await.unwrap().is_empty());
    // HEAD is in the rule too.
    assert_eq!(
        check(
            &app,
            Method::HEAD,
            "/documents/onboarding",
            "docs.example.com",
            Some(&staff)
        )
        .await
        .status(),
        StatusCode::OK
    );

    let denied = check(
        &app,
        Method::GET,
        "/documents/onboarding",
        "docs.example.com",
        Some(&outsider),
    )
    .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(denied.headers().contains_key("x-portcullis-decision-id"));
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "DENIED");

    let anonymous = check(
        &app,
        Method::GET,
        "/documents/onboarding",
        "docs.example.com",
        None,
    )
    .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let forged = check(
        &app,
        Method::GET,
        "/documents/onboarding",
        "docs.example.com",
        Some("not-a-token"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // Wrong method, wrong host, and no rule at all: the default, deny.
    for (method, path, host) in [
        (Method::DELETE, "/documents/onboarding", "docs.example.com"),
        (Method::GET, "/documents/onboarding", "evil.example.com"),
        (Method::GET, "/admin", "docs.example.com"),
    ] {
        let response = check(&app, method.clone(), path, host, Some(&staff)).await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} {host}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NO_ROUTE_RULE");
    }

    // A rule that needs no principal decides for the anonymous one.
    let public = check(
        &app,
        Method::GET,
        "/public/handbook/intro",
        "any.example.com",
        None,
    )
    .await;
    assert_eq!(public.status(), StatusCode::OK);
    assert_eq!(
        public.headers()["x-portcullis-principal"],
        r#"Portcullis::User::"anonymous""#
    );
    assert_eq!(
        check(
            &app,
            Method::GET,
            "/public/handbook/other",
            "any.example.com",
            None
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );

    // An API key works as Envoy would pass it.
    let (_, key) = with_token(
        &app,
        Method::POST,
        "/auth/api-keys/",
        &staff,
        Some(json!({"name": "gw"})),
    )
    .await;
    let response = app
        .client
        .get(app.url("/ext_authz/documents/onboarding"))
        .header("host", "docs.example.com")
        .header("x-api-key", key["api_key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unmatched_routes_can_be_let_through_by_config() {
    let app = sidecar(UnmatchedRoute::Allow).await;
    let response = check(&app, Method::POST, "/healthz", "docs.example.com", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-portcullis-principal").is_none());
    // Matched routes are still decided.
    let response = check(
        &app,
        Method::GET,
        "/documents/onboarding",
        "docs.example.com",
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
