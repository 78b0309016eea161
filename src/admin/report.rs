//! The status report: what `GET /status.json` serves and `mimix status`
//! prints. Built from the store (queue sizes, counters, key metadata, the
//! history), with the running node's live state (uptime, Tor, address)
//! added by the admin listener. A stopped node's report is built the same
//! way by the command line, from the store alone.
//!
//! The fields `running`, `pool`, `outbound`, `mail`, `partials` and
//! `counters` keep the names of the earlier `mimix status` JSON.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use mimix_packet::conf::epoch_day_to_date;
use serde::{Deserialize, Serialize};

use super::AdminError;
use super::history::{DAY, History, Sample};
use crate::clock::epoch_day;
use crate::config::Config;
use crate::keystore::{KeyMeta, advertised_key, next_key_day, recorded_keys};
use crate::store::{Store, counter};
use crate::transport::TransportKind;

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The running node's admin listener.
    Live,
    /// The store of a node that is not running.
    Store,
    /// The status file a running node writes every minute (its admin
    /// listener is off or unreachable).
    StatusFile,
}

/// How far the node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Opening its keys and transport (Tor bootstrap, onion service).
    Starting,
    /// Taking packets.
    Running,
    /// Not running.
    Stopped,
}

/// Our onion service, as far as Arti can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnionState {
    /// Building introduction points, publishing the descriptor.
    Starting,
    /// The descriptor is out.
    Published,
    /// Rebuilding lost introduction points.
    Recovering,
    /// Failed.
    Broken,
}

impl From<mimix_tor::PublishState> for OnionState {
    fn from(s: mimix_tor::PublishState) -> Self {
        use mimix_tor::PublishState as P;
        match s {
            P::Starting => Self::Starting,
            P::Published => Self::Published,
            P::Recovering => Self::Recovering,
            P::Broken => Self::Broken,
        }
    }
}

/// The embedded Tor client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorReport {
    /// Bootstrap progress, 0 to 100.
    pub bootstrap_percent: u8,
    /// Arti's words for the current step or what blocks it.
    pub bootstrap: String,
    /// Whether the client can carry traffic.
    pub ready: bool,
    /// Our onion service, once launched.
    pub onion_service: Option<OnionState>,
}

/// One of our keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    /// Hex key ID.
    pub key_id: String,
    /// First valid day, `YYYY-MM-DD`.
    pub valid_from: String,
    /// Last valid day, `YYYY-MM-DD`.
    pub valid_to: String,
    /// When it stops being valid (the end of `valid_to`), seconds since
    /// the epoch.
    pub expires_at: u64,
    /// Whether our remailer-conf advertises it today.
    pub advertised: bool,
}

/// What happened over a window (the last 24 hours, or since the oldest
/// sample of a younger history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Start of the window, seconds since the epoch.
    pub since: u64,
    /// Packets accepted.
    pub packets_in: u64,
    /// Packets delivered to their next hop.
    pub packets_out: u64,
    /// Dummies made (put in the pool).
    pub dummies_made: u64,
    /// Dummies that ended here.
    pub dummies_ended: u64,
    /// Refused packets by reason (`replay`, `header_digest`, ...); reasons
    /// with none are left out.
    pub rejects: BTreeMap<String, u64>,
    /// Messages delivered by SMTP (exit).
    pub mail_delivered: u64,
    /// Recipients whose server accepted a message (exit).
    pub recipients_delivered: u64,
    /// Messages dropped undelivered (exit).
    pub mail_dropped: u64,
    /// Messages the exit refused (header policy, every recipient blocked).
    pub exit_refused: u64,
}

