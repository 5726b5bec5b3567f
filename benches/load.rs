//! Helpers for `scripts/load.sh` (`make load`), kept in Rust so the load
//! test uses the exact data set of `decision.rs`:
//!
//! - `cargo bench --bench load -- dataset DIR` writes `DIR/entities.json` and
//!   `DIR/policies/` (schema, sample policies, one policy per group);
//! - `cargo bench --bench load -- floor ADDR` serves a fixed decision body
//!   from bare hyper: the throughput ceiling the load script compares the
//!   cached decision path against;
//! - `cargo bench --bench load -- rate ADDR RATE SECONDS MODE` sends
//!   requests at a fixed rate (open loop: latency counts from when a request
//!   was due, so a stall is not hidden) and prints percentiles. MODE:
//!   `repeated`/`unique` decisions, `ext-authz[-unique]` HTTP-mode checks,
//!   `ext-authz-grpc[-unique]` gRPC `Authorization/Check` calls (ADDR is then
//!   the gRPC port); the ext_authz modes send `LOAD_TOKEN` as the bearer;
//! - `cargo bench --bench load -- max ADDR CONCURRENCY SECONDS MODE` sends
//!   as fast as CONCURRENCY callers can (closed loop): throughput, for the
//!   gRPC modes, which wrk cannot speak.
//!
//! Run by plain `cargo bench` it does nothing.

mod dataset;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

const FIXED: &[u8] =
    br#"{"decision":"Allow","diagnostics":{"reason":["docs.owner-full-access"],"errors":[]}}"#;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dataset", dir] => write_dataset(Path::new(dir)),
        ["floor", addr] => serve_floor(addr.parse()?),
        ["rate", addr, rate, seconds, mode] => fixed_rate(
            addr.parse()?,
            rate.parse()?,
            seconds.parse()?,
            Arc::new(Mode::parse(mode)?),
        ),
        ["max", addr, concurrency, seconds, mode] => closed_loop(
            addr.parse()?,
            concurrency.parse()?,
            seconds.parse()?,
            Arc::new(Mode::parse(mode)?),
        ),
        [] => Ok(()),
        other => anyhow::bail!(
            "usage: load dataset DIR | floor ADDR | rate ADDR RATE SECONDS MODE | max ADDR CONCURRENCY SECONDS MODE, MODE one of {} (got {other:?})",
            Mode::NAMES.join("|")
        ),
    }
}

fn write_dataset(dir: &Path) -> anyhow::Result<()> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    std::fs::write(policies.join("docs.cedarschema"), dataset::SCHEMA)?;
    std::fs::write(policies.join("docs.cedar"), dataset::SAMPLE_POLICIES)?;
    std::fs::write(policies.join("bench.cedar"), dataset::group_policies())?;
    std::fs::write(
        dir.join("entities.json"),
        serde_json::to_vec(&dataset::entities())?,
    )?;
    println!(
        "data set: {} users, {} groups, {} folders, {} documents in {}",
        dataset::USERS,
        dataset::GROUPS,
        dataset::FOLDERS,
        dataset::DOCUMENTS,
        dir.display()
    );
    Ok(())
}

