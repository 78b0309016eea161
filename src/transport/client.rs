//! The sender side: posts packets to the next hop and fetches a peer's
//! `remailer-conf.txt`, over a stream obtained from a [`Dialer`].
//!
//! Every request uses one fresh connection (`Connection: close`) and is
//! framed with `Content-Length`. Errors say whether a retry may help
//! ([`ClientError::is_retryable`]).

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::form::encode_packet_form;
use super::peer::{PeerUrl, UrlError};
use super::{COLLECTOR_PATH, CONF_PATH, Dialer};

/// Time limits and size bounds of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// Time allowed to open the stream (over Tor: to build the rendezvous
    /// circuit).
    pub connect_timeout: Duration,
    /// Time allowed for the HTTP exchange once the stream is open: sending
    /// the request and reading the whole response.
    pub request_timeout: Duration,
    /// Largest `remailer-conf.txt` accepted by [`fetch_conf`].
    pub max_conf_bytes: usize,
}

impl ClientLimits {
    /// The defaults: 60 s to connect, 120 s per exchange, 64 KiB confs.
    pub const DEFAULT: Self = Self {
        connect_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(120),
        max_conf_bytes: 64 * 1024,
    };
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a request to a peer failed.
///
/// Messages never name the peer: the caller knows which one it asked, and
/// next-hop addresses must not reach the logs.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The peer URL is malformed or not allowed by the dialer's policy.
    /// Permanent.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Opening the stream failed (refused, unreachable, Tor error).
    /// Retryable.
    #[error("connecting to the peer failed")]
    Connect(#[source] io::Error),
    /// Opening the stream took longer than
    /// [`ClientLimits::connect_timeout`]. Retryable.
    #[error("connecting to the peer timed out")]
    ConnectTimeout,
    /// The exchange took longer than [`ClientLimits::request_timeout`].
    /// Retryable.
    #[error("request to the peer timed out")]
    Timeout,
    /// The HTTP exchange failed: the connection closed or broke, or the
    /// response was malformed. Retryable.
    #[error("HTTP exchange with the peer failed")]
    Http(#[source] Box<dyn StdError + Send + Sync>),
    /// The peer refused the request with a 4xx status other than 408 and
    /// 429 (409 means it already has the packet). Permanent.
    #[error("peer rejected the request: {status}: {reason}")]
    Rejected {
        /// The status the peer answered.
        status: StatusCode,
        /// The start of the peer's explanation, printable ASCII only.
        reason: String,
    },
    /// The peer answered 5xx, 408 or 429. Retryable.
    #[error("peer unavailable: {status}")]
    Unavailable {
        /// The status the peer answered.
        status: StatusCode,
        /// The peer's `Retry-After`, if given in seconds.
        retry_after: Option<Duration>,
    },
    /// The peer answered a status that is neither 200 nor an error
    /// (1xx, other 2xx, 3xx). Retryable, as the reference sender treats
    /// everything but 200.
    #[error("unexpected response status {0}")]
    UnexpectedStatus(StatusCode),
    /// The response body is larger than allowed. Permanent.
    #[error("response body larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The response body is not UTF-8. Permanent.
    #[error("response body is not UTF-8")]
    NotUtf8,
}

impl ClientError {
    /// Whether the same request may succeed later: connection problems,
    /// timeouts and "try later" statuses. A packet that failed with a
    /// non-retryable error should not be sent to this peer again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::ConnectTimeout
            | Self::Timeout
            | Self::Http(_)
            | Self::Unavailable { .. }
            | Self::UnexpectedStatus(_) => true,
            Self::Url(_)
            | Self::Rejected { .. }
            | Self::ResponseTooLarge { .. }
            | Self::NotUtf8 => false,
        }
    }
}

/// Most bytes of a POST response read (for the rejection reason).
const MAX_REPLY_BYTES: usize = 4096;
/// Most characters of a peer's rejection reason kept.
const MAX_REASON_CHARS: usize = 200;

/// Posts one armoured packet to the peer at `base_url` (`http://host[:port]`)
/// as `POST /collector.py/msg` with the form body `base64=<armour>`.
/// Succeeds only on status 200.
pub async fn post_packet(
    dialer: &dyn Dialer,
    base_url: &str,
    armoured: &str,
    limits: &ClientLimits,
) -> Result<(), ClientError> {
    let body = Bytes::from(encode_packet_form(armoured));
    post_packet_form(dialer, base_url, body, limits).await
}

