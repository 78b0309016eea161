//! The collector side: serves `POST /collector.py/msg` and
//! `GET /remailer-conf.txt` on any byte stream.
//!
//! A [`Server`] owns the connection limits and the shutdown signal. The
//! Tor transport calls [`Server::serve_connection_from`] for every
//! rendezvous stream, naming its circuit; the **insecure** loopback
//! transport (plain TCP, no Tor, for development and tests only) uses
//! [`Server::serve_tcp`] or [`serve_tcp`].
//!
//! Slow or hostile peers are bounded three ways: at most
//! [`ServerLimits::max_connections`] connections at once, at most
//! [`ServerLimits::max_connections_per_source`] from one source (an
//! address, or a rendezvous circuit: see [`Source`]), and a minimum data
//! rate while the server waits for a request head or body
//! ([`ServerLimits::min_rate`], see [`super::rate`]), on top of the total
//! head and body timeouts.
//!
//! Unlike the reference collector, which answers 200 to everything, the
//! server answers honestly:
//!
//! | outcome | status |
//! |---|---|
//! | stored ([`Collector::submit`] returned `Ok`) | 200 `Mimix message submitted` |
//! | bad form, no armour, [`Rejection::Invalid`] | 400 with a short reason |
//! | [`Rejection::Replay`] | 409 |
//! | body larger than [`ServerLimits::max_body_bytes`] | 413 |
//! | content type not `application/x-www-form-urlencoded` | 415 |
//! | body not received within [`ServerLimits::body_read_timeout`] | 408 |
//! | [`Rejection::Overloaded`], too many connections | 503 with `Retry-After` |
//! | [`Rejection::Internal`] | 500 |
//! | other paths / methods | 404 / 405 |

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use super::admission::Source;
use super::admission::{SourceSlot, Sources};
use super::form::decode_packet_form;
use super::rate::{MinRate, Phase, RateGuard};
use super::{COLLECTOR_PATH, CONF_PATH, PAGES};

/// What the node does with what the transport receives.
pub trait Collector: Send + Sync + 'static {
    /// Takes one armoured packet (the whole `base64` field, which contains
    /// the BEGIN line). Returns `Ok` only once the packet is durably stored.
    ///
    /// The server runs this future in its own task, so it completes even if
    /// the peer hangs up meanwhile.
    fn submit(&self, armoured: String) -> impl Future<Output = Result<(), Rejection>> + Send;

    /// The current text of our `remailer-conf.txt`.
    fn remailer_conf(&self) -> String;

    /// The text of another public page (`/stats.txt`, `/help.txt`,
    /// `/adminkey.txt`, `/blockme.txt`): `None` is a 404. Nothing else is served.
    fn page(&self, path: &str) -> Option<String> {
        let _ = path;
        None
    }
}

/// Why [`Collector::submit`] did not store a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The packet is malformed or fails a check; the reason is short,
    /// public and sent to the peer (400).
    Invalid(&'static str),
    /// The packet ID was seen before (409).
    Replay,
    /// The node cannot take packets now; the peer should retry later (503).
    Overloaded,
    /// Storing failed for a local reason (500).
    Internal,
}

/// Resource bounds of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest accepted request body. The URL-encoded armour of a packet
    /// is about 30 KB.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); at least 8192 is
    /// used for hyper's read buffer.
    pub max_header_bytes: usize,
    /// Most header fields in a request.
    pub max_headers: usize,
    /// Most connections served at once; beyond it a connection gets a
    /// canned 503 (or, under a flood, is closed at once).
    pub max_connections: usize,
    /// Most connections served at once from one [`Source`]; beyond it the
    /// same.
    pub max_connections_per_source: usize,
    /// The data rate a peer must keep up while the server waits for a
    /// request head or body.
    pub min_rate: MinRate,
    /// Time allowed to receive a request head, counted from when the server
    /// starts waiting for it (so it also bounds an idle keep-alive).
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Longest life of one connection; then it is shut down gracefully.
    pub connection_lifetime: Duration,
    /// Time a connection gets to finish its request after a graceful
    /// shutdown began.
    pub shutdown_grace: Duration,
    /// The `Retry-After` value sent with a 503.
    pub retry_after: Duration,
}

