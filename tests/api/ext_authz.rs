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
    sidecar_with(move |config| config.ext_authz.unmatched = unmatched).await
}

/// A server with the test's route rules and policy, after `adjust`.
async fn sidecar_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(move |config| {
        config.ext_authz = Config::from_toml_str(RULES).unwrap().ext_authz;
        adjust(config);
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
        Some(json!({"name": "gw", "current_password": PASSWORD})),
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

#[tokio::test]
async fn every_path_writes_a_decision_log_line_with_masked_fields() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("decisions.log");
    let log_path = path.clone();
    let app = sidecar_with(move |config| {
        config.decision_log.enabled = true;
        config.decision_log.sink = portcullis::config::Sink::File;
        config.decision_log.path = log_path;
        config.decision_log.mask = vec!["ip".into()];
    })
    .await;
    app.seed_sample_entities().await;
    let staff = token_for(&app, "ada@example.com").await;

    let (status, _) = app
        .decide(ALICE, WRITE, ONBOARDING, json!({"ip": "198.51.100.4"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post_json(
            "/v1/is_authorized/batch",
            &json!({"requests": [
                {"principal": BOB, "action": WRITE, "resource": ONBOARDING},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let checked = check(
        &app,
        Method::GET,
        "/documents/onboarding",
        "docs.example.com",
        Some(&staff),
    )
    .await;
    assert_eq!(checked.status(), StatusCode::OK);
    let id = checked.headers()["x-portcullis-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    let origins: Vec<&str> = lines
        .iter()
        .map(|l| l["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["http", "batch", "ext_authz"]);
    assert_eq!(lines[0]["decision"], "Allow");
    assert_eq!(lines[0]["principal"], ALICE);
    assert_eq!(lines[0]["context"]["ip"], "***", "masked");
    assert!(!lines[0]["reasons"].as_array().unwrap().is_empty());
    assert_eq!(lines[1]["decision"], "Deny");
    assert_eq!(lines[2]["decision_id"], id.as_str());
    assert_eq!(lines[2]["context"]["ip"], "***");
    assert!(
        lines[2]["principal"]
            .as_str()
            .unwrap()
            .starts_with("Portcullis::User::")
    );
    for line in &lines {
        assert!(line["latency_us"].is_u64() && line["time_ms"].as_u64().unwrap() > 0);
        assert_eq!(line["decision_id"].as_str().unwrap().len(), 16);
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"portcullis_decision_log_entries_total{outcome="written"}"#
        ),
        Some(3.0)
    );
}

mod grpc {
    //! The gRPC mode, driven by a tonic client the way Envoy's `grpc_service`
    //! calls `envoy.service.auth.v3.Authorization/Check`.

    use std::collections::HashMap;

    use envoy_types::ext_authz::v3::pb::{Address, CheckRequest, CheckResponse, HttpResponse};
    use envoy_types::pb::envoy::config::core::v3::{
        HeaderMap, HeaderValue, SocketAddress, socket_address::PortSpecifier,
    };
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request,
    };
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use tonic::transport::Channel;

    use super::*;

    const OK: i32 = 0;
    const INVALID_ARGUMENT: i32 = 3;
    const PERMISSION_DENIED: i32 = 7;
    const UNAUTHENTICATED: i32 = 16;

    async fn grpc_sidecar() -> (TestApp, AuthorizationClient<Channel>) {
        let app = sidecar_with(|config| {
            config.ext_authz.grpc_listen = Some(([127, 0, 0, 1], 0).into());
        })
        .await;
        let addr = app.grpc_addr.expect("gRPC mode is on");
        let client = AuthorizationClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        (app, client)
    }

    /// A check as Envoy builds it: pseudo-headers and headers in `headers`,
    /// the request target (path and query) in `path`, the downstream peer
    /// in `source`.
    fn envoy_check(method: &str, target: &str, host: &str, token: Option<&str>) -> CheckRequest {
        let mut headers: HashMap<String, String> = [
            (":authority", host),
            (":method", method),
            (":path", target),
            ("x-request-id", "req-1"),
            // A client trying to smuggle its own principal upstream.
            ("x-portcullis-principal", "Portcullis::User::\"admin\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(token) = token {
            headers.insert("authorization".into(), format!("Bearer {token}"));
        }
        let source = SocketAddress {
            address: "203.0.113.9".into(),
            port_specifier: Some(PortSpecifier::PortValue(51000)),
            ..SocketAddress::default()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(envoy_types::pb::envoy::config::core::v3::Address {
                        address: Some(Address::SocketAddress(source)),
                    }),
                    ..Peer::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        id: "1".into(),
                        method: method.into(),
                        headers,
                        path: target.into(),
                        host: host.into(),
                        scheme: "https".into(),
                        protocol: "HTTP/1.1".into(),
                        ..HttpRequest::default()
                    }),
                    ..Request::default()
                }),
                ..AttributeContext::default()
            }),
        }
    }

    async fn call(client: &mut AuthorizationClient<Channel>, check: CheckRequest) -> CheckResponse {
        client
            .check(check)
            .await
            .expect("never a failed RPC")
            .into_inner()
    }

    fn code(response: &CheckResponse) -> i32 {
        response.status.as_ref().expect("status is set").code
    }

    /// The denied response's HTTP status, its header named `name`, and body.
    fn denial(response: &CheckResponse, name: &str) -> (i32, Option<String>, Value) {
        let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
            panic!("a denied response: {response:?}");
        };
        let header = denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.clone());
        let body = serde_json::from_str(&denied.body).expect("a JSON body");
        (denied.status.as_ref().unwrap().code, header, body)
    }

    #[tokio::test]
    async fn envoy_grpc_checks_allow_deny_and_ask_for_credentials() {
        let (app, mut client) = grpc_sidecar().await;
        let staff = token_for(&app, "ada@example.com").await;
        let outsider = token_for(&app, "eve@elsewhere.org").await;

        let allowed = call(
            &mut client,
            envoy_check(
                "GET",
                "/documents/onboarding?page=2",
                "docs.example.com:8443",
                Some(&staff),
            ),
        )
        .await;
        assert_eq!(code(&allowed), OK, "{allowed:?}");
        let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else {
            panic!("an ok response: {allowed:?}");
        };
        let upstream: HashMap<&str, (&str, i32)> = ok
            .headers
            .iter()
            .map(|h| {
                let header = h.header.as_ref().unwrap();
                (
                    header.key.as_str(),
                    (header.value.as_str(), h.append_action),
                )
            })
            .collect();
        let (principal, action) = upstream["x-portcullis-principal"];
        assert!(principal.starts_with("Portcullis::User::\""), "{principal}");
        assert_ne!(principal, "Portcullis::User::\"admin\"");
        // OVERWRITE_IF_EXISTS_OR_ADD: the smuggled header is replaced.
        assert_eq!(action, 2);
        assert_eq!(upstream["x-portcullis-decision-id"].0.len(), 16);

        let denied = call(
            &mut client,
            envoy_check(
                "GET",
                "/documents/onboarding",
                "docs.example.com",
                Some(&outsider),
            ),
        )
        .await;
        assert_eq!(code(&denied), PERMISSION_DENIED);
        let (status, id, body) = denial(&denied, "x-portcullis-decision-id");
        assert_eq!(status, 403);
        assert_eq!(body["error"]["code"], "DENIED");
        assert_eq!(body["decision_id"].as_str(), id.as_deref());

        for token in [None, Some("not-a-token")] {
            let anonymous = call(
                &mut client,
                envoy_check("GET", "/documents/onboarding", "docs.example.com", token),
            )
            .await;
            assert_eq!(code(&anonymous), UNAUTHENTICATED, "{token:?}");
            let (status, challenge, body) = denial(&anonymous, "www-authenticate");
            assert_eq!(status, 401);
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
        }

        // No rule: the default, deny.
        let unmatched = call(
            &mut client,
            envoy_check(
                "DELETE",
                "/documents/onboarding",
                "docs.example.com",
                Some(&staff),
            ),
        )
        .await;
        assert_eq!(code(&unmatched), PERMISSION_DENIED);
        assert_eq!(denial(&unmatched, "").2["error"]["code"], "NO_ROUTE_RULE");

        // `encode_raw_headers`: the headers come in `header_map` as bytes.
        let mut raw = envoy_check("GET", "/documents/onboarding", "docs.example.com", None);
        let http = raw
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        let header = |key: &str, value: String| HeaderValue {
            key: key.into(),
            raw_value: value.into_bytes(),
            ..HeaderValue::default()
        };
        http.headers.clear();
        http.host.clear();
        http.header_map = Some(HeaderMap {
            headers: vec![
                header(":authority", "docs.example.com".into()),
                header("authorization", format!("Bearer {staff}")),
            ],
        });
        assert_eq!(code(&call(&mut client, raw).await), OK);

        let metrics = app.metrics().await;
        assert_eq!(
            metric_value(
                &metrics,
                r#"portcullis_ext_authz_grpc_checks_total{code="ok"}"#
            ),
            Some(2.0)
        );
    }

    #[tokio::test]
    async fn malformed_grpc_checks_are_denied_in_band() {
        let (_app, mut client) = grpc_sidecar().await;
        let mut no_path = envoy_check("GET", "documents/x", "docs.example.com", None);
        let mut no_method = envoy_check("", "/documents/x", "docs.example.com", None);
        let mut no_http = envoy_check("GET", "/documents/x", "docs.example.com", None);
        no_http.attributes.as_mut().unwrap().request = None;
        for (name, check) in [
            ("no attributes", CheckRequest::default()),
            ("no http", std::mem::take(&mut no_http)),
            ("no method", std::mem::take(&mut no_method)),
            ("relative path", std::mem::take(&mut no_path)),
        ] {
            let response = call(&mut client, check).await;
            assert_eq!(code(&response), INVALID_ARGUMENT, "{name}");
            let (status, _, body) = denial(&response, "");
            assert_eq!(status, 400, "{name}");
            assert_eq!(body["error"]["code"], "MALFORMED_CHECK", "{name}");
        }
    }

    #[tokio::test]
    async fn grpc_connections_are_bounded() {
        let app = sidecar_with(|config| {
            config.ext_authz.grpc_listen = Some(([127, 0, 0, 1], 0).into());
            config.server.max_connections = 1;
        })
        .await;
        let url = format!("http://{}", app.grpc_addr.expect("gRPC mode is on"));
        let check = || envoy_check("GET", "/documents/x", "docs.example.com", None);
        // The one place: served.
        let mut first = AuthorizationClient::connect(url.clone()).await.unwrap();
        assert_eq!(code(&call(&mut first, check()).await), UNAUTHENTICATED);
        // One past it: closed, so the RPC fails (Envoy's deny).
        let second = match AuthorizationClient::connect(url.clone()).await {
            Ok(mut client) => client.check(check()).await.map(|_| ()),
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        assert!(second.is_err(), "a connection past the limit is not served");
        // The place given back is taken again.
        drop(first);
        let mut served = None;
        for _ in 0..50 {
            if let Ok(mut client) = AuthorizationClient::connect(url.clone()).await
                && let Ok(answer) = client.check(check()).await
            {
                served = Some(answer.into_inner());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let served = served.expect("a freed place is taken");
        assert_eq!(code(&served), UNAUTHENTICATED);
        let refused = metric_value(
            &app.metrics().await,
            r#"portcullis_connections_refused_total{listener="grpc"}"#,
        );
        assert!(
            refused.is_some_and(|n| n >= 1.0),
            "refusals counted: {refused:?}"
        );
    }
}
