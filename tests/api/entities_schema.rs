//! Entity and schema routes: the `/v1/data` alias, validation that refuses
//! and keeps the previous state, and persistence across a restart.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const FROBNICATE: &str = r#"Docs::Action::"frobnicate""#;

#[tokio::test]
async fn data_alias_reads_replaces_and_clears_the_entities() {
    let app = spawn_app().await;

    let (put_status, put_body) = app.put_json("/v1/data", &sample_entities()).await;
    let (_, via_data) = app.get("/v1/data").await;
    let (_, via_entities) = app.get("/v1/entities").await;
    let (delete_status, _) = app.delete("/v1/data").await;
    let (_, after_delete) = app.get("/v1/entities").await;

    assert_eq!(put_status, StatusCode::OK, "{put_body}");
    assert_eq!(via_data.as_array().map(Vec::len), Some(9));
    assert_eq!(via_data, via_entities);
    assert_eq!(put_body, via_data);
    assert_eq!(delete_status, StatusCode::NO_CONTENT);
    assert_eq!(after_delete, json!([]));
}

#[tokio::test]
async fn unknown_entity_type_is_refused_and_the_set_is_unchanged() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.get("/v1/entities").await;
    let mut invalid = sample_entities();
    invalid.as_array_mut().unwrap().push(json!({
        "uid": {"type": "Docs::Spaceship", "id": "enterprise"}, "attrs": {}, "parents": []
    }));

    let reply = app.put_json("/v1/entities", &invalid).await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "ENTITIES_INVALID");
    assert_eq!(app.get("/v1/entities").await.1, before);
    assert_eq!(app.get("/v1/data").await.1, before);
}

#[tokio::test]
async fn schema_is_served_as_cedar_json() {
    let app = spawn_app().await;

    let (status, schema) = app.get("/v1/schema").await;

    assert_eq!(status, StatusCode::OK);
    let docs = schema["Docs"].as_object().expect("a Docs namespace");
    assert!(docs["entityTypes"]["Document"].is_object(), "{schema}");
    assert!(docs["actions"]["write"].is_object(), "{schema}");
}

#[tokio::test]
async fn schema_that_breaks_a_policy_is_refused_and_nothing_changes() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.get("/v1/schema").await;
    let mut breaking = before.clone();
    let removed = breaking["Docs"]["actions"]
        .as_object_mut()
        .expect("actions object")
        .remove("write");
    assert!(removed.is_some(), "the sample schema declares `write`");

    let reply = app.put_json("/v1/schema", &breaking).await;

    assert_error(&reply, StatusCode::BAD_REQUEST, "POLICY_INVALID");
    assert_eq!(app.get("/v1/schema").await.1, before);
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
    let restarted = app.restart().await;
    assert_eq!(restarted.get("/v1/schema").await.1, before, "not persisted");
}

#[tokio::test]
async fn valid_schema_replaces_the_current_one() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, mut schema) = app.get("/v1/schema").await;
    schema["Docs"]["actions"]["frobnicate"] = schema["Docs"]["actions"]["read"].clone();
    assert_error(
        &app.decide(ALICE, FROBNICATE, ONBOARDING, Value::Null).await,
        StatusCode::BAD_REQUEST,
        "UNKNOWN_ACTION",
    );

    let (status, body) = app.put_json("/v1/schema", &schema).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.get("/v1/schema").await.1, schema);
    assert_eq!(app.verdict(ALICE, FROBNICATE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn without_a_schema_unknown_actions_are_denied_not_rejected() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let with_schema = app.decide(BOB, FROBNICATE, ONBOARDING, Value::Null).await;
    assert_error(&with_schema, StatusCode::BAD_REQUEST, "UNKNOWN_ACTION");

    let (status, _) = app.delete("/v1/schema").await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/schema").await.1, json!({}));
    let (status, body) = app.decide(BOB, FROBNICATE, ONBOARDING, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "Deny");
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn entities_policies_and_schema_choice_survive_a_restart() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let policy = json!({
        "id": "bob-writes",
        "content": r#"permit (principal == Portcullis::User::"bob", action == Docs::Action::"write", resource);"#,
    });
    assert_eq!(
        app.post_json("/v1/policies", &policy).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.delete("/v1/entities/Portcullis::User/mallory").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, entities) = app.get("/v1/entities").await;
    let (_, policies) = app.get("/v1/policies").await;

    let app = app.restart().await;

    assert_eq!(app.get("/v1/entities").await.1, entities);
    assert_eq!(app.get("/v1/policies").await.1, policies);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(entities.as_array().map(Vec::len), Some(8));
}

#[tokio::test]
async fn deleted_schema_stays_deleted_after_a_restart() {
    let app = spawn_app().await;
    assert_eq!(app.delete("/v1/schema").await.0, StatusCode::NO_CONTENT);

    let app = app.restart().await;

    assert_eq!(
        app.get("/v1/schema").await.1,
        json!({}),
        "the stored choice outranks the file"
    );
}

#[tokio::test]
async fn reload_refuses_a_schema_file_that_stored_entities_break() {
    let app = spawn_app().await;
    app.seed_sample_entities().await;
    let (_, before) = app.get("/v1/schema").await;
    let schema = std::fs::read_to_string(app.policy_dir.path().join("docs.cedarschema")).unwrap();
    let stricter = schema.replace(
        "\"public\": Bool,",
        "\"public\": Bool,\n    \"title\": String,",
    );
    assert_ne!(schema, stricter, "the sample schema declares `public`");
    app.write_policy_file("docs.cedarschema", &stricter);

    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;

    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "stored documents have no `title`: {body}"
    );
    assert_eq!(app.get("/v1/schema").await.1, before);
    assert_eq!(
        app.verdict(
            r#"Portcullis::User::"alice""#,
            r#"Docs::Action::"write""#,
            r#"Docs::Document::"onboarding""#
        )
        .await,
        "Allow",
        "the previous set keeps serving"
    );
    // Startup validates strictly too: with the file still broken, a restart
    // refuses to start and names the cause instead of serving a schema its
    // data breaks.
    let mut app = app;
    app.stop().await.expect("clean shutdown");
    let rebuilt = portcullis::App::build(app.config.clone()).await;
    let error = format!(
        "{:#}",
        rebuilt
            .err()
            .expect("startup must refuse the broken schema file")
    );
    assert!(error.contains("title"), "{error}");
}