impl ServerLimits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_body_bytes: 64 * 1024,
        max_header_bytes: 8 * 1024,
        max_headers: 32,
        max_connections: 1024,
        max_connections_per_source: 32,
        min_rate: MinRate {
            rate: 1024,
            grace: Duration::from_secs(5),
        },
        header_read_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_secs(60),
        connection_lifetime: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(10),
        retry_after: Duration::from_secs(60),
    };
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How serving one connection ended, when not cleanly. These are the peer's
/// problems or expected events: log them at debug level at most.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP exchange failed: malformed request, header timeout, or the
    /// peer went away.
    #[error("HTTP connection failed")]
    Http(#[from] hyper::Error),
    /// The connection was still busy when the shutdown grace period ended.
    #[error("connection still open after the shutdown grace period")]
    GraceExpired,
    /// The connection limit was reached; the peer got a 503 or was closed.
    #[error("connection limit reached, connection refused")]
    TooManyConnections,
}

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;
/// Time given to a refused connection to receive its 503.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Most bytes read (and discarded) from a refused connection, head included.
const REFUSAL_DRAIN: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Largest connection limit (tokio's semaphore bound, rounded down).
const MAX_CONNECTIONS: usize = 1 << 20;

/// The HTTP collector: a [`Collector`], limits and a shutdown signal.
/// Cloning is cheap; clones share the connection limit.
pub struct Server<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Server<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<C> {
    collector: Arc<C>,
    limits: ServerLimits,
    max_connections: u32,
    /// One permit per served connection.
    connections: Arc<Semaphore>,
    /// One permit per connection being refused with a canned 503.
    refusals: Arc<Semaphore>,
    /// Connections per source.
    sources: Arc<Sources>,
    shutdown: CancellationToken,
}

enum Admission {
    Serve(OwnedSemaphorePermit, SourceSlot),
    Refuse(OwnedSemaphorePermit),
    Drop,
}

impl<C: Collector> Server<C> {
    /// A server handing packets to `collector`. Cancelling `shutdown` stops
    /// accepting and shuts every connection down gracefully.
    pub fn new(collector: Arc<C>, limits: ServerLimits, shutdown: CancellationToken) -> Self {
        let max = limits.max_connections.clamp(1, MAX_CONNECTIONS);
        let max_connections = u32::try_from(max).unwrap_or(u32::MAX);
        let sources = Sources::new(limits.max_connections_per_source);
        Self {
            inner: Arc::new(Inner {
                collector,
                limits,
                max_connections,
                connections: Arc::new(Semaphore::new(max)),
                refusals: Arc::new(Semaphore::new(max)),
                sources,
                shutdown,
            }),
        }
    }

    /// Serves HTTP/1.1 on one connection until the peer closes it, a limit
    /// ends it, or shutdown. Counts against the connection limit: beyond
    /// it, the peer gets a 503 and [`ServeError::TooManyConnections`] is
    /// returned.
    pub async fn serve_connection<I>(&self, io: I) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_connection_from(io, Source::Unknown).await
    }

    /// As [`Server::serve_connection`], counting the connection against
    /// `source` (at most [`ServerLimits::max_connections_per_source`]).
    pub async fn serve_connection_from<I>(&self, io: I, source: Source) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admission = self.admit(source);
        self.serve_admitted(io, admission).await
    }

    /// Accepts TCP connections and serves each in its own task until
    /// `shutdown` is cancelled, then waits for the open connections to
    /// finish (each gets [`ServerLimits::shutdown_grace`]).
    ///
    /// **Insecure** when used directly: plain HTTP without Tor, for
    /// development and tests only. Bind the listener to a loopback address.
    pub async fn serve_tcp(&self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.inner.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Admitted here, in accept order, so the limit is exact.
                    let admission = self.admit(Source::Address(peer.ip()));
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "setting TCP_NODELAY failed");
                    }
                    let server = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = server.serve_admitted(stream, admission).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        drop(listener);
        self.wait_idle().await;
    }

    /// Waits until no connection is being served or refused.
    pub async fn wait_idle(&self) {
        let n = self.inner.max_connections;
        // The semaphores are never closed, so these cannot fail.
        let _served = self.inner.connections.acquire_many(n).await;
        let _refused = self.inner.refusals.acquire_many(n).await;
    }

    fn admit(&self, source: Source) -> Admission {
        let serve = self.inner.sources.claim(source).and_then(|slot| {
            let permit = Arc::clone(&self.inner.connections).try_acquire_owned();
            permit.ok().map(|p| (p, slot))
        });
        if let Some((permit, slot)) = serve {
            Admission::Serve(permit, slot)
        } else if let Ok(p) = Arc::clone(&self.inner.refusals).try_acquire_owned() {
            Admission::Refuse(p)
        } else {
            Admission::Drop
        }
    }

    async fn serve_admitted<I>(&self, io: I, admission: Admission) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (permit, source) = match admission {
            Admission::Serve(permit, source) => (permit, source),
            Admission::Refuse(permit) => {
                tracing::debug!("connection limit reached, answering 503");
                refuse(io, self.inner.limits.retry_after).await;
                drop(permit);
                return Err(ServeError::TooManyConnections);
            }
            Admission::Drop => {
                tracing::debug!("connection limit reached, closing at once");
                return Err(ServeError::TooManyConnections);
            }
        };
        let limits = &self.inner.limits;
        let inner = Arc::clone(&self.inner);
        let phase = Phase::new();
        let io = RateGuard::new(io, Arc::clone(&phase), limits.min_rate);
        let service = service_fn(move |req| {
            let (inner, phase) = (Arc::clone(&inner), Arc::clone(&phase));
            async move {
                phase.busy();
                let response = handle(&inner, req, &phase).await;
                // Answered: now the next request head is awaited.
                phase.wait();
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_BUF_SIZE))
            .max_header_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => return res.map_err(ServeError::from),
            () = self.inner.shutdown.cancelled() => {}
            () = tokio::time::sleep(limits.connection_lifetime) => {}
        }
        conn.as_mut().graceful_shutdown();
        let result = match tokio::time::timeout(limits.shutdown_grace, conn).await {
            Ok(res) => res.map_err(ServeError::from),
            Err(_) => Err(ServeError::GraceExpired),
        };
        drop((permit, source));
        result
    }
}

