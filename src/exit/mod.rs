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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mimix_settings::{Checked, check, days, duration, hours, minutes, path, printable_ascii, size};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::queue::{Caps, Retry};
use crate::store::Store;
use blocklist::{Blocklist, BlocklistError};
use limit::{RateLimitConfig, RateLimiter};
use mx::MxResolver;
use news::{News, NewsConfig, Post};
use nntp::NntpError;
use policy::{Policy, PolicyConfig};
use reassembly::ReassemblyConfig;
use smtp::{DeliveryFailure, FailureKind, Mailer, SmtpConfig, SmtpError, SmtpMode};

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

/// `[exit]`: everything an exit node needs (used only with
/// `node.smtp_exit = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitConfig {
    /// File of blocked destination addresses; a missing file blocks
    /// nothing. Empty: no blocklist (the node's configuration fills in
    /// `<data_dir>/blocklist.txt`).
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub blocklist: PathBuf,
    /// Where to report abuse (an address or a URL, printable ASCII),
    /// published as `Abuse:` in our remailer-conf and added to every
    /// mail's `Comments:`. Default: the envelope sender of `[exit.policy]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abuse_contact: Option<String>,
    /// `[exit.policy]`: header rewriting and limits.
    pub policy: PolicyConfig,
    /// `[exit.smtp]`: how mail leaves the exit.
    pub smtp: SmtpConfig,
    /// `[exit.retry]`: retries of temporarily failed deliveries, and how
    /// many run at once.
    pub retry: MailRetryConfig,
    /// `[exit.reassembly]`: incomplete multi-chunk messages.
    pub reassembly: ReassemblyConfig,
    /// Largest payload a compressed one may inflate to; larger ones are
    /// refused ([`gzip`]).
    #[serde(with = "size")]
    pub max_decompressed_size: usize,
    /// `[exit.news]`: Usenet posting.
    pub news: NewsConfig,
    /// `[exit.rate_limit]`: deliveries per recipient address and domain
    /// per day.
    pub rate_limit: RateLimitConfig,
}

impl Default for ExitConfig {
    fn default() -> Self {
        Self {
            blocklist: PathBuf::new(),
            abuse_contact: None,
            policy: PolicyConfig::default(),
            smtp: SmtpConfig::default(),
            retry: MailRetryConfig::default(),
            reassembly: ReassemblyConfig::default(),
            max_decompressed_size: gzip::DEFAULT_LIMIT,
            news: NewsConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// Longest `abuse_contact`.
const MAX_ABUSE_CONTACT: usize = 200;

impl ExitConfig {
    /// The abuse contact in effect: `abuse_contact`, else the envelope
    /// sender (the address bounces go to, which the operator reads).
    pub fn abuse_contact(&self) -> String {
        match &self.abuse_contact {
            Some(c) => c.clone(),
            None => Policy::new(&self.policy)
                .map(|p| p.envelope_from().to_string())
                .unwrap_or_default(),
        }
    }

    /// The contact a node publishes (remailer-conf `Abuse:`,
    /// `/blockme.txt`): an exit's [`ExitConfig::abuse_contact`], a middle
    /// node's only if configured.
    pub fn published_contact(&self, exit: bool) -> Option<String> {
        match exit {
            true => Some(self.abuse_contact()).filter(|c| !c.is_empty()),
            false => self.abuse_contact.clone(),
        }
    }

    /// Checks the settings without touching files or the network; fields
    /// are named relative to the table.
    pub fn validate(&self) -> Checked {
        let n = self.max_decompressed_size;
        check(
            (gzip::MIN_LIMIT..=gzip::DEFAULT_LIMIT).contains(&n),
            "max_decompressed_size",
            || {
                format!(
                    "must be {} to {}, got {n}",
                    gzip::MIN_LIMIT,
                    gzip::DEFAULT_LIMIT
                )
            },
        )?;
        self.news.validate().map_err(|e| e.within("news"))?;
        if let Some(c) = &self.abuse_contact {
            let ok =
                printable_ascii(c) && (1..=MAX_ABUSE_CONTACT).contains(&c.len()) && c.trim() == c;
            check(ok, "abuse_contact", || {
                format!(
                    "must be 1 to {MAX_ABUSE_CONTACT} printable ASCII characters \
                     without leading or trailing spaces"
                )
            })?;
        }
        self.rate_limit
            .validate()
            .map_err(|e| e.within("rate_limit"))?;
        self.policy.validate().map_err(|e| e.within("policy"))?;
        self.smtp.validate().map_err(|e| e.within("smtp"))?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.reassembly
            .validate()
            .map_err(|e| e.within("reassembly"))
    }
}

/// `[exit.retry]`: deliveries that failed temporarily are retried after
/// `initial`, then after twice as long each time, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailRetryConfig {
    /// Wait before the first retry; doubled after each failure.
    #[serde(with = "duration")]
    pub initial: Duration,
    /// Longest wait between retries.
    #[serde(with = "duration")]
    pub max: Duration,
    /// A message still undelivered this long after it was queued is
    /// dropped.
    #[serde(with = "duration")]
    pub give_up_after: Duration,
    /// Most deliveries in progress at once.
    pub concurrency: usize,
    /// Most deliveries in progress to one destination (the relay, or in MX
    /// mode one recipient domain), so a slow domain holds only its own
    /// share.
    pub per_destination: usize,
    /// Most messages in the mail queue: at this many, new packets are
    /// refused (503 with Retry-After) before any work is done on them.
    pub max_queued: u64,
    /// Most bytes in the mail queue, the same way.
    #[serde(with = "size")]
    pub max_queued_bytes: u64,
}

impl Default for MailRetryConfig {
    fn default() -> Self {
        Self {
            initial: minutes(5),
            max: hours(6),
            give_up_after: days(5),
            concurrency: 8,
            per_destination: 2,
            max_queued: 2_000,
            max_queued_bytes: 256 * 1024 * 1024,
        }
    }
}

impl MailRetryConfig {
    /// The queue worker's backoff.
    pub fn retry(&self) -> Retry {
        Retry {
            initial: self.initial,
            max: self.max,
            give_up_after: self.give_up_after,
        }
    }

    /// The queue worker's caps.
    pub fn caps(&self) -> Caps {
        Caps {
            concurrency: self.concurrency,
            per_destination: self.per_destination,
        }
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        self.retry().validate(["initial", "max", "give_up_after"])?;
        self.caps().validate(["concurrency", "per_destination"])?;
        check(self.max_queued >= 1, "max_queued", || {
            "must be at least 1".into()
        })?;
        check(
            self.max_queued_bytes >= crate::pool::MIN_CAP_BYTES,
            "max_queued_bytes",
            || format!("must be at least {} bytes", crate::pool::MIN_CAP_BYTES),
        )
    }

    /// Whether a mail queue holding `held` is full.
    pub fn full(&self, held: crate::store::Area) -> bool {
        held.count >= self.max_queued || held.bytes >= self.max_queued_bytes
    }
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
