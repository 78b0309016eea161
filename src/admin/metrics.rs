//! `GET /metrics`: the Prometheus text exposition format (0.0.4), through
//! the `prometheus` crate.
//!
//! Every series is registered when the listener starts, so a scrape lists
//! them all, at zero if nothing happened yet. The store's counters are
//! monotonic and outlive restarts; at each scrape the Prometheus counters
//! are brought up to the store's values.

use std::collections::BTreeMap;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::report::{NodeState, OnionState, StatusReport};
use crate::store::counter;

/// The media type of a scrape.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter family: its metric, help text, label, and the store counter
/// behind each label value.
struct Family {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    members: &'static [(&'static str, &'static str)],
}

/// The refusal reasons the intake counts as `rejected_<reason>` (the
/// codec's peel reasons and the node's own); a reason not listed still
/// appears once counted.
const REJECT_REASONS: &[&str] = &[
    "antitag",
    "armour",
    "from_future",
    "header_digest",
    "inner_digest",
    "malformed",
    "next_hop",
    "overloaded",
    "payload_digest",
    "rsa",
    "rsa_length",
    "rsa_plaintext_length",
    "too_old",
    "unknown_key",
];

/// Every counter family but the refusals.
const FAMILIES: &[Family] = &[
    Family {
        name: "mimix_packets_accepted_total",
        help: "Inbound packets accepted into the pool.",
        label: "",
        members: &[(counter::ACCEPTED, "")],
    },
    Family {
        name: "mimix_packets_duplicate_total",
        help: "Byte-identical copies of packets already held, answered 200 without decrypting.",
        label: "",
        members: &[(counter::DUPLICATES, "")],
    },
    Family {
        name: "mimix_packets_peeled_total",
        help: "Inbound packets that went through the peel (RSA decryption).",
        label: "",
        members: &[(counter::PEELED, "")],
    },
    Family {
        name: "mimix_dummies_pooled_total",
        help: "Dummy packets made and put in the pool.",
        label: "",
        members: &[(counter::DUMMIES_POOLED, "")],
    },
    Family {
        name: "mimix_pool_rounds_total",
        help: "Pool rounds run.",
        label: "",
        members: &[(counter::POOL_ROUNDS, "")],
    },
    Family {
        name: "mimix_pool_released_total",
        help: "Items released from the pool, by where they went.",
        label: "to",
        members: &[
            (counter::RELEASED_FORWARD, "forward"),
            (counter::RELEASED_EXIT, "exit"),
        ],
    },
    Family {
        name: "mimix_outbound_total",
        help: "Posts of packets to their next hop, by outcome.",
        label: "outcome",
        members: &[
            (counter::OUTBOUND_DELIVERED, "delivered"),
            (counter::OUTBOUND_RETRIED, "retried"),
            (counter::OUTBOUND_GIVEN_UP, "given_up"),
        ],
    },
    Family {
        name: "mimix_mail_total",
        help: "Mail messages at the exit, by what happened to them.",
        label: "outcome",
        members: &[
            (counter::MAIL_QUEUED, "queued"),
            (counter::MAIL_DELIVERED, "delivered"),
            (counter::MAIL_RETRIED, "retried"),
            (counter::MAIL_DROPPED, "dropped"),
        ],
    },
    Family {
        name: "mimix_exit_refused_total",
        help: "Messages the exit refused (header policy, or every recipient blocked).",
        label: "",
        members: &[(counter::EXIT_REJECTED, "")],
    },
    Family {
        name: "mimix_exit_recipients_total",
        help: "Recipients at the exit, by outcome.",
        label: "outcome",
        members: &[
            (counter::RECIPIENTS_DELIVERED, "delivered"),
            (counter::RECIPIENTS_FAILED, "failed"),
            (counter::RECIPIENTS_DEFERRED, "deferred"),
            (counter::RECIPIENTS_BLOCKED, "blocked"),
            (counter::RECIPIENTS_RATE_LIMITED, "rate_limited"),
            (counter::RECIPIENTS_RATE_TABLE_FULL, "rate_table_full"),
        ],
    },
    Family {
        name: "mimix_news_total",
        help: "Usenet posts that passed the news policy, by outcome.",
        label: "outcome",
        members: &[("news_posted", "posted"), ("news_dropped", "dropped")],
    },
    Family {
        name: "mimix_news_refused_total",
        help: "Usenet posts the news policy refused, by reason.",
        label: "reason",
        members: &[
            ("news_refused_control", "control"),
            ("news_refused_approved", "approved"),
            ("news_refused_crosspost", "crosspost"),
            ("news_refused_blocked", "blocked"),
            ("news_refused_bad_groups", "bad_groups"),
            ("news_refused_with_recipients", "with_recipients"),
        ],
    },
    Family {
        name: "mimix_gzip_refused_total",
        help: "Compressed payloads the exit refused, by reason.",
        label: "reason",
        members: &[
            ("gzip_refused_too_large", "too_large"),
            ("gzip_refused_corrupt", "corrupt"),
            ("gzip_refused_truncated", "truncated"),
            ("gzip_refused_bad_header", "bad_header"),
            ("gzip_refused_multi_member", "multi_member"),
            ("gzip_refused_trailing_data", "trailing_data"),
        ],
    },
    Family {
        name: "mimix_exit_dummies_discarded_total",
        help: "Dummy messages that ended here.",
        label: "",
        members: &[(counter::EXIT_DUMMIES, "")],
    },
    Family {
        name: "mimix_exit_dropped_middle_node_total",
        help: "Exit packets a middle node received and could not deliver.",
        label: "",
        members: &[("exit_dropped_middle_node", "")],
    },
    Family {
        name: "mimix_randhop_total",
        help: "Mail packets that ended at this middle node, by what became of them.",
        label: "outcome",
        members: &[
            (counter::RANDHOP, "rerouted"),
            (counter::RANDHOP_NO_EXIT, "no_exit"),
            (counter::RANDHOP_FAILED, "failed"),
        ],
    },
    Family {
        name: "mimix_chunks_total",
        help: "Exit chunks of multi-packet messages, by outcome.",
        label: "outcome",
        members: &[
            (counter::CHUNKS_STORED, "stored"),
            (counter::CHUNKS_DUPLICATE, "duplicate"),
            (counter::CHUNKS_COUNT_MISMATCH, "count_mismatch"),
            (counter::CHUNKS_INVALID, "invalid"),
            (counter::CHUNKS_OVER_LIMIT, "over_limit"),
        ],
    },
    Family {
        name: "mimix_partials_expired_total",
        help: "Incomplete multi-chunk messages deleted after expiry.",
        label: "",
        members: &[(counter::PARTIALS_EXPIRED, "")],
    },
    Family {
        name: "mimix_replay_pruned_total",
        help: "Replay log entries pruned after expiry.",
        label: "",
        members: &[(counter::REPLAY_PRUNED, "")],
    },
];

