//! The pinger: every known remailer is pinged through itself and back.
//!
//! A ping is a two-hop packet: the remailer under test, then this node as
//! the exit, with exit type dummy and a fresh random message ID. To the
//! remailer it is a packet like any other (a dummy for a next hop it
//! knows). The node remembers the message ID ([`Ping`], in the store, until
//! [`PingerConfig::timeout`]); when a dummy exit packet with that ID comes
//! back through the node's own intake, the round trip is recorded in the
//! remailer's statistics and the packet is discarded like any dummy. A ping
//! that has not come back within the timeout counts as lost (the statistics
//! leave pings in flight out, so a slow remailer is not counted down
//! early). Pings leave at random times: each remailer's next ping is drawn
//! from an exponential distribution with mean [`PingerConfig::interval`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mimix_packet::build::{ExitParams, build_packet};
use mimix_packet::{BuildError, ExitType, Hop, Packet};
use mimix_settings::{Checked, check, duration, hours, minutes, positive};
use rand::CryptoRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

use super::Directory;
use super::stats::MAX_HISTORY_DAYS;
use crate::store::{Store, StoreError};

/// What a ping carries (encrypted to the exit, which is us).
const PING_PAYLOAD: &[u8] = mimix_packet::build::DUMMY_PAYLOAD;

/// `[pinger]`: measuring the known remailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingerConfig {
    /// Whether the node pings at all.
    pub enabled: bool,
    /// Mean time between two pings through one remailer (the actual gaps
    /// are random).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A ping not back within this long is lost.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Days of history kept and published, 1 to 31.
    pub history_days: u16,
}

impl Default for PingerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: hours(2),
            timeout: hours(12),
            history_days: super::stats::DEFAULT_HISTORY_DAYS,
        }
    }
}

impl PingerConfig {
    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(self.interval >= Duration::from_secs(1), "interval", || {
            "must be at least 1s".into()
        })?;
        positive(self.timeout, "timeout")?;
        check(self.timeout <= minutes(60 * 24 * 7), "timeout", || {
            "must be at most 7d".into()
        })?;
        check(
            (1..=MAX_HISTORY_DAYS).contains(&self.history_days),
            "history_days",
            || format!("must be 1 to {MAX_HISTORY_DAYS}, got {}", self.history_days),
        )
    }

    /// A random gap until the next ping through one remailer.
    pub fn next_gap<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Duration {
        let mean = self.interval.as_secs_f64().max(1.0);
        let gap = Exp::new(1.0 / mean).map_or(mean, |e| e.sample(rng));
        // A gap of more than ten means is a draw far in the tail.
        Duration::from_secs_f64(gap.min(10.0 * mean))
    }
}

/// A ping in flight, stored under its message ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The remailer pinged.
    pub address: String,
    /// When it left (Unix seconds).
    pub sent_at: u64,
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Builds a ping through `through` back to `us`; returns its message ID
/// and the packet to post to `through`.
pub fn build_ping<R: CryptoRng + ?Sized>(
    rng: &mut R,
    through: &Hop,
    us: &Hop,
    today: u64,
) -> Result<([u8; 16], Packet), BuildError> {
    let mut msg_id = [0u8; 16];
    rng.fill_bytes(&mut msg_id);
    let exit = ExitParams {
        chunk: 1,
        chunks: 1,
        msg_id,
        exit_type: ExitType::Dummy,
    };
    let chain = [through.clone(), us.clone()];
    let packet = build_packet(rng, &chain, &exit, PING_PAYLOAD, today)?;
    Ok((msg_id, packet))
}

/// Records a ping sent through `address` at `now` (blocking): stored until
/// the timeout, and counted in the remailer's statistics.
pub fn sent(
    dir: &Directory,
    config: &PingerConfig,
    msg_id: &[u8; 16],
    address: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    let ping = Ping {
        address: address.to_owned(),
        sent_at: unix(now),
    };
    dir.store().ping_put(msg_id, now + config.timeout, &ping)?;
    dir.record_stats(address, |s, cfg| s.record_sent(unix(now), cfg))
}

/// If `msg_id` is a ping of ours, takes it and records its return at `now`
/// (blocking). Returns the remailer and the round-trip time.
pub fn returned(
    dir: &Directory,
    msg_id: &[u8; 16],
    now: SystemTime,
) -> Result<Option<(String, Duration)>, StoreError> {
    let Some(ping) = dir.store().ping_take::<Ping>(msg_id)? else {
        return Ok(None);
    };
    let now = unix(now);
    dir.record_stats(&ping.address, |s, cfg| {
        s.record_returned(ping.sent_at, now, cfg);
    })?;
    let rtt = Duration::from_secs(now.saturating_sub(ping.sent_at));
    Ok(Some((ping.address, rtt)))
}

/// Forgets pings whose timeout passed at `now` (blocking); they stay
/// counted as sent and not returned: lost. Returns how many.
pub fn expire(store: &Store, now: SystemTime) -> Result<usize, StoreError> {
    Ok(store.pings_expire::<Ping>(now)?.len())
}

/// Pings in flight per remailer (sent and not yet timed out) at `now`
/// (Unix seconds); read errors count as none in flight.
pub fn in_flight(store: &Store, _now: u64) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for ping in store.pings::<Ping>().unwrap_or_default() {
        *out.entry(ping.address).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn gaps_are_random_with_the_configured_mean() {
        let config = PingerConfig {
            interval: Duration::from_secs(3600),
            ..PingerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(9);
        let n = 20_000;
        let gaps: Vec<f64> = (0..n)
            .map(|_| config.next_gap(&mut rng).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / f64::from(n);
        assert!((mean - 3600.0).abs() < 100.0, "mean {mean}");
        // Exponential: the standard deviation is the mean, so pings never
        // fall into lockstep.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / f64::from(n);
        assert!((var.sqrt() / mean - 1.0).abs() < 0.1, "sd {}", var.sqrt());
        assert!(gaps.iter().all(|g| *g <= 36_000.0));
    }

    #[test]
    fn settings_are_checked() {
        assert!(PingerConfig::default().validate().is_ok());
        let bad = PingerConfig {
            history_days: 0,
            ..PingerConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "history_days");
    }
}
