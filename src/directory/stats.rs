//! Remailer statistics: what pinging the known remailers tells about them,
//! and the table published from it (`GET /stats.txt`, `mimix remailers`).
//!
//! A node pings every known remailer (a two-hop packet through it and back
//! to the node itself) and keeps, per remailer and per UTC day, a
//! [`DayRecord`] of pings sent, pings returned and their latencies. This
//! module keeps that history bounded, turns it into published figures
//! ([`StatsRow`]) and writes and reads them as text and JSON.
//!
//! # Layout
//!
//! * [`RemailerStats`] is what the node stores (with serde). The pinger
//!   calls [`RemailerStats::record_sent`] when a ping leaves and
//!   [`RemailerStats::record_returned`] when it comes back; both prune
//!   days older than the window ([`StatsConfig::history_days`]).
//! * [`RemailerStats::summarize`] computes a [`StatsRow`]: the figures as
//!   published. [`StatsDocument`] gathers rows with their time of
//!   computation; [`render_text`], [`render_json`] and [`parse_text`]
//!   write and read it. The text format is specified in [`text`].
//!
//! # Pings in flight
//!
//! A ping is counted as sent on the day it leaves, and as returned on the
//! day it *left* when it comes back, so each day's `returned / sent` is
//! the fate of that day's pings. Pings still travelling must not count as
//! lost, so [`RemailerStats::summarize`] takes `in_flight`: how many pings
//! to this remailer were sent less than the ping timeout ago and have not
//! returned (the pinger knows its outstanding pings). They are taken out of
//! the unanswered pings of the most recent days first, which is where they
//! are. A ping therefore counts as lost only once its timeout has passed;
//! if it still comes back later it counts as returned after all, since it
//! was counted as sent only once.
//!
//! # Figures
//!
//! * **Reliability** is returned / sent over the window, each ping weighted
//!   by the age of its day: today weighs N, yesterday N - 1, ..., the
//!   oldest day 1 (N = [`StatsConfig::history_days`]). Echolot also weights
//!   recent pings, but discounts the last day because its pings may still
//!   be travelling; here in-flight pings are excluded exactly, so the
//!   freshest evidence can weigh most and a remailer that breaks is
//!   noticed within a day or two, while a long good record still counts.
//!   Published in permille (shown as a percentage with one decimal).
//!   `None` while no ping has been resolved.
//! * **Latency** is the median of the window's latency samples, rounded to
//!   the second and capped at 99:59:59 (as Echolot's is the median). A
//!   median is not moved by a few pings stuck for hours, which a mean
//!   would be. `None` while no ping has returned.
//! * Each day keeps at most [`MAX_SAMPLES_PER_DAY`] latency samples, sorted.
//!   Up to that many pings a day the medians are exact; beyond it each
//!   new sample is inserted and then the smallest or the largest sample is
//!   dropped, alternately, which trims both tails evenly and keeps the
//!   middle of the day's distribution.
//! * **History**: per day, oldest first, the day's reliability in tenths
//!   (10 when every resolved ping returned) and the class
//!   ([`latency_class`]) of the day's median latency.
//! * **Status** ([`Status`]): `Alive` when a ping returned less than
//!   [`StatsConfig::dead_after`] ago; `Dead` when the last return, or for
//!   a remailer that never answered the end of the first day with a
//!   resolved ping, is at least that long ago; `New` otherwise.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[path = "stats_text.rs"]
pub mod text;

pub use text::{MAX_LINE_LEN, MAX_ROWS, MAX_TEXT_LEN, StatsParseError, parse_text, render_text};

