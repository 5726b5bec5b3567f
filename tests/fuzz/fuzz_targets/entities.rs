//! The entities upload parser: any bytes as the body of `PUT /v1/entities`
//! (replace) and `PATCH /v1/entities` (upsert), checked against the Docs
//! schema. An accepted upload must then be served: a decision after it
//! still answers.
#![no_main]

use axum::http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Policies, harness};

const PROBE: &str = r#"{"principal": "Portcullis::User::\"alice\"", "action": "Docs::Action::\"read\"", "resource": "Docs::Document::\"roadmap\""}"#;

fuzz_target!(|data: &[u8]| {
    let app = harness(Policies::Docs);
    for method in [Method::PUT, Method::PATCH] {
        let answer = app.json(method.clone(), "/v1/entities", data.to_vec(), true);
        answer.assert_sound(&format!("{method} /v1/entities"));
        if answer.status.is_success() {
            let probe = app.json(Method::POST, "/v1/is_authorized", PROBE, false);
            probe.assert_sound("a decision after an accepted upload");
            assert_eq!(probe.status, StatusCode::OK, "{}", probe.json());
        }
    }
});