/// Why the metrics could not be set up or written.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The registered series.
pub struct Metrics {
    registry: Registry,
    /// Store counter name and the series it drives.
    counters: Vec<(String, IntCounter)>,
    rejected: IntCounterVec,
    running: IntGauge,
    uptime: IntGauge,
    tor_percent: IntGauge,
    tor_ready: IntGauge,
    onion: IntGaugeVec,
    pool: IntGauge,
    queues: IntGaugeVec,
    keys: IntGauge,
    key_expiry: IntGauge,
    next_key: IntGauge,
    refused: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const ONION_STATES: [(OnionState, &str); 4] = [
    (OnionState::Starting, "starting"),
    (OnionState::Published, "published"),
    (OnionState::Recovering, "recovering"),
    (OnionState::Broken, "broken"),
];

const QUEUES: [&str; 3] = ["outbound", "mail", "partial"];

impl Metrics {
    /// Registers every series; `started_at` is the node's start (seconds
    /// since the epoch).
    pub fn new(started_at: u64) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let r = Reg(&registry);
        let mut counters = Vec::new();
        for f in FAMILIES {
            if f.label.is_empty() {
                let c = r.counter(f.name, f.help)?;
                counters.extend(f.members.iter().map(|(n, _)| ((*n).to_owned(), c.clone())));
            } else {
                let v = r.counter_vec(f.name, f.help, f.label)?;
                for (name, value) in f.members {
                    counters.push(((*name).to_owned(), v.with_label_values(&[*value])));
                }
            }
        }
        let rejected = r.counter_vec(
            "mimix_packets_rejected_total",
            "Inbound packets refused, by reason (replay: seen before).",
            "reason",
        )?;
        counters.push((
            counter::REPLAYS.to_owned(),
            rejected.with_label_values(&["replay"]),
        ));
        for reason in REJECT_REASONS {
            counters.push((
                format!("rejected_{reason}"),
                rejected.with_label_values(&[*reason]),
            ));
        }
        let build = r.gauge_vec(
            "mimix_build_info",
            "Always 1; the version is a label.",
            "version",
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        r.gauge(
            "mimix_start_time_seconds",
            "When the node started, seconds since the epoch.",
        )?
        .set(gauge(started_at));
        let onion = r.gauge_vec(
            "mimix_onion_service_state",
            "1 for the onion service's current state (all 0 before launch or without Tor).",
            "state",
        )?;
        for (_, s) in ONION_STATES {
            onion.with_label_values(&[s]).set(0);
        }
        let queues = r.gauge_vec("mimix_queue_items", "Items waiting, by queue.", "queue")?;
        for q in QUEUES {
            queues.with_label_values(&[q]).set(0);
        }
        Ok(Self {
            counters,
            rejected,
            running: r.gauge(
                "mimix_running",
                "1 once the node takes packets, 0 while it starts.",
            )?,
            uptime: r.gauge("mimix_uptime_seconds", "Seconds since the node started.")?,
            tor_percent: r.gauge(
                "mimix_tor_bootstrap_percent",
                "Tor bootstrap progress, 0 to 100 (0 without Tor).",
            )?,
            tor_ready: r.gauge(
                "mimix_tor_ready",
                "1 when the Tor client can carry traffic.",
            )?,
            onion,
            pool: r.gauge("mimix_pool_packets", "Packets in the pool.")?,
            queues,
            keys: r.gauge(
                "mimix_keys",
                "Remailer keys held, those in their grace period included.",
            )?,
            key_expiry: r.gauge(
                "mimix_key_expiry_timestamp_seconds",
                "When the advertised key expires, seconds since the epoch (0 if none).",
            )?,
            next_key: r.gauge(
                "mimix_next_key_timestamp_seconds",
                "When the next key will be made, seconds since the epoch.",
            )?,
            refused: r.counter(
                "mimix_admin_connections_refused_total",
                "Admin connections closed at once because too many were open.",
            )?,
            registry,
        })
    }

