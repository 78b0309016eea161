//! The node's start and stop lines, at info: what an operator reading the
//! log (or the journal) wants to know about a run.
//!
//! ```text
//! mimix node started: "alpha", a middle node; pool every 15m keeping 45, sending at most 65%; key valid 2026-12-01 to 2027-08-28, next key on 2027-07-31
//! mimix node stopped after 3h 12m: 1520 packets in, 1498 out, 0 mails delivered
//! ```
//!
//! No address is logged (`mimix address` and `mimix status` show ours),
//! and the counts are totals since the start: nothing identifies a
//! message.

use std::time::{Duration, SystemTime};

use mimix_packet::conf::epoch_day_to_date;

use super::Shared;
use crate::keystore::{advertised_key, next_key_day};
use crate::store::counter;
use crate::transport::TransportKind;

/// The counters the stop line reports, by name.
const REPORTED: [&str; 3] = [
    counter::ACCEPTED,
    counter::OUTBOUND_DELIVERED,
    counter::MAIL_DELIVERED,
];

/// When the node started and its counters then.
#[derive(Debug, Clone)]
pub(super) struct Baseline {
    at: SystemTime,
    counts: [u64; 3],
}

impl Baseline {
    /// The node's time and counters now.
    pub fn now(shared: &Shared) -> Self {
        Self {
            at: shared.clock.now(),
            counts: counts(shared),
        }
    }
}

/// The reported counters' totals, those not yet flushed included.
fn counts(shared: &Shared) -> [u64; 3] {
    let pending = shared.tally.pending();
    REPORTED.map(|name| {
        let stored = shared.store.counter(name).unwrap_or(0);
        stored.saturating_add(pending.get(name).copied().unwrap_or(0))
    })
}

/// The start line.
pub(super) fn start_line(shared: &Shared) -> String {
    let c = &shared.config;
    let role = match c.node.smtp_exit {
        true => "an exit node",
        false => "a middle node",
    };
    let transport = match c.transport.kind {
        TransportKind::Tor => "",
        TransportKind::Direct => " (direct transport: no Tor)",
    };
    let pool = format!(
        "pool every {} keeping {}, sending at most {}%",
        mimix_settings::duration::format(c.pool.interval),
        c.pool.min,
        (c.pool.rate * 100.0).round()
    );
    format!(
        "mimix node started: {:?}, {role}{transport}; {pool}; {}",
        c.node.name,
        key_validity(shared)
    )
}

/// The advertised key's validity and the day of the next key.
fn key_validity(shared: &Shared) -> String {
    let today = shared.clock.epoch_day();
    let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner());
    let metas = keys.metas();
    let next = next_key_day(&metas, today, shared.config.keys.renew_before_days());
    match advertised_key(&metas, today) {
        Some(k) => format!(
            "key valid {} to {}, next key on {}",
            epoch_day_to_date(k.valid_from),
            epoch_day_to_date(k.valid_to),
            epoch_day_to_date(next)
        ),
        None => "no valid key".into(),
    }
}

/// The stop line, given the baseline taken at start.
pub(super) fn stop_line(shared: &Shared, start: &Baseline) -> String {
    let up = shared
        .clock
        .now()
        .duration_since(start.at)
        .unwrap_or_default();
    let now = counts(shared);
    let [inb, out, mail] = [0, 1, 2].map(|i| now[i].saturating_sub(start.counts[i]));
    format!(
        "mimix node stopped after {}: {inb} packets in, {out} out, {mail} mails delivered",
        uptime(up)
    )
}

/// An uptime in words, to the second below an hour.
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let whole = Duration::from_secs(match s {
        0..3600 => s,
        3600..86400 => s - s % 60,
        _ => s - s % 3600,
    });
    humantime::format_duration(whole).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_as_words() {
        assert_eq!(uptime(Duration::from_millis(12_400)), "12s");
        assert_eq!(
            uptime(Duration::from_secs(3 * 3600 + 12 * 60 + 5)),
            "3h 12m"
        );
        assert_eq!(uptime(Duration::from_secs(2 * 86400 + 3700)), "2days 1h");
    }
}