/// Seconds in a UTC day.
pub const SECS_PER_DAY: u64 = 86_400;
/// Days of history kept and published by default (as Echolot).
pub const DEFAULT_HISTORY_DAYS: u16 = 12;
/// The most days of history kept, published or accepted from others.
pub const MAX_HISTORY_DAYS: u16 = 31;
/// The most latency samples kept per remailer per day.
pub const MAX_SAMPLES_PER_DAY: usize = 64;
/// The largest published latency, 99:59:59, in seconds.
pub const MAX_LATENCY_SECS: u32 = 99 * 3600 + 59 * 60 + 59;
/// The last publishable instant, 9999-12-31 23:59:59 UTC, in Unix seconds.
pub const MAX_TIMESTAMP: u64 = 253_402_300_799;
/// The last publishable day, 9999-12-31, in days since the Unix epoch.
pub const MAX_DAY: u64 = MAX_TIMESTAMP / SECS_PER_DAY;
/// The longest remailer address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 128;
/// Upper bounds (exclusive, in seconds) of latency classes 0 to 16; class
/// 17 is everything longer. Echolot's `mlist2` scale: under 20 minutes,
/// then under 1 to 9 hours, 12, 18, 24, 30, 36, 42 and 48 hours.
pub const LATENCY_CLASS_LIMITS: [u32; 17] = {
    const H: u32 = 3600;
    [
        20 * 60,
        H,
        2 * H,
        3 * H,
        4 * H,
        5 * H,
        6 * H,
        7 * H,
        8 * H,
        9 * H,
        12 * H,
        18 * H,
        24 * H,
        30 * H,
        36 * H,
        42 * H,
        48 * H,
    ]
};
/// The highest latency class.
pub const MAX_LATENCY_CLASS: u8 = 17;
/// The reliability-history value of a day on which every ping returned.
pub const ALL_RETURNED: u8 = 10;

/// One remailer's pings on one UTC day, counted by the day they were sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DayRecord {
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    /// Pings sent on this day.
    pub sent: u32,
    /// Of those, how many came back (never more than `sent`).
    pub returned: u32,
    /// Round-trip times of returned pings in milliseconds, sorted, at most
    /// [`MAX_SAMPLES_PER_DAY`].
    pub latency_ms: Vec<u32>,
}

impl DayRecord {
    /// Inserts a sample in order, then trims a tail if over the bound.
    fn add_latency(&mut self, ms: u32) {
        let at = self.latency_ms.partition_point(|&x| x < ms);
        self.latency_ms.insert(at, ms);
        while self.latency_ms.len() > MAX_SAMPLES_PER_DAY {
            if self.returned.is_multiple_of(2) {
                self.latency_ms.pop();
            } else {
                self.latency_ms.remove(0);
            }
        }
    }
}

/// What the node knows of one remailer: identity and ping history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RemailerStats {
    /// Its name (1 to 32 of `A-Z a-z 0-9 . _ -`).
    pub name: String,
    /// Its base URL, `http://<host>[:port]`.
    pub address: String,
    /// Whether it delivers mail (`SMTP: Yes` in its conf).
    pub exit: bool,
    /// Last day its current key is valid (days since the Unix epoch).
    pub key_valid_to: Option<u64>,
    /// When a ping last came back (Unix seconds).
    pub last_seen: Option<u64>,
    /// Ping history, at most one record per day, at most the window's days.
    pub days: Vec<DayRecord>,
}

/// Tunables of the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsConfig {
    /// Days of history kept and published (1 to [`MAX_HISTORY_DAYS`];
    /// other values are clamped into that range).
    pub history_days: u16,
    /// A remailer from which nothing returned for this long is dead.
    pub dead_after: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            history_days: DEFAULT_HISTORY_DAYS,
            dead_after: Duration::from_secs(2 * SECS_PER_DAY),
        }
    }
}

impl StatsConfig {
    /// The window length actually used: `history_days` clamped to 1..=31.
    pub fn days(&self) -> u16 {
        clamp_days(self.history_days)
    }
}

fn clamp_days(days: u16) -> u16 {
    days.clamp(1, MAX_HISTORY_DAYS)
}

/// A remailer's state as judged from its pings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A ping returned less than [`StatsConfig::dead_after`] ago.
    Alive,
    /// Nothing returned for at least [`StatsConfig::dead_after`].
    Dead,
    /// Not yet judged: never answered, and not pinged long enough.
    New,
}

