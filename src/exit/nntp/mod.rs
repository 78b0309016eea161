//! Posting articles to a news server over NNTP (RFC 3977), for exits that
//! post to Usenet directly (`exit.news.mode = "nntp"`) rather than through
//! a mail2news gateway. The news policy ([`super::news`]) decides what is
//! posted; the mail queue's worker retries what failed for now.
//!
//! # Walk-through
//!
//! [`NntpClient::new`] checks the [`NntpConfig`], reads the password file
//! and builds the TLS connector once. Each [`NntpClient::post`] then runs
//! one session:
//!
//! 1. TCP connect (or, with [`NntpClient::post_over`], any stream the
//!    caller connected), then the TLS handshake for implicit TLS;
//! 2. the greeting (200 or 201);
//! 3. `CAPABILITIES`, and `MODE READER` if the server is mode-switching
//!    (INN's innd hands the connection to nnrpd, which takes `POST`);
//! 4. `STARTTLS` and the handshake, when configured (RFC 4642);
//! 5. `AUTHINFO USER`/`PASS`, when configured (RFC 4643);
//! 6. `POST`: 340, the dot-stuffed [`Article`], then 240;
//! 7. `QUIT`, best effort: its failure does not undo the 240.
//!
//! Connect, handshake and greeting each have the connect timeout; every
//! command has the command timeout; steps 1 to 6 together have the session
//! timeout. Reply lines are bounded at 512 bytes ([`wire::MAX_LINE`]).
//!
//! # Failures
//!
//! [`NntpError::is_permanent`] says whether retrying the same article can
//! help. Permanent, so the exit drops and counts the article: a 440
//! (posting not permitted) or 441 (posting failed: no such group, group
//! refuses posts, duplicate Message-ID, bad headers) to `POST` or to the
//! article, any 5xx reply (service or command permanently unavailable,
//! STARTTLS impossible, authentication refused for good), and an
//! [`Article`] the client refuses to send ([`NntpError::BadArticle`]).
//!
//! Everything else is temporary and the article stays queued, to be
//! retried with backoff: no connection, timeouts, a broken or closed
//! connection, TLS failures, every other 4xx (400 service temporarily
//! unavailable, 403 internal fault, 480/481/482/483 authentication or TLS
//! wanted or failed: the operator's to fix, not the article's fault),
//! malformed or overlong replies, and any other code not foreseen at its
//! step. A 500 to `CAPABILITIES` is not a failure: the server predates it.
//!
//! A connection lost after the article was sent but before the 240 leaves
//! it unknown whether the server took it; the retry then gets 441 (435
//! duplicate) if it did, as the exit gives every article a `Message-ID`
//! that its retries keep.
//!
//! Reply text can name groups or Message-IDs: it is kept out of the
//! errors' `Display` (safe to log at info) and only in
//! [`NntpError::Reply`]'s `text` field (and so in `Debug`).

use std::io;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_native_tls::TlsStream;
use tokio_util::either::Either;

mod config;
mod session;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{Credentials, MAX_CREDENTIAL_LEN, NntpConfig, NntpTls, read_password};
pub use wire::{Article, Reply};

use session::{Conn, within};

/// The step of a session a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// TCP connect.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// Reading the server's greeting.
    Greeting,
    /// `CAPABILITIES`.
    Capabilities,
    /// `MODE READER`.
    ModeReader,
    /// `STARTTLS`.
    StartTls,
    /// `AUTHINFO USER` or `AUTHINFO PASS`.
    Auth,
    /// `POST`, up to the server's 340.
    Post,
    /// Sending the article and reading the server's verdict.
    Article,
    /// `QUIT`.
    Quit,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::TlsHandshake => "TLS handshake",
            Self::Greeting => "greeting",
            Self::Capabilities => "CAPABILITIES",
            Self::ModeReader => "MODE READER",
            Self::StartTls => "STARTTLS",
            Self::Auth => "AUTHINFO",
            Self::Post => "POST",
            Self::Article => "article transfer",
            Self::Quit => "QUIT",
        })
    }
}

