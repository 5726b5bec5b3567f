//! Federation sync against a real `slapd` of the test's own: a full sync
//! imports users and groups so decisions need no directory; a changed sync
//! follows added, moved, removed and disabled users; a second sync with no
//! change changes nothing; a directory that hangs fails the run, opens its
//! breaker and keeps a second sync out meanwhile.

use portcullis::config::{BackendConfig, DirectoryConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ldap::{OwnSlapd, TOKEN, app_with_directory, backend, backends, login, user};

const PEOPLE: &str = "ou=people,dc=portcullis,dc=test";
const GROUPS: &str = "ou=groups,dc=portcullis,dc=test";

async fn sync(app: &TestApp, body: Value) -> (StatusCode, Value) {
    with_token(app, Method::POST, "/iam/sync/run", TOKEN, Some(body)).await
}

/// Runs a sync that must succeed; answers its report.
async fn synced(app: &TestApp, body: Value) -> Value {
    let (status, report) = sync(app, body).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    report
}

fn counts(report: &Value) -> [u64; 5] {
    ["created", "updated", "disabled", "unchanged", "removed"].map(|k| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    })
}

async fn app_for_sync(
    slapd: &OwnSlapd,
    adjust: impl FnOnce(&mut portcullis::config::Config),
) -> TestApp {
    let mut ldap = slapd.config();
    ldap.disabled_filter = Some("(employeeType=disabled)".into());
    let app = app_with_directory(slapd, move |config| {
        config.backends.insert(
            "corp".into(),
            BackendConfig::Directory(Box::new(DirectoryConfig::Ldap(ldap))),
        );
        adjust(config);
    })
    .await;
    app.seed_sample_entities().await;
    app.write_policy_file(
        "dave.cedar",
        r#"@id("dave-reads") permit(principal == Portcullis::User::"corp:dave", action == Docs::Action::"read", resource);"#,
    );
    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app
}

