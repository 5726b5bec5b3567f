//! The LDAP directory against a real `slapd` of the test's own (started by
//! `backends/ldap/start.sh` on a spare port, seeded from
//! `backends/ldap/seed.ldif`): password sign-in by bind, users in nested
//! groups deciding through a Cedar policy on an LDAP group, the registry's
//! view of the directory, and fail-closed decisions while it is down.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use portcullis::config::{BackendConfig, Config, DirectoryConfig, LdapConfig, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

pub const TOKEN: &str = "ldap-admin-token-0123456789";
const BASE: &str = "dc=portcullis,dc=test";

pub fn user(name: &str) -> String {
    format!(r#"Portcullis::User::"corp:{name}""#)
}

/// A slapd of this test's own; stopped when dropped.
pub struct OwnSlapd {
    pub port: u16,
    dir: TempDir,
    pid: Option<u32>,
}

impl OwnSlapd {
    pub fn start() -> OwnSlapd {
        let mut slapd = OwnSlapd {
            port: spare_port(),
            dir: tempfile::tempdir().expect("slapd tempdir"),
            pid: None,
        };
        slapd.restart();
        slapd
    }

    /// (Re)starts slapd on the same port with the seed data.
    pub fn restart(&mut self) {
        let data = self.dir.path().join("slapd");
        let out = Command::new(repo_path("backends/ldap/start.sh"))
            .arg(self.port.to_string())
            .arg(&data)
            .output()
            .expect("backends/ldap/start.sh runs");
        assert!(
            out.status.success(),
            "slapd did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        assert!(pid.is_some(), "start.sh prints slapd's pid");
        self.pid = pid;
    }

    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let proc = PathBuf::from(format!("/proc/{pid}"));
            for _ in 0..200 {
                if !proc.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Applies an LDIF change (`changetype: add|modify|delete` records)
    /// as the directory's administrator.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}/", self.port)])
            .args(["-D", &format!("cn=admin,{BASE}"), "-w", "admin-secret"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ldapmodify runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("LDIF is written");
        let out = child.wait_with_output().expect("ldapmodify ends");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) slapd: connections hang.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }

    pub fn config(&self) -> LdapConfig {
        let text = format!(
            r#"
            url = "ldap://127.0.0.1:{port}"
            bind_dn = "cn=admin,{BASE}"
            bind_password = "admin-secret"
            user_base = "ou=people,{BASE}"
            group_base = "ou=groups,{BASE}"
            timeout_ms = 2000
            "#,
            port = self.port
        );
        toml::from_str(&text).expect("LDAP test config")
    }
}

impl Drop for OwnSlapd {
    fn drop(&mut self) {
        self.stop();
    }
}

const GROUP_POLICY: &str = r#"
@id("engineering-writes")
permit(
  principal in Portcullis::Group::"corp:engineering",
  action == Docs::Action::"write",
  resource
);
"#;

pub async fn app_with_directory(slapd: &OwnSlapd, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let ldap = slapd.config();
    let app = spawn_app_with(move |config| {
        config.server.admin_token = Some(Secret::new(TOKEN));
        config.backends.insert(
            "corp".into(),
            BackendConfig::Directory(Box::new(DirectoryConfig::Ldap(ldap))),
        );
        adjust(config);
    })
    .await;
    app.write_policy_file("ldap.cedar", GROUP_POLICY);
    let (status, body) = app.post_json("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    app.post_json(
        "/auth/ldap/corp/login",
        &json!({"username": username, "password": password}),
    )
    .await
}

pub async fn backends(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/storage/backends"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

pub fn backend<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|all| all.iter().find(|b| b["name"] == name))
        .unwrap_or_else(|| panic!("backend {name} is listed: {list}"))
}

#[tokio::test]
async fn ldap_sign_in_checks_the_password_and_reads_nested_groups() {
    let slapd = OwnSlapd::start();
    let app = app_with_directory(&slapd, |_| {}).await;

    let (status, body) = login(&app, "carol", "carol-secret").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["principal"], user("carol"));
    assert_eq!(body["identity"]["email"], "carol@portcullis.test");
    assert_eq!(body["identity"]["name"], "Carol Cooper");
    assert_eq!(body["identity"]["member_of"], json!(["platform"]));
    let mut groups: Vec<&str> = body["identity"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, ["engineering", "ops", "platform"]);

    // A wrong password and an unknown user get the same answer.
    let wrong = login(&app, "carol", "not-her-password").await;
    let unknown = login(&app, "zed", "whatever-password").await;
    assert_error(&wrong, StatusCode::BAD_REQUEST, "LOGIN_BAD_CREDENTIALS");
    assert_eq!(wrong, unknown);
    // An empty password would be an anonymous bind: refused, not let in.
    assert_error(
        &login(&app, "carol", "").await,
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );
    // Filter metacharacters are escaped, not interpreted.
    assert_error(
        &login(&app, "*", "carol-secret").await,
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );
    let (status, body) = app
        .post_json(
            "/auth/ldap/elsewhere/login",
            &json!({"username": "carol", "password": "carol-secret"}),
        )
        .await;
    assert_error(
        &(status, body),
        StatusCode::NOT_FOUND,
        "DIRECTORY_NOT_FOUND",
    );
}

#[tokio::test]
async fn repeated_ldap_failures_lock_the_directory_user_not_the_local_account() {
    let slapd = OwnSlapd::start();
    let app = app_with_directory(&slapd, |config| {
        config.accounts.lockout_threshold = 3;
    })
    .await;
    for _ in 0..3 {
        assert_error(
            &login(&app, "bob", "not-his-password").await,
            StatusCode::BAD_REQUEST,
            "LOGIN_BAD_CREDENTIALS",
        );
    }
    // Locked: even his password is not tried against the directory.
    let (status, body) = login(&app, "bob", "bob-secret").await;
    assert_error(
        &(status, body),
        StatusCode::TOO_MANY_REQUESTS,
        "LOGIN_LOCKED",
    );
    // Others sign in, and a local account of the same name is its own count.
    let (status, body) = login(&app, "alice", "alice-secret").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post_json(
            "/auth/jwt/login",
            &json!({"username": "bob", "password": "x"}),
        )
        .await;
    assert_error(
        &(status, body),
        StatusCode::BAD_REQUEST,
        "LOGIN_BAD_CREDENTIALS",
    );
}

#[tokio::test]
async fn a_policy_on_an_ldap_group_decides_for_its_users() {
    let slapd = OwnSlapd::start();
    let app = app_with_directory(&slapd, |_| {}).await;
    app.seed_sample_entities().await;

    // Direct member, member through a nested group, other group, no group,
    // and a user the directory does not have.
    for (who, expected) in [
        ("alice", "Allow"),
        ("carol", "Allow"),
        ("bob", "Deny"),
        ("dave", "Deny"),
        ("zed", "Deny"),
    ] {
        assert_eq!(
            app.verdict(&user(who), WRITE, ONBOARDING).await,
            expected,
            "{who}"
        );
    }
    let (_, body) = app
        .decide(&user("carol"), WRITE, ONBOARDING, json!({}))
        .await;
    assert_eq!(body["diagnostics"]["reason"], json!(["engineering-writes"]));
    // A user of an unconfigured directory is not looked up anywhere.
    assert_eq!(
        app.verdict(r#"Portcullis::User::"other:alice""#, WRITE, ONBOARDING)
            .await,
        "Deny"
    );

    // RBAC roles add to what the directory says; they never replace it.
    let admin = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let grant = json!({"role": "sharer", "object": "*", "action": r#"Docs::Action::"share""#});
    assert_eq!(
        admin("/rbac/policies", grant).await.unwrap().status(),
        StatusCode::CREATED
    );
    for who in ["carol", "bob"] {
        let assigned = admin(
            &format!("/rbac/users/corp:{who}/roles"),
            json!({"role": "sharer"}),
        )
        .await
        .unwrap();
        assert_eq!(assigned.status(), StatusCode::CREATED);
    }
    let share = r#"Docs::Action::"share""#;
    // The RBAC views walk the directory's groups too: a role given to a
    // directory group reaches carol through her nested group.
    let group = "Portcullis%3A%3AGroup%3A%3A%22corp%3Aengineering%22";
    let assigned = admin(
        &format!("/rbac/users/{group}/roles"),
        json!({"role": "engineers"}),
    )
    .await
    .unwrap();
    assert_eq!(assigned.status(), StatusCode::CREATED);
    let implicit: Value = app
        .client
        .get(app.url("/rbac/users/corp:carol/roles/implicit"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let engineers = implicit["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "engineers")
        .unwrap_or_else(|| panic!("carol holds engineers through her groups: {implicit}"));
    assert_eq!(
        engineers["path"],
        json!([
            user("carol"),
            r#"Portcullis::Group::"corp:platform""#,
            r#"Portcullis::Group::"corp:engineering""#,
            r#"Portcullis::Role::"engineers""#
        ])
    );
    for (who, action, expected) in [
        ("carol", WRITE, "Allow"),
        ("carol", share, "Allow"),
        ("bob", WRITE, "Deny"),
        ("bob", share, "Allow"),
        ("dave", share, "Deny"),
    ] {
        assert_eq!(
            app.verdict(&user(who), action, ONBOARDING).await,
            expected,
            "{who} {action}"
        );
    }
}

#[tokio::test]
async fn the_registry_lists_the_directory_and_refuses_to_switch_to_it() {
    let slapd = OwnSlapd::start();
    let app = app_with_directory(&slapd, |_| {}).await;

    let list = backends(&app).await;
    let corp = backend(&list, "corp");
    assert_eq!(corp["kind"], "ldap");
    assert_eq!(corp["role"], "directory");
    assert_eq!(corp["health"], "up", "{corp}");
    assert_eq!(corp["breaker"], "closed");

    let response = app
        .client
        .post(app.url("/storage/switch/corp"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_error(&(status, body), StatusCode::CONFLICT, "BACKEND_NOT_A_STORE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_outage_serves_cached_identities_and_denies_the_rest() {
    let mut slapd = OwnSlapd::start();
    let app = app_with_directory(&slapd, |config| {
        config.resilience.retries = 1;
        config.resilience.breaker_failures = 2;
        config.resilience.breaker_cooldown_ms = 300;
        config.cache.identity_ttl_seconds = 3;
    })
    .await;
    app.seed_sample_entities().await;
    assert_eq!(
        app.verdict(&user("alice"), WRITE, ONBOARDING).await,
        "Allow"
    );

    slapd.stop();
    // Alice is cached: still decided from her groups.
    assert_eq!(
        app.verdict(&user("alice"), WRITE, ONBOARDING).await,
        "Allow"
    );
    // Carol is not: a deny that says why, with a 200, never a 5xx.
    for _ in 0..3 {
        let (status, body) = app
            .decide(&user("carol"), WRITE, ONBOARDING, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], "Deny");
        assert_eq!(body["error"]["code"], "IDENTITY_UNAVAILABLE", "{body}");
    }
    let corp = backend(&backends(&app).await, "corp").clone();
    assert_eq!(corp["health"], "down");
    assert_eq!(corp["breaker"], "open", "{corp}");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"portcullis_backend_breaker_state{backend="corp"}"#
        ),
        Some(2.0)
    );
    assert!(metric_value(&metrics, "portcullis_identity_unavailable_total").unwrap_or(0.0) >= 3.0);
    // Logins fail with 503, not as bad credentials.
    assert_error(
        &login(&app, "carol", "carol-secret").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "DIRECTORY_UNAVAILABLE",
    );

    // Past its TTL, Alice is no longer served from the cache either.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (_, body) = app
        .decide(&user("alice"), WRITE, ONBOARDING, json!({}))
        .await;
    assert_eq!(body["error"]["code"], "IDENTITY_UNAVAILABLE", "{body}");

    slapd.restart();
    tokio::time::sleep(Duration::from_millis(400)).await; // the cooldown
    assert_eq!(
        app.verdict(&user("carol"), WRITE, ONBOARDING).await,
        "Allow"
    );
    assert_eq!(
        app.verdict(&user("alice"), WRITE, ONBOARDING).await,
        "Allow"
    );
    let corp = backend(&backends(&app).await, "corp").clone();
    assert_eq!(corp["breaker"], "closed", "{corp}");
    assert_eq!(corp["health"], "up");
}

#[tokio::test]
async fn groups_read_from_member_of_match_groups_searched_by_member() {
    let slapd = OwnSlapd::start();
    let by_member = app_with_directory(&slapd, |_| {}).await;
    let by_member_of = app_with_directory(&slapd, |config| {
        let mut ldap = slapd.config();
        ldap.member_of_attribute = Some("memberOf".into());
        config.backends.insert(
            "corp".into(),
            BackendConfig::Directory(Box::new(DirectoryConfig::Ldap(ldap))),
        );
    })
    .await;
    for who in ["alice", "bob", "carol", "dave"] {
        let password = format!("{who}-secret");
        let (status, searched) = login(&by_member, who, &password).await;
        assert_eq!(status, StatusCode::OK, "{searched}");
        let (status, read) = login(&by_member_of, who, &password).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        let groups = |body: &Value| {
            let mut groups = body["identity"]["groups"].as_array().unwrap().clone();
            groups.sort_by_key(|g| g["id"].as_str().unwrap().to_owned());
            groups
        };
        assert_eq!(groups(&searched), groups(&read), "{who}");
        assert_eq!(
            searched["identity"]["member_of"],
            read["identity"]["member_of"]
        );
    }
}
