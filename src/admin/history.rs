//! The counters' hourly history, kept in the store so that it survives
//! restarts: "last 24 h" is today's counters minus the sample from a day
//! ago, and the status page's charts are the differences between
//! consecutive samples.
//!
//! A sample is taken when the node starts and then once in every hour of
//! the (injected) clock; samples older than [`KEEP`] seconds are dropped,
//! so the history holds at most [`MAX_SAMPLES`]. Since the counters are
//! monotonic, a gap (the node was stopped) only makes one interval longer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, counter};

/// How long samples are kept: 14 days, in seconds.
pub const KEEP: u64 = 14 * 86_400;

/// One hour, in seconds: the sampling period.
pub const HOUR: u64 = 3600;

/// One day, in seconds: the span of "last 24 h".
pub const DAY: u64 = 86_400;

/// Most samples held (one an hour over [`KEEP`], and the start's).
pub const MAX_SAMPLES: usize = (KEEP / HOUR) as usize + 2;

/// The store's metadata entry holding the history.
const META_HISTORY: &str = "admin.history";

/// The counters and the pool size at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// Packets in the pool.
    pub pool: u64,
    /// Every counter by name.
    pub counters: BTreeMap<String, u64>,
}

impl Sample {
    /// Counter `name` (0 if absent).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Refusals by reason: the `rejected_<reason>` counters and replays
    /// (as `replay`).
    pub fn rejects(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self
            .counters
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("rejected_")?.to_owned(), *v)))
            .collect();
        out.insert("replay".into(), self.get(counter::REPLAYS));
        out
    }

    /// All refusals.
    pub fn rejects_total(&self) -> u64 {
        self.rejects().values().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// The samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    samples: Vec<Sample>,
}

impl History {
    /// The history saved in `store` (empty if none).
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let Some(bytes) = store.meta_get(META_HISTORY)? else {
            return Ok(Self::default());
        };
        let mut samples: Vec<Sample> =
            postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                what: "history",
                path: store.path().to_owned(),
                reason: e.to_string(),
            })?;
        samples.sort_by_key(|s| s.at);
        let drop = samples.len().saturating_sub(MAX_SAMPLES);
        samples.drain(..drop);
        Ok(Self { samples })
    }

    /// Saves the history in `store` (synced).
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(&self.samples).map_err(|source| StoreError::Encode {
            what: "history",
            source,
        })?;
        store.meta_put(META_HISTORY, &bytes)
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Whether a sample at `now` is due: there is none yet, or the last
    /// one was taken in an earlier hour.
    pub fn due(&self, now: u64) -> bool {
        self.samples
            .last()
            .is_none_or(|last| now / HOUR > last.at / HOUR)
    }

    /// Records `sample` if one is due at its time, dropping samples older
    /// than [`KEEP`]. Returns whether it was recorded.
    pub fn record(&mut self, sample: Sample) -> bool {
        if !self.due(sample.at) {
            return false;
        }
        let horizon = sample.at.saturating_sub(KEEP);
        self.samples.push(sample);
        let old = self.samples.iter().take_while(|s| s.at < horizon).count();
        let over = self.samples.len().saturating_sub(MAX_SAMPLES);
        self.samples.drain(..old.max(over));
        true
    }

    /// The sample "last `span` seconds" counts from: the newest taken at
    /// least `span` before `now`, else the oldest there is.
    pub fn baseline(&self, now: u64, span: u64) -> Option<&Sample> {
        let cut = now.saturating_sub(span);
        self.samples
            .iter()
            .rev()
            .find(|s| s.at <= cut)
            .or_else(|| self.samples.first())
    }

    /// The chart's points: one per interval between consecutive samples,
    /// the last interval ending at `live` (the counters now).
    pub fn points(&self, live: &Sample) -> Vec<Point> {
        let mut ends: Vec<&Sample> = self.samples.iter().skip(1).collect();
        if self.samples.last().is_none_or(|l| live.at > l.at) {
            ends.push(live);
        }
        self.samples
            .iter()
            .zip(ends)
            .map(|(start, end)| Point::between(start, end))
            .collect()
    }
}

