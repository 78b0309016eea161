//! The text form of a [`StatsDocument`], `Stats-Version: 1.0`.
//!
//! Modelled on Echolot's `mlist2.txt` (a `Stats-Version:` and a
//! `Generated:` line, per-day latency and uptime histories, latency and
//! uptime columns), extended with what mimix publishes: address, exit
//! capability, key validity, last time seen and status. Example:
//!
//! ```text
//! Stats-Version: 1.0
//! Generated: 2026-05-01 12:00:00 UTC
//! History-Days: 12
//!
//! Name  Latent-Hist    Latent Uptime-Hist  Uptime Exit Key-Valid  Last-Seen         Status Address
//! ------------------------------------------------------------------------------------------------
//! alpha ??0000000000  0:04:12 ??++++++++98  98.6% yes  2027-08-26 2026-05-01T11:58Z alive  http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion
//! delta ????????????        ? ????????????      ? no   2027-08-26 never             new    http://127.0.0.1:9004
//!
//! Latent-Hist: each day's median latency, oldest day first: 0 under 20 min, 1-9 under 1-9 h,
//! (... a legend, which readers ignore ...)
//! ```
//!
//! With an onion address a row is 153 characters plus the width of the
//! name column (at least 4, else the longest name): under 160 for names
//! of up to 6 characters, 185 at most.
//!
//! # Grammar
//!
//! Lines end in LF (a CR before it is tolerated). A reader refuses the
//! whole text on any violation of what follows, except where extensions
//! are allowed.
//!
//! 1. **Version.** The first line is `Stats-Version: MAJOR.MINOR`, both
//!    decimal without leading zeros. This module writes `1.0`. Readers
//!    refuse a major version other than 1 and accept any minor version:
//!    minor versions only add things that 1.0 readers ignore.
//! 2. **Header.** Lines `Key: value` (key of ASCII letters, digits, `-`)
//!    up to the first empty line. Required, once each:
//!    `Generated: YYYY-MM-DD HH:MM:SS UTC` (when the figures were
//!    computed) and `History-Days: N` (1 to 31, the length of both history
//!    fields). Other keys are extensions and ignored.
//! 3. **Table.** A column header line whose first word is `Name`, a line
//!    of dashes, then one line per remailer up to an empty line or the end
//!    of the text. Rows are sorted by name, then address (byte order); a
//!    (name, address) pair appears once. Anything after the empty line
//!    (this module writes a legend there) is an extension and ignored.
//! 4. **Rows.** Fields are separated by spaces and aligned for people (the
//!    name column is as wide as the longest name); readers split on
//!    whitespace. The first ten fields are, in this order:
//!
//! | field | form | meaning |
//! |---|---|---|
//! | Name | 1 to 32 of `A-Z a-z 0-9 . _ -` | the remailer's name |
//! | Latent-Hist | N characters | per day, oldest first, the class of the day's median latency: `0` under 20 min, `1`-`9` under 1-9 h, `A` 12 h, `B` 18 h, `C` 24 h, `D` 30 h, `E` 36 h, `F` 42 h, `G` 48 h, `H` longer, `?` no ping returned |
//! | Latent | `H:MM:SS` (H 0 to 99) or `?` | median latency over the window |
//! | Uptime-Hist | N characters | per day, oldest first, returned / sent: `+` all, `0`-`9` the tenths (9 = 90 % or more but not all), `?` no resolved ping |
//! | Uptime | `P.D%` (0.0 to 100.0) or `?` | weighted share returned over the window |
//! | Exit | `yes` or `no` | whether it delivers mail |
//! | Key-Valid | `YYYY-MM-DD` or `?` | last day its key is valid |
//! | Last-Seen | `YYYY-MM-DDTHH:MMZ` or `never` | when a ping last returned |
//! | Status | `alive`, `dead` or `new` | the publisher's judgement |
//! | Address | `http://host[:port]` (see [`is_valid_address`]) | its base URL |
//!
//! Fields after the tenth are extensions and ignored. Dates and times are
//! UTC. Numbers have no leading zeros, except the two-digit parts of times
//! and dates.
//!
//! # Limits
//!
//! A reader refuses texts over [`MAX_TEXT_LEN`] bytes, lines over
//! [`MAX_LINE_LEN`] bytes and more than [`MAX_ROWS`] rows, before or
//! while reading them, so a hostile publisher costs it little.

