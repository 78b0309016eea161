//! One SMTP session with one host: connect, secure, authenticate, and run
//! one transaction that settles each recipient.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{
    AsyncSmtpConnection, Credentials, Data, DeliveryFailure, DeliveryReport, Extension,
    FailureKind, Mail, MailBodyParameter, MailParameter, Mailer, Mechanism, Quit, Rcpt,
    TlsParameters,
};
use lettre::Address;

/// Transport security of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// No TLS.
    Plain,
    /// STARTTLS, required, certificate verified (unless configured not to).
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS when offered, certificate not verified; plain text if the
    /// server does not offer it or the handshake fails.
    Opportunistic,
}

/// A session with `host` on behalf of `mailer`.
pub(super) struct Session<'a> {
    pub(super) mailer: &'a Mailer,
    /// The server's name (for TLS, and to connect to when `addr` is not
    /// given).
    pub(super) host: &'a str,
    /// The address to connect to, already checked (MX mode).
    pub(super) addr: Option<IpAddr>,
    pub(super) tls: TlsMode,
}

impl Session<'_> {
    /// Delivers `message` to `rcpts`, recording every recipient's outcome
    /// in `report`. An `Err` means the host failed before a transaction
    /// began (nothing recorded): another host may be tried.
    pub(super) async fn run(
        &self,
        from: &Address,
        rcpts: &[Address],
        message: &[u8],
        report: &mut DeliveryReport,
    ) -> Result<(), DeliveryFailure> {
        let limit = self.mailer.config.session_timeout;
        let mut local = DeliveryReport::default();
        let mut began = false;
        let outcome = tokio::time::timeout(
            limit,
            self.transact(from, rcpts, message, &mut local, &mut began),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(f)) => return Err(f),
            Err(_) if !began => {
                return Err(DeliveryFailure::new(
                    FailureKind::Timeout,
                    "session timed out",
                ));
            }
            Err(_) => {
                let f = DeliveryFailure::new(FailureKind::Timeout, "session timed out");
                let unsettled: Vec<Address> = rcpts
                    .iter()
                    .filter(|r| !settled(&local, r))
                    .cloned()
                    .collect();
                local.fail_all(&unsettled, &f);
            }
        }
        report.delivered.append(&mut local.delivered);
        report.failed.append(&mut local.failed);
        report.pending.append(&mut local.pending);
        Ok(())
    }

    async fn transact(
        &self,
        from: &Address,
        rcpts: &[Address],
        message: &[u8],
        out: &mut DeliveryReport,
        began: &mut bool,
    ) -> Result<(), DeliveryFailure> {
        let cmd = self.mailer.config.command_timeout;
        let mut conn = self.connect().await?;
        if let Some((user, password)) = &self.mailer.credentials {
            let creds = Credentials::new(user.clone(), password.expose().to_owned());
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if let Err(mut f) = step(cmd, conn.auth(&mechanisms, &creds)).await {
                if f.kind != FailureKind::Timeout {
                    f.kind = FailureKind::Auth;
                }
                tracing::warn!(failure = %f, "SMTP relay authentication failed");
                return Err(f);
            }
        }

        let mut params = Vec::new();
        if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        match step(cmd, conn.command(Mail::new(Some(from.clone()), params))).await {
            Ok(_) => {}
            Err(f) if f.kind == FailureKind::Rejected => {
                *began = true;
                out.fail_all(rcpts, &f);
                quit(&mut conn, cmd).await;
                return Ok(());
            }
            Err(f) => return Err(f),
        }
        *began = true;

        let mut accepted = Vec::with_capacity(rcpts.len());
        for (i, r) in rcpts.iter().enumerate() {
            match step(cmd, conn.command(Rcpt::new(r.clone(), Vec::new()))).await {
                Ok(_) => accepted.push(r.clone()),
                Err(f) if matches!(f.kind, FailureKind::Rejected | FailureKind::Deferred) => {
                    out.fail(r.clone(), f);
                }
                Err(f) => {
                    // The connection is gone: nothing was delivered.
                    out.fail_all(&accepted, &f);
                    out.fail_all(rcpts.get(i..).unwrap_or_default(), &f);
                    return Ok(());
                }
            }
        }
        if accepted.is_empty() {
            quit(&mut conn, cmd).await;
            return Ok(());
        }
        let sent = match step(cmd, conn.command(Data)).await {
            Ok(_) => conn
                .message(message)
                .await
                .map_err(|e| DeliveryFailure::from_smtp(&e)),
            Err(f) => Err(f),
        };
        match sent {
            Ok(_) => {
                out.delivered.append(&mut accepted);
                quit(&mut conn, cmd).await;
            }
            Err(f) => out.fail_all(&accepted, &f),
        }
        Ok(())
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, DeliveryFailure> {
        let cmd = self.mailer.config.command_timeout;
        let hello = &self.mailer.hello;
        match self.tls {
            TlsMode::Plain => self.open(None).await,
            TlsMode::Implicit => self.open(Some(self.tls_parameters()?)).await,
            TlsMode::StartTls => {
                let params = self.tls_parameters()?;
                let mut conn = self.open(None).await?;
                step(cmd, conn.starttls(params, hello)).await?;
                Ok(conn)
            }
            TlsMode::Opportunistic => {
                let mut conn = self.open(None).await?;
                if !conn.can_starttls() {
                    return Ok(conn);
                }
                let params = self.tls_parameters()?;
                match step(cmd, conn.starttls(params, hello)).await {
                    Ok(()) => Ok(conn),
                    Err(f) => {
                        tracing::debug!(failure = %f, "STARTTLS failed; retrying in plain text");
                        self.open(None).await
                    }
                }
            }
        }
    }

    /// Connects and reads the greeting and EHLO reply (in plain text with
    /// the fall back to HELO, see [`super::hello`]).
    async fn open(
        &self,
        tls: Option<TlsParameters>,
    ) -> Result<AsyncSmtpConnection, DeliveryFailure> {
        let cfg = &self.mailer.config;
        let (hello, timeout) = (&self.mailer.hello, Some(cfg.connect_timeout));
        // A resolved exchanger is connected to by its address (checked
        // public); a relay or a smarthost by its name.
        let server = match self.addr {
            Some(ip) => Server::Ip(SocketAddr::new(ip, cfg.port)),
            None => Server::Name(self.host, cfg.port),
        };
        if tls.is_none() {
            let open = async {
                match server {
                    Server::Ip(a) => super::hello::open(a, hello).await,
                    Server::Name(h, p) => super::hello::open((h, p), hello).await,
                }
            };
            return match tokio::time::timeout(cfg.connect_timeout, open).await {
                Ok(r) => r,
                Err(_) => Err(DeliveryFailure::new(FailureKind::Timeout, "timed out")),
            };
        }
        match server {
            Server::Ip(a) => {
                let connect = AsyncSmtpConnection::connect_tokio1(a, timeout, hello, tls, None);
                step(cfg.connect_timeout, connect).await
            }
            Server::Name(h, p) => {
                let connect =
                    AsyncSmtpConnection::connect_tokio1((h, p), timeout, hello, tls, None);
                step(cfg.connect_timeout, connect).await
            }
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, DeliveryFailure> {
        let lax = self.tls == TlsMode::Opportunistic || self.mailer.config.accept_invalid_certs;
        TlsParameters::builder(self.host.to_owned())
            .dangerous_accept_invalid_certs(lax)
            .dangerous_accept_invalid_hostnames(lax)
            .build()
            .map_err(|e| DeliveryFailure {
                kind: FailureKind::Tls,
                ..DeliveryFailure::from_smtp(&e)
            })
    }
}

fn settled(report: &DeliveryReport, r: &Address) -> bool {
    report.delivered.contains(r)
        || report.failed.iter().any(|(a, _)| a == r)
        || report.pending.iter().any(|(a, _)| a == r)
}

/// Runs one SMTP step under `limit`.
async fn step<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, DeliveryFailure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| DeliveryFailure::from_smtp(&e)),
        Err(_) => Err(DeliveryFailure::new(FailureKind::Timeout, "timed out")),
    }
}

async fn quit(conn: &mut AsyncSmtpConnection, limit: Duration) {
    let _ = tokio::time::timeout(limit, conn.command(Quit)).await;
}

/// Where a session connects: a checked exchanger address, or a name.
#[derive(Clone, Copy)]
enum Server<'a> {
    /// An exchanger's address, checked public.
    Ip(SocketAddr),
    /// A relay's or smarthost's name and port.
    Name(&'a str, u16),
}