/// The published figures for one remailer: one line of the table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    /// Its name.
    pub name: String,
    /// Its base URL.
    pub address: String,
    /// Whether it delivers mail.
    pub exit: bool,
    /// Last day its key is valid (days since the Unix epoch).
    pub key_valid_to: Option<u64>,
    /// When a ping last returned (Unix seconds, a whole minute).
    pub last_seen: Option<u64>,
    /// Alive, dead or new.
    pub status: Status,
    /// Median round trip over the window, in seconds (at most 99:59:59).
    pub latency_secs: Option<u32>,
    /// Weighted share of pings returned over the window, 0 to 1000.
    pub reliability_permille: Option<u16>,
    /// Per day, oldest first: the latency class of the day's median.
    pub latency_history: Vec<Option<u8>>,
    /// Per day, oldest first: returned / sent in tenths, 10 = all.
    pub reliability_history: Vec<Option<u8>>,
}

/// The version of a statistics document.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// Incompatible changes: readers refuse majors they do not know.
    pub major: u16,
    /// Compatible additions: readers accept any minor version.
    pub minor: u16,
}

impl Version {
    /// The version this module writes.
    pub const CURRENT: Self = Self { major: 1, minor: 0 };
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A set of published rows: what `/stats.txt` and `--json` carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatsDocument {
    /// The format version (written: [`Version::CURRENT`]).
    pub version: Version,
    /// When the figures were computed (Unix seconds).
    pub generated_at: u64,
    /// Length of the history columns.
    pub history_days: u16,
    /// One row per remailer, sorted by name then address.
    pub remailers: Vec<StatsRow>,
}

impl StatsDocument {
    /// A document of `rows`, sorted by name then address. Rows that could
    /// not be read back are left out: a name or address outside what
    /// [`is_valid_name`] and [`is_valid_address`] accept, or a repeated
    /// (name, address) pair (the first is kept). Figures are clamped into
    /// their published ranges and histories fitted to `history_days`.
    pub fn new(rows: Vec<StatsRow>, generated_at: u64, history_days: u16) -> Self {
        let days = clamp_days(history_days);
        let mut remailers: Vec<StatsRow> = rows
            .into_iter()
            .filter_map(|r| r.normalized(days))
            .collect();
        remailers.sort_by(|a, b| (&a.name, &a.address).cmp(&(&b.name, &b.address)));
        remailers.dedup_by(|a, b| a.name == b.name && a.address == b.address);
        Self {
            version: Version::CURRENT,
            generated_at: generated_at.min(MAX_TIMESTAMP),
            history_days: days,
            remailers,
        }
    }
}

/// The document as JSON: the same figures as the text table, with the
/// field names of [`StatsDocument`] and [`StatsRow`] (times in Unix
/// seconds, days since the epoch, statuses in lower case).
pub fn render_json(doc: &StatsDocument) -> serde_json::Value {
    // Plain structs of strings, integers and vectors always serialise.
    serde_json::to_value(doc).unwrap_or_default()
}

/// Whether `name` is a publishable remailer name: 1 to 32 ASCII letters,
/// digits, `.`, `_` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `address` is a publishable base URL: `http://` then a host
/// (optionally `:port` or a path) of ASCII letters, digits and `.-_:[]/`,
/// starting with a letter, a digit or `[`, at most [`MAX_ADDRESS_LEN`]
/// bytes in all.
pub fn is_valid_address(address: &str) -> bool {
    let Some(rest) = address.strip_prefix("http://") else {
        return false;
    };
    address.len() <= MAX_ADDRESS_LEN
        && rest
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'[')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]/".contains(&b))
}

/// The latency class (0 to 17, see [`LATENCY_CLASS_LIMITS`]) of `secs`.
pub fn latency_class(secs: u32) -> u8 {
    let below = LATENCY_CLASS_LIMITS.iter().filter(|&&l| l <= secs).count();
    u8::try_from(below).unwrap_or(MAX_LATENCY_CLASS)
}

