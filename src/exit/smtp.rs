//! SMTP delivery with `lettre`'s low-level async client.
//!
//! Two modes ([`SmtpMode`]): `relay` hands every message to one smarthost
//! (default `localhost:25`, optionally STARTTLS or implicit TLS and AUTH);
//! `mx` looks up each recipient domain's MX hosts ([`super::mx`]) and
//! delivers to them directly on port 25 with opportunistic STARTTLS
//! (certificates are not verified in that mode, as with most MTAs: the aim
//! is to defeat passive observers). In MX mode the exit resolves each
//! exchanger's addresses itself and connects only to public ones (unless
//! `allow_private_mx`), so a sender cannot point the exit at its own
//! network through a domain whose MX says `127.0.0.1` or `10.0.0.1`.
//!
//! Recipients are handled one by one within an SMTP transaction, so one
//! refused address does not sink the others: each ends up delivered,
//! failed (a 5xx reply or no route: never retried) or pending (a 4xx reply,
//! a connection failure, a timeout: retry later). [`DeliveryReport::result`]
//! folds that into one [`DeliveryResult`] per message.
//!
//! Every step has a timeout; the EHLO name is configured (default: the
//! exit's mail domain) so the machine's host name is never announced. A
//! server that refuses EHLO gets HELO on the same connection
//! (RFC 5321 4.1.4; see the private `hello` module).

use std::path::PathBuf;
use std::sync::Arc;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use super::delivery::Delivery;
use super::mx::{self, HickoryResolver, MxError, MxResolver};

mod config;
mod hello;
mod session;

use config::read_password;
pub(crate) use config::read_password_file;
pub use config::{MAX_SMTP_PASSWORD_LEN, Password, RelayTls, SmtpConfig, SmtpMode};

/// Most MX hosts tried per domain and attempt.
pub const MAX_MX_HOSTS: usize = 5;

/// Most addresses tried per MX host and attempt.
const MAX_ADDRESSES_PER_HOST: usize = 2;

/// Errors in the SMTP configuration.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The password file could not be read.
    #[error("cannot read SMTP password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The password file is empty, too long, not UTF-8 or holds control
    /// characters.
    #[error("SMTP password file {0} is empty, too long, not UTF-8 or holds control characters")]
    PasswordText(PathBuf),
    /// An inconsistent or invalid combination of settings.
    #[error("invalid SMTP configuration: {0}")]
    Invalid(#[from] mimix_settings::Invalid),
    /// The DNS resolver for MX mode could not be set up.
    #[error(transparent)]
    Resolver(#[from] MxError),
}

/// What kind of failure stopped a delivery to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A 5xx reply (permanent).
    Rejected,
    /// A 4xx reply (temporary).
    Deferred,
    /// Could not connect, or the connection broke.
    Connection,
    /// A step took longer than its timeout.
    Timeout,
    /// TLS could not be set up.
    Tls,
    /// Authentication to the relay failed.
    Auth,
    /// The server's replies made no sense, or the client refused to go on.
    Protocol,
    /// A temporary DNS failure.
    Dns,
    /// The domain has no mail route (NXDOMAIN, null MX, special-use name).
    NoRoute,
    /// The recipient is on the blocklist.
    Blocked,
    /// No recipients were left to deliver to.
    NoRecipients,
}

impl FailureKind {
    /// Whether a failure of this kind is worth retrying.
    pub fn is_temporary(self) -> bool {
        !matches!(
            self,
            Self::Rejected | Self::NoRoute | Self::Blocked | Self::NoRecipients
        )
    }
}

/// Why a delivery failed. `kind` and `code` are safe to log at info;
/// `detail` may hold server text that names addresses: log it at debug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// The SMTP reply code, if a reply caused it.
    pub code: Option<u16>,
    /// Human-readable details.
    pub detail: String,
}

impl DeliveryFailure {
    /// A failure without a reply code.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            detail: detail.into(),
        }
    }

    /// Classifies a lettre error: 5xx is permanent, everything else is not.
    pub fn from_smtp(e: &lettre::transport::smtp::Error) -> Self {
        let kind = if e.is_permanent() {
            FailureKind::Rejected
        } else if e.is_transient() {
            FailureKind::Deferred
        } else if e.is_timeout() {
            FailureKind::Timeout
        } else if e.is_tls() {
            FailureKind::Tls
        } else if e.is_response() || e.is_client() {
            FailureKind::Protocol
        } else {
            FailureKind::Connection
        };
        Self {
            kind,
            code: e.status().map(u16::from),
            detail: e.to_string(),
        }
    }
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(c) = self.code {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

/// The outcome of one delivery attempt of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Every recipient is done and at least one accepted the message.
    Delivered,
    /// Some recipients should be tried again later (the reason of the first).
    Retry(DeliveryFailure),
    /// No recipient accepted the message and none is worth retrying.
    Failed(DeliveryFailure),
}

