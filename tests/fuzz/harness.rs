//! What the fuzz targets share: one Portcullis app per fuzzing process, on
//! SQLite in a temp dir, driven in process through its router (no socket),
//! and the checks every answer must pass.
//!
//! The app is built once, on the first input: the same config, policies and
//! entities a test app has, plus the ext_authz route rules of the README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use portcullis::App;
use portcullis::api::AppState;
use portcullis::config::{Config, Secret, StoreConfig};
use tower::ServiceExt as _;

/// The operator's token: the data routes need it.
pub const ADMIN_TOKEN: &str = "fuzz-operator-token-3f9a1c0e7b5d4a2f";

/// Which policies the app serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Policies {
    /// The sample Docs policies and entities (`policies/`), where some
    /// requests are allowed.
    Docs,
    /// Only the sidecar policy, which allows nothing to a caller without
    /// valid credentials: every check without them must be denied.
    Sidecar,
}

/// Route rules as the README documents them: captures, a catch-all, a
/// host, context templates from headers, query and source.
const RULES: &str = r#"
[[ext_authz.rules]]
methods = ["GET", "HEAD"]
path = "/documents/{id}"
host = "docs.example.com"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{id}" }
context = { ip = "{source}", agent = "{header:User-Agent}", page = "{query:page}" }

[[ext_authz.rules]]
methods = ["PUT", "POST"]
path = "/folders/{folder}/documents/{id}"
action = 'Docs::Action::"write"'
resource = { type = "Docs::Document", id = "{folder}/{id}" }

[[ext_authz.rules]]
methods = ["GET"]
path = "/public/{*rest}"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{rest}" }
require_principal = false
"#;

/// Allows staff with an example.com e-mail to read: never an anonymous
/// caller, who has no e-mail.
const SIDECAR_POLICY: &str = r#"
@id("fuzz.staff-read")
permit(principal is Portcullis::User, action == Docs::Action::"read", resource)
when { principal has email && principal.email like "*@example.com" && context has ip };
"#;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    state: Arc<AppState>,
    _app: App,
    _dir: tempfile::TempDir,
}

/// The process's app, built on first use with `policies`.
pub fn harness(policies: Policies) -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness::build(policies))
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

impl Harness {
    fn build(policies: Policies) -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).expect("policy dir");
        std::fs::copy(
            repo_path("policies/docs.cedarschema"),
            policy_dir.join("docs.cedarschema"),
        )
        .expect("copy the schema");
        match policies {
            Policies::Docs => {
                std::fs::copy(
                    repo_path("policies/docs.cedar"),
                    policy_dir.join("docs.cedar"),
                )
                .expect("copy the policies");
            }
            Policies::Sidecar => {
                std::fs::write(policy_dir.join("sidecar.cedar"), SIDECAR_POLICY)
                    .expect("write the policy");
            }
        }
        let mut config = Config::from_toml_str(RULES).expect("the route rules parse");
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.admin_token = Some(Secret::new(ADMIN_TOKEN));
        config.store = StoreConfig::Sqlite {
            path: dir.path().join("portcullis.db"),
        };
        config.policies.dir = policy_dir;
        config.policies.watch = false;
        config.registry.state_file = dir.path().join("active-store");
        config.mail.outbox_dir = dir.path().join("outbox");
        config.recovery.dir = dir.path().join("backups");
        let app = runtime.block_on(App::build(config)).expect("App::build");
        let state = app.state();
        if policies == Policies::Docs {
            let text = std::fs::read_to_string(repo_path("policies/examples/entities.json"))
                .expect("read the sample entities");
            let entities = serde_json::from_str(&text).expect("the sample entities are JSON");
            runtime
                .block_on(state.catalog.replace_entities(entities))
                .expect("load the sample entities");
        }
        Harness {
            router: portcullis::api::router(state.clone()),
            runtime,
            state,
            _app: app,
            _dir: dir,
        }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Runs `future` on the harness's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Sends one request through the router, as from 127.0.0.1.
    pub fn send(&self, mut request: Request<Body>) -> Answer {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("read the body").to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    }

    /// A JSON request to `path`, with the operator's token when `admin`.
    pub fn json(&self, method: Method, path: &str, body: impl Into<Body>, admin: bool) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if admin {
            request = request.header("authorization", format!("Bearer {ADMIN_TOKEN}"));
        }
        self.send(request.body(body.into()).expect("a valid request"))
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The checks every answer passes: no 5xx (nothing here is down), and
    /// every error in the `{"error": {"code", "message"}}` shape.
    pub fn assert_sound(&self, what: &str) {
        assert!(
            !self.status.is_server_error(),
            "{what}: {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        if self.status.is_client_error() {
            self.assert_error_shape(what);
        }
    }

    fn assert_error_shape(&self, what: &str) {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{what}: {} with a body that is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        });
        let error = &body["error"];
        // ext_authz denials also name their `decision_id`.
        let only_known = body
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "error" || k == "decision_id"));
        assert!(
            only_known
                && error["code"].as_str().is_some_and(|c| !c.is_empty())
                && error["message"].as_str().is_some(),
            "{what}: {} with a body not in the error shape: {body}",
            self.status
        );
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} with a body that is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A request as its text reads on the wire, leniently: a first line
/// `METHOD TARGET`, then `name: value` header lines. The ext_authz
/// targets share this corpus format, so both transports see the same
/// requests.
pub struct WireRequest<'a> {
    pub method: &'a str,
    /// Path, query and maybe fragment, as sent.
    pub target: &'a str,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> WireRequest<'a> {
    pub fn parse(data: &'a [u8]) -> Option<WireRequest<'a>> {
        let mut lines = data.split(|b| *b == b'\n');
        let first = std::str::from_utf8(lines.next()?)
            .ok()?
            .trim_end_matches('\r');
        let (method, target) = first.split_once(' ')?;
        let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
        let headers = lines
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|b| *b == b':')?;
                let name = std::str::from_utf8(&line[..colon]).ok()?;
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                Some((name, value))
            })
            .collect();
        Some(WireRequest {
            method,
            target,
            headers,
        })
    }

    /// The request's valid headers, as a server would have them.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}
