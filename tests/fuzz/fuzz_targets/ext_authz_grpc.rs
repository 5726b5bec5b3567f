//! The ext_authz gRPC mapper: the requests of the HTTP target's corpus as
//! Envoy's `CheckRequest` (`attributes.request.http`), with headers in
//! `headers` or, when a `:raw` line is present, in `header_map` with raw
//! values; a `:source` line gives the peer's socket address. As over HTTP,
//! no caller has valid credentials, so every answer must deny: a
//! `CheckResponse` whose status is not OK, with a denied response.
#![no_main]

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{Authorization as _, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use libfuzzer_sys::fuzz_target;
use portcullis::api::ExtAuthzGrpc;
use portcullis_fuzz::{Policies, WireRequest, harness};

fuzz_target!(|data: &[u8]| {
    let Some(wire) = WireRequest::parse(data) else {
        return;
    };
    let mut source = None;
    let mut raw = false;
    let mut headers = HashMap::new();
    let mut header_map = Vec::new();
    for (name, value) in &wire.headers {
        match *name {
            ":source" => source = Some(String::from_utf8_lossy(value).into_owned()),
            ":raw" => raw = true,
            _ => {
                let text = String::from_utf8_lossy(value).into_owned();
                headers.insert(name.to_string(), text.clone());
                header_map.push(HeaderValue {
                    key: name.to_string(),
                    value: text,
                    raw_value: value.to_vec(),
                });
            }
        }
    }
    let http = HttpRequest {
        method: wire.method.to_owned(),
        path: wire.target.to_owned(),
        headers: if raw { HashMap::new() } else { headers },
        header_map: raw.then_some(HeaderMap {
            headers: header_map,
        }),
        ..HttpRequest::default()
    };
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            source: source.map(|address| Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address,
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(http),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    };
    let app = harness(Policies::Sidecar);
    let service = ExtAuthzGrpc::new(app.state().clone());
    let answer = app
        .block_on(service.check(tonic::Request::new(check)))
        .expect("every check is answered, never a failed RPC")
        .into_inner();
    let code = answer.status.as_ref().map_or(0, |s| s.code);
    assert_ne!(
        code, 0,
        "a check without credentials was allowed: {answer:?}"
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &answer.http_response else {
        panic!("a denial without a denied response: {answer:?}");
    };
    let status = denied.status.as_ref().map_or(0, |s| s.code);
    assert!(
        (400..500).contains(&status),
        "denied with HTTP status {status}: {answer:?}"
    );
});
