//! Exit: the last hop of a message: reassembly of chunks and delivery.
//!
//! [`reassembly`] turns exit chunks into complete payloads in the mail
//! queue. For each queued payload the node then calls [`Exit::prepare`]
//! (header policy, [`policy`], then the destination blocklist,
//! [`blocklist`], then the per-destination rate limit, [`limit`]) and
//! [`Exit::deliver`] (SMTP, [`smtp`], with MX routing in [`mx`]).
//! [`optout`] is how recipients get onto the blocklist (`/blockme.txt`,
//! `mimix block`); the operator's abuse contact ([`ExitConfig::abuse_contact`])
//! is published in our remailer-conf and in every mail's `Comments:`.
//!
//! [`Exit::prepare_outgoing`] is the whole way in: a compressed payload is
//! inflated first ([`gzip`]), and with Usenet posting on a post goes
//! through the news policy ([`news`]) instead, to a mail2news gateway or
//! to a news server ([`nntp`], [`Exit::post`]).
//!
//! Nothing is ever bounced to the anonymous sender: a payload the policy
//! refuses, a blocked or rate-limited recipient and a permanent SMTP
//! failure are dropped and counted. Temporary failures come back as [`DeliveryResult::Retry`]
//! for the mail queue to retry with backoff.

pub mod address;
pub mod blocklist;
mod config;
pub mod delivery;
mod error;
pub mod gzip;
pub mod limit;
pub mod mx;
pub mod news;
pub mod nntp;
pub mod optout;
pub mod outgoing;
pub mod policy;
pub mod reassembly;
pub mod smtp;
pub mod watched;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Clock;
use crate::store::Store;
use blocklist::{Blocklist, BlocklistError};
use limit::{RateLimitConfig, RateLimiter};
use mx::MxResolver;
use news::{News, Post};
use nntp::NntpError;
use policy::Policy;
use smtp::{DeliveryFailure, FailureKind, Mailer, SmtpError, SmtpMode};

pub use config::{ExitConfig, MailRetryConfig};
pub use delivery::Delivery;
pub use error::PolicyError;
pub use outgoing::Outgoing;
pub use smtp::DeliveryResult;

