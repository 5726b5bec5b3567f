//! Bad requests get a stable code in `{"error": {"code", "message"}}` and
//! a failed write leaves the store as it was.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn decide_raw(app: &TestApp, body: &str) -> (StatusCode, Value) {
    app.send(
        Method::POST,
        "/v1/is_authorized",
        Some(body.as_bytes().to_vec()),
    )
    .await
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;

    let reply = decide_raw(&app, r#"{"principal": "#).await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
}

#[tokio::test]
async fn a_body_declared_as_something_else_than_json_is_415() {
    let app = spawn_app().await;
    let body = r#"{"principal": "Portcullis::User::\"alice\"", "action": "Docs::Action::\"read\"", "resource": "Docs::Document::\"x\""}"#;
    let post = |content_type: &'static str| {
        app.client
            .post(app.url("/v1/is_authorized"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let refused = post("application/xml").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["error"]["code"], "UNSUPPORTED_MEDIA_TYPE",
        "{refused}"
    );
    // JSON, and what `curl -d` declares for it, are read.
    for fine in [
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
    ] {
        assert_eq!(post(fine).await.unwrap().status(), StatusCode::OK, "{fine}");
    }
}

#[tokio::test]
async fn wrong_field_types_are_422() {
    let app = spawn_app().await;

    let reply = decide_raw(&app, r#"{"principal": 42, "action": "a", "resource": "r"}"#).await;
    let batch = app
        .post_json("/v1/is_authorized/batch", &json!({"requests": 7}))
        .await;

    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY");
    assert_error(&batch, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY");
}

#[tokio::test]
async fn missing_principal_is_400() {
    let app = spawn_app().await;

    let reply = app
        .post_json(
            "/v1/is_authorized",
            &json!({"action": READ, "resource": ONBOARDING}),
        )
        .await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "MISSING_FIELD");
    assert!(
        reply.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("principal")
    );
}

#[tokio::test]
async fn malformed_uids_are_400() {
    let app = spawn_app().await;

    for bad in ["alice", r#"User::alice"#, r#"::"x""#, r#"1User::"x""#] {
        let reply = app.decide(bad, READ, ONBOARDING, json!({})).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "INVALID_ENTITY_UID");
    }
}

#[tokio::test]
async fn unknown_entity_type_is_400() {
    let app = spawn_app().await;

    let reply = app
        .decide(r#"Docs::Spaceship::"x""#, READ, ONBOARDING, json!({}))
        .await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "UNKNOWN_ENTITY_TYPE");
}

#[tokio::test]
async fn unknown_action_is_400() {
    let app = spawn_app().await;

    let reply = app
        .decide(ALICE, r#"Docs::Action::"fly""#, ONBOARDING, Value::Null)
        .await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "UNKNOWN_ACTION");
}

#[tokio::test]
async fn unknown_action_with_a_context_is_still_unknown_action() {
    let app = spawn_app().await;

    let reply = app
        .decide(ALICE, r#"Docs::Action::"fly""#, ONBOARDING, json!({}))
        .await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "UNKNOWN_ACTION");
}

#[tokio::test]
async fn context_that_is_not_an_object_is_400() {
    let app = spawn_app().await;

    for context in [json!([1]), json!("mfa"), json!(true)] {
        let (status, body) = app.decide(ALICE, READ, ONBOARDING, context).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "CONTEXT_INVALID");
    }
}

