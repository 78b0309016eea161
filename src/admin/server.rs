//! The admin listener's sockets and HTTP: a unix socket or a loopback TCP
//! port, hyper's HTTP/1.1 with the bounds listed in the module docs.

use std::convert::Infallible;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Admin, AdminError, Endpoint, metrics, page};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Time allowed for a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (hyper's smallest read buffer).
const MAX_HEAD: usize = 8192;
/// Most header fields in a request.
const MAX_HEADERS: usize = 32;
/// Longest life of a connection.
const LIFETIME: Duration = Duration::from_secs(60);
/// Time a connection gets to finish when the node stops.
const GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listener.
pub(super) enum Bound {
    /// A loopback TCP port.
    Tcp(TcpListener),
    /// A unix socket, removed when the listener stops.
    Unix(UnixListener, PathBuf),
}

fn io_err(op: &'static str, what: impl ToString) -> impl FnOnce(std::io::Error) -> AdminError {
    let what = what.to_string();
    move |source| AdminError::Io { op, what, source }
}

/// Binds `endpoint`. A unix socket left by an earlier run is replaced (the
/// caller holds the store, so no other node uses this data directory);
/// the new one is made mode 0600.
pub(super) async fn bind(endpoint: &Endpoint) -> Result<Bound, AdminError> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(io_err("listening on", addr))?;
            Ok(Bound::Tcp(l))
        }
        Endpoint::Unix(path) => {
            let shown = path.display();
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => {
                    std::fs::remove_file(path)
                        .map_err(io_err("removing the old socket", &shown))?;
                }
                Ok(_) => {
                    return Err(AdminError::Io {
                        op: "replacing",
                        what: shown.to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            "exists and is not a socket",
                        ),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("checking", &shown)(e)),
            }
            let l = UnixListener::bind(path).map_err(io_err("listening on", &shown))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("setting the mode of", &shown))?;
            Ok(Bound::Unix(l, path.clone()))
        }
    }
}

/// Serves `bound` until `stop` is cancelled, then waits briefly for open
/// connections and removes a unix socket.
pub(super) async fn serve(bound: Bound, admin: Arc<Admin>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = || Arc::clone(&slots).try_acquire_owned().ok();
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = accept(&bound) => match accepted {
                Ok(stream) => match slot() {
                    Some(permit) => {
                        let tcp = matches!(bound, Bound::Tcp(_));
                        tokio::spawn(connection(stream, admin.clone(), tcp, stop.clone(), permit));
                    }
                    None => {
                        debug!("admin: too many connections, closing one");
                        admin.count_refused();
                    }
                },
                Err(e) => {
                    warn!("admin listener: accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(GRACE * 2, slots.acquire_many(all)).await;
    if let Bound::Unix(_, path) = &bound
        && let Err(e) = std::fs::remove_file(path)
    {
        debug!("admin: removing the socket: {e}");
    }
}

/// A connection of either kind.
type Stream = Box<dyn Io>;
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn accept(bound: &Bound) -> std::io::Result<Stream> {
    match bound {
        Bound::Tcp(l) => Ok(Box::new(l.accept().await?.0)),
        Bound::Unix(l, _) => Ok(Box::new(l.accept().await?.0)),
    }
}

/// Serves one connection within the bounds.
async fn connection(
    io: Stream,
    admin: Arc<Admin>,
    tcp: bool,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let service = service_fn(move |req| {
        let admin = admin.clone();
        async move { Ok::<_, Infallible>(route(&admin, &req, tcp).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!("admin connection: {e}");
            }
            return;
        }
        () = stop.cancelled() => {}
        () = tokio::time::sleep(LIFETIME) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, conn).await;
    drop(permit);
}

/// Answers one request.
async fn route(admin: &Arc<Admin>, req: &Request<Incoming>, tcp: bool) -> Response<Full<Bytes>> {
    if tcp && !loopback_host(req.headers()) {
        return text(
            StatusCode::FORBIDDEN,
            "The admin listener answers requests for localhost only\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let path = req.uri().path();
    if path == "/remailer-conf.txt" {
        return match admin.remailer_conf() {
            Some(conf) => text(StatusCode::OK, conf),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "The node is starting\n"),
        };
    }
    if !matches!(
        path,
        "/" | "/index.html" | "/status.json" | "/history.json" | "/metrics"
    ) {
        return text(StatusCode::NOT_FOUND, "Not found\n");
    }
    if path == "/metrics" && !admin.config.admin.metrics {
        return text(
            StatusCode::NOT_FOUND,
            "Metrics are off: set `metrics = true` in [admin]\n",
        );
    }
    let live = match admin.report().await {
        Ok(r) => r,
        Err(e) => {
            warn!("admin: building the status report: {e}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error\n");
        }
    };
    let body = match path {
        "/status.json" => serde_json::to_string(&*live).map(|j| (j, "application/json")),
        "/history.json" => {
            serde_json::to_string(&admin.history_doc(&live)).map(|j| (j, "application/json"))
        }
        "/metrics" => match admin.metrics(&live) {
            Some(Ok(m)) => Ok((m, metrics::CONTENT_TYPE)),
            Some(Err(e)) => {
                warn!("admin: rendering metrics: {e}");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error\n");
            }
            None => return text(StatusCode::NOT_FOUND, "Not found\n"),
        },
        _ => {
            page::render(&live, &admin.history_doc(&live)).map(|p| (p, "text/html; charset=utf-8"))
        }
    };
    match body {
        Ok((body, kind)) => {
            let mut r = response(StatusCode::OK, body, kind);
            if kind.starts_with("text/html") {
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(page::CSP),
                );
            }
            r
        }
        Err(e) => {
            warn!("admin: encoding a response: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error\n")
        }
    }
}

/// Whether the request names a loopback host (or none): a page on another
/// site that rebinds its name to 127.0.0.1 still sends its own name.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn response(
    status: StatusCode,
    body: impl Into<Bytes>,
    kind: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    response(status, body, "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn host(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_loopback_hosts() {
        for ok in [
            "127.0.0.1:9180",
            "localhost:9180",
            "LOCALHOST",
            "[::1]:9180",
            "127.0.0.2",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for bad in [
            "evil.example:9180",
            "192.168.1.2:9180",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
        assert!(loopback_host(&HeaderMap::new()));
    }
}