impl Window {
    /// The differences from `base` to `now`.
    pub fn between(base: &Sample, now: &Sample) -> Self {
        let d = |name| now.get(name).saturating_sub(base.get(name));
        let before = base.rejects();
        let rejects = now
            .rejects()
            .into_iter()
            .map(|(reason, n)| {
                let was = before.get(&reason).copied().unwrap_or(0);
                (reason, n.saturating_sub(was))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Self {
            since: base.at,
            packets_in: d(counter::ACCEPTED),
            packets_out: d(counter::OUTBOUND_DELIVERED),
            dummies_made: d(counter::DUMMIES_POOLED),
            dummies_ended: d(counter::EXIT_DUMMIES),
            rejects,
            mail_delivered: d(counter::MAIL_DELIVERED),
            recipients_delivered: d(counter::RECIPIENTS_DELIVERED),
            mail_dropped: d(counter::MAIL_DROPPED),
            exit_refused: d(counter::EXIT_REJECTED),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether the node runs.
    pub running: bool,
    /// Where this report came from.
    pub source: Source,
    /// The mimix version that wrote it.
    pub version: String,
    /// When it was made, seconds since the epoch.
    pub now: u64,
    /// How far the node is.
    pub state: NodeState,
    /// The remailer's name.
    pub name: String,
    /// Whether it delivers mail.
    pub exit: bool,
    /// Tor or direct.
    pub transport: TransportKind,
    /// When the node started (seconds since the epoch), if it runs.
    pub started_at: Option<u64>,
    /// Seconds since it started, if it runs.
    pub uptime_secs: Option<u64>,
    /// The Tor client, if it runs with the Tor transport.
    pub tor: Option<TorReport>,
    /// Our published base URL, once known.
    pub address: Option<String>,
    /// Our keys (those in their grace period included).
    pub keys: Vec<KeyReport>,
    /// The day the next key will be made, `YYYY-MM-DD`.
    pub next_key: Option<String>,
    /// The start of that day, seconds since the epoch.
    pub next_key_at: Option<u64>,
    /// Packets in the pool.
    pub pool: u64,
    /// Packets waiting for their next hop.
    pub outbound: u64,
    /// Messages waiting for SMTP delivery.
    pub mail: u64,
    /// Incomplete multi-chunk messages.
    pub partials: u64,
    /// Every counter since the store was made.
    pub counters: BTreeMap<String, u64>,
    /// The last 24 hours, when there is a history.
    pub last_24h: Option<Window>,
}

/// Seconds since the epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StatusReport {
    /// The report of the node whose store and configuration these are,
    /// from the store alone: nothing live (uptime, Tor, address) is filled
    /// in. `history` is the counters' history (see
    /// [`History::load`]). Blocking.
    pub fn from_store(
        store: &Store,
        config: &Config,
        now: SystemTime,
        history: &History,
        source: Source,
    ) -> Result<Self, AdminError> {
        let today = epoch_day(now);
        let metas = recorded_keys(store)?;
        let next_key = next_key_day(&metas, today, config.keys.renew_before_days());
        let counters = store.counters()?;
        let live = Sample {
            at: unix_secs(now),
            pool: count(store.pool_count()?),
            counters: counters.clone(),
        };
        Ok(Self {
            running: source != Source::Store,
            source,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            now: live.at,
            state: match source {
                Source::Store => NodeState::Stopped,
                Source::Live | Source::StatusFile => NodeState::Running,
            },
            name: config.node.name.clone(),
            exit: config.node.smtp_exit,
            transport: config.transport.kind,
            started_at: None,
            uptime_secs: None,
            tor: None,
            address: config.node.address.clone(),
            keys: key_reports(&metas, today),
            next_key: Some(epoch_day_to_date(next_key)),
            next_key_at: Some(next_key.saturating_mul(86_400)),
            pool: live.pool,
            outbound: count(store.outbound_len()?),
            mail: count(store.mail_len()?),
            partials: count(store.partial_count()),
            last_24h: history
                .baseline(live.at, DAY)
                .map(|base| Window::between(base, &live)),
            counters,
        })
    }

    /// The counters and pool size as a history sample.
    pub fn sample(&self) -> Sample {
        Sample {
            at: self.now,
            pool: self.pool,
            counters: self.counters.clone(),
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn key_reports(metas: &[KeyMeta], today: u64) -> Vec<KeyReport> {
    let advertised = advertised_key(metas, today).map(|m| m.key_id.as_str());
    let mut keys: Vec<KeyReport> = metas
        .iter()
        .map(|m| KeyReport {
            key_id: m.key_id.clone(),
            valid_from: epoch_day_to_date(m.valid_from),
            valid_to: epoch_day_to_date(m.valid_to),
            expires_at: m.valid_to.saturating_add(1).saturating_mul(86_400),
            advertised: advertised == Some(m.key_id.as_str()),
        })
        .collect();
    keys.sort_by(|a, b| a.valid_from.cmp(&b.valid_from));
    keys
}
