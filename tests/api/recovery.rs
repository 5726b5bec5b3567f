//! Backups and restores of the active store over HTTP: a round trip brings
//! entities, RBAC and the identity graph back and decisions follow at once;
//! a damaged backup is refused and changes nothing; decisions made during a
//! restore never fail.

use std::collections::BTreeMap;

use portcullis::backends::scan_all;
use portcullis::config::{Secret, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "recovery-admin-token-0123456789";
const CI: &str = r#"Portcullis::ServiceAccount::"ci""#;

async fn recovery_app() -> TestApp {
    let app = spawn_app_with(|c| c.server.admin_token = Some(Secret::new(TOKEN))).await;
    app.seed_sample_entities().await;
    app
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(method, path, Auth::Bearer(TOKEN), Some(body))
        .await
}

/// Bob may write onboarding through an RBAC grant; `ci` writes as an editor.
async fn seed_access(app: &TestApp) {
    for (path, body) in [
        ("/rbac/users/bob/roles", json!({"role": "writer"})),
        (
            "/rbac/policies",
            json!({"role": "writer", "object": ONBOARDING, "action": WRITE}),
        ),
        (
            "/iam/service-accounts",
            json!({"id": "ci", "name": "CI", "owner": "alice"}),
        ),
        (
            "/iam/graph/link",
            json!({"from": CI, "kind": "member-of", "to": r#"Portcullis::Group::"editors""#}),
        ),
    ] {
        let (status, body) = admin(app, Method::POST, path, body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_backup_restores_entities_rbac_and_the_graph_and_decisions_follow() {
    let app = recovery_app().await;
    seed_access(&app).await;
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");

    let (status, manifest) = admin(
        &app,
        Method::POST,
        "/iam/recovery/backup",
        json!({"label": "before the accident"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    let id = manifest["id"].as_str().unwrap().to_owned();
    assert_eq!(manifest["checksum"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["label"], "before the accident");
    assert_eq!(manifest["store"], "sqlite");
    assert!(manifest["size"].as_u64().unwrap() > 0);
    assert_eq!(manifest["namespaces"]["entities"], 9, "{manifest}");
    assert!(
        manifest["namespaces"]["rbac"].as_u64().unwrap() >= 3,
        "{manifest}"
    );
    let file = app.config.recovery.dir.join(format!("{id}.backup.gz"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        manifest["size"].as_u64().unwrap()
    );

    // The accident: entities, grants and the service account are gone.
    let (status, _) = app.put_json("/v1/data", &json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin(
        &app,
        Method::POST,
        "/rbac/management/reset",
        json!({"confirm": "reset all RBAC grants and assignments"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin(&app, Method::DELETE, "/iam/service-accounts/ci", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Deny");

    let unconfirmed = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({}),
    )
    .await;
    assert_eq!(unconfirmed.0, StatusCode::BAD_REQUEST, "{}", unconfirmed.1);
    let (status, restored) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({"confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["restored"]["id"], id.as_str());
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");
    let (status, _) = app
        .call(
            Method::GET,
            "/iam/service-accounts/ci",
            Auth::Bearer(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The state it replaced was backed up first, and is listed.
    let previous = restored["previous_backup"].as_str().unwrap();
    let listed = listed_backups(&app).await;
    let ids: Vec<&str> = listed.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&previous) && ids.contains(&id.as_str()),
        "{listed:?}"
    );
    // Restoring that one puts the accident back.
    let (status, _) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{previous}"),
        json!({"confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
}

#[tokio::test]
async fn a_damaged_or_unknown_backup_is_refused_and_the_store_is_untouched() {
    let app = recovery_app().await;
    seed_access(&app).await;
    let (_, manifest) = admin(&app, Method::POST, "/iam/recovery/backup", json!({})).await;
    let id = manifest["id"].as_str().unwrap().to_owned();
    // Remove the grant, so a restore would be visible.
    let (status, _) = admin(
        &app,
        Method::DELETE,
        "/rbac/policies",
        json!({"role": "writer", "object": ONBOARDING, "action": WRITE}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let file = app.config.recovery.dir.join(format!("{id}.backup.gz"));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let refused = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({"confirm": true}),
    )
    .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_CORRUPT");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Deny");
    // No automatic backup was taken for a restore that never started.
    let listed = listed_backups(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");

    for unknown in ["0123-abcd", "not-hex!", "..%2F..%2Fetc"] {
        let reply = admin(
            &app,
            Method::POST,
            &format!("/iam/recovery/restore/{unknown}"),
            json!({"confirm": true}),
        )
        .await;
        assert_error(&reply, StatusCode::NOT_FOUND, "BACKUP_NOT_FOUND");
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/iam/recovery/backup",
            Auth::None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn decisions_made_during_a_restore_never_fail() {
    let app = recovery_app().await;
    seed_access(&app).await;
    let (_, manifest) = admin(&app, Method::POST, "/iam/recovery/backup", json!({})).await;
    let id = manifest["id"].as_str().unwrap().to_owned();
    let (status, _) = app.put_json("/v1/data", &json!([])).await;
    assert_eq!(status, StatusCode::OK);

    let client = app.client.clone();
    let url = app.url("/v1/is_authorized");
    let asking = tokio::spawn(async move {
        let mut verdicts = Vec::new();
        for _ in 0..300 {
            let reply = client
                .post(&url)
                .json(&decision_request(ALICE, WRITE, ONBOARDING, json!({})))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
            let body: Value = reply.json().await.unwrap();
            verdicts.push(body["decision"].as_str().unwrap().to_owned());
        }
        verdicts
    });
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({"confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let verdicts = asking.await.unwrap();
    // Once the restored state serves, it keeps serving.
    let first_allow = verdicts.iter().position(|v| v == "Allow");
    if let Some(at) = first_allow {
        assert!(verdicts[at..].iter().all(|v| v == "Allow"), "{verdicts:?}");
    }
    assert_eq!(app.verdict(ALICE, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn with_a_key_backups_are_sealed_and_only_that_key_restores_them() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let app = spawn_app_with(|c| {
        c.server.admin_token = Some(Secret::new(TOKEN));
        c.recovery.key = Some(Secret::new(key));
    })
    .await;
    app.seed_sample_entities().await;
    seed_access(&app).await;
    let (status, manifest) = admin(&app, Method::POST, "/iam/recovery/backup", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    assert_eq!(manifest["encrypted"], true);
    assert!(!manifest.to_string().contains(key));
    let id = manifest["id"].as_str().unwrap().to_owned();
    let file = app.config.recovery.dir.join(format!("{id}.backup.gz"));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..5], b"PCBE1");

    let (status, _) = app.put_json("/v1/data", &json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({"confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");

    // Another server over the same backups: without the key it cannot
    // restore, with another key the backup does not open.
    let backups = app.config.recovery.dir.clone();
    for (other_key, code) in [
        (None, "BACKUP_KEY_REQUIRED"),
        (
            Some("HxwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEAAAA="),
            "BACKUP_CORRUPT",
        ),
    ] {
        let dir = backups.clone();
        let other = spawn_app_with(move |c| {
            c.server.admin_token = Some(Secret::new(TOKEN));
            c.recovery.dir = dir;
            c.recovery.key = other_key.map(Secret::new);
        })
        .await;
        let reply = admin(
            &other,
            Method::POST,
            &format!("/iam/recovery/restore/{id}"),
            json!({"confirm": true}),
        )
        .await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
}

/// Every key and value of a store (versions aside).
/// Every stored key but the change journal's: a restore keeps the
/// journal (history, not state) and adds its own entry.
async fn contents(store: &StoreConfig) -> BTreeMap<(String, String), Vec<u8>> {
    let opened = store.build().await.expect("store opens");
    let mut out = BTreeMap::new();
    for ns in opened.namespaces().await.unwrap() {
        if ns == "journal" {
            continue;
        }
        for (key, item) in scan_all(opened.as_ref(), &ns).await.unwrap() {
            out.insert((ns.clone(), key), item.value);
        }
    }
    out
}

/// Fills the app's store, backs it up, and answers the backup's id with
/// the contents it holds.
async fn filled_and_backed_up(app: &TestApp) -> (String, BTreeMap<(String, String), Vec<u8>>) {
    app.seed_sample_entities().await;
    seed_access(app).await;
    let (status, _) = app
        .post_json(
            "/auth/register",
            &json!({"email": "ada@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = contents(&app.config.store).await;
    let (status, manifest) = admin(app, Method::POST, "/iam/recovery/backup", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    let total: u64 = manifest["namespaces"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(ns, _)| *ns != "journal")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert!(
        manifest["namespaces"]["journal"].as_u64() > Some(0),
        "the journal is backed up too"
    );
    assert_eq!(total as usize, before.len(), "{manifest}");
    (manifest["id"].as_str().unwrap().to_owned(), before)
}

async fn restore(app: &TestApp, id: &str) {
    let (status, body) = admin(
        app,
        Method::POST,
        &format!("/iam/recovery/restore/{id}"),
        json!({"confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn round_trip_on(store: StoreConfig) {
    let app = spawn_app_with(|c| {
        c.server.admin_token = Some(Secret::new(TOKEN));
        c.store = store;
    })
    .await;
    let (id, before) = filled_and_backed_up(&app).await;
    let (status, _) = app.put_json("/v1/data", &json!([])).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(contents(&app.config.store).await, before);
    restore(&app, &id).await;
    assert_eq!(contents(&app.config.store).await, before);
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");
}

#[tokio::test]
async fn backup_and_restore_give_identical_contents_on_sqlite() {
    let db = tempfile::tempdir().unwrap();
    round_trip_on(StoreConfig::Sqlite {
        path: db.path().join("round-trip.db"),
    })
    .await;
}

#[tokio::test]
async fn backup_and_restore_give_identical_contents_on_postgres() {
    let schema = format!("pc_backup_{}", unique_tag());
    round_trip_on(postgres(&schema)).await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn backup_and_restore_give_identical_contents_on_redis() {
    let prefix = format!("pc-backup:{}:", unique_tag());
    round_trip_on(redis(&prefix)).await;
    purge_redis(&prefix).await;
}

#[tokio::test]
async fn a_backup_taken_on_postgres_restores_on_redis() {
    let schema = format!("pc_from_{}", unique_tag());
    let prefix = format!("pc-to:{}:", unique_tag());
    let from = spawn_app_with(|c| {
        c.server.admin_token = Some(Secret::new(TOKEN));
        c.store = postgres(&schema);
    })
    .await;
    let (id, before) = filled_and_backed_up(&from).await;
    let dir = from.config.recovery.dir.clone();
    let to = spawn_app_with(|c| {
        c.server.admin_token = Some(Secret::new(TOKEN));
        c.store = redis(&prefix);
        c.recovery.dir = dir;
    })
    .await;
    assert_eq!(to.verdict(CI, WRITE, ONBOARDING).await, "Deny");
    restore(&to, &id).await;
    assert_eq!(contents(&to.config.store).await, before);
    assert_eq!(to.verdict(CI, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(to.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
    drop_schema(&schema).await;
    purge_redis(&prefix).await;
}

fn postgres(schema: &str) -> StoreConfig {
    StoreConfig::Postgres {
        url: POSTGRES_URL.into(),
        schema: schema.to_owned(),
        max_connections: 4,
    }
}

fn redis(prefix: &str) -> StoreConfig {
    StoreConfig::Redis {
        url: REDIS_URL.into(),
        prefix: prefix.to_owned(),
        max_connections: 4,
    }
}

/// `portcullis <args>` against the test server's own store and backups.
fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let StoreConfig::Sqlite { path } = &app.config.store else {
        panic!("the test store is SQLite");
    };
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(std::env::temp_dir())
        .args(args)
        .env("PORTCULLIS_STORE__PATH", path)
        .env(
            "PORTCULLIS_REGISTRY__STATE_FILE",
            &app.config.registry.state_file,
        )
        .env("PORTCULLIS_POLICIES__DIR", app.policy_dir.path())
        .env("PORTCULLIS_RECOVERY__DIR", &app.config.recovery.dir)
        .env("PORTCULLIS_MAIL__OUTBOX_DIR", &app.config.mail.outbox_dir)
        .output()
        .expect("run portcullis")
}

#[tokio::test]
async fn the_cli_backs_up_and_restores_with_progress_lines() {
    let app = recovery_app().await;
    seed_access(&app).await;
    let out = cli(&app, &["backup", "--label", "from the cli"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Namespace backed up"), "{stderr}");
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["label"], "from the cli");
    let id = manifest["id"].as_str().unwrap().to_owned();
    let listed: Value = serde_json::from_slice(&cli(&app, &["backups"]).stdout).unwrap();
    assert_eq!(listed["backups"][0]["id"], id.as_str());

    let (status, _) = app.put_json("/v1/data", &json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let refused = cli(&app, &["restore", &id]);
    assert_eq!(refused.status.code(), Some(2));
    let out = cli(&app, &["restore", &id, "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Backup checked"), "{stderr}");

    // The server reads the restored store when it starts again.
    let app = app.restart().await;
    assert_eq!(app.verdict(CI, WRITE, ONBOARDING).await, "Allow");
    assert_eq!(app.verdict(BOB, WRITE, ONBOARDING).await, "Allow");
}

async fn settings(app: &TestApp) -> Value {
    let (status, body) = app
        .call(
            Method::GET,
            "/iam/recovery/config",
            Auth::Bearer(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The backup manifests, newest first.
async fn listed_backups(app: &TestApp) -> Vec<Value> {
    let (status, listed) = app
        .call(
            Method::GET,
            "/iam/recovery/backups",
            Auth::Bearer(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed["backups"].as_array().unwrap().clone()
}

async fn backup_ids(app: &TestApp) -> Vec<String> {
    listed_backups(app)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn recovery_settings_are_checked_stored_and_in_force_at_once() {
    let app = recovery_app().await;
    let defaults = settings(&app).await;
    assert_eq!(
        defaults["dir"],
        app.config.recovery.dir.to_str().unwrap(),
        "{defaults}"
    );
    assert_eq!(defaults["encrypt"], false);
    assert_eq!(defaults["key_configured"], false);
    assert_eq!(defaults["backup_interval_seconds"], 0);
    assert_eq!(defaults["journal_retention_days"], 90);

    // Each refusal names its field and changes nothing.
    let scratch = tempfile::tempdir().unwrap();
    let a_file = scratch.path().join("a-file");
    std::fs::write(&a_file, b"not a directory").unwrap();
    for (change, field) in [
        (json!({"encrypt": true}), "encrypt"),
        (
            json!({"backup_interval_seconds": 5}),
            "backup_interval_seconds",
        ),
        (json!({"dir": "var/../../etc"}), "dir"),
        (json!({"dir": ""}), "dir"),
        (
            json!({"dir": a_file.join("below").to_str().unwrap()}),
            "dir",
        ),
        (json!({"retention_count": -1}), "body"),
        (json!({"key": "c2VjcmV0"}), "body"),
        (json!(["dir"]), "body"),
    ] {
        let reply = admin(&app, Method::PATCH, "/iam/recovery/config", change.clone()).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "RECOVERY_INVALID");
        let message = reply.1["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("`{field}`")),
            "{change}: {message}"
        );
    }
    assert_eq!(settings(&app).await, defaults);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/iam/recovery/config",
            Auth::None,
            Some(json!({"retention_count": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A new location and a count retention apply to the next backups.
    let moved = scratch.path().join("moved");
    let (status, changed) = admin(
        &app,
        Method::PATCH,
        "/iam/recovery/config",
        json!({"dir": moved.to_str().unwrap(), "retention_count": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["retention_count"], 2);
    assert_eq!(changed["journal_retention_days"], 90, "{changed}");
    assert_eq!(settings(&app).await, changed);
    let mut taken = Vec::new();
    for _ in 0..3 {
        let (status, manifest) = admin(&app, Method::POST, "/iam/recovery/backup", json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{manifest}");
        taken.push(manifest["id"].as_str().unwrap().to_owned());
    }
    let kept = backup_ids(&app).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.contains(&taken[2]), "{kept:?} {taken:?}");
    let mut files: Vec<String> = std::fs::read_dir(&moved)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        !app.config.recovery.dir.exists()
            || std::fs::read_dir(&app.config.recovery.dir).unwrap().count() == 0,
        "nothing went to the old location"
    );

    // The change is journaled; rolling it back restores the old settings.
    let (status, journal) = admin(
        &app,
        Method::GET,
        "/iam/recovery/changes?key=settings/recovery",
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{journal}");
    let change = &journal["changes"][0];
    assert_eq!(change["source"], "PATCH /iam/recovery/config", "{change}");
    let (status, rolled) = admin(
        &app,
        Method::POST,
        &format!("/iam/recovery/rollback/{}", change["id"].as_str().unwrap()),
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(settings(&app).await, defaults);
}

#[tokio::test]
async fn a_backup_schedule_set_at_runtime_runs_without_a_restart() {
    let app = recovery_app().await;
    assert!(backup_ids(&app).await.is_empty());
    let (status, body) = admin(
        &app,
        Method::PATCH,
        "/iam/recovery/config",
        json!({"backup_interval_seconds": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No backup yet, so the first one is due at once.
    let mut scheduled = Vec::new();
    for _ in 0..100 {
        scheduled = listed_backups(&app).await;
        if !scheduled.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(scheduled.len(), 1, "a scheduled backup within 10 s");
    assert_eq!(scheduled[0]["label"], "scheduled");
    assert_eq!(
        scheduled[0]["namespaces"]["entities"], 9,
        "{}",
        scheduled[0]
    );
    // The next one is an hour away.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(backup_ids(&app).await.len(), 1);
}
