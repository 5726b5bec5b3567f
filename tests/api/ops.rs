//! Operations routes, route discovery against what is actually routed, and
//! graceful shutdown.

use std::collections::BTreeSet;

use portcullis::api::routes;
use reqwest::{Method, StatusCode};

use crate::helpers::*;

#[tokio::test]
async fn health_reports_the_store_up() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    let (status, body) = app.get("/health").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"]["kind"], "sqlite");
    assert_eq!(body["store"]["status"], "up");
    assert_eq!(body["entities"]["count"], 9);
    assert_eq!(body["policies"]["count"], 9);
    for alias in ["/", "/v1"] {
        assert_eq!(app.get(alias).await.1["store"]["status"], "up", "{alias}");
    }
}

#[tokio::test]
async fn ready_is_200_when_the_store_answers() {
    let app = spawn_app().await;

    let (status, body) = app.get("/ready").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn metrics_expose_decision_latency_and_http_requests() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    assert_eq!(app.verdict(ALICE, READ, ONBOARDING).await, "Allow");

    let text = app.metrics().await;

    let count = metric_value(&text, "portcullis_decision_duration_seconds_count")
        .expect("decision latency histogram");
    assert!(count >= 1.0, "one decision was observed: {count}");
    let decided = text.lines().any(|l| {
        l.starts_with("portcullis_http_requests_total{")
            && l.contains(r#"route="/v1/is_authorized""#)
            && l.contains(r#"status="2xx""#)
            && !l.ends_with(" 0")
    });
    assert!(decided, "the decision request is counted:\n{text}");
    assert_eq!(
        metric_value(&text, r#"portcullis_decisions_total{decision="allow"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn discovery_lists_every_route() {
    let app = spawn_app().await;

    let (status, body) = app.get("/discovery").await;

    assert_eq!(status, StatusCode::OK);
    let listed: BTreeSet<(String, String)> = body["routes"]
        .as_array()
        .expect("routes array")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = routes("/ext_authz")
        .into_iter()
        .map(|r| (r.method.to_owned(), r.path))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(body["features"]["store"], "sqlite");
    assert_eq!(body["features"]["decision_cache"], true);
}

#[tokio::test]
async fn every_listed_route_is_routed() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;

    for route in routes("/ext_authz") {
        let (method, template) = (route.method, route.path.replace("{*path}", "x"));
        let path = if template.starts_with("/v1/entities/") {
            template
                .replace("{type}", "Portcullis::User")
                .replace("{id}", "nobody")
        } else {
            template.replace("{id}", "no-such-policy")
        };
        let method = Method::from_bytes(method.as_bytes()).expect("valid method");
        let body =
            matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| b"{}".to_vec());

        let (status, reply) = app.send(method.clone(), &path, body).await;

        let unrouted = status == StatusCode::NOT_FOUND && reply["error"]["code"] == "NOT_FOUND";
        assert!(!unrouted, "{method} {path} is not routed: {reply}");
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {reply}"
        );
    }
}

#[tokio::test]
async fn server_stops_cleanly_when_the_shutdown_future_fires() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/health").await.0, StatusCode::OK);

    let result = app.stop().await;

    assert!(result.is_ok(), "run_until_stopped returned {result:?}");
    let fresh = reqwest::Client::new();
    let refused = fresh.get(app.url("/health")).send().await;
    assert!(refused.is_err(), "no longer accepting connections");
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    for route in routes("/ext_authz") {
        let path = route.path.replace("{*", "{");
        let method = match route.method {
            "ANY" => "get".to_owned(),
            other => other.to_ascii_lowercase(),
        };
        let operation = &spec["paths"][&path][&method];
        assert!(
            operation.is_object(),
            "{method} {path} is missing from the spec"
        );
        assert_eq!(
            operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{method} {path}"
        );
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let declared = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name));
            assert!(declared, "{method} {path}: parameter {name}");
        }
    }
    assert_eq!(
        spec["paths"]["/v1/is_authorized"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/DecisionRequest"
    );
    assert_eq!(
        spec["paths"]["/rbac/policies"]["post"]["responses"]["201"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Grant"
    );
    // Every reference names a schema the document defines.
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(found.len() > 20);
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{reference}"));
        assert!(
            spec["components"]["schemas"][name].is_object(),
            "{reference} is not defined"
        );
    }
}
