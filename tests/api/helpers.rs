//! `spawn_app()`: the real server (`App::build`) on `127.0.0.1:0` with its
//! own SQLite file and its own copy of the policy directory, plus small
//! request helpers that answer `(status, JSON body)`.

use std::net::SocketAddr;
use std::path::PathBuf;

use portcullis::App;
use portcullis::config::{Config, Secret, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ALICE: &str = r#"Portcullis::User::"alice""#;
pub const BOB: &str = r#"Portcullis::User::"bob""#;
pub const MALLORY: &str = r#"Portcullis::User::"mallory""#;
pub const READ: &str = r#"Docs::Action::"read""#;
pub const WRITE: &str = r#"Docs::Action::"write""#;
pub const ONBOARDING: &str = r#"Docs::Document::"onboarding""#;
pub const SALARIES: &str = r#"Docs::Document::"salaries""#;

pub struct TestApp {
    pub addr: SocketAddr,
    /// The ext_authz gRPC service, when the config turns it on.
    pub grpc_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub policy_dir: TempDir,
    pub config: Config,
    _db: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The admin token every test app is configured with, unless the test sets
/// another.
pub const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef";

/// cedar-agent's data routes, which need an admin: the operator loads
/// policies, entities and schemas there.
fn is_data_route(path: &str) -> bool {
    ["/v1/policies", "/v1/entities", "/v1/data", "/v1/schema"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, after `adjust` has changed the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let policy_dir = tempfile::tempdir().expect("policy tempdir");
    let source = repo_path("policies");
    for name in ["docs.cedar", "docs.cedarschema"] {
        std::fs::copy(source.join(name), policy_dir.path().join(name)).expect("copy policies");
    }
    let db = tempfile::tempdir().expect("db tempdir");
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.shutdown_grace_seconds = 2;
    config.store = StoreConfig::Sqlite {
        path: db.path().join("portcullis.db"),
    };
    config.policies.dir = policy_dir.path().to_owned();
    config.registry.state_file = db.path().join("active-store");
    config.mail.outbox_dir = db.path().join("outbox");
    config.recovery.dir = db.path().join("backups");
    // Tests reload explicitly; the watcher test turns this back on.
    config.policies.watch = false;
    // The operator's token, which `send` presents on the data routes; tests
    // of admin routes set their own.
    config.server.admin_token = Some(Secret::new(OPERATOR_TOKEN));
    adjust(&mut config);
    start(config, policy_dir, db).await
}

async fn start(config: Config, policy_dir: TempDir, db: TempDir) -> TestApp {
    let app = App::build(config.clone()).await.expect("App::build");
    let addr = app.local_addr();
    let grpc_addr = app.grpc_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        grpc_addr,
        client: reqwest::Client::new(),
        policy_dir,
        config,
        _db: db,
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The entities of `policies/examples/entities.json`.
pub fn sample_entities() -> Value {
    let text = std::fs::read_to_string(repo_path("policies/examples/entities.json"))
        .expect("read sample entities");
    serde_json::from_str(&text).expect("sample entities are JSON")
}

/// A decision request body.
pub fn decision_request(principal: &str, action: &str, resource: &str, context: Value) -> Value {
    json!({"principal": principal, "action": action, "resource": resource, "context": context})
}

/// Asserts the `{"error": {"code", "message"}}` shape, the status and the code.
pub fn assert_error(reply: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = reply;
    assert_eq!(*got, status, "unexpected status, body: {body}");
    let error = body["error"]
        .as_object()
        .expect("body has an `error` object");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {body}"
    );
    assert_eq!(error["code"].as_str(), Some(code), "error code in {body}");
    let message = error["message"]
        .as_str()
        .expect("error.message is a string");
    assert!(!message.is_empty(), "error.message is empty");
}

/// The value of the metric line named exactly `series` (name plus labels).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' ')?.trim().parse().ok())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `body` (raw bytes) and returns the status and the body as JSON
    /// (`Null` when empty, a JSON string when it is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = &self.config.server.admin_token
            && is_data_route(path)
        {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.expect("text body")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn decide(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        context: Value,
    ) -> (StatusCode, Value) {
        let body = decision_request(principal, action, resource, context);
        self.post_json("/v1/is_authorized", &body).await
    }

    /// `"Allow"` or `"Deny"` for a request without context; the request must succeed.
    pub async fn verdict(&self, principal: &str, action: &str, resource: &str) -> String {
        let (status, body) = self.decide(principal, action, resource, json!({})).await;
        assert_eq!(status, StatusCode::OK, "decision failed: {body}");
        body["decision"]
            .as_str()
            .expect("decision is a string")
            .to_owned()
    }

    pub async fn seed_sample_entities(&self) {
        let (status, body) = self.put_json("/v1/entities", &sample_entities()).await;
        assert_eq!(status, StatusCode::OK, "seeding failed: {body}");
    }

    pub async fn metrics(&self) -> String {
        self.get_text("/metrics").await
    }

    pub fn write_policy_file(&self, name: &str, text: &str) {
        std::fs::write(self.policy_dir.path().join(name), text).expect("write policy file");
    }

    /// Fires the shutdown future and returns what `run_until_stopped` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let server = self.server.take().expect("server is running");
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("server stops within 10 s")
            .expect("server task did not panic")
    }

    /// Stops this server and builds a new `App` on the same database and policy directory.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await.expect("clean shutdown");
        let TestApp {
            config,
            policy_dir,
            _db,
            ..
        } = self;
        start(config, policy_dir, _db).await
    }
}

/// The machine's PostgreSQL and Redis, shared with other tests: each test
/// takes its own schema or key prefix (`unique_tag`) and removes it.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Different in every test of every run: process id and a clock reading.
pub fn unique_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{nanos}", std::process::id())
}

/// Removes a test's Postgres schema.
pub async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Removes a test's Redis keys.
pub async fn purge_redis(prefix: &str) {
    portcullis::backends::RedisStore::open(REDIS_URL, prefix, 1)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
}

/// A port nothing listens on right now, for a server of the test's own.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl TestApp {
    /// The token in the next unread mail to `to` whose subject contains
    /// `subject`, waiting up to 10 s for it to be delivered to the outbox.
    /// The message is removed once read.
    pub async fn mailed_token(&self, to: &str, subject: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(token) = self.take_mail(to, subject) {
                return token;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no mail to {to} about {subject:?} arrived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Whether any mail to `to` is in the outbox.
    pub fn has_mail_to(&self, to: &str) -> bool {
        self.mails()
            .iter()
            .any(|(_, text)| text.contains(&format!("To: {to}")))
    }

    fn mails(&self) -> Vec<(PathBuf, String)> {
        let Ok(entries) = std::fs::read_dir(&self.config.mail.outbox_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
            .collect()
    }

    fn take_mail(&self, to: &str, subject: &str) -> Option<String> {
        let (path, text) = self.mails().into_iter().find(|(_, text)| {
            text.contains(&format!("To: {to}")) && text.contains(&format!("Subject: {subject}"))
        })?;
        let token = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Token: "))
            .map(|t| t.trim().to_owned())?;
        std::fs::remove_file(path).ok()?;
        Some(token)
    }
}

/// The credentials a test request carries.
pub enum Auth<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    None,
}

impl TestApp {
    /// Sends `body` as JSON with `auth`; answers the status and the body as
    /// JSON (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        request = match auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::ApiKey(key) => request.header("x-api-key", key),
            Auth::None => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// `app.call` with a bearer token.
pub async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, path, Auth::Bearer(token), body).await
}
