//! One NNTP session over any stream: the connection with its bounded
//! reader, and the steps of a posting session in the order they run.
//!
//! Commands are never pipelined: each is written and flushed, then its
//! reply read, all within the command timeout.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

use super::config::Credentials;
use super::wire::{self, Article, Reply};
use super::{NntpError, Step};

/// A connection: the stream behind a buffered reader, and the command
/// timeout.
pub(super) struct Conn<S> {
    io: BufReader<S>,
    command_timeout: Duration,
}

/// Runs `fut` within `limit`; running out is a timeout in `step`.
pub(super) async fn within<T>(
    step: Step,
    limit: Duration,
    fut: impl Future<Output = Result<T, NntpError>>,
) -> Result<T, NntpError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NntpError::Timeout { step })?
}

/// The error for a reply that is not the one hoped for.
fn refused(step: Step, reply: Reply) -> NntpError {
    NntpError::Reply {
        step,
        code: reply.code,
        text: reply.text,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a connected stream.
    pub(super) fn new(stream: S, command_timeout: Duration) -> Self {
        Self {
            io: BufReader::new(stream),
            command_timeout,
        }
    }

    async fn send(&mut self, step: Step, bytes: &[u8]) -> Result<(), NntpError> {
        let io = self.io.get_mut();
        let sent = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        sent.await.map_err(|source| NntpError::Io { step, source })
    }

    /// Sends one command line (CRLF added) and reads its reply.
    async fn command(&mut self, step: Step, line: &[u8]) -> Result<Reply, NntpError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line);
        bytes.extend_from_slice(b"\r\n");
        within(step, self.command_timeout, async {
            self.send(step, &bytes).await?;
            wire::read_reply(&mut self.io, step).await
        })
        .await
    }

    /// The stream again, for a TLS handshake. Refused if the server sent
    /// anything past its last reply: those bytes would otherwise be taken
    /// as coming from inside the TLS session.
    fn into_inner(self, step: Step) -> Result<S, NntpError> {
        if !self.io.buffer().is_empty() {
            return Err(NntpError::Unsolicited { step });
        }
        Ok(self.io.into_inner())
    }
}

/// Reads the greeting: 200 or 201 go on (201 may become 200 after
/// authentication, so the `POST` reply decides), anything else stops.
pub(super) async fn greet<S>(conn: &mut Conn<S>, limit: Duration) -> Result<(), NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let step = Step::Greeting;
    let reply = within(step, limit, wire::read_reply(&mut conn.io, step)).await?;
    match reply.code {
        200 | 201 => Ok(()),
        _ => Err(refused(step, reply)),
    }
}

/// Switches a mode-switching server (INN's innd, for one) to reader mode,
/// where `POST` lives. Sends `MODE READER` when `CAPABILITIES` lists
/// `MODE-READER` but not `READER`, or when `CAPABILITIES` gave no list
/// (servers that predate it answer 500, some that want `AUTHINFO` first
/// answer 480). Without a list only 200/201, 400 and 502 to `MODE READER`
/// count: anything else leaves the verdict to `POST`.
pub(super) async fn reader_mode<S>(conn: &mut Conn<S>) -> Result<(), NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let caps = capabilities(conn).await?;
    let switching = match &caps {
        None => true,
        Some(c) => {
            let has = |label: &str| c.iter().any(|l| l == label);
            has("MODE-READER") && !has("READER")
        }
    };
    if !switching {
        return Ok(());
    }
    let step = Step::ModeReader;
    let reply = conn.command(step, b"MODE READER").await?;
    match reply.code {
        200 | 201 => Ok(()),
        400 | 502 => Err(refused(step, reply)),
        _ if caps.is_none() => Ok(()),
        _ => Err(refused(step, reply)),
    }
}

/// The capability labels (first word of each line, upper case), or `None`
/// if the server gave no list for any reason but 400 or 502 (which end
/// the session).
async fn capabilities<S>(conn: &mut Conn<S>) -> Result<Option<Vec<String>>, NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let step = Step::Capabilities;
    let limit = conn.command_timeout;
    within(step, limit, async {
        let reply = conn.command(step, b"CAPABILITIES").await?;
        match reply.code {
            101 => {}
            400 | 502 => return Err(refused(step, reply)),
            _ => return Ok(None),
        }
        let lines = wire::read_block(&mut conn.io, step).await?;
        let label = |l: &Vec<u8>| {
            let word = l
                .split(|&b| b == b' ' || b == b'\t')
                .next()
                .unwrap_or_default();
            String::from_utf8_lossy(word).to_ascii_uppercase()
        };
        Ok(Some(lines.iter().map(label).collect()))
    })
    .await
}

/// Sends `STARTTLS` (RFC 4642) and hands back the stream for the
/// handshake after the server's 382.
pub(super) async fn starttls<S>(mut conn: Conn<S>) -> Result<S, NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let step = Step::StartTls;
    let reply = conn.command(step, b"STARTTLS").await?;
    if reply.code != 382 {
        return Err(refused(step, reply));
    }
    conn.into_inner(step)
}

/// `AUTHINFO USER` and, on 381, `AUTHINFO PASS` (RFC 4643); 281 ends it.
pub(super) async fn authenticate<S>(
    conn: &mut Conn<S>,
    creds: &Credentials,
) -> Result<(), NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let step = Step::Auth;
    let user = format!("AUTHINFO USER {}", creds.username);
    let reply = conn.command(step, user.as_bytes()).await?;
    let reply = match reply.code {
        281 => return Ok(()),
        381 => {
            let pass = Zeroizing::new(format!("AUTHINFO PASS {}", creds.password.expose()));
            conn.command(step, pass.as_bytes()).await?
        }
        _ => return Err(refused(step, reply)),
    };
    match reply.code {
        281 => Ok(()),
        _ => Err(refused(step, reply)),
    }
}

/// `POST` (RFC 3977 section 6.3.1): 340, the article, then 240.
pub(super) async fn post<S>(conn: &mut Conn<S>, article: &Article) -> Result<(), NntpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = conn.command(Step::Post, b"POST").await?;
    if reply.code != 340 {
        return Err(refused(Step::Post, reply));
    }
    let step = Step::Article;
    let limit = conn.command_timeout;
    let reply = within(step, limit, async {
        conn.send(step, article.wire()).await?;
        wire::read_reply(&mut conn.io, step).await
    })
    .await?;
    match reply.code {
        240 => Ok(()),
        _ => Err(refused(step, reply)),
    }
}

/// Sends `QUIT` and reads the reply, ignoring any failure: the article is
/// already accepted when this runs.
pub(super) async fn quit<S>(mut conn: Conn<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = conn.command_timeout;
    let polite = async {
        let _ = conn.command(Step::Quit, b"QUIT").await;
        let _ = conn.io.get_mut().shutdown().await;
    };
    let _ = tokio::time::timeout(limit, polite).await;
}
