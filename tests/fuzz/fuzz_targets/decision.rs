//! The decision request parser: any bytes as the body of
//! `POST /v1/is_authorized` (plain and `?explain=true`) and of
//! `/v1/is_authorized/batch`: string and `{type,id}` uids, context, inline
//! entities. Every answer is a decision or a 4xx in the error shape.
#![no_main]

use axum::http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Policies, harness};

fuzz_target!(|data: &[u8]| {
    let app = harness(Policies::Docs);
    for path in ["/v1/is_authorized", "/v1/is_authorized?explain=true"] {
        let answer = app.json(Method::POST, path, data.to_vec(), false);
        answer.assert_sound(path);
        if answer.status == StatusCode::OK {
            let decision = answer.json()["decision"].clone();
            assert!(
                decision == "Allow" || decision == "Deny",
                "{path}: 200 without a decision: {}",
                answer.json()
            );
        }
    }
    let answer = app.json(
        Method::POST,
        "/v1/is_authorized/batch",
        data.to_vec(),
        false,
    );
    answer.assert_sound("/v1/is_authorized/batch");
});