/// As [`post_packet`], with the form body already encoded
/// ([`encode_packet_form`]).
pub async fn post_packet_form(
    dialer: &dyn Dialer,
    base_url: &str,
    body: Bytes,
    limits: &ClientLimits,
) -> Result<(), ClientError> {
    let peer = PeerUrl::parse(base_url)?;
    let request = Request::post(COLLECTOR_PATH)
        .header(header::HOST, peer.host_header())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CONNECTION, "close")
        .body(Full::new(body))
        .map_err(|_| UrlError::Malformed)?;
    let reply = exchange(dialer, &peer, request, MAX_REPLY_BYTES, limits).await?;
    if reply.status == StatusCode::OK {
        Ok(())
    } else {
        Err(status_error(&reply))
    }
}

/// Fetches `GET /remailer-conf.txt` from the peer at `base_url`. The body
/// must be UTF-8 and at most [`ClientLimits::max_conf_bytes`] long.
pub async fn fetch_conf(
    dialer: &dyn Dialer,
    base_url: &str,
    limits: &ClientLimits,
) -> Result<String, ClientError> {
    fetch_page(dialer, base_url, CONF_PATH, limits.max_conf_bytes, limits).await
}

/// Fetches the text page `path` (such as `/stats.txt`) of the peer at
/// `base_url`; it must be UTF-8 and at most `max` bytes long.
pub async fn fetch_page(
    dialer: &dyn Dialer,
    base_url: &str,
    path: &str,
    max: usize,
    limits: &ClientLimits,
) -> Result<String, ClientError> {
    let peer = PeerUrl::parse(base_url)?;
    let request = Request::get(path)
        .header(header::HOST, peer.host_header())
        .header(header::CONNECTION, "close")
        .body(Full::new(Bytes::new()))
        .map_err(|_| UrlError::Malformed)?;
    let reply = exchange(dialer, &peer, request, max, limits).await?;
    if reply.status != StatusCode::OK {
        return Err(status_error(&reply));
    }
    if !reply.complete {
        return Err(ClientError::ResponseTooLarge { limit: max });
    }
    String::from_utf8(reply.body.to_vec()).map_err(|_| ClientError::NotUtf8)
}

/// A response as far as it was read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    /// At most the requested number of bytes of the body.
    body: Bytes,
    /// Whether `body` is the whole body.
    complete: bool,
}

/// Checks the policy, dials, sends `request` and reads the response (at
/// most `max_body` bytes of its body), within the limits' timeouts.
async fn exchange(
    dialer: &dyn Dialer,
    peer: &PeerUrl,
    request: Request<Full<Bytes>>,
    max_body: usize,
    limits: &ClientLimits,
) -> Result<Reply, ClientError> {
    dialer.policy().check(peer)?;
    let host = peer.host().trim_start_matches('[').trim_end_matches(']');
    let stream =
        match tokio::time::timeout(limits.connect_timeout, dialer.dial(host, peer.port())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Err(_) => return Err(ClientError::ConnectTimeout),
        };
    let http = |e: hyper::Error| ClientError::Http(Box::new(e));
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        }));
        let response = sender.send_request(request).await.map_err(http)?;
        let (parts, body) = response.into_parts();
        let (body, complete) = read_body(body, &parts.headers, max_body).await?;
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            complete,
        })
    };
    tokio::time::timeout(limits.request_timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Reads at most `max` bytes of `body`; the flag says whether that was all
/// of it. A `Content-Length` above `max` stops before reading anything.
async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    max: usize,
) -> Result<(Bytes, bool), ClientError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX)) {
        return Ok((Bytes::new(), false));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(Box::new(e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                let room = max - buf.len();
                buf.extend_from_slice(data.get(..room).unwrap_or_default());
                return Ok((buf.freeze(), false));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), true))
}

/// The error for a response whose status is not 200.
fn status_error(reply: &Reply) -> ClientError {
    let status = reply.status;
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let retry_after = reply
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        ClientError::Unavailable {
            status,
            retry_after,
        }
    } else if status.is_client_error() {
        ClientError::Rejected {
            status,
            reason: sanitize_reason(&reply.body),
        }
    } else {
        ClientError::UnexpectedStatus(status)
    }
}

/// The peer's explanation reduced to printable ASCII on one line, cut to
/// [`MAX_REASON_CHARS`], so that it is safe to log.
fn sanitize_reason(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(MAX_REASON_CHARS)
        .collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Aborts the connection-driving task when the exchange ends or is
/// dropped (e.g. on timeout).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
