//! The ext_authz HTTP mapper: any request (method, path with captures,
//! query, host, headers) under the check prefix, as Envoy's `http_service`
//! sends it. The app serves only a policy that allows nothing to a caller
//! without valid credentials, and none exist: so every check must be
//! denied (401 or 403), and a 200 is a wrong allow.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Policies, WireRequest, harness};

fuzz_target!(|data: &[u8]| {
    let Some(wire) = WireRequest::parse(data) else {
        return;
    };
    let Ok(method) = Method::from_bytes(wire.method.as_bytes()) else {
        return;
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/ext_authz{}", wire.target));
    if let Some(headers) = request.headers_mut() {
        *headers = wire.header_map();
    }
    let Ok(request) = request.body(Body::empty()) else {
        return;
    };
    let app = harness(Policies::Sidecar);
    let head = request.method() == Method::HEAD;
    let answer = app.send(request);
    if head {
        // An answer to HEAD has no body.
        assert!(answer.body.is_empty(), "HEAD answered with a body");
        assert!(!answer.status.is_server_error(), "{}", answer.status);
    } else {
        answer.assert_sound("ext_authz (HTTP)");
    }
    assert!(
        answer.status.is_client_error(),
        "a check without credentials was answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer.headers.contains_key("x-portcullis-decision-id")
            || !matches!(
                answer.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
        "a check's answer names its decision"
    );
});
