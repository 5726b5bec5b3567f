//! Helpers for `scripts/load.sh` (`make load`), kept in Rust so the load
//! test uses the exact data set of `decision.rs`:
//!
//! - `cargo bench --bench load -- dataset DIR` writes `DIR/entities.json` and
//!   `DIR/policies/` (schema, sample policies, one policy per group);
//! - `cargo bench --bench load -- floor ADDR` serves a fixed decision body
//!   from bare hyper: the throughput ceiling the load script compares the
//!   cached decision path against;
//! - `cargo bench --bench load -- rate ADDR RATE SECONDS repeated|unique`
//!   sends decisions at a fixed rate (open loop: latency counts from when a
//!   request was due, so a stall is not hidden) and prints percentiles.
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
        ["rate", addr, rate, seconds, mode] => {
            let mode = match *mode {
                "repeated" => Mode::Decide { unique: false },
                "unique" => Mode::Decide { unique: true },
                "ext-authz" | "ext-authz-unique" => Mode::ExtAuthz {
                    unique: *mode == "ext-authz-unique",
                    token: std::env::var("LOAD_TOKEN")
                        .map_err(|_| anyhow::anyhow!("ext-authz modes need LOAD_TOKEN"))?,
                },
                other => anyhow::bail!("unknown mode {other}"),
            };
            fixed_rate(
                addr.parse()?,
                rate.parse()?,
                seconds.parse()?,
                Arc::new(mode),
            )
        }
        [] => Ok(()),
        other => anyhow::bail!(
            "usage: load dataset DIR | floor ADDR | rate ADDR RATE SECONDS repeated|unique|ext-authz|ext-authz-unique (got {other:?})"
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

/// What the fixed-rate client sends.
enum Mode {
    /// `POST /v1/is_authorized`: the same request, or a new one each time.
    Decide { unique: bool },
    /// Envoy-style `GET /ext_authz/documents/…` with a bearer token.
    ExtAuthz { unique: bool, token: String },
}

fn fixed_rate(addr: SocketAddr, rate: u32, seconds: u32, mode: Arc<Mode>) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let per_connection = Duration::from_secs_f64(f64::from(RATE_CONNECTIONS) / f64::from(rate));
    let total_per_connection = rate * seconds / RATE_CONNECTIONS;
    let label = match &*mode {
        Mode::Decide { unique: false } => "repeated",
        Mode::Decide { unique: true } => "unique",
        Mode::ExtAuthz { unique: false, .. } => "ext-authz",
        Mode::ExtAuthz { unique: true, .. } => "ext-authz-unique",
    };
    let latencies = runtime.block_on(async move {
        let start = Instant::now() + Duration::from_millis(100);
        let mut tasks = Vec::new();
        for c in 0..RATE_CONNECTIONS {
            let mode = mode.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let offset = per_connection / RATE_CONNECTIONS * c;
                let mut seen = Vec::with_capacity(total_per_connection as usize);
                let mut buf = vec![0u8; 64 * 1024];
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
                    let n = (c * total_per_connection + i) as usize;
                    stream.write_all(&request(&mode, addr, n)).await?;
                    read_response(&mut stream, &mut buf).await?;
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

    async fn read_response(
        stream: &mut tokio::net::TcpStream,
        buf: &mut [u8],
    ) -> anyhow::Result<()> {
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

    let mut latencies = latencies;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p / 100.0) as usize).min(latencies.len() - 1)]
    };
    println!(
        "RESULT fixed-rate {rate}/s {} requests={} p50={}us p99={}us p99.9={}us max={}us",
        label,
        latencies.len(),
        pct(50.0),
        pct(99.0),
        pct(99.9),
        latencies.last().copied().unwrap_or(0),
    );
    Ok(())
}

fn request_body(unique: bool, n: usize) -> String {
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
        Mode::ExtAuthz { unique, token } => {
            let document = if *unique {
                format!("d{n}")
            } else {
                "onboarding".into()
            };
            format!(
                "GET /ext_authz/documents/{document} HTTP/1.1\r\nHost: docs.example.com\r\n\
                 Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        }
    }
}