    /// Brings every series up to `report`; `refused` is the admin
    /// listener's count of refused connections.
    pub fn update(&self, report: &StatusReport, refused: u64) {
        for (name, c) in &self.counters {
            raise(c, report.counters.get(name).copied().unwrap_or(0));
        }
        for (name, n) in unlisted_rejects(&report.counters) {
            raise(&self.rejected.with_label_values(&[name]), n);
        }
        raise(&self.refused, refused);
        self.running
            .set(i64::from(report.state == NodeState::Running));
        self.uptime.set(gauge(report.uptime_secs.unwrap_or(0)));
        let tor = report.tor.as_ref();
        self.tor_percent
            .set(tor.map_or(0, |t| i64::from(t.bootstrap_percent)));
        self.tor_ready.set(i64::from(tor.is_some_and(|t| t.ready)));
        let onion = tor.and_then(|t| t.onion_service);
        for (state, label) in ONION_STATES {
            self.onion
                .with_label_values(&[label])
                .set(i64::from(onion == Some(state)));
        }
        self.pool.set(gauge(report.pool));
        for (q, n) in QUEUES
            .iter()
            .zip([report.outbound, report.mail, report.partials])
        {
            self.queues.with_label_values(&[*q]).set(gauge(n));
        }
        self.keys.set(gauge(report.keys.len() as u64));
        let expiry = report.keys.iter().find(|k| k.advertised);
        self.key_expiry
            .set(gauge(expiry.map_or(0, |k| k.expires_at)));
        self.next_key.set(gauge(report.next_key_at.unwrap_or(0)));
    }

    /// The scrape.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// `rejected_<reason>` counters whose reason is not in [`REJECT_REASONS`].
fn unlisted_rejects(counters: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    counters
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("rejected_")?, *v)))
        .filter(|(r, _)| !REJECT_REASONS.contains(r))
        .collect()
}

/// Raises `c` to `to` (the store's counters only grow).
fn raise(c: &IntCounter, to: u64) {
    let now = c.get();
    if to > now {
        c.inc_by(to - now);
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Registers series in a registry.
struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        let c = IntCounter::new(name, help)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label: &str,
    ) -> Result<IntCounterVec, MetricsError> {
        let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        let g = IntGauge::new(name, help)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn gauge_vec(&self, name: &str, help: &str, label: &str) -> Result<IntGaugeVec, MetricsError> {
        let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }
}