/// Per-recipient outcome of one delivery attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Recipients whose server accepted the message.
    pub delivered: Vec<Address>,
    /// Recipients given up on (permanent failures).
    pub failed: Vec<(Address, DeliveryFailure)>,
    /// Recipients to try again later (temporary failures).
    pub pending: Vec<(Address, DeliveryFailure)>,
}

impl DeliveryReport {
    /// Records `failure` for every recipient in `rcpts`, as pending or
    /// failed according to its kind.
    fn fail_all(&mut self, rcpts: &[Address], failure: &DeliveryFailure) {
        for r in rcpts {
            self.fail(r.clone(), failure.clone());
        }
    }

    fn fail(&mut self, rcpt: Address, failure: DeliveryFailure) {
        if failure.kind.is_temporary() {
            self.pending.push((rcpt, failure));
        } else {
            self.failed.push((rcpt, failure));
        }
    }

    /// The message-level result.
    pub fn result(&self) -> DeliveryResult {
        if let Some((_, f)) = self.pending.first() {
            DeliveryResult::Retry(f.clone())
        } else if !self.delivered.is_empty() {
            DeliveryResult::Delivered
        } else if let Some((_, f)) = self.failed.first() {
            DeliveryResult::Failed(f.clone())
        } else {
            DeliveryResult::Failed(DeliveryFailure::new(
                FailureKind::NoRecipients,
                "no recipients",
            ))
        }
    }
}

/// Delivers [`Delivery`]s by SMTP.
pub struct Mailer {
    config: SmtpConfig,
    hello: ClientId,
    credentials: Option<(String, Password)>,
    resolver: Option<Arc<dyn MxResolver>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("mode", &self.config.mode)
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `config`; `default_helo` is the EHLO name unless one is
    /// configured. MX mode uses the system DNS resolver.
    pub fn new(config: &SmtpConfig, default_helo: &str) -> Result<Self, SmtpError> {
        let resolver: Option<Arc<dyn MxResolver>> = match config.mode {
            SmtpMode::Relay => None,
            SmtpMode::Mx => Some(Arc::new(HickoryResolver::from_system(config.dns_timeout)?)),
        };
        Self::build(config, default_helo, resolver)
    }

    /// Like [`Mailer::new`] but with the given MX resolver (used in MX mode).
    pub fn with_resolver(
        config: &SmtpConfig,
        default_helo: &str,
        resolver: Arc<dyn MxResolver>,
    ) -> Result<Self, SmtpError> {
        Self::build(config, default_helo, Some(resolver))
    }

    fn build(
        config: &SmtpConfig,
        default_helo: &str,
        resolver: Option<Arc<dyn MxResolver>>,
    ) -> Result<Self, SmtpError> {
        config.validate()?;
        let helo = config.helo_name.as_deref().unwrap_or(default_helo);
        if !crate::net::is_host_name(helo) {
            return Err(SmtpError::Invalid(mimix_settings::Invalid::new(
                "helo_name",
                format!("{helo:?} is not a host name"),
            )));
        }
        let password = match (&config.password, &config.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(read_password(path)?),
            (None, None) => None,
        };
        let credentials = config.username.clone().zip(password);
        Ok(Self {
            config: config.clone(),
            hello: ClientId::Domain(helo.to_owned()),
            credentials,
            resolver,
        })
    }

