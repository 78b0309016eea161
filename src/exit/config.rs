//! The exit's settings: `[exit]` and `[exit.retry]` (the tables under
//! them live with their modules: policy, smtp, reassembly, news, rate
//! limit).

use std::path::PathBuf;
use std::time::Duration;

use mimix_settings::{Checked, check, days, duration, hours, minutes, path, printable_ascii, size};
use serde::{Deserialize, Serialize};

use super::gzip;
use super::limit::RateLimitConfig;
use super::news::NewsConfig;
use super::policy::{Policy, PolicyConfig};
use super::reassembly::ReassemblyConfig;
use super::smtp::SmtpConfig;
use crate::queue::{Caps, Limit, Retry};

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
        self.limit().validate(["max_queued", "max_queued_bytes"])
    }

    /// The queue's caps.
    pub fn limit(&self) -> Limit {
        Limit {
            count: self.max_queued,
            bytes: self.max_queued_bytes,
        }
    }

    /// Whether a mail queue holding `held` is full.
    pub fn full(&self, held: crate::store::Area) -> bool {
        self.limit().full(held)
    }
}