impl StatsRow {
    /// The row clamped into published ranges, or `None` if its name or
    /// address cannot be published.
    fn normalized(mut self, days: u16) -> Option<Self> {
        if !is_valid_name(&self.name) || !is_valid_address(&self.address) {
            return None;
        }
        self.key_valid_to = self.key_valid_to.map(|d| d.min(MAX_DAY));
        self.last_seen = self.last_seen.map(to_minute);
        self.latency_secs = self.latency_secs.map(|s| s.min(MAX_LATENCY_SECS));
        self.reliability_permille = self.reliability_permille.map(|p| p.min(1000));
        fit(&mut self.latency_history, days, MAX_LATENCY_CLASS);
        fit(&mut self.reliability_history, days, ALL_RETURNED);
        Some(self)
    }
}

/// Keeps the newest `days` entries, pads older ones with `None`, and drops
/// values above `max`.
fn fit(history: &mut Vec<Option<u8>>, days: u16, max: u8) {
    let days = usize::from(days);
    let excess = history.len().saturating_sub(days);
    history.drain(..excess);
    let missing = days - history.len();
    history.splice(0..0, std::iter::repeat_n(None, missing));
    for v in history.iter_mut() {
        *v = v.filter(|&x| x <= max);
    }
}

fn to_minute(t: u64) -> u64 {
    let t = t.min(MAX_TIMESTAMP);
    t - t % 60
}

/// One day of the window, with in-flight pings taken out.
#[derive(Default)]
struct Tally {
    sent: u64,
    returned: u64,
    latency_ms: Vec<u32>,
}

impl RemailerStats {
    /// A remailer with no history yet.
    pub fn new(name: String, address: String, exit: bool, key_valid_to: Option<u64>) -> Self {
        Self {
            name,
            address,
            exit,
            key_valid_to,
            last_seen: None,
            days: Vec::new(),
        }
    }

    /// Records a ping sent at `now` (Unix seconds).
    pub fn record_sent(&mut self, now: u64, cfg: &StatsConfig) {
        let today = now / SECS_PER_DAY;
        self.prune(today, cfg);
        match self.days.iter_mut().find(|d| d.day == today) {
            Some(d) => d.sent = d.sent.saturating_add(1),
            None => self.days.push(DayRecord {
                day: today,
                sent: 1,
                ..DayRecord::default()
            }),
        }
    }

    /// Records that a ping sent at `sent_at` came back at `now` (Unix
    /// seconds), however late. `last_seen` is always updated; the ping is
    /// counted, on the day it was sent, only if that day is still in the
    /// window and has an unanswered ping left. Returns whether it counted.
    pub fn record_returned(&mut self, sent_at: u64, now: u64, cfg: &StatsConfig) -> bool {
        self.prune(now / SECS_PER_DAY, cfg);
        self.last_seen = Some(self.last_seen.map_or(now, |t| t.max(now)));
        let latency = now.saturating_sub(sent_at).saturating_mul(1000);
        let sent_day = sent_at / SECS_PER_DAY;
        let Some(d) = self
            .days
            .iter_mut()
            .find(|d| d.day == sent_day && d.returned < d.sent)
        else {
            return false;
        };
        d.returned += 1;
        d.add_latency(u32::try_from(latency).unwrap_or(u32::MAX));
        true
    }

    /// Drops days outside the window ending `today`, including days after
    /// it (left by a clock that went back).
    pub fn prune(&mut self, today: u64, cfg: &StatsConfig) {
        let oldest = window_start(today, cfg.days());
        self.days.retain(|d| (oldest..=today).contains(&d.day));
    }