/// `GET /history.json`: the chart points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryDoc {
    /// When it was made, seconds since the epoch.
    pub now: u64,
    /// One point per sampling interval, oldest first, the last ending now.
    pub points: Vec<Point>,
    /// Hook for the directory's pinger: reliability of the known
    /// remailers over the same days, once there is a pinger. Always
    /// `null` for now; the page shows it when set.
    pub pinger: Option<serde_json::Value>,
}

/// What happened between two samples, for the charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the interval (seconds since the epoch).
    pub from: u64,
    /// End of the interval.
    pub to: u64,
    /// Packets in the pool at the end.
    pub pool: u64,
    /// Packets accepted.
    pub packets_in: u64,
    /// Packets delivered to their next hop.
    pub packets_out: u64,
    /// Dummies made.
    pub dummies: u64,
    /// Packets refused, for any reason.
    pub rejects: u64,
    /// Messages delivered by SMTP.
    pub mail_delivered: u64,
}

impl Point {
    fn between(start: &Sample, end: &Sample) -> Self {
        let d = |name| end.get(name).saturating_sub(start.get(name));
        Self {
            from: start.at,
            to: end.at,
            pool: end.pool,
            packets_in: d(counter::ACCEPTED),
            packets_out: d(counter::OUTBOUND_DELIVERED),
            dummies: d(counter::DUMMIES_POOLED),
            rejects: end.rejects_total().saturating_sub(start.rejects_total()),
            mail_delivered: d(counter::MAIL_DELIVERED),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample(at: u64, accepted: u64) -> Sample {
        Sample {
            at,
            pool: accepted / 2,
            counters: [(counter::ACCEPTED.to_owned(), accepted)].into(),
        }
    }

    #[test]
    fn one_sample_an_hour() {
        let mut h = History::default();
        let t0 = 100 * HOUR + 10;
        assert!(h.record(sample(t0, 0)));
        assert!(!h.record(sample(t0 + 60, 1)), "same hour");
        assert!(!h.due(101 * HOUR - 1));
        assert!(h.record(sample(101 * HOUR, 2)), "the next hour");
        assert_eq!(h.samples().len(), 2);
        assert!(!h.record(sample(t0, 3)), "a clock that went back");
    }

    #[test]
    fn old_samples_are_dropped() {
        let mut h = History::default();
        for i in 0..(KEEP / HOUR + 50) {
            h.record(sample(i * HOUR, i));
        }
        assert!(h.samples().len() <= MAX_SAMPLES);
        let newest = h.samples().last().unwrap().at;
        assert!(h.samples().iter().all(|s| s.at >= newest - KEEP));
    }

    #[test]
    fn baseline_is_a_day_back_or_the_oldest() {
        let mut h = History::default();
        for i in 0..30 {
            h.record(sample(i * HOUR, i * 10));
        }
        let now = 29 * HOUR + 1800;
        assert_eq!(h.baseline(now, DAY).unwrap().at, 5 * HOUR);
        assert_eq!(h.baseline(3 * HOUR, DAY).unwrap().at, 0, "young node");
        assert_eq!(History::default().baseline(now, DAY), None);
    }

    #[test]
    fn points_end_with_the_live_counters() {
        let mut h = History::default();
        h.record(sample(0, 0));
        h.record(sample(HOUR, 5));
        let live = Sample {
            at: HOUR + 30,
            pool: 4,
            counters: [
                (counter::ACCEPTED.to_owned(), 8),
                ("rejected_antitag".to_owned(), 2),
                (counter::REPLAYS.to_owned(), 1),
            ]
            .into(),
        };
        let p = h.points(&live);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].from, p[0].to, p[0].packets_in), (0, HOUR, 5));
        assert_eq!((p[1].packets_in, p[1].rejects, p[1].pool), (3, 3, 4));
        // A node that just started has one sample and the live counters.
        let mut young = History::default();
        young.record(sample(10, 0));
        assert_eq!(young.points(&live).len(), 1);
        assert_eq!(young.points(&sample(10, 0)).len(), 0);
    }

    #[test]
    fn survives_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        assert_eq!(History::load(&store).unwrap(), History::default());
        let mut h = History::default();
        h.record(sample(7, 3));
        h.record(sample(HOUR * 2, 9));
        h.save(&store).unwrap();
        assert_eq!(History::load(&store).unwrap(), h);
    }
}
