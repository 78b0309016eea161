//! The greeting and `EHLO` of a connection that starts in plain text, with
//! the fall back to `HELO` that RFC 5321 4.1.4 requires ("the SMTP client
//! MUST be able to accommodate servers that reject EHLO") and `lettre`
//! lacks: its client gives up, and closes the connection, when `EHLO` is
//! refused.
//!
//! [`open`] reads the greeting and sends `EHLO` itself. When the server
//! answers `EHLO` with a 5xx (500, 502, 550: a server that does not speak
//! ESMTP), it sends `HELO` on the same connection. A 4xx, or a refused
//! greeting, is left as it is. The connection then goes to `lettre` behind
//! a [`Replay`] stream that plays back the greeting and the final hello
//! reply and swallows `lettre`'s own `EHLO` line, so `lettre` sees the
//! exchange it expects. A `HELO` reply advertises no extensions: such a
//! server gets no STARTTLS (a required STARTTLS then fails as it would
//! without the fall back), no AUTH and no 8BITMIME.
//!
//! Connections that start with TLS (implicit TLS) are opened by `lettre`
//! and get no fall back: an SMTPS server speaks ESMTP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::io::{AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

use super::{DeliveryFailure, FailureKind};

/// Longest reply line read here.
const MAX_LINE: usize = 4096;

/// Longest reply (all its lines) read here.
const MAX_REPLY: usize = 64 * 1024;

/// One reply as the server sent it.
struct Reply {
    /// The status code of its last line.
    code: u16,
    /// Its bytes, line ends included.
    raw: Vec<u8>,
}

fn failure(kind: FailureKind, detail: &str) -> DeliveryFailure {
    DeliveryFailure::new(kind, detail)
}

/// Connects to `host:port`, reads the greeting, says hello (`EHLO`, then
/// `HELO` if `EHLO` was refused with a 5xx) as `name`, and hands the
/// connection to `lettre`. Whether `lettre` accepts the result (a 2xx
/// greeting and hello reply) is up to it, with its usual errors.
pub(super) async fn open(
    server: impl tokio::net::ToSocketAddrs,
    name: &ClientId,
) -> Result<AsyncSmtpConnection, DeliveryFailure> {
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|e| failure(FailureKind::Connection, &e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let mut io = BufReader::new(tcp);
    let greeting = read_reply(&mut io).await?;
    let mut replay = greeting.raw;
    let said_hello = (200..300).contains(&greeting.code);
    if said_hello {
        let mut reply = command(&mut io, &format!("EHLO {name}\r\n")).await?;
        if (500..600).contains(&reply.code) {
            tracing::debug!(code = reply.code, "EHLO refused: trying HELO");
            reply = command(&mut io, &format!("HELO {name}\r\n")).await?;
        }
        replay.extend_from_slice(&reply.raw);
    }
    replay.extend_from_slice(io.buffer());
    let stream = Replay {
        inner: io.into_inner(),
        replay,
        read: 0,
        swallow: said_hello,
    };
    AsyncSmtpConnection::connect_with_transport(Box::new(stream), name)
        .await
        .map_err(|e| DeliveryFailure::from_smtp(&e))
}

/// Sends one command line and reads its reply.
async fn command(io: &mut BufReader<TcpStream>, line: &str) -> Result<Reply, DeliveryFailure> {
    let io_failed = |e: io::Error| failure(FailureKind::Connection, &e.to_string());
    io.get_mut()
        .write_all(line.as_bytes())
        .await
        .map_err(io_failed)?;
    io.get_mut().flush().await.map_err(io_failed)?;
    read_reply(io).await
}

/// Reads one (possibly multi-line) reply, bounded.
async fn read_reply<R: AsyncBufRead + Unpin>(io: &mut R) -> Result<Reply, DeliveryFailure> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        let n = (&mut *io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| failure(FailureKind::Connection, &e.to_string()))?;
        let line = raw.get(start..).unwrap_or_default();
        if n == 0 || !line.ends_with(b"\n") {
            let why = if n == MAX_LINE {
                "reply line too long"
            } else {
                "connection closed"
            };
            return Err(failure(FailureKind::Protocol, why));
        }
        let code = line
            .get(..3)
            .and_then(|c| std::str::from_utf8(c).ok())
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| failure(FailureKind::Protocol, "malformed reply"))?;
        match line.get(3) {
            Some(b'-') if raw.len() < MAX_REPLY => {}
            Some(b'-') => return Err(failure(FailureKind::Protocol, "reply too long")),
            _ => return Ok(Reply { code, raw }),
        }
    }
}

/// The connection as `lettre` gets it: reads start with the replies
/// already read, and the first line `lettre` writes (its `EHLO`, already
/// answered) is dropped when `swallow` is set.
#[derive(Debug)]
struct Replay {
    inner: TcpStream,
    replay: Vec<u8>,
    read: usize,
    swallow: bool,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.replay.get(this.read..).unwrap_or_default();
        if left.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(left.get(..n).unwrap_or_default());
        this.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.swallow {
            let n = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.swallow = false;
                    i + 1
                }
                None => buf.len(),
            };
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Replay {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}