use std::collections::HashSet;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{
    ALL_RETURNED, MAX_HISTORY_DAYS, MAX_LATENCY_CLASS, StatsDocument, StatsRow, Status, Version,
    is_valid_address, is_valid_name,
};

/// The largest statistics text accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 512 * 1024;
/// The longest line accepted, in bytes.
pub const MAX_LINE_LEN: usize = 1024;
/// The most rows accepted.
pub const MAX_ROWS: usize = 2048;

/// Latency-history characters, by class.
const LATENCY_CHARS: &[u8; 18] = b"0123456789ABCDEFGH";
/// Width of the history columns when the history is shorter than this.
const MIN_HIST_WIDTH: usize = 11;

/// Why a statistics text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatsParseError {
    /// The text is longer than [`MAX_TEXT_LEN`].
    #[error("the statistics are {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A line is longer than [`MAX_LINE_LEN`].
    #[error("line {line} is longer than {max} bytes")]
    LineTooLong {
        /// The line number, from 1.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// The first line is not a `Stats-Version:` line.
    #[error("the text does not start with a Stats-Version line")]
    MissingVersion,
    /// The `Stats-Version:` value is not `MAJOR.MINOR`.
    #[error("malformed Stats-Version")]
    BadVersion,
    /// The major version is not 1.
    #[error("Stats-Version {major}.x is not supported (only 1.x)")]
    UnsupportedVersion {
        /// The major version found.
        major: u16,
    },
    /// A header line is not `Key: value`.
    #[error("line {line}: malformed header line")]
    BadHeaderLine {
        /// The line number, from 1.
        line: usize,
    },
    /// A known header has a malformed value.
    #[error("line {line}: malformed {field}")]
    BadHeader {
        /// The line number, from 1.
        line: usize,
        /// The header's key.
        field: &'static str,
    },
    /// A known header appears twice.
    #[error("line {line}: {field} given twice")]
    DuplicateHeader {
        /// The line number, from 1.
        line: usize,
        /// The header's key.
        field: &'static str,
    },
    /// A required header is missing.
    #[error("no {0} header")]
    MissingHeader(&'static str),
    /// The text ends before the table's column header and dashes.
    #[error("the table is missing")]
    MissingTable,
    /// The table does not start with a `Name ...` line and a dashes line.
    #[error("line {line}: expected the table's column header, then dashes")]
    BadTableHeader {
        /// The line number, from 1.
        line: usize,
    },
    /// The table has more than [`MAX_ROWS`] rows.
    #[error("more than {max} remailers")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// A row has a missing or malformed field.
    #[error("line {line}: bad or missing {field}")]
    BadRow {
        /// The line number, from 1.
        line: usize,
        /// The column, as named in the column header.
        field: &'static str,
    },
    /// A (name, address) pair appears twice.
    #[error("line {line}: this remailer is listed twice")]
    DuplicateRow {
        /// The line number, from 1.
        line: usize,
    },
}

type Result<T, E = StatsParseError> = std::result::Result<T, E>;

/// The document as the text table described in this module's docs. Rows
/// are normalised as by [`StatsDocument::new`]; the output always parses.
pub fn render_text(doc: &StatsDocument) -> String {
    let doc = StatsDocument::new(doc.remailers.clone(), doc.generated_at, doc.history_days);
    let name_w = doc
        .remailers
        .iter()
        .map(|r| r.name.len())
        .fold(4, usize::max);
    let hist_w = usize::from(doc.history_days).max(MIN_HIST_WIDTH);
    let mut out = format!(
        "Stats-Version: {}\nGenerated: {}\nHistory-Days: {}\n\n",
        Version::CURRENT,
        generated(doc.generated_at),
        doc.history_days
    );
    let head = format!(
        "{:<name_w$} {:<hist_w$} {:>8} {:<hist_w$} {:>6} {:<4} {:<10} {:<17} {:<6} Address",
        "Name",
        "Latent-Hist",
        "Latent",
        "Uptime-Hist",
        "Uptime",
        "Exit",
        "Key-Valid",
        "Last-Seen",
        "Status"
    );
    out.push_str(&format!("{head}\n{}\n", "-".repeat(head.len())));
    for r in &doc.remailers {
        out.push_str(&format!(
            "{:<name_w$} {:<hist_w$} {:>8} {:<hist_w$} {:>6} {:<4} {:<10} {:<17} {:<6} {}\n",
            r.name,
            latency_history(&r.latency_history),
            r.latency_secs.map_or("?".into(), hms),
            reliability_history(&r.reliability_history),
            r.reliability_permille.map_or("?".into(), percent),
            if r.exit { "yes" } else { "no" },
            r.key_valid_to.map_or("?".into(), |d| ymd(day_date(d))),
            r.last_seen.map_or("never".into(), seen),
            status(r.status),
            r.address,
        ));
    }
    out.push_str(LEGEND);
    out
}

const LEGEND: &str = "
Latent-Hist: each day's median latency, oldest day first: 0 under 20 min, 1-9 under 1-9 h,
  A under 12 h, B 18 h, C 24 h, D 30 h, E 36 h, F 42 h, G 48 h, H longer, ? none returned.
Uptime-Hist: each day's share of pings returned: + all, 9 90% or more, ..., 0 under 10%, ? none.
Latent and Uptime cover all History-Days days; in Uptime recent days weigh more.
";

/// Reads a statistics text, strictly (see this module's docs).
pub fn parse_text(text: &str) -> Result<StatsDocument> {
    if text.len() > MAX_TEXT_LEN {
        return Err(StatsParseError::TooLarge {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    if let Some(i) = text.lines().position(|l| l.len() > MAX_LINE_LEN) {
        return Err(StatsParseError::LineTooLong {
            line: i + 1,
            max: MAX_LINE_LEN,
        });
    }
    let mut lines = (1..).zip(text.lines());
    let head = parse_head(&mut lines)?;
    let remailers = parse_table(&mut lines, usize::from(head.days))?;
    Ok(StatsDocument {
        version: head.version,
        generated_at: head.generated_at,
        history_days: head.days,
        remailers,
    })
}

struct Head {
    version: Version,
    generated_at: u64,
    days: u16,
}

fn parse_head<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> Result<Head> {
    let first = lines.next().ok_or(StatsParseError::MissingVersion)?.1;
    let version = parse_version(first)?;
    let (mut generated_at, mut days) = (None, None);
    loop {
        let (n, line) = lines.next().ok_or(StatsParseError::MissingTable)?;
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once(": ")
            .filter(|(k, _)| is_key(k))
            .ok_or(StatsParseError::BadHeaderLine { line: n })?;
        match key {
            "Generated" => set_once(&mut generated_at, parse_generated(value), n, "Generated")?,
            "History-Days" => set_once(&mut days, parse_days(value), n, "History-Days")?,
            "Stats-Version" => {
                return Err(StatsParseError::DuplicateHeader {
                    line: n,
                    field: "Stats-Version",
                });
            }
            _ => {}
        }
    }
    Ok(Head {
        version,
        generated_at: generated_at.ok_or(StatsParseError::MissingHeader("Generated"))?,
        days: days.ok_or(StatsParseError::MissingHeader("History-Days"))?,
    })
}

fn parse_version(line: &str) -> Result<Version> {
    let value = line
        .strip_prefix("Stats-Version: ")
        .ok_or(StatsParseError::MissingVersion)?;
    let (major, minor) = value.split_once('.').ok_or(StatsParseError::BadVersion)?;
    let major = number(major, 5)
        .and_then(|m| u16::try_from(m).ok())
        .ok_or(StatsParseError::BadVersion)?;
    if major != Version::CURRENT.major {
        return Err(StatsParseError::UnsupportedVersion { major });
    }
    let minor = number(minor, 5)
        .and_then(|m| u16::try_from(m).ok())
        .ok_or(StatsParseError::BadVersion)?;
    Ok(Version { major, minor })
}

fn is_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: Option<T>,
    line: usize,
    field: &'static str,
) -> Result<()> {
    if slot.is_some() {
        return Err(StatsParseError::DuplicateHeader { line, field });
    }
    *slot = Some(value.ok_or(StatsParseError::BadHeader { line, field })?);
    Ok(())
}

fn parse_days(value: &str) -> Option<u16> {
    let days = u16::try_from(number(value, 2)?).ok()?;
    (1..=MAX_HISTORY_DAYS).contains(&days).then_some(days)
}

fn parse_table<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    days: usize,
) -> Result<Vec<StatsRow>> {
    let (n, head) = lines.next().ok_or(StatsParseError::MissingTable)?;
    if head.split_ascii_whitespace().next() != Some("Name") {
        return Err(StatsParseError::BadTableHeader { line: n });
    }
    let (n, dashes) = lines.next().ok_or(StatsParseError::MissingTable)?;
    if dashes.is_empty() || dashes.bytes().any(|b| b != b'-') {
        return Err(StatsParseError::BadTableHeader { line: n });
    }
    let mut rows: Vec<StatsRow> = Vec::new();
    let mut keys = HashSet::new();
    for (n, line) in lines {
        if line.is_empty() {
            break;
        }
        if rows.len() == MAX_ROWS {
            return Err(StatsParseError::TooManyRows { max: MAX_ROWS });
        }
        let row =
            parse_row(line, days).map_err(|field| StatsParseError::BadRow { line: n, field })?;
        if !keys.insert((row.name.clone(), row.address.clone())) {
            return Err(StatsParseError::DuplicateRow { line: n });
        }
        rows.push(row);
    }
    rows.sort_by(|a, b| (&a.name, &a.address).cmp(&(&b.name, &b.address)));
    Ok(rows)
}

/// A row, or the name of the first bad field.
fn parse_row(line: &str, days: usize) -> Result<StatsRow, &'static str> {
    let mut fields = line.split_ascii_whitespace();
    let mut field = |name: &'static str| fields.next().ok_or(name);
    let name = field("Name").map(String::from)?;
    let name = Some(name).filter(|n| is_valid_name(n)).ok_or("Name")?;
    let latency_history =
        history(field("Latent-Hist")?, days, latency_value).ok_or("Latent-Hist")?;
    let latency_secs = unknown_or(field("Latent")?, "?", parse_hms).ok_or("Latent")?;
    let reliability_history =
        history(field("Uptime-Hist")?, days, reliability_value).ok_or("Uptime-Hist")?;
    let reliability_permille = unknown_or(field("Uptime")?, "?", parse_percent).ok_or("Uptime")?;
    let exit = match field("Exit")? {
        "yes" => true,
        "no" => false,
        _ => return Err("Exit"),
    };
    let key_valid_to = unknown_or(field("Key-Valid")?, "?", parse_day).ok_or("Key-Valid")?;
    let last_seen = unknown_or(field("Last-Seen")?, "never", parse_seen).ok_or("Last-Seen")?;
    let status = parse_status(field("Status")?).ok_or("Status")?;
    let address = Some(field("Address")?)
        .filter(|a| is_valid_address(a))
        .ok_or("Address")?
        .to_owned();
    Ok(StatsRow {
        name,
        address,
        exit,
        key_valid_to,
        last_seen,
        status,
        latency_secs,
        reliability_permille,
        latency_history,
        reliability_history,
    })
}

/// `Some(None)` for the `unknown` marker, `Some(Some(v))` for a value,
/// `None` if malformed.
fn unknown_or<T>(s: &str, unknown: &str, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    if s == unknown {
        Some(None)
    } else {
        parse(s).map(Some)
    }
}

fn history(s: &str, days: usize, value: fn(u8) -> Option<Option<u8>>) -> Option<Vec<Option<u8>>> {
    (s.len() == days).then(|| s.bytes().map(value).collect())?
}

fn latency_value(c: u8) -> Option<Option<u8>> {
    if c == b'?' {
        return Some(None);
    }
    let class = LATENCY_CHARS.iter().position(|&x| x == c)?;
    u8::try_from(class).ok().map(Some)
}

fn reliability_value(c: u8) -> Option<Option<u8>> {
    match c {
        b'?' => Some(None),
        b'+' => Some(Some(ALL_RETURNED)),
        b'0'..=b'9' => Some(Some(c - b'0')),
        _ => None,
    }
}

fn latency_history(h: &[Option<u8>]) -> String {
    let char_of = |v: &Option<u8>| {
        v.and_then(|c| LATENCY_CHARS.get(usize::from(c.min(MAX_LATENCY_CLASS))))
            .map_or('?', |&b| char::from(b))
    };
    h.iter().map(char_of).collect()
}

fn reliability_history(h: &[Option<u8>]) -> String {
    let char_of = |v: &Option<u8>| match v {
        None => '?',
        Some(t) if *t >= ALL_RETURNED => '+',
        Some(t) => char::from(b'0' + t),
    };
    h.iter().map(char_of).collect()
}

fn hms(secs: u32) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn parse_hms(s: &str) -> Option<u32> {
    let mut parts = s.split(':');
    let h = number(parts.next()?, 2)?;
    let m = two_digits(parts.next()?).filter(|&m| m < 60)?;
    let sec = two_digits(parts.next()?).filter(|&s| s < 60)?;
    parts.next().is_none().then_some(h * 3600 + m * 60 + sec)
}

fn percent(permille: u16) -> String {
    format!("{}.{}%", permille / 10, permille % 10)
}

fn parse_percent(s: &str) -> Option<u16> {
    let (int, tenth) = s.strip_suffix('%')?.split_once('.')?;
    let value = number(int, 3)? * 10 + number(tenth, 1)?;
    u16::try_from(value).ok().filter(|&p| p <= 1000)
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Alive => "alive",
        Status::Dead => "dead",
        Status::New => "new",
    }
}

