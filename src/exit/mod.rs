//! Exit: the last hop of a message: reassembly of chunks and delivery.
//!
//! [`reassembly`] turns exit chunks into complete payloads in the mail
//! queue. For each queued payload the node then calls [`Exit::prepare`]
//! (header policy, [`policy`], then the destination blocklist,
//! [`blocklist`]) and [`Exit::deliver`] (SMTP, [`smtp`], with MX routing in
//! [`mx`]).
//!
//! Nothing is ever bounced to the anonymous sender: a payload the policy
//! refuses, a blocked recipient and a permanent SMTP failure are dropped
//! and counted. Temporary failures come back as [`DeliveryResult::Retry`]
//! for the mail queue to retry with backoff.

pub mod address;
pub mod blocklist;
pub mod delivery;
mod error;
pub mod mx;
pub mod policy;
pub mod reassembly;
pub mod smtp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mimix_settings::{Checked, days, duration, hours, minutes, path};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::queue::{Caps, Retry};
use blocklist::{Blocklist, BlocklistError};
use mx::MxResolver;
use policy::{Policy, PolicyConfig};
use reassembly::ReassemblyConfig;
use smtp::{DeliveryFailure, FailureKind, Mailer, SmtpConfig, SmtpError, SmtpMode};

pub use delivery::Delivery;
pub use error::PolicyError;
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
    /// The blocklist could not be loaded.
    #[error("exit blocklist: {0}")]
    Blocklist(#[from] BlocklistError),
}

/// `[exit]`: everything an exit node needs (used only with
/// `node.smtp_exit = true`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitConfig {
    /// File of blocked destination addresses; a missing file blocks
    /// nothing. Empty: no blocklist (the node's configuration fills in
    /// `<data_dir>/blocklist.txt`).
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub blocklist: PathBuf,
    /// `[exit.policy]`: header rewriting and limits.
    pub policy: PolicyConfig,
    /// `[exit.smtp]`: how mail leaves the exit.
    pub smtp: SmtpConfig,
    /// `[exit.retry]`: retries of temporarily failed deliveries, and how
    /// many run at once.
    pub retry: MailRetryConfig,
    /// `[exit.reassembly]`: incomplete multi-chunk messages.
    pub reassembly: ReassemblyConfig,
}

impl ExitConfig {
    /// Checks the settings without touching files or the network; fields
    /// are named relative to the table.
    pub fn validate(&self) -> Checked {
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
}

impl Default for MailRetryConfig {
    fn default() -> Self {
        Self {
            initial: minutes(5),
            max: hours(6),
            give_up_after: days(5),
            concurrency: 8,
            per_destination: 2,
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
        self.caps().validate(["concurrency", "per_destination"])
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
}

#[derive(Debug, Default)]
struct Counters {
    rejected: AtomicU64,
    blocked_recipients: AtomicU64,
    delivered_recipients: AtomicU64,
    failed_recipients: AtomicU64,
    deferred_recipients: AtomicU64,
}

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// The exit's delivery side: policy, blocklist and SMTP.
pub struct Exit {
    policy: Policy,
    blocklist: Option<Blocklist>,
    mailer: Mailer,
    clock: Arc<dyn Clock>,
    counters: Counters,
    /// The relay host, in relay mode.
    relay: Option<String>,
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exit")
            .field("mailer", &self.mailer)
            .field("blocklist", &self.blocklist.as_ref().map(Blocklist::path))
            .finish_non_exhaustive()
    }
}

impl Exit {
    /// Builds the exit from `config` (MX mode uses the system resolver).
    pub fn new(config: &ExitConfig, clock: Arc<dyn Clock>) -> Result<Self, ExitError> {
        let policy = Policy::new(&config.policy)?;
        let mailer = Mailer::new(&config.smtp, policy.domain())?;
        Self::assemble(config, policy, mailer, clock)
    }

    /// Like [`Exit::new`] with the given MX resolver.
    pub fn with_resolver(
        config: &ExitConfig,
        clock: Arc<dyn Clock>,
        resolver: Arc<dyn MxResolver>,
    ) -> Result<Self, ExitError> {
        let policy = Policy::new(&config.policy)?;
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
            mailer,
            clock,
            counters: Counters::default(),
            relay,
        })
    }

    /// The destination a message queued for `domain` (its first
    /// recipient's domain, see [`address::first_recipient_domain`]) is
    /// delivered to, the key of the mail queue's per-destination cap: the
    /// relay in relay mode, else the domain itself.
    pub fn destination(&self, domain: &str) -> String {
        match &self.relay {
            Some(host) => host.clone(),
            None => domain.to_owned(),
        }
    }

    /// Applies the header policy and the blocklist to a reassembled
    /// payload. An `Err` means: drop the payload (it is counted here).
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
                    Err(PolicyError::AllRecipientsBlocked(blocked))
                } else {
                    Ok(d)
                }
            });
        if let Err(e) = &result {
            bump(&self.counters.rejected, 1);
            tracing::debug!(reason = %e, "exit: payload dropped");
        }
        result
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