#[tokio::test]
async fn context_that_breaks_the_schema_is_400() {
    let app = spawn_app().await;

    let (status, body) = app
        .decide(ALICE, READ, ONBOARDING, json!({"mfa": "yes"}))
        .await;

    // The code is REQUEST_INVALID here but CONTEXT_INVALID for a non-object
    // context; only the status and the message are pinned.
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(message.contains("context"), "{message}");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let app = spawn_app_with(|c| c.server.body_limit_bytes = 1024).await;
    let mut big = decision_request(ALICE, READ, ONBOARDING, json!({}));
    big["context"]["ip"] = json!("x".repeat(2048));

    let decision = app.post_json("/v1/is_authorized", &big).await;
    let entities = app.put_json("/v1/entities", &json!([big])).await;
    let small = app.decide(ALICE, READ, ONBOARDING, json!({})).await;

    assert_error(
        &decision,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    assert_error(
        &entities,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(small.0, StatusCode::OK, "under the limit still works");
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;

    let reply = app.get("/v1/nothing-here").await;

    assert_error(&reply, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let app = spawn_app().await;

    let on_decision = app.get("/v1/is_authorized").await;
    let on_entity = app.get("/v1/entities/Portcullis::User/bob").await;

    assert_error(
        &on_decision,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    assert_error(
        &on_entity,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
}

#[tokio::test]
async fn failed_entity_write_leaves_the_store_unchanged() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.get("/v1/data").await;

    let not_a_list = app.put_json("/v1/data", &json!({"uid": "nope"})).await;
    let bad_attr = app
        .put_json(
            "/v1/data",
            &json!([{"uid": {"type": "Portcullis::User", "id": "eve"}, "attrs": {"active": "yes"}, "parents": []}]),
        )
        .await;
    let bad_patch = app
        .patch_json(
            "/v1/entities",
            &json!([{"uid": {"type": "Docs::Spaceship", "id": "x"}, "attrs": {}, "parents": []}]),
        )
        .await;

    assert_error(&not_a_list, StatusCode::BAD_REQUEST, "ENTITIES_INVALID");
    assert_error(&bad_attr, StatusCode::BAD_REQUEST, "ENTITIES_INVALID");
    assert_error(&bad_patch, StatusCode::BAD_REQUEST, "ENTITIES_INVALID");
    assert_eq!(app.get("/v1/data").await.1, before);
    let app = app.restart().await;
    assert_eq!(
        app.get("/v1/data").await.1,
        before,
        "nothing reached the store"
    );
}

#[tokio::test]
async fn failed_policy_write_leaves_the_store_unchanged() {
    let app = spawn_app().await;
    let (_, before) = app.get("/v1/policies").await;
    let invalid =
        json!({"id": "broken", "content": "permit (principal, action, resource) when { };"});

    let created = app.post_json("/v1/policies", &invalid).await;
    let upserted = app
        .put_json("/v1/policies/broken", &json!({"content": "nonsense"}))
        .await;
    let replaced = app.put_json("/v1/policies", &json!([invalid])).await;
    let unknown_field = app
        .post_json(
            "/v1/policies",
            &json!({"id": "x", "content": "permit (principal, action, resource);", "extra": 1}),
        )
        .await;

    assert_error(&created, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_error(&upserted, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_error(&replaced, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_error(
        &unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    );
    assert_eq!(app.get("/v1/policies").await.1, before);
    let app = app.restart().await;
    assert_eq!(
        app.get("/v1/policies").await.1,
        before,
        "nothing reached the store"
    );
}

/// A batch whose one request is `depth` arrays inside one another: the body
/// nests `depth + 2` deep.
fn nested_batch(depth: usize) -> String {
    format!(
        r#"{{"requests": [{}{}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[tokio::test]
async fn json_nesting_is_bounded_at_the_configured_depth() {
    let app = spawn_app().await;
    // The default limit is 32: 30 inside the batch is 32 in all.
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/is_authorized/batch",
            Some(nested_batch(30).into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["results"][0]["error"].is_object(), "{body}");
    let reply = app
        .send(
            Method::POST,
            "/v1/is_authorized/batch",
            Some(nested_batch(31).into_bytes()),
        )
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "JSON_TOO_DEEP");
    // Far deeper than serde_json's own recursion limit: still a clear 400.
    let reply = app
        .send(
            Method::POST,
            "/v1/is_authorized/batch",
            Some(nested_batch(100_000).into_bytes()),
        )
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "JSON_TOO_DEEP");
}

#[tokio::test]
async fn inline_entities_are_bounded_per_decision_request() {
    let app = spawn_app_with(|c| c.server.max_request_entities = 3).await;
    let entities = sample_entities();
    let first = |n: usize| json!(entities.as_array().unwrap()[..n]);
    let ask = |n: usize| {
        let mut request = decision_request(ALICE, READ, ONBOARDING, json!({}));
        request["entities"] = first(2);
        request["additional_entities"] = first(n - 2);
        request
    };
    let (status, body) = app.post_json("/v1/is_authorized", &ask(3)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = app.post_json("/v1/is_authorized", &ask(4)).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_ENTITIES");
    // In a batch, the one request over the limit is refused in its place.
    let (status, body) = app
        .post_json(
            "/v1/is_authorized/batch",
            &json!({"requests": [ask(3), ask(4)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["results"][0]["decision"].is_string(), "{body}");
    assert_eq!(
        body["results"][1]["error"]["code"], "TOO_MANY_ENTITIES",
        "{body}"
    );
}

/// A hand-written HTTP/1.1 request with exactly `headers` (and nothing
/// reqwest would add); answers the status and the JSON body.
async fn raw_request(app: &TestApp, headers: &[(String, String)]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = decision_request(ALICE, READ, ONBOARDING, json!({})).to_string();
    let mut text = "POST /v1/is_authorized HTTP/1.1\r\n".to_owned();
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn header_count_and_size_are_bounded() {
    let app = spawn_app_with(|c| {
        c.server.max_headers = 10;
        c.server.max_header_bytes = 1024;
    })
    .await;
    // host, content-length and connection, plus `extra` of our own.
    let with = |extra: usize, pad: usize| {
        let mut headers = vec![("host".to_owned(), "x".to_owned())];
        for i in 0..extra {
            headers.push((format!("x-h{i}"), "v".repeat(if i == 0 { pad } else { 1 })));
        }
        headers
    };
    let (status, body) = raw_request(&app, &with(7, 1)).await;
    assert_eq!(status, 200, "10 headers: {body}");
    let (status, body) = raw_request(&app, &with(8, 1)).await;
    assert_eq!(status, 431, "11 headers");
    assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE", "{body}");

    // Bytes: names and values. Fixed: host 5, content-length 14 + its
    // digits, connection 15; x-h0 4 + pad.
    let digits = decision_request(ALICE, READ, ONBOARDING, json!({}))
        .to_string()
        .len()
        .to_string()
        .len();
    let pad = 1024 - (5 + 14 + digits + 15 + 4);
    let (status, body) = raw_request(&app, &with(1, pad)).await;
    assert_eq!(status, 200, "1024 bytes: {body}");
    let (status, body) = raw_request(&app, &with(1, pad + 1)).await;
    assert_eq!(status, 431, "1025 bytes");
    assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE", "{body}");
}

#[tokio::test]
async fn open_connections_are_bounded_per_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let app = spawn_app_with(|c| c.server.max_connections = 2).await;
    let host = [("host".to_owned(), "x".to_owned())];
    // Two connections take both places; the second, at the limit, is served.
    let first = TcpStream::connect(app.addr).await.unwrap();
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    second
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    second.read_exact(&mut head).await.unwrap();
    assert_eq!(
        &head, b"HTTP/1.1 200",
        "the connection at the limit is served"
    );

    // One past it: 503 in the error shape, and closed.
    let (status, body) = raw_request(&app, &host).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS", "{body}");

    // A place given back is taken again.
    drop(first);
    let mut served = (0, Value::Null);
    for _ in 0..50 {
        served = raw_request(&app, &host).await;
        if served.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served.0, 200, "a freed place is taken: {}", served.1);
    drop(second);
    let metrics = app.metrics().await;
    let refused = metric_value(
        &metrics,
        r#"portcullis_connections_refused_total{listener="http"}"#,
    );
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "refusals counted: {refused:?}"
    );
}

/// A policy of exactly `bytes` bytes.
fn policy_of(bytes: usize) -> String {
    let frame =
        r#"permit (principal, action == Docs::Action::"read", resource) unless { "" == "" };"#;
    frame.replace(
        r#"unless { """#,
        &format!(r#"unless {{ "{}""#, "x".repeat(bytes - frame.len())),
    )
}

#[tokio::test]
async fn policy_count_and_size_are_bounded() {
    let files = spawn_app()
        .await
        .get("/v1/policies")
        .await
        .1
        .as_array()
        .unwrap()
        .len();
    let app = spawn_app_with(|c| {
        c.policies.max_count = files + 2;
        c.policies.max_policy_bytes = 256;
    })
    .await;
    let create = |id: &str, bytes: usize| json!({"id": id, "content": policy_of(bytes)});

    // Size: at the bound, and one past it (refused before it is parsed).
    let reply = app.post_json("/v1/policies", &create("sized", 257)).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "POLICY_TOO_LARGE");
    let reply = app.post_json("/v1/policies", &create("sized", 256)).await;
    assert_eq!(reply.0, StatusCode::CREATED, "{}", reply.1);

    // Count: files plus API policies, up to the bound.
    let reply = app.post_json("/v1/policies", &create("second", 100)).await;
    assert_eq!(reply.0, StatusCode::CREATED, "{}", reply.1);
    let reply = app.post_json("/v1/policies", &create("third", 100)).await;
    assert_error(&reply, StatusCode::CONFLICT, "TOO_MANY_POLICIES");
    let three = json!([create("a", 100), create("b", 100), create("c", 100)]);
    let reply = app.put_json("/v1/policies", &three).await;
    assert_error(&reply, StatusCode::CONFLICT, "TOO_MANY_POLICIES");
    let listed = app.get("/v1/policies").await.1;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids.len(), files + 2, "nothing refused was written: {ids:?}");
    assert!(ids.contains(&"sized") && ids.contains(&"second"));

    // A place freed is taken again.
    assert_eq!(
        app.delete("/v1/policies/second").await.0,
        StatusCode::NO_CONTENT
    );
    let reply = app.post_json("/v1/policies", &create("third", 100)).await;
    assert_eq!(reply.0, StatusCode::CREATED, "{}", reply.1);
}