/// Errors setting up the exit.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// The settings are invalid.
    #[error("exit: {0}")]
    Config(#[from] mimix_settings::Invalid),
    /// The header policy settings are invalid.
    #[error("exit policy: {0}")]
    Policy(#[from] PolicyError),
    /// The SMTP settings are invalid.
    #[error("exit smtp: {0}")]
    Smtp(#[from] SmtpError),
    /// The blocklist (or the newsgroup blocklist) could not be loaded.
    #[error("exit blocklist: {0}")]
    Blocklist(#[from] BlocklistError),
    /// The NNTP settings are invalid or the password file unreadable.
    #[error("exit news: {0}")]
    Nntp(#[from] NntpError),
}

/// Counts kept by the exit since start (the mail queue counts messages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Payloads refused by the header policy or with every recipient
    /// blocked.
    pub rejected: u64,
    /// Recipients dropped because they are on the blocklist.
    pub blocked_recipients: u64,
    /// Recipients whose server accepted a message.
    pub delivered_recipients: u64,
    /// Recipients given up on after a permanent failure.
    pub failed_recipients: u64,
    /// Recipients deferred for a later attempt.
    pub deferred_recipients: u64,
    /// Recipients dropped because their address or domain had its
    /// deliveries for the day.
    pub rate_limited_recipients: u64,
    /// Recipients dropped because the day's rate-limit table was full.
    pub rate_table_full: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rejected: AtomicU64,
    blocked_recipients: AtomicU64,
    delivered_recipients: AtomicU64,
    failed_recipients: AtomicU64,
    deferred_recipients: AtomicU64,
    rate_limited_recipients: AtomicU64,
    rate_table_full: AtomicU64,
}

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// The exit's delivery side: policy, blocklist and SMTP.
pub struct Exit {
    policy: Policy,
    blocklist: Option<Blocklist>,
    rate_limit: RateLimitConfig,
    limiter: Option<RateLimiter>,
    mailer: Mailer,
    clock: Arc<dyn Clock>,
    counters: Counters,
    /// The relay host, in relay mode.
    relay: Option<String>,
    /// Usenet posting, when on.
    news: Option<News>,
    /// [`ExitConfig::max_decompressed_size`].
    inflate_limit: usize,
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exit")
            .field("mailer", &self.mailer)
            .field("blocklist", &self.blocklist.as_ref().map(Blocklist::path))
            .field("news", &self.news)
            .finish_non_exhaustive()
    }
}

impl Exit {
    /// Builds the exit from `config` (MX mode uses the system resolver).
    pub fn new(config: &ExitConfig, clock: Arc<dyn Clock>) -> Result<Self, ExitError> {
        let policy = Policy::for_exit(&config.policy, &config.abuse_contact())?;
        let mailer = Mailer::new(&config.smtp, policy.domain())?;
        Self::assemble(config, policy, mailer, clock)
    }

    /// Like [`Exit::new`] with the given MX resolver.
    pub fn with_resolver(
        config: &ExitConfig,
        clock: Arc<dyn Clock>,
        resolver: Arc<dyn MxResolver>,
    ) -> Result<Self, ExitError> {
        let policy = Policy::for_exit(&config.policy, &config.abuse_contact())?;
        let mailer = Mailer::with_resolver(&config.smtp, policy.domain(), resolver)?;
        Self::assemble(config, policy, mailer, clock)
    }

    fn assemble(
        config: &ExitConfig,
        policy: Policy,
        mailer: Mailer,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ExitError> {
        config.validate()?;
        let blocklist = Some(&config.blocklist)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Blocklist::load)
            .transpose()?;
        let relay = (config.smtp.mode == SmtpMode::Relay).then(|| config.smtp.host.clone());
        Ok(Self {
            policy,
            blocklist,
            rate_limit: config.rate_limit,
            limiter: None,
            mailer,
            clock,
            counters: Counters::default(),
            relay,
            news: News::new(&config.news)?,
            inflate_limit: config.max_decompressed_size,
        })
    }

    /// Counts deliveries against `[exit.rate_limit]` in `store` (without
    /// a store, nothing is rate limited).
    pub fn with_store(mut self, store: Store) -> Self {
        self.limiter = RateLimiter::new(&self.rate_limit, store, self.clock.clone());
        self
    }

    /// The destination a message queued for `domain` (its routing hint,
    /// see [`route_hint`]) is delivered to, the key of the mail queue's
    /// per-destination cap: the relay in relay mode, else the domain
    /// itself; for a post ([`news::NEWS_HINT`]) the news server, or the
    /// gateway's domain.
    pub fn destination(&self, domain: &str) -> String {
        let gateway;
        let domain = match &self.news {
            Some(news) if domain == news::NEWS_HINT => match news.destination() {
                Ok(server) => return server,
                Err(gateway_domain) => {
                    gateway = gateway_domain;
                    &gateway
                }
            },
            _ => domain,
        };
        match &self.relay {
            Some(host) => host.clone(),
            None => domain.to_owned(),
        }
    }

    /// Everything between the mail queue and the way out: inflates a
    /// compressed payload ([`gzip`]), then polices a Usenet post with the
    /// news policy ([`news`], when posting is on) or anything else as
    /// mail ([`Exit::prepare`]). An `Err` means: drop the payload (it is
    /// counted here; [`PolicyError::counter`] names its own counter).
    pub fn prepare_outgoing<R: rand::CryptoRng + ?Sized>(
        &self,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Outgoing, PolicyError> {
        let inflated;
        let payload = if gzip::is_gzip(payload) {
            match gzip::decompress(payload, self.inflate_limit) {
                Ok(p) => {
                    inflated = p;
                    inflated.as_slice()
                }
                Err(e) => return Err(self.refused(e.into())),
            }
        } else {
            payload
        };
        match &self.news {
            Some(news) if news::is_post(payload) => news
                .prepare(&self.policy, payload, self.clock.now(), rng)
                .map_err(|e| self.refused(e)),
            _ => self.prepare(payload, rng).map(Outgoing::Mail),
        }
    }

    /// Counts a refusal and hands it back.
    fn refused(&self, e: PolicyError) -> PolicyError {
        bump(&self.counters.rejected, 1);
        tracing::debug!(reason = %e, "exit: payload dropped");
        e
    }

    /// Tries to post `post` once (to the news server; see
    /// [`News::post`]).
    pub async fn post(&self, post: &Post) -> DeliveryResult {
        match &self.news {
            Some(news) => news.post(post).await,
            None => DeliveryResult::Failed(DeliveryFailure::new(
                FailureKind::NoRoute,
                "news posting is off",
            )),
        }
    }

    /// Applies the header policy, the blocklist and the rate limit to a
    /// reassembled payload (blocking: the rate limit writes the store). An
    /// `Err` means: drop the payload (it is counted here).
    pub fn prepare<R: rand::CryptoRng + ?Sized>(
        &self,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Delivery, PolicyError> {
        let result = self
            .policy
            .apply(payload, self.clock.now(), rng)
            .and_then(|mut d| {
                let blocked = self.drop_blocked(&mut d);
                if d.envelope_to.is_empty() {
                    return Err(PolicyError::AllRecipientsBlocked(blocked));
                }
                self.rate_limit(&mut d, rng)?;
                Ok(d)
            });
        if let Err(e) = &result {
            bump(&self.counters.rejected, 1);
            tracing::debug!(reason = %e, "exit: payload dropped");
        }
        result
    }

    /// Drops the recipients of `delivery` over today's rate limits.
    fn rate_limit<R: rand::CryptoRng + ?Sized>(
        &self,
        delivery: &mut Delivery,
        rng: &mut R,
    ) -> Result<(), PolicyError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let limited = limiter.apply(delivery, rng).map_err(|e| {
            tracing::warn!("exit rate limit: {e}");
            PolicyError::RateLimitUnavailable
        })?;
        bump(&self.counters.rate_limited_recipients, limited.over_limit);
        bump(&self.counters.rate_table_full, limited.table_full);
        if delivery.envelope_to.is_empty() {
            return Err(PolicyError::AllRecipientsRateLimited(limited.total()));
        }
        Ok(())
    }

    /// Tries every recipient of `delivery` once. The blocklist is checked
    /// again first (it may have changed since [`Exit::prepare`]). On
    /// return, `delivery.envelope_to` holds only the recipients still
    /// pending, so a caller that keeps the delivery (see
    /// [`Delivery::encode`]) retries exactly those; a caller that prepares
    /// the payload again on retry also re-sends to the recipients that
    /// already got it.
    pub async fn deliver(&self, delivery: &mut Delivery) -> DeliveryResult {
        let blocked = self.drop_blocked(delivery);
        self.send_after(delivery, blocked).await
    }

    /// As [`Exit::deliver`] without checking the blocklist again: for a
    /// caller that just did ([`Exit::prepare`] or [`Exit::drop_blocked`]),
    /// off the runtime's threads.
    pub async fn send(&self, delivery: &mut Delivery) -> DeliveryResult {
        self.send_after(delivery, 0).await
    }

    /// Sends `delivery`, `blocked` of whose recipients were just dropped.
    async fn send_after(&self, delivery: &mut Delivery, blocked: usize) -> DeliveryResult {
        if delivery.envelope_to.is_empty() {
            let kind = if blocked > 0 {
                FailureKind::Blocked
            } else {
                FailureKind::NoRecipients
            };
            return DeliveryResult::Failed(DeliveryFailure::new(kind, "no deliverable recipients"));
        }
        let report = self.mailer.send(delivery).await;
        let c = &self.counters;
        bump(&c.delivered_recipients, report.delivered.len());
        bump(&c.failed_recipients, report.failed.len());
        bump(&c.deferred_recipients, report.pending.len());
        for (_, f) in &report.failed {
            let detail = crate::safelog::sensitive(&f.detail);
            tracing::debug!(failure = %f, %detail, "exit: recipient failed");
        }
        let result = report.result();
        delivery.envelope_to = report.pending.into_iter().map(|(a, _)| a).collect();
        result
    }

    /// The counts so far.
    pub fn counts(&self) -> ExitCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExitCounts {
            rejected: get(&c.rejected),
            blocked_recipients: get(&c.blocked_recipients),
            delivered_recipients: get(&c.delivered_recipients),
            failed_recipients: get(&c.failed_recipients),
            deferred_recipients: get(&c.deferred_recipients),
            rate_limited_recipients: get(&c.rate_limited_recipients),
            rate_table_full: get(&c.rate_table_full),
        }
    }

    /// Checks a prepared item again before an attempt: the recipients of
    /// mail on the blocklist are removed ([`Exit::drop_blocked`]); posts
    /// are checked before each attempt by [`Exit::post`] or, for a
    /// gateway, like mail.
    pub fn recheck(&self, out: &mut Outgoing) {
        match out {
            Outgoing::Mail(d) | Outgoing::News(d) => {
                self.drop_blocked(d);
            }
            Outgoing::Post(_) => {}
        }
    }

    /// Reads the blocklist file again now (the node does this on SIGHUP;
    /// a tool that has just written the file may call it too). Returns the
    /// number of entries in force, or `None` when this exit has no
    /// blocklist; on error the previous list stays in force. Blocking.
    pub fn reload_blocklist(&self) -> Result<Option<usize>, BlocklistError> {
        self.blocklist.as_ref().map(Blocklist::reload).transpose()
    }

    /// Removes blocked recipients (reading the blocklist file again if it
    /// changed: blocking); returns how many.
    pub fn drop_blocked(&self, delivery: &mut Delivery) -> usize {
        let Some(list) = &self.blocklist else {
            return 0;
        };
        let rules = list.rules();
        let before = delivery.envelope_to.len();
        delivery.envelope_to.retain(|a| !rules.matches(a.as_ref()));
        let blocked = before - delivery.envelope_to.len();
        bump(&self.counters.blocked_recipients, blocked);
        blocked
    }
}

/// The routing hint a complete payload is queued under (the mail queue's
/// destination, mapped to a cap key by [`Exit::destination`]): the first
/// recipient's domain ([`address::first_recipient_domain`]), or
/// [`news::NEWS_HINT`] for a post without mail recipients. The header of a
/// compressed payload is read from its first [`gzip::PEEK_LEN`] inflated
/// bytes.
pub fn route_hint(payload: &[u8]) -> String {
    let peeked;
    let payload = if gzip::is_gzip(payload) {
        peeked = gzip::peek(payload, gzip::PEEK_LEN);
        peeked.as_slice()
    } else {
        payload
    };
    let domain = address::first_recipient_domain(payload);
    if domain.is_empty() && news::is_post(payload) {
        news::NEWS_HINT.to_owned()
    } else {
        domain
    }
}

#[cfg(test)]
mod tests;
