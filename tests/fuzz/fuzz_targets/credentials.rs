//! The JWT and API-key extractors: any `Authorization` and `X-API-Key`
//! values (one per line of the input) on `GET /users/me` and on a decision.
//! No account, key or service account exists, so no credential is valid:
//! `/users/me` must never answer 2xx, and nothing may answer 5xx.
#![no_main]

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Policies, harness};

const DECISION: &str = r#"{"principal": "Portcullis::User::\"alice\"", "action": "Docs::Action::\"read\"", "resource": "Docs::Document::\"roadmap\""}"#;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(2, |b| *b == b'\n');
    let authorization = lines.next().and_then(|v| HeaderValue::from_bytes(v).ok());
    let api_key = lines.next().and_then(|v| HeaderValue::from_bytes(v).ok());
    let app = harness(Policies::Docs);
    for (method, path, body) in [
        (Method::GET, "/users/me", ""),
        (Method::POST, "/v1/is_authorized", DECISION),
    ] {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(value) = &authorization {
            request = request.header("authorization", value.clone());
        }
        if let Some(value) = &api_key {
            request = request.header("x-api-key", value.clone());
        }
        let answer = app.send(request.body(Body::from(body)).expect("a valid request"));
        answer.assert_sound(path);
        if path == "/users/me" {
            assert!(
                !answer.status.is_success(),
                "credentials that no one was given were accepted: {authorization:?} {api_key:?}"
            );
        }
    }
});