fn parse_status(s: &str) -> Option<Status> {
    [Status::Alive, Status::Dead, Status::New]
        .into_iter()
        .find(|&st| status(st) == s)
}

/// A decimal number of 1 to `max_len` digits without leading zeros.
fn number(s: &str, max_len: usize) -> Option<u32> {
    let canonical = s.len() == 1 || !s.starts_with('0');
    let digits = !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit());
    (canonical && digits).then(|| s.parse().ok())?
}

fn two_digits(s: &str) -> Option<u32> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// Whether `s` matches `pattern`, where `d` stands for an ASCII digit.
fn shaped(s: &str, pattern: &str) -> bool {
    s.len() == pattern.len()
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| {
            if p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// The number in `s[range]`; callers check the shape first.
fn part(s: &str, range: std::ops::Range<usize>) -> Option<u8> {
    s.get(range)?.parse().ok()
}

/// A `YYYY-MM-DD` prefix of a checked shape.
fn date_part(s: &str) -> Option<Date> {
    let year = s.get(0..4)?.parse().ok()?;
    let month = Month::try_from(part(s, 5..7)?).ok()?;
    Date::from_calendar_date(year, month, part(s, 8..10)?).ok()
}

fn unix(date: Date, time: Time) -> Option<u64> {
    u64::try_from(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
    .ok()
}

fn parse_generated(s: &str) -> Option<u64> {
    if !shaped(s, "dddd-dd-dd dd:dd:dd UTC") {
        return None;
    }
    let time = Time::from_hms(part(s, 11..13)?, part(s, 14..16)?, part(s, 17..19)?).ok()?;
    unix(date_part(s)?, time)
}

fn parse_seen(s: &str) -> Option<u64> {
    if !shaped(s, "dddd-dd-ddTdd:ddZ") {
        return None;
    }
    let time = Time::from_hms(part(s, 11..13)?, part(s, 14..16)?, 0).ok()?;
    unix(date_part(s)?, time)
}

fn parse_day(s: &str) -> Option<u64> {
    if !shaped(s, "dddd-dd-dd") {
        return None;
    }
    let days = date_part(s)?.to_julian_day() - OffsetDateTime::UNIX_EPOCH.date().to_julian_day();
    u64::try_from(days).ok()
}

/// The UTC date and time of `secs` (clamped to the publishable range).
fn civil(secs: u64) -> OffsetDateTime {
    i64::try_from(secs.min(super::MAX_TIMESTAMP))
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn day_date(day: u64) -> Date {
    civil(day.saturating_mul(super::SECS_PER_DAY)).date()
}

fn ymd(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn generated(secs: u64) -> String {
    let t = civil(secs);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        ymd(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn seen(secs: u64) -> String {
    let t = civil(secs);
    format!("{}T{:02}:{:02}Z", ymd(t.date()), t.hour(), t.minute())
}

#[cfg(test)]
#[path = "stats_text_tests.rs"]
mod tests;