fn serve_floor(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("bare hyper floor server on {addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(FIXED)))
                            .unwrap_or_default(),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Connections the fixed-rate client spreads its requests over.
const RATE_CONNECTIONS: u32 = 16;

/// What the load client sends.
enum Mode {
    /// `POST /v1/is_authorized`: the same request, or a new one each time.
    Decide { unique: bool },
    /// Envoy-style `GET /ext_authz/documents/…` with a bearer token.
    ExtAuthz { unique: bool, token: String },
    /// Envoy-style `Authorization/Check` over gRPC with a bearer token.
    Grpc { unique: bool, token: String },
}

impl Mode {
    const NAMES: [&str; 6] = [
        "repeated",
        "unique",
        "ext-authz",
        "ext-authz-unique",
        "ext-authz-grpc",
        "ext-authz-grpc-unique",
    ];

    fn parse(name: &str) -> anyhow::Result<Mode> {
        let token = || {
            std::env::var("LOAD_TOKEN")
                .map_err(|_| anyhow::anyhow!("the ext-authz modes need LOAD_TOKEN"))
        };
        Ok(match name {
            "repeated" | "unique" => Mode::Decide {
                unique: name == "unique",
            },
            "ext-authz" | "ext-authz-unique" => Mode::ExtAuthz {
                unique: name.ends_with("-unique"),
                token: token()?,
            },
            "ext-authz-grpc" | "ext-authz-grpc-unique" => Mode::Grpc {
                unique: name.ends_with("-unique"),
                token: token()?,
            },
            other => anyhow::bail!("unknown mode {other}; one of {}", Self::NAMES.join("|")),
        })
    }

    fn label(&self) -> &'static str {
        match self {
            Mode::Decide { unique: false } => "repeated",
            Mode::Decide { unique: true } => "unique",
            Mode::ExtAuthz { unique: false, .. } => "ext-authz",
            Mode::ExtAuthz { unique: true, .. } => "ext-authz-unique",
            Mode::Grpc { unique: false, .. } => "ext-authz-grpc",
            Mode::Grpc { unique: true, .. } => "ext-authz-grpc-unique",
        }
    }

    /// One connection's sender.
    async fn connect(self: &Arc<Self>, addr: SocketAddr) -> anyhow::Result<Connection> {
        Ok(match &**self {
            Mode::Grpc { .. } => {
                let channel = tonic::transport::Endpoint::new(format!("http://{addr}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                Connection::Grpc {
                    client: AuthorizationClient::new(channel),
                    mode: self.clone(),
                }
            }
            _ => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Connection::Http {
                    stream,
                    buf: vec![0u8; 64 * 1024],
                    mode: self.clone(),
                    addr,
                }
            }
        })
    }
}

/// One client connection: a raw HTTP/1.1 stream, or a gRPC channel.
enum Connection {
    Http {
        stream: tokio::net::TcpStream,
        buf: Vec<u8>,
        mode: Arc<Mode>,
        addr: SocketAddr,
    },
    Grpc {
        client: AuthorizationClient<tonic::transport::Channel>,
        mode: Arc<Mode>,
    },
}

impl Connection {
    /// Sends the `n`th request of the run and waits for an allow.
    async fn send(&mut self, n: usize) -> anyhow::Result<()> {
        match self {
            Connection::Http {
                stream,
                buf,
                mode,
                addr,
            } => {
                use tokio::io::AsyncWriteExt;
                stream.write_all(&request(mode, *addr, n)).await?;
                read_response(stream, buf).await
            }
            Connection::Grpc { client, mode } => {
                let Mode::Grpc { unique, token } = &**mode else {
                    unreachable!("a gRPC connection has a gRPC mode");
                };
                let answer = client
                    .check(check_request(*unique, token, n))
                    .await?
                    .into_inner();
                let code = answer.status.map_or(-1, |s| s.code);
                anyhow::ensure!(code == 0, "not an allow: google.rpc code {code}");
                Ok(())
            }
        }
    }
}

async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        anyhow::ensure!(n > 0, "server closed the connection");
        filled += n;
        let text = &buf[..filled];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&text[..end])?;
            anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "non-200 answer: {head}");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .ok_or_else(|| anyhow::anyhow!("no content-length"))?
                .parse()?;
            if filled >= end + 4 + length {
                return Ok(());
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

fn fixed_rate(addr: SocketAddr, rate: u32, seconds: u32, mode: Arc<Mode>) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};

    let per_connection = Duration::from_secs_f64(f64::from(RATE_CONNECTIONS) / f64::from(rate));
    let total_per_connection = rate * seconds / RATE_CONNECTIONS;
    let label = mode.label();
    let mut latencies = runtime()?.block_on(async move {
        let start = Instant::now() + Duration::from_millis(100);
        let mut tasks = Vec::new();
        for c in 0..RATE_CONNECTIONS {
            let mode = mode.clone();
            tasks.push(tokio::spawn(async move {
                let mut connection = mode.connect(addr).await?;
                let offset = per_connection / RATE_CONNECTIONS * c;
                let mut seen = Vec::with_capacity(total_per_connection as usize);
                let mut previous_done = start;
                for i in 0..total_per_connection {
                    let due = start + offset + per_connection * i;
                    tokio::time::sleep_until(due.into()).await;
                    // Behind schedule because the server was slow: count from
                    // when the request was due. Otherwise count from the send,
                    // so the client's own timer lateness (tokio's timer has
                    // 1 ms resolution) is not blamed on the server.
                    let began = if previous_done > due {
                        due
                    } else {
                        Instant::now()
                    };
                    connection
                        .send((c * total_per_connection + i) as usize)
                        .await?;
                    previous_done = Instant::now();
                    seen.push(previous_done.duration_since(began).as_micros() as u64);
                }
                anyhow::Ok(seen)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    latencies.sort_unstable();
    println!(
        "RESULT fixed-rate {rate}/s {label} {}",
        percentiles(&latencies)
    );
    Ok(())
}

/// As fast as `concurrency` callers go, each waiting for its answer.
fn closed_loop(
    addr: SocketAddr,
    concurrency: u32,
    seconds: u32,
    mode: Arc<Mode>,
) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};

    let label = mode.label();
    let run = Duration::from_secs(u64::from(seconds));
    let (mut latencies, elapsed) = runtime()?.block_on(async move {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..concurrency {
            let mode = mode.clone();
            tasks.push(tokio::spawn(async move {
                let mut connection = mode.connect(addr).await?;
                let mut seen = Vec::new();
                let mut i = 0usize;
                while start.elapsed() < run {
                    let began = Instant::now();
                    connection.send(c as usize * 10_000_000 + i).await?;
                    seen.push(began.elapsed().as_micros() as u64);
                    i += 1;
                }
                anyhow::Ok(seen)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok((all, start.elapsed()))
    })?;
    latencies.sort_unstable();
    println!(
        "RESULT max -c{concurrency} {label} {:.0} requests/s {}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentiles(&latencies)
    );
    Ok(())
}

/// `requests=… p50=… p99=… p99.9=… max=…` of sorted latencies (µs).
fn percentiles(sorted: &[u64]) -> String {
    if sorted.is_empty() {
        return "requests=0".into();
    }
    let pct = |p: f64| sorted[((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1)];
    format!(
        "requests={} p50={}us p99={}us p99.9={}us max={}us",
        sorted.len(),
        pct(50.0),
        pct(99.0),
        pct(99.9),
        sorted.last().copied().unwrap_or(0)
    )
}

/// Where this run's unique requests start, so a second run against the same
/// server is not answered from the cache the first one filled.
static RUN_OFFSET: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize ^ d.as_secs() as usize);
    nanos % 10_000_000
});

fn request_body(unique: bool, n: usize) -> String {
    let n = n + *RUN_OFFSET;
    let body = if unique {
        // Mixed radix: every n below 20 million is a distinct request.
        let action = if n.is_multiple_of(2) { "read" } else { "write" };
        let u = n / 2 % dataset::USERS;
        let d = n / (2 * dataset::USERS) % dataset::DOCUMENTS;
        dataset::request(u, action, d)
    } else {
        dataset::request(5, "read", 105)
    };
    body.to_string()
}

/// The document the `n`th ext_authz check is for.
fn document(unique: bool, n: usize) -> String {
    if unique {
        format!("d{}-{n}", *RUN_OFFSET)
    } else {
        "onboarding".into()
    }
}

/// The `n`th request of a run, whole.
fn request(mode: &Mode, addr: SocketAddr, n: usize) -> Vec<u8> {
    match mode {
        Mode::Decide { unique } => {
            let body = request_body(*unique, n);
            format!(
                "POST /v1/is_authorized HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Mode::ExtAuthz { unique, token } | Mode::Grpc { unique, token } => {
            let document = document(*unique, n);
            format!(
                "GET /ext_authz/documents/{document} HTTP/1.1\r\nHost: docs.example.com\r\n\
                 Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        }
    }
}

/// The `n`th gRPC check, as Envoy builds one.
fn check_request(unique: bool, token: &str, n: usize) -> CheckRequest {
    let path = format!("/documents/{}", document(unique, n));
    let headers = [
        (":authority", "docs.example.com".to_owned()),
        (":method", "GET".to_owned()),
        (":path", path.clone()),
        ("authorization", format!("Bearer {token}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path,
                    host: "docs.example.com".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}