/// Serves `listener` with a new [`Server`] until `shutdown` is cancelled:
/// shorthand for [`Server::new`] then [`Server::serve_tcp`].
///
/// **Insecure**: plain HTTP without Tor, for development and tests only.
pub async fn serve_tcp<C: Collector>(
    listener: TcpListener,
    collector: Arc<C>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    Server::new(collector, limits, shutdown)
        .serve_tcp(listener)
        .await;
}

/// Answers a connection over the limit with a fixed 503. It waits for the
/// request head first (a response that comes before the request confuses
/// clients) without parsing it, and afterwards reads and discards a little
/// more so that closing does not reset the connection before the peer has
/// read the answer.
async fn refuse<I>(mut io: I, retry_after: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let body = "Too many connections\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Retry-After: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len(),
        retry_after.as_secs().max(1),
    );
    let exchange = async {
        let mut buf = [0_u8; 4096];
        let mut total = 0;
        // The last bytes seen, to spot the blank line ending the head.
        let mut tail = [0_u8; 4];
        'head: while total < REFUSAL_DRAIN {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
            for &b in buf.get(..n).unwrap_or_default() {
                tail = [tail[1], tail[2], tail[3], b];
                if &tail == b"\r\n\r\n" {
                    break 'head;
                }
            }
        }
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await?;
        while total < REFUSAL_DRAIN {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(REFUSAL_TIME, exchange).await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "refusing a connection failed"),
    }
}

async fn handle<C: Collector>(
    inner: &Inner<C>,
    req: Request<Incoming>,
    phase: &Phase,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    match req.uri().path() {
        COLLECTOR_PATH if method == Method::POST => submit(inner, req, phase).await,
        COLLECTOR_PATH => method_not_allowed("POST"),
        CONF_PATH if method == Method::GET || method == Method::HEAD => {
            text(StatusCode::OK, inner.collector.remailer_conf())
        }
        CONF_PATH => method_not_allowed("GET, HEAD"),
        path if PAGES.contains(&path) => match inner.collector.page(path) {
            Some(page) if method == Method::GET || method == Method::HEAD => {
                text(StatusCode::OK, page)
            }
            Some(_) => method_not_allowed("GET, HEAD"),
            None => text(StatusCode::NOT_FOUND, "Not found\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

async fn submit<C: Collector>(
    inner: &Inner<C>,
    req: Request<Incoming>,
    phase: &Phase,
) -> Response<Full<Bytes>> {
    let limits = &inner.limits;
    if !is_form(req.headers()) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected application/x-www-form-urlencoded\n",
        );
    }
    let max = limits.max_body_bytes;
    if content_length(req.headers()).is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large\n",
        ));
    }
    let reading = Limited::new(req.into_body(), max).collect();
    phase.wait();
    let read = tokio::time::timeout(limits.body_read_timeout, reading).await;
    phase.busy();
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large\n",
            ));
        }
        Ok(Err(e)) if timed_out(&*e) => {
            return closing(text(StatusCode::REQUEST_TIMEOUT, "Request body too slow\n"));
        }
        Ok(Err(_)) => return closing(text(StatusCode::BAD_REQUEST, "Unreadable request body\n")),
        Err(_) => return closing(text(StatusCode::REQUEST_TIMEOUT, "Request body too slow\n")),
    };
    let armoured = match decode_packet_form(&body) {
        Ok(armoured) => armoured,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Invalid submission: {e}\n"),
            );
        }
    };
    let collector = Arc::clone(&inner.collector);
    let outcome = tokio::spawn(async move { collector.submit(armoured).await }).await;
    match outcome {
        Ok(Ok(())) => text(StatusCode::OK, "Mimix message submitted"),
        Ok(Err(Rejection::Invalid(reason))) => text(
            StatusCode::BAD_REQUEST,
            format!("Invalid submission: {reason}\n"),
        ),
        Ok(Err(Rejection::Replay)) => text(StatusCode::CONFLICT, "Packet already received\n"),
        Ok(Err(Rejection::Overloaded)) => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "Overloaded, retry later\n");
            response.headers_mut().insert(
                header::RETRY_AFTER,
                limits.retry_after.as_secs().max(1).into(),
            );
            response
        }
        Ok(Err(Rejection::Internal)) | Err(_) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error\n")
        }
    }
}

/// Whether reading failed because the peer was too slow (the minimum data
/// rate).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether the request's media type is `application/x-www-form-urlencoded`
/// (parameters such as `charset` are ignored).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Marks a response as the last on its connection (used when the request
/// body was not read to its end).
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
