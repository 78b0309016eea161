//! Per-destination rate limit: at most so many deliveries per recipient
//! address and per recipient domain per day (UTC epoch days, by the
//! injected clock), so that nobody can turn the exit into a mail cannon
//! aimed at one person or one provider.
//!
//! A recipient over a limit is dropped and counted, never bounced; the
//! other recipients of the message still get it, and a message left with
//! none is dropped. A delivery counts when the exit first prepares the
//! message (after the header policy and the blocklist, before SMTP), so a
//! retry of a deferred delivery does not count again, and a crash between
//! counting and sending only ever over-counts.
//!
//! The counters live in the store ([`Store::rate_admit`]): durable across
//! restarts, kept only as keyed hashes, deleted day by day, and at most
//! `max_tracked` of them per day; when the table is full, recipients that
//! have no counter yet are refused (fail closed) until the next day.

use std::sync::Arc;

use mimix_settings::{Checked, check};
use serde::{Deserialize, Serialize};

use super::Delivery;
use crate::clock::Clock;
use crate::store::{RateLimits, Store, StoreError, Verdict};

/// Largest `max_tracked` accepted.
const MAX_TRACKED: u64 = 10_000_000;

/// `[exit.rate_limit]`: deliveries per recipient address and domain per
/// day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Most deliveries to one recipient address per day; 0: no limit.
    pub per_address: u32,
    /// Most deliveries to one recipient domain per day (each recipient at
    /// the domain counts); 0: no limit.
    pub per_domain: u32,
    /// Most counters (addresses and domains) kept for one day; recipients
    /// without a counter yet are refused once it is reached.
    pub max_tracked: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_address: 20,
            per_domain: 200,
            max_tracked: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.per_address > 0 || self.per_domain > 0
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(
            (1..=MAX_TRACKED).contains(&self.max_tracked),
            "max_tracked",
            || format!("must be 1 to {MAX_TRACKED}, got {}", self.max_tracked),
        )
    }

    fn limits(&self) -> RateLimits {
        RateLimits {
            per_address: self.per_address,
            per_domain: self.per_domain,
            max_entries: self.max_tracked,
        }
    }
}

/// What [`RateLimiter::apply`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limited {
    /// Recipients over their address or domain limit.
    pub over_limit: usize,
    /// Recipients refused because the day's table is full.
    pub table_full: usize,
}

impl Limited {
    /// All recipients dropped.
    pub fn total(&self) -> usize {
        self.over_limit + self.table_full
    }
}

/// The rate limiter: the limits, the store holding the counters and the
/// clock saying which day it is.
pub struct RateLimiter {
    limits: RateLimits,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter counting in `store`, or `None` when `config` turns every
    /// limit off.
    pub fn new(config: &RateLimitConfig, store: Store, clock: Arc<dyn Clock>) -> Option<Self> {
        config.enabled().then(|| Self {
            limits: config.limits(),
            store,
            clock,
        })
    }

    /// Counts the recipients of `delivery` against today's limits and
    /// removes those over them (blocking: one synced store write).
    pub fn apply<R: rand::CryptoRng + ?Sized>(
        &self,
        delivery: &mut Delivery,
        rng: &mut R,
    ) -> Result<Limited, StoreError> {
        let day = self.clock.epoch_day();
        let recipients: Vec<&str> = delivery.envelope_to.iter().map(AsRef::as_ref).collect();
        let verdicts = self.store.rate_admit(day, &recipients, &self.limits, rng)?;
        let mut limited = Limited::default();
        let mut verdict = verdicts.iter();
        delivery.envelope_to.retain(|_| match verdict.next() {
            Some(Verdict::Admitted) => true,
            Some(Verdict::OverAddress | Verdict::OverDomain) => {
                limited.over_limit += 1;
                false
            }
            Some(Verdict::TableFull) | None => {
                limited.table_full += 1;
                false
            }
        });
        Ok(limited)
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