#[tokio::test]
async fn a_sync_imports_the_directory_and_follows_its_changes() {
    let slapd = OwnSlapd::start();
    let app = app_for_sync(&slapd, |_| {}).await;

    // A dry run reports and writes nothing: the next one reports the same.
    let dry = synced(&app, json!({"mode": "full", "dry_run": true})).await;
    assert_eq!(counts(&dry), [8, 0, 0, 0, 0], "4 users and 4 groups: {dry}");
    let again = synced(&app, json!({"mode": "full", "dry_run": true})).await;
    assert_eq!(counts(&again), [8, 0, 0, 0, 0], "{again}");

    let full = synced(&app, json!({"mode": "full"})).await;
    assert_eq!(counts(&full), [8, 0, 0, 0, 0], "{full}");
    assert_eq!(full["directories"], json!(["corp"]));
    assert!(full["finished"].as_u64() >= full["started"].as_u64());

    // Imported identities decide without the directory: frozen, it is not
    // asked (carol was never looked up before, and is in engineering
    // through platform).
    slapd.signal("-STOP");
    assert_eq!(
        app.verdict(&user("carol"), WRITE, ONBOARDING).await,
        "Allow"
    );
    assert_eq!(app.verdict(&user("bob"), WRITE, ONBOARDING).await, "Deny");
    assert_eq!(app.verdict(&user("dave"), READ, ONBOARDING).await, "Allow");
    slapd.signal("-CONT");

    // Nothing changed in the directory: nothing changes here.
    let idle = synced(&app, json!({"mode": "changed"})).await;
    assert_eq!(counts(&idle), [0, 0, 0, 8, 0], "{idle}");

    // Add erin to engineering, move bob from sales to engineering, remove
    // dave.
    slapd.modify(&format!(
        "dn: uid=erin,{PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: erin\ncn: Erin Ellis\nsn: Ellis\nmail: erin@portcullis.test\n\n\
         dn: cn=engineering,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=erin,{PEOPLE}\nmember: uid=bob,{PEOPLE}\n\n\
         dn: cn=sales,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=alice,{PEOPLE}\n-\ndelete: member\nmember: uid=bob,{PEOPLE}\n\n\
         dn: uid=dave,{PEOPLE}\nchangetype: delete\n"
    ));
    let changed = synced(&app, json!({"mode": "changed"})).await;
    // erin created; bob and alice moved; dave gone (disabled, kept).
    assert_eq!(counts(&changed), [1, 2, 1, 5, 0], "{changed}");
    for (who, action, expected) in [
        ("erin", WRITE, "Allow"),
        ("bob", WRITE, "Allow"),
        ("alice", WRITE, "Allow"),
        ("dave", READ, "Deny"),
    ] {
        assert_eq!(
            app.verdict(&user(who), action, ONBOARDING).await,
            expected,
            "{who}"
        );
    }
    // A policy naming dave still permits; the built-in guard denies
    // (whatever the application's own policies say about inactive users).
    let (_, body) = app.decide(&user("dave"), READ, ONBOARDING, json!({})).await;
    let reasons = body["diagnostics"]["reason"].as_array().unwrap();
    assert!(
        reasons.contains(&json!("portcullis.users-active")),
        "{body}"
    );

    // Disabled in the directory: denied, and signs in no more though the
    // directory still lets her bind.
    assert_eq!(login(&app, "carol", "carol-secret").await.0, StatusCode::OK);
    slapd.modify(&format!(
        "dn: uid=carol,{PEOPLE}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    let disabled = synced(&app, json!({"mode": "changed", "directory": "corp"})).await;
    assert_eq!(counts(&disabled), [0, 0, 1, 8, 0], "{disabled}");
    assert_eq!(app.verdict(&user("carol"), WRITE, ONBOARDING).await, "Deny");
    assert_error(
        &login(&app, "carol", "carol-secret").await,
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );

    // A full sync agrees with the changed ones.
    let full = synced(&app, json!({"mode": "full"})).await;
    assert_eq!(counts(&full), [0, 0, 0, 9, 0], "{full}");

    // Reports, newest first.
    let (status, runs) = with_token(&app, Method::GET, "/iam/sync/runs", TOKEN, None).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 7);
    assert_eq!(runs[0]["id"], full["id"]);
    assert_eq!(runs[6]["dry_run"], true);
    assert_eq!(runs[6]["trigger"], "api");
}

#[tokio::test]
async fn a_sync_refuses_bad_requests_and_non_admins() {
    let slapd = OwnSlapd::start();
    let app = app_for_sync(&slapd, |_| {}).await;
    assert_error(
        &sync(&app, json!({"directory": "elsewhere"})).await,
        StatusCode::NOT_FOUND,
        "DIRECTORY_NOT_FOUND",
    );
    let (status, body) = sync(&app, json!({"mode": "sometimes"})).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = sync(&app, json!({"mode": "full", "extra": 1})).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, _) = app
        .call(Method::POST, "/iam/sync/run", Auth::None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = with_token(&app, Method::GET, "/iam/sync/runs?limit=0", TOKEN, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_directory_that_hangs_fails_the_run_and_keeps_a_second_sync_out() {
    let slapd = OwnSlapd::start();
    let app = app_for_sync(&slapd, |config| {
        config.resilience.breaker_failures = 1;
        config.resilience.breaker_cooldown_ms = 300;
    })
    .await;
    slapd.signal("-STOP");
    let first = {
        let client = app.client.clone();
        let url = app.url("/iam/sync/run");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"mode": "full"}))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_error(
        &sync(&app, json!({"mode": "full"})).await,
        StatusCode::CONFLICT,
        "SYNC_RUNNING",
    );
    let (status, report) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(counts(&report), [0, 0, 0, 0, 0]);
    let error = report["errors"][0].as_str().unwrap_or_default();
    assert!(error.starts_with("corp: "), "{report}");
    assert_eq!(backend(&backends(&app).await, "corp")["breaker"], "open");

    // Thawed, and past the cooldown: the next run imports everything.
    slapd.signal("-CONT");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let report = synced(&app, json!({"mode": "changed"})).await;
    assert_eq!(counts(&report), [8, 0, 0, 0, 0], "{report}");
    assert_eq!(
        report["notes"],
        json!(["corp: no earlier sync to compare with: read in full"])
    );
}
