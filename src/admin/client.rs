//! A client for a running node's admin listener (for `mimix status` and
//! `mimix conf`): one `GET` on a fresh connection, bounded in time and
//! size.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::Endpoint;

/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the whole exchange once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response read.
const MAX_RESPONSE: usize = 4 << 20;

/// Why a request to the admin listener failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there: the node is not running, or its listener is
    /// elsewhere or off.
    #[error("nothing listens at {0}")]
    NotListening(String),
    /// Connecting failed otherwise (permissions, say).
    #[error("connecting to {what}: {source}")]
    Connect {
        /// The endpoint.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The exchange took too long.
    #[error("{0} did not answer in time")]
    Timeout(String),
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the admin listener failed: {0}")]
    Http(#[from] hyper::Error),
    /// The answer was not 200.
    #[error("the admin listener answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The answer was too large or not UTF-8.
    #[error("the admin listener's answer is too large or not text")]
    Body,
}

impl ClientError {
    /// Whether the node is simply not there (not running, or listening
    /// elsewhere).
    pub fn not_listening(&self) -> bool {
        matches!(self, Self::NotListening(_))
    }
}

/// A connection of either kind.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// `GET path` from the listener at `endpoint`; the body of a 200.
pub async fn get(endpoint: &Endpoint, path: &str) -> Result<String, ClientError> {
    let what = endpoint.to_string();
    let connect = async {
        let stream: Box<dyn Io> = match endpoint {
            Endpoint::Tcp(a) => Box::new(TcpStream::connect(a).await?),
            Endpoint::Unix(p) => Box::new(UnixStream::connect(p).await?),
        };
        Ok::<_, io::Error>(stream)
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return Err(ClientError::Timeout(what)),
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotListening(what)
                }
                _ => ClientError::Connect { what, source: e },
            });
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, request(stream, path))
        .await
        .map_err(|_| ClientError::Timeout(what))?
}

async fn request<I>(io: I, path: &str) -> Result<String, ClientError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ClientError::Body)?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|_| ClientError::Body)?
        .to_bytes();
    driver.abort();
    let body = String::from_utf8(body.to_vec()).map_err(|_| ClientError::Body)?;
    if status != StatusCode::OK {
        let body = body.chars().take(200).collect::<String>().trim().to_owned();
        return Err(ClientError::Status { status, body });
    }
    Ok(body)
}