    /// The published figures at `now` (Unix seconds), with `in_flight`
    /// pings still within their timeout (see the module docs).
    pub fn summarize(&self, in_flight: u32, now: u64, cfg: &StatsConfig) -> StatsRow {
        let days = cfg.days();
        let today = now / SECS_PER_DAY;
        let mut tallies = self.window(today, days);
        discount_in_flight(&mut tallies, in_flight);
        let mut all: Vec<u32> = tallies.iter().flat_map(|t| t.latency_ms.clone()).collect();
        StatsRow {
            name: self.name.clone(),
            address: self.address.clone(),
            exit: self.exit,
            key_valid_to: self.key_valid_to.map(|d| d.min(MAX_DAY)),
            last_seen: self.last_seen.map(to_minute),
            status: self.status(&tallies, now, today, cfg),
            latency_secs: median_secs(&mut all),
            reliability_permille: weighted_reliability(&tallies),
            latency_history: tallies
                .iter()
                .map(|t| median_secs(&mut t.latency_ms.clone()).map(latency_class))
                .collect(),
            reliability_history: tallies.iter().map(day_reliability).collect(),
        }
    }

    /// The window's days, oldest first, merging any repeated records.
    fn window(&self, today: u64, days: u16) -> Vec<Tally> {
        (0..u64::from(days))
            .rev()
            .map(|age| {
                let mut t = Tally::default();
                let Some(day) = today.checked_sub(age) else {
                    return t;
                };
                for r in self.days.iter().filter(|r| r.day == day) {
                    t.sent += u64::from(r.sent);
                    t.returned += u64::from(r.returned);
                    t.latency_ms.extend_from_slice(&r.latency_ms);
                }
                t.returned = t.returned.min(t.sent);
                t
            })
            .collect()
    }

    fn status(&self, tallies: &[Tally], now: u64, today: u64, cfg: &StatsConfig) -> Status {
        let since = self.last_seen.or_else(|| {
            let first = tallies.iter().position(|t| t.sent > 0)?;
            let age = tallies.len() - 1 - first;
            let day = today.checked_sub(u64::try_from(age).ok()?)?;
            Some((day + 1).saturating_mul(SECS_PER_DAY))
        });
        match since {
            Some(t) if now.saturating_sub(t) >= cfg.dead_after.as_secs() => Status::Dead,
            _ if self.last_seen.is_some() => Status::Alive,
            _ => Status::New,
        }
    }
}

/// The first day of a `days`-day window ending `today`.
fn window_start(today: u64, days: u16) -> u64 {
    today.saturating_sub(u64::from(days) - 1)
}

/// Takes `in_flight` pings out of the unanswered ones, newest day first.
fn discount_in_flight(tallies: &mut [Tally], in_flight: u32) {
    let mut left = u64::from(in_flight);
    for t in tallies.iter_mut().rev() {
        let d = (t.sent - t.returned).min(left);
        t.sent -= d;
        left -= d;
    }
}

fn day_reliability(t: &Tally) -> Option<u8> {
    match t.sent {
        0 => None,
        s if t.returned >= s => Some(ALL_RETURNED),
        s => u8::try_from(t.returned * 10 / s).ok(),
    }
}

/// Returned / sent in permille, the day at index `i` weighing `i + 1`.
/// Sums stay far below `u64::MAX`: at most 31 days of 2^32 pings, times a
/// weight of 31, times 1000.
fn weighted_reliability(tallies: &[Tally]) -> Option<u16> {
    let (mut num, mut den) = (0u64, 0u64);
    for (w, t) in (1u64..).zip(tallies) {
        num += w * t.returned * 1000;
        den += w * t.sent;
    }
    if den == 0 {
        return None;
    }
    u16::try_from((num + den / 2) / den)
        .ok()
        .map(|p| p.min(1000))
}

/// The median of `ms` in whole seconds, capped at [`MAX_LATENCY_SECS`].
fn median_secs(ms: &mut [u32]) -> Option<u32> {
    ms.sort_unstable();
    let mid = ms.len() / 2;
    let upper = u64::from(*ms.get(mid)?);
    let median = if ms.len().is_multiple_of(2) {
        let lower = u64::from(*ms.get(mid.checked_sub(1)?)?);
        (lower + upper) / 2
    } else {
        upper
    };
    let secs = (median + 500) / 1000;
    Some(
        u32::try_from(secs)
            .unwrap_or(u32::MAX)
            .min(MAX_LATENCY_SECS),
    )
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