/// Errors in the NNTP settings and in posting.
#[derive(Debug, thiserror::Error)]
pub enum NntpError {
    /// A setting is invalid or conflicts with another.
    #[error("invalid NNTP configuration: {0}")]
    Invalid(#[from] mimix_settings::Invalid),
    /// The password file could not be read.
    #[error("cannot read NNTP password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The password file is empty, too long, not UTF-8 or holds control
    /// characters.
    #[error("NNTP password file {0} is empty, too long or holds control characters")]
    PasswordText(PathBuf),
    /// The TLS connector could not be built.
    #[error("cannot set up TLS: {0}")]
    TlsSetup(#[source] native_tls::Error),
    /// The message cannot be sent as an article (permanent).
    #[error("article refused before sending: {0}")]
    BadArticle(&'static str),
    /// The TCP connection could not be made.
    #[error("cannot connect to the news server: {0}")]
    Connect(#[source] io::Error),
    /// Reading or writing failed.
    #[error("connection failed during {step}: {source}")]
    Io {
        /// Where.
        step: Step,
        /// The cause.
        source: io::Error,
    },
    /// The server closed the connection (or ended it mid-line).
    #[error("server closed the connection during {step}")]
    Closed {
        /// Where.
        step: Step,
    },
    /// A step took longer than its timeout.
    #[error("timed out during {step}")]
    Timeout {
        /// Where.
        step: Step,
    },
    /// The whole session took longer than the session timeout.
    #[error("NNTP session timed out")]
    SessionTimeout,
    /// The TLS handshake failed (bad certificate, no common protocol...).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] native_tls::Error),
    /// A reply line was longer than 512 bytes.
    #[error("reply line over {} bytes during {step}", wire::MAX_LINE)]
    LineTooLong {
        /// Where.
        step: Step,
    },
    /// A multi-line reply had too many lines.
    #[error("reply block over {} lines during {step}", wire::MAX_BLOCK_LINES)]
    BlockTooLong {
        /// Where.
        step: Step,
    },
    /// A reply line did not start with a three-digit code.
    #[error("malformed reply during {step}")]
    Malformed {
        /// Where.
        step: Step,
    },
    /// The server sent bytes ahead of the TLS handshake.
    #[error("unsolicited data from the server after {step}")]
    Unsolicited {
        /// Where.
        step: Step,
    },
    /// The server answered with a code other than the one that lets the
    /// session go on.
    #[error("{step}: server replied {code}")]
    Reply {
        /// Where.
        step: Step,
        /// The reply code.
        code: u16,
        /// The reply text; may name groups or Message-IDs: debug only.
        text: String,
    },
}

impl NntpError {
    /// Whether posting the same article again cannot succeed (see the
    /// module documentation for the table).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::BadArticle(_) => true,
            Self::Reply { step, code, .. } => match code {
                440 | 441 => matches!(step, Step::Post | Step::Article),
                500..=599 => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether a retry later may succeed: the opposite of
    /// [`NntpError::is_permanent`].
    pub fn is_temporary(&self) -> bool {
        !self.is_permanent()
    }

    /// The server's reply code, if a reply caused the failure.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Posts articles to one news server.
#[derive(Debug)]
pub struct NntpClient {
    config: NntpConfig,
    credentials: Option<Credentials>,
    tls: Option<tokio_native_tls::TlsConnector>,
}

impl NntpClient {
    /// Validates the settings, reads the password file and sets up TLS.
    pub fn new(config: NntpConfig) -> Result<Self, NntpError> {
        config.validate()?;
        let credentials = config.credentials()?;
        let tls = match config.tls {
            NntpTls::None => None,
            NntpTls::Starttls | NntpTls::Tls => Some(connector(config.accept_invalid_certs)?),
        };
        Ok(Self {
            config,
            credentials,
            tls,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &NntpConfig {
        &self.config
    }

    /// Connects to the configured server over TCP and posts `article`.
    pub async fn post(&self, article: &Article) -> Result<(), NntpError> {
        let session = async {
            let tcp = self.connect().await?;
            self.deliver(tcp, article).await
        };
        self.finish(session).await
    }

    /// Posts `article` over a stream the caller connected (to a proxy, a
    /// Unix socket, a test double). TLS and authentication follow the
    /// settings, as with [`NntpClient::post`].
    pub async fn post_over<S>(&self, stream: S, article: &Article) -> Result<(), NntpError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.finish(self.deliver(stream, article)).await
    }

    async fn finish<S>(
        &self,
        session: impl Future<Output = Result<Conn<S>, NntpError>>,
    ) -> Result<(), NntpError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = tokio::time::timeout(self.config.session_timeout, session)
            .await
            .map_err(|_| NntpError::SessionTimeout)??;
        session::quit(conn).await;
        Ok(())
    }

    async fn connect(&self) -> Result<TcpStream, NntpError> {
        let addr = (self.config.host.as_str(), self.config.port());
        let tcp = within(Step::Connect, self.config.connect_timeout, async {
            TcpStream::connect(addr).await.map_err(NntpError::Connect)
        })
        .await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Steps 1 to 6 of the walk-through; hands back the connection for
    /// `QUIT`.
    async fn deliver<S>(
        &self,
        stream: S,
        article: &Article,
    ) -> Result<Conn<Either<S, TlsStream<S>>>, NntpError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let timeout = self.config.command_timeout;
        let mut conn = match self.config.tls {
            NntpTls::None => self.open(Either::Left(stream)).await?,
            NntpTls::Tls => {
                self.open(Either::Right(self.handshake(stream).await?))
                    .await?
            }
            NntpTls::Starttls => {
                let plain = session::starttls(self.open(stream).await?).await?;
                Conn::new(Either::Right(self.handshake(plain).await?), timeout)
            }
        };
        if let Some(creds) = &self.credentials {
            session::authenticate(&mut conn, creds).await?;
        }
        session::post(&mut conn, article).await?;
        Ok(conn)
    }

    /// Greeting and reader mode (steps 2 and 3).
    async fn open<T>(&self, stream: T) -> Result<Conn<T>, NntpError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut conn = Conn::new(stream, self.config.command_timeout);
        session::greet(&mut conn, self.config.connect_timeout).await?;
        session::reader_mode(&mut conn).await?;
        Ok(conn)
    }

    async fn handshake<S>(&self, stream: S) -> Result<TlsStream<S>, NntpError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tls) = &self.tls else {
            return Err(NntpError::Invalid(mimix_settings::Invalid::new(
                "tls",
                "TLS requested without a connector",
            )));
        };
        within(Step::TlsHandshake, self.config.connect_timeout, async {
            tls.connect(&self.config.host, stream)
                .await
                .map_err(NntpError::Tls)
        })
        .await
    }
}

fn connector(accept_invalid: bool) -> Result<tokio_native_tls::TlsConnector, NntpError> {
    let tls = native_tls::TlsConnector::builder()
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .danger_accept_invalid_certs(accept_invalid)
        .danger_accept_invalid_hostnames(accept_invalid)
        .build()
        .map_err(NntpError::TlsSetup)?;
    Ok(tls.into())
}
