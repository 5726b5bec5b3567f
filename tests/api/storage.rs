//! The admin key-value API: bearer-token admission, ETag versions and
//! If-Match / If-None-Match concurrency, cursor paging, and the catalog's
//! namespaces kept read-only.

use portcullis::config::Secret;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "test-admin-token-0123456789";

async fn admin_app() -> TestApp {
    spawn_app_with(|config| config.server.admin_token = Some(Secret::new(TOKEN))).await
}

fn admin(request: RequestBuilder) -> RequestBuilder {
    request.bearer_auth(TOKEN)
}

async fn json_of(response: Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, etag, body)
}

#[tokio::test]
async fn storage_routes_need_the_admin_token() {
    let app = admin_app().await;
    let url = app.url("/storage/things/a");

    let missing = app.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("test-admin-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (_, _, body) = json_of(app.client.post(&url).body("x").send().await.unwrap()).await;
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    // Nothing was written by the refused POST.
    let (status, _, _) = json_of(admin(app.client.get(&url)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_configured_token_nobody_is_admin() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/storage/things"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn etags_give_optimistic_concurrency() {
    let app = admin_app().await;
    let url = app.url("/storage/things/a");

    let (status, etag, body) = json_of(
        admin(app.client.post(&url))
            .header("if-none-match", "*")
            .body(r#"{"n":1}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = etag.expect("ETag on create");
    let (again, _, body) = json_of(
        admin(app.client.post(&url))
            .header("if-none-match", "*")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"]["code"], "PRECONDITION_FAILED");

    let got = admin(app.client.get(&url)).send().await.unwrap();
    assert_eq!(got.headers()["etag"].to_str().unwrap(), first);
    assert_eq!(got.headers()["content-type"], "application/json");
    assert_eq!(got.text().await.unwrap(), r#"{"n":1}"#);

    let (status, second, _) = json_of(
        admin(app.client.post(&url))
            .header("if-match", &first)
            .body(r#"{"n":2}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let second = second.unwrap();
    assert_ne!(second, first);
    let (stale, _, _) = json_of(
        admin(app.client.post(&url))
            .header("if-match", &first)
            .body(r#"{"n":3}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stale, StatusCode::PRECONDITION_FAILED);
    let text = admin(app.client.get(&url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, r#"{"n":2}"#, "the stale write changed nothing");

    let (stale_delete, _, _) = json_of(
        admin(app.client.delete(&url))
            .header("if-match", &first)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stale_delete, StatusCode::PRECONDITION_FAILED);
    let deleted = admin(app.client.delete(&url))
        .header("if-match", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (gone, _, body) = json_of(admin(app.client.delete(&url)).send().await.unwrap()).await;
    assert_eq!(gone, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "KEY_NOT_FOUND");
    let (bad, _, _) = json_of(
        admin(app.client.post(&url))
            .header("if-match", "not-a-version")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn keys_page_with_a_cursor() {
    let app = admin_app().await;
    for i in 0..25 {
        let url = app.url(&format!("/storage/pages/key{i:02}"));
        let response = admin(app.client.post(&url))
            .body(vec![i as u8])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/storage/pages?limit=10&prefix=key");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, body) = json_of(admin(app.client.get(&url)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        keys.extend(
            body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["key"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("key{i:02}")).collect();
    assert_eq!(keys, expected);

    let (status, _, body) = json_of(
        admin(app.client.get(app.url("/storage/pages?cursor=zz")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "INVALID_CURSOR");
    let (status, _, _) = json_of(
        admin(app.client.get(app.url("/storage/pages?limit=0")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn catalog_namespaces_are_readable_but_not_writable() {
    let app = admin_app().await;
    app.seed_sample_entities().await;

    let (status, _, body) = json_of(
        admin(app.client.get(app.url("/storage/entities")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["keys"].as_array().unwrap().len(), 9);

    let url = app.url("/storage/entities/Portcullis::User::%22eve%22");
    let (status, _, body) = json_of(
        admin(app.client.post(&url))
            .body(json!({}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "NAMESPACE_RESERVED");
    let (status, _, _) = json_of(
        admin(
            app.client
                .delete(app.url("/storage/entities/Portcullis::User::%22alice%22")),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
}
