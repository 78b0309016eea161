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

pub mod blocklist;
pub mod delivery;
pub mod mx;
pub mod policy;
pub mod reassembly;
pub mod smtp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::clock::Clock;
use blocklist::{Blocklist, BlocklistError};
use mx::MxResolver;
use policy::{Policy, PolicyConfig, PolicyError};
use smtp::{DeliveryFailure, FailureKind, Mailer, SmtpConfig, SmtpError};

pub use delivery::Delivery;
pub use smtp::DeliveryResult;

/// Errors setting up the exit.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
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

/// Exit delivery settings (the `[exit]` table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitConfig {
    /// Header policy (`[exit.policy]`).
    pub policy: PolicyConfig,
    /// SMTP delivery (`[exit.smtp]`).
    pub smtp: SmtpConfig,
    /// Destination blocklist file; `None` (default): nothing is blocked.
    /// A configured but missing file is an empty list.
    pub blocklist: Option<PathBuf>,
}

impl ExitConfig {
    /// Checks the settings without touching files or the network.
    pub fn validate(&self) -> Result<(), ExitError> {
        self.policy.validate()?;
        self.smtp.validate()?;
        Ok(())
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
        let blocklist = config.blocklist.as_ref().map(Blocklist::load).transpose()?;
        Ok(Self {
            policy,
            blocklist,
            mailer,
            clock,
            counters: Counters::default(),
        })
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
            tracing::debug!(failure = %f, detail = %f.detail, "exit: recipient failed");
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

    /// Removes blocked recipients; returns how many.
    fn drop_blocked(&self, delivery: &mut Delivery) -> usize {
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
