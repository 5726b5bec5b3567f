//! Two server processes (the real binary, twice) sharing one Postgres store
//! and a Redis change bus: a change made through one shows in the other's
//! decisions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const BUS_ADMIN_TOKEN: &str = "bus-admin-token-0123456789";

/// A `portcullis serve` process and the address it listens on.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(schema: &str, channel: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .current_dir(dir.path())
            .arg("serve")
            .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_LOG__FORMAT", "json")
            .env("PORTCULLIS_STORE__KIND", "postgres")
            .env("PORTCULLIS_STORE__URL", POSTGRES_URL)
            .env("PORTCULLIS_STORE__SCHEMA", schema)
            .env("PORTCULLIS_POLICIES__DIR", repo_path("policies"))
            .env("PORTCULLIS_BUS__URL", "redis://127.0.0.1:6379")
            .env("PORTCULLIS_BUS__CHANNEL", channel)
            .env("PORTCULLIS_SERVER__ADMIN_TOKEN", BUS_ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(addr) = event["fields"]["addr"].as_str() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs its address");
        Server {
            child,
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }

    async fn verdict(&self, client: &reqwest::Client) -> String {
        self.verdict_for(client, ALICE).await
    }

    async fn verdict_for(&self, client: &reqwest::Client, principal: &str) -> String {
        let body: Value = client
            .post(format!("{}/v1/is_authorized", self.base))
            .json(&json!({"principal": principal, "action": WRITE, "resource": ONBOARDING}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["decision"].as_str().unwrap_or_default().to_owned()
    }

    async fn eventually(&self, client: &reqwest::Client, expected: &str) {
        self.eventually_for(client, ALICE, expected).await
    }

    async fn eventually_for(&self, client: &reqwest::Client, principal: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let verdict = self.verdict_for(client, principal).await;
            if verdict == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {verdict}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Two processes on a store schema and a bus channel of their own; the
/// schema's name is for `drop_schema`.
fn two_servers() -> (String, reqwest::Client, Server, Server) {
    let schema = format!("pc_bus_{}", unique_tag());
    let channel = format!("pc-test:{schema}");
    let first = Server::start(&schema, &channel);
    let second = Server::start(&schema, &channel);
    (schema, reqwest::Client::new(), first, second)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_process_reaches_the_other() {
    let (schema, client, first, second) = two_servers();
    assert_eq!(second.verdict(&client).await, "Deny");

    let seeded = client
        .put(format!("{}/v1/entities", first.base))
        .bearer_auth(BUS_ADMIN_TOKEN)
        .json(&sample_entities())
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::OK);
    second.eventually(&client, "Allow").await;

    let created = client
        .post(format!("{}/v1/policies", first.base))
        .bearer_auth(BUS_ADMIN_TOKEN)
        .json(&json!({"id": "no-alice", "content": "forbid (principal == Portcullis::User::\"alice\", action, resource);"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    second.eventually(&client, "Deny").await;

    drop((first, second));
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_stops_working_on_the_other_process_too() {
    let (schema, client, first, second) = two_servers();
    let post = |base: &str, path: &str, body: Value| {
        client.post(format!("{base}{path}")).json(&body).send()
    };
    let credentials = json!({"email": "ada@example.com", "password": "correct horse battery"});
    post(&first.base, "/auth/register", credentials.clone())
        .await
        .unwrap();
    let pair: Value = post(
        &first.base,
        "/auth/jwt/login",
        json!({"username": "ada@example.com", "password": "correct horse battery"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = pair["access_token"].as_str().unwrap();
    let created: Value = client
        .post(format!("{}/auth/api-keys/", first.base))
        .bearer_auth(token)
        .json(&json!({"name": "shared", "current_password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["api_key"].as_str().unwrap();
    let me_on_second = || {
        client
            .get(format!("{}/users/me", second.base))
            .header("x-api-key", key)
            .send()
    };
    // Known to the second process (and now in its credential cache).
    assert_eq!(me_on_second().await.unwrap().status(), StatusCode::OK);
    assert_eq!(me_on_second().await.unwrap().status(), StatusCode::OK);

    let revoked = client
        .delete(format!(
            "{}/auth/api-keys/{}",
            first.base,
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    // Well inside the cache's 10 s lifetime: the bus carried the change.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = me_on_second().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key still works: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((first, second));
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_changes_on_one_process_decide_on_the_other() {
    let (schema, client, first, second) = two_servers();
    let admin = |server: &Server, method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(BUS_ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let seeded = client
        .put(format!("{}/v1/entities", first.base))
        .bearer_auth(BUS_ADMIN_TOKEN)
        .json(&sample_entities())
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::OK);
    second.eventually_for(&client, BOB, "Deny").await;

    let grant = json!({"role": "writer", "object": ONBOARDING, "action": WRITE});
    let post = reqwest::Method::POST;
    let assigned = admin(
        &first,
        post.clone(),
        "/rbac/users/bob/roles",
        json!({"role": "writer"}),
    )
    .await
    .unwrap();
    assert_eq!(assigned.status(), StatusCode::CREATED);
    let added = admin(&first, post.clone(), "/rbac/policies", grant.clone())
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    second.eventually_for(&client, BOB, "Allow").await;

    // A change through the second builds on the first's, never over it.
    let more = admin(
        &second,
        post,
        "/rbac/users/bob/roles",
        json!({"role": "reviewer"}),
    )
    .await
    .unwrap();
    let roles: Value = more.json().await.unwrap();
    assert_eq!(roles["roles"], json!(["reviewer", "writer"]));

    let removed = admin(&second, reqwest::Method::DELETE, "/rbac/policies", grant)
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    first.eventually_for(&client, BOB, "Deny").await;

    drop((first, second));
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rbac_writes_on_two_processes_lose_no_acknowledged_one() {
    let (schema, client, first, second) = two_servers();
    let servers = [first, second];
    // Twenty roles for one principal, half through each process, at once.
    let assignments = (0..20).map(|n| {
        let server = &servers[n % 2];
        let request = client
            .post(format!("{}/rbac/users/bob/roles", server.base))
            .bearer_auth(BUS_ADMIN_TOKEN)
            .json(&json!({"role": format!("r{n}")}))
            .send();
        async move { (n, request.await.unwrap().status()) }
    });
    let answers = futures_util::future::join_all(assignments).await;
    let acknowledged: std::collections::BTreeSet<String> = answers
        .iter()
        .filter(|(_, status)| *status == StatusCode::CREATED)
        .map(|(n, _)| format!("r{n}"))
        .collect();
    assert!(acknowledged.len() >= 10, "{answers:?}");
    // Each process serves every acknowledged role (the second once the bus
    // has told it).
    for server in &servers {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let roles: Value = client
                .get(format!("{}/rbac/users/bob/roles", server.base))
                .bearer_auth(BUS_ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let held: std::collections::BTreeSet<String> =
                serde_json::from_value(roles["roles"].clone()).unwrap();
            if acknowledged.is_subset(&held) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "acknowledged {acknowledged:?}, held {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(servers);
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_graph_changes_on_one_process_decide_on_the_other() {
    let (schema, client, first, second) = two_servers();
    let admin = |server: &Server, method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(BUS_ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let seeded = client
        .put(format!("{}/v1/entities", first.base))
        .bearer_auth(BUS_ADMIN_TOKEN)
        .json(&sample_entities())
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::OK);
    let ci = r#"Portcullis::ServiceAccount::"ci""#;
    second.eventually_for(&client, ci, "Deny").await;

    let post = reqwest::Method::POST;
    let created = admin(
        &first,
        post.clone(),
        "/iam/service-accounts",
        json!({"id": "ci", "name": "CI", "owner": "alice"}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let linked = admin(
        &first,
        post,
        "/iam/graph/link",
        json!({"from": ci, "kind": "member-of", "to": r#"Portcullis::Group::"editors""#}),
    )
    .await
    .unwrap();
    assert_eq!(linked.status(), StatusCode::CREATED);
    second.eventually_for(&client, ci, "Allow").await;

    // Disabled through the second: the first denies it.
    let disabled = admin(
        &second,
        reqwest::Method::PATCH,
        "/iam/service-accounts/ci",
        json!({"disabled": true}),
    )
    .await
    .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    first.eventually_for(&client, ci, "Deny").await;

    drop((first, second));
    drop_schema(&schema).await;
}
