//! The connection limit (`server.max_connections`): each listener keeps at
//! most that many connections open. One over the limit is answered and
//! closed by a task of its own, so accepting never waits on it: over HTTP
//! with a `503 TOO_MANY_CONNECTIONS` in the error shape and
//! `Connection: close`; over gRPC (HTTP/2 only) it is closed at once, which
//! Envoy counts as a failed check, so a deny.
//!
//! Owns: admission of connections. Must not: read requests; that is hyper's.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::IncomingStream;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// The answer of a connection over the limit. Nothing in it depends on
/// the request, so it is written before reading any.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
content-length: 102\r\n\
retry-after: 1\r\n\
connection: close\r\n\
\r\n\
{\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"the server has as many connections as it accepts\"}}";

/// How long a refused connection's request is drained before closing, so
/// the peer reads the answer instead of a reset.
const DRAIN: Duration = Duration::from_secs(1);

/// Admission of connections on one listener.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    open: IntGauge,
    refused: IntCounter,
}

impl Admission {
    pub fn new(max: usize, open: IntGauge, refused: IntCounter) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max)),
            open,
            refused,
        }
    }

    /// The stream, holding its place, or `None` when the listener is full.
    ///
    /// An admitted stream has Nagle's algorithm off, on both listeners (the
    /// builders' `tcp_nodelay` covers only listeners they bind themselves):
    /// a small answer must never wait for the peer's delayed ACK.
    fn admit(&self, stream: TcpStream) -> Result<Admitted, TcpStream> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "Cannot set TCP_NODELAY.");
                }
                self.open.inc();
                Ok(Admitted {
                    stream,
                    _place: Place {
                        _permit: permit,
                        open: self.open.clone(),
                    },
                })
            }
            Err(_) => {
                self.refused.inc();
                Err(stream)
            }
        }
    }

    /// Admits `stream` or closes it (gRPC: HTTP/2 has no cheap refusal).
    pub fn admit_or_close(&self, stream: TcpStream) -> Option<Admitted> {
        self.admit(stream).ok()
    }
}

/// A connection's place under the limit, given back when it closes.
struct Place {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// An admitted connection: the stream with its place.
pub struct Admitted {
    stream: TcpStream,
    _place: Place,
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The HTTP listener under the limit.
pub struct LimitedListener {
    inner: TcpListener,
    admission: Admission,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, admission: Admission) -> LimitedListener {
        LimitedListener { inner, admission }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Admitted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Admitted, SocketAddr) {
        loop {
            // axum's own accept: it waits out errors such as EMFILE.
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.admission.admit(stream) {
                Ok(admitted) => return (admitted, addr),
                Err(stream) => {
                    tokio::spawn(refuse(stream));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves each admitted connection with the router, its peer's address
/// as `ConnectInfo` (what `into_make_service_with_connect_info` does for a
/// plain `TcpListener`).
#[derive(Clone)]
pub struct PerConnection(pub Router);

impl<'a> Service<IncomingStream<'a, LimitedListener>> for PerConnection {
    type Response = WithPeer;
    type Error = Infallible;
    type Future = std::future::Ready<Result<WithPeer, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'a, LimitedListener>) -> Self::Future {
        std::future::ready(Ok(WithPeer {
            router: self.0.clone(),
            peer: ConnectInfo(*incoming.remote_addr()),
        }))
    }
}

/// The router for one connection.
#[derive(Clone)]
pub struct WithPeer {
    router: Router,
    peer: ConnectInfo<SocketAddr>,
}

impl Service<Request> for WithPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        self.router.call(request)
    }
}

/// Answers 503, then reads (and drops) what the peer sent for a moment, so
/// closing does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream) {
    if stream.write_all(REFUSAL).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_states_its_body_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS");
    }
}