    /// Tries to deliver `delivery` to every envelope recipient once.
    pub async fn send(&self, delivery: &Delivery) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        // lettre ends DATA with CRLF.CRLF; the message's own final CRLF is
        // that terminator's first half, so the server stores the exact bytes.
        let message = delivery
            .message
            .strip_suffix(b"\r\n")
            .unwrap_or(&delivery.message);
        let rcpts = &delivery.envelope_to;
        match (&self.config.mode, &self.resolver) {
            (SmtpMode::Mx, Some(resolver)) => {
                for (domain, group) in mx::group_by_domain(rcpts) {
                    self.send_mx(
                        resolver.as_ref(),
                        &domain,
                        &group,
                        delivery,
                        message,
                        &mut report,
                    )
                    .await;
                }
            }
            _ => {
                let host = self.config.host.clone();
                let tls = match self.config.tls {
                    RelayTls::None => session::TlsMode::Plain,
                    RelayTls::Starttls => session::TlsMode::StartTls,
                    RelayTls::Tls => session::TlsMode::Implicit,
                };
                let s = session::Session {
                    mailer: self,
                    host: &host,
                    addr: None,
                    tls,
                };
                if let Err(f) = s
                    .run(&delivery.envelope_from, rcpts, message, &mut report)
                    .await
                {
                    report.fail_all(rcpts, &as_temporary(f));
                }
            }
        }
        report
    }

    async fn send_mx(
        &self,
        resolver: &dyn MxResolver,
        domain: &str,
        rcpts: &[Address],
        delivery: &Delivery,
        message: &[u8],
        report: &mut DeliveryReport,
    ) {
        if mx::is_special_use(domain) {
            let f = DeliveryFailure::new(FailureKind::NoRoute, "special-use domain");
            return report.fail_all(rcpts, &f);
        }
        let answer =
            match tokio::time::timeout(self.config.dns_timeout, resolver.lookup_mx(domain)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    return report.fail_all(rcpts, &DeliveryFailure::new(FailureKind::Dns, e));
                }
                Err(_) => {
                    let f = DeliveryFailure::new(FailureKind::Dns, "MX lookup timed out");
                    return report.fail_all(rcpts, &f);
                }
            };
        let hosts = match mx::route(domain, &answer) {
            Ok(h) => h,
            Err(why) => {
                let f = DeliveryFailure::new(FailureKind::NoRoute, format!("{why:?}"));
                return report.fail_all(rcpts, &f);
            }
        };
        let mut last = DeliveryFailure::new(FailureKind::Connection, "no MX host reachable");
        let mut refused = 0;
        let hosts: Vec<String> = hosts.into_iter().take(MAX_MX_HOSTS).collect();
        for host in &hosts {
            let addrs = match self.addresses(resolver, host).await {
                Ok(a) if a.is_empty() => {
                    refused += 1;
                    continue;
                }
                Ok(a) => a,
                Err(f) => {
                    last = f;
                    continue;
                }
            };
            for addr in addrs.into_iter().take(MAX_ADDRESSES_PER_HOST) {
                let s = session::Session {
                    mailer: self,
                    host,
                    addr: Some(addr),
                    tls: session::TlsMode::Opportunistic,
                };
                match s.run(&delivery.envelope_from, rcpts, message, report).await {
                    Ok(()) => return,
                    Err(f) => {
                        tracing::debug!(failure = %f, "MX host failed, trying the next");
                        last = f;
                    }
                }
            }
        }
        if refused == hosts.len() {
            let why = format!("{:?}", mx::NoRoute::PrivateAddress);
            return report.fail_all(rcpts, &DeliveryFailure::new(FailureKind::NoRoute, why));
        }
        report.fail_all(rcpts, &as_temporary(last));
    }

    /// The addresses `host` may be contacted at (empty when it has none
    /// or only refused ones); a lookup failure is temporary.
    async fn addresses(
        &self,
        resolver: &dyn MxResolver,
        host: &str,
    ) -> Result<Vec<std::net::IpAddr>, DeliveryFailure> {
        let timeout = self.config.dns_timeout;
        match tokio::time::timeout(timeout, resolver.lookup_ip(host)).await {
            Ok(Ok(ips)) => Ok(mx::permitted_addresses(ips, self.config.allow_private_mx)),
            Ok(Err(e)) => Err(DeliveryFailure::new(FailureKind::Dns, e)),
            Err(_) => Err(DeliveryFailure::new(
                FailureKind::Dns,
                "address lookup timed out",
            )),
        }
    }
}

/// A host-level failure before any recipient was settled is retried, even
/// after a 5xx greeting: the next attempt may find a working host.
fn as_temporary(mut f: DeliveryFailure) -> DeliveryFailure {
    if !f.kind.is_temporary() {
        f.kind = FailureKind::Deferred;
    }
    f
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn report_result_folds_recipients() {
        let a: Address = "a@x.example".parse().unwrap();
        let b: Address = "b@x.example".parse().unwrap();
        let rej = DeliveryFailure::new(FailureKind::Rejected, "550");
        let tmp = DeliveryFailure::new(FailureKind::Deferred, "450");
        let mut r = DeliveryReport::default();
        assert!(
            matches!(r.result(), DeliveryResult::Failed(f) if f.kind == FailureKind::NoRecipients)
        );
        r.fail(a.clone(), rej.clone());
        assert_eq!(r.result(), DeliveryResult::Failed(rej.clone()));
        r.delivered.push(b.clone());
        assert_eq!(r.result(), DeliveryResult::Delivered);
        r.fail(b, tmp.clone());
        assert_eq!(r.result(), DeliveryResult::Retry(tmp));
        assert_eq!(as_temporary(rej).kind, FailureKind::Deferred);
    }
}
