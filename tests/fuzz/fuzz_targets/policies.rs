//! The policies upload parser: any text as the content of one API policy,
//! through `PUT /v1/policies` (replace all) and `PUT /v1/policies/{id}`,
//! validated against the Docs schema. An accepted policy must then be
//! served: listed, and a decision after it still answers.
#![no_main]

use axum::http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Policies, harness};
use serde_json::json;

const PROBE: &str = r#"{"principal": "Portcullis::User::\"alice\"", "action": "Docs::Action::\"read\"", "resource": "Docs::Document::\"roadmap\""}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let app = harness(Policies::Docs);
    let all = json!([{"id": "fuzzed", "content": text}]).to_string();
    let one = json!({"content": text}).to_string();
    for (method, path, body) in [
        (Method::PUT, "/v1/policies", all),
        (Method::PUT, "/v1/policies/fuzzed-one", one),
    ] {
        let answer = app.json(method.clone(), path, body, true);
        answer.assert_sound(&format!("{method} {path}"));
        if answer.status.is_success() {
            let listed = app.json(Method::GET, "/v1/policies", "", true);
            assert_eq!(listed.status, StatusCode::OK);
            let probe = app.json(Method::POST, "/v1/is_authorized", PROBE, false);
            probe.assert_sound("a decision after an accepted policy");
            assert_eq!(probe.status, StatusCode::OK, "{}", probe.json());
        }
    }
});
