//! The module's error type and its explanation of excluded remailers.

use std::fmt;
use std::time::Duration;

use super::{MAX_CHUNKS, MAX_HOP_LEN, MAX_HOPS, MAX_SPEC_LEN};

/// Why the remailers known were not usable for one hop; each remailer is
/// counted once, under the first reason that applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusions {
    /// Distinct remailers known.
    pub known: usize,
    /// Not exit-capable, where an exit is required.
    pub not_exit: usize,
    /// Not measured, with `require_measured`.
    pub unmeasured: usize,
    /// Below the reliability threshold.
    pub below_reliability: usize,
    /// Over the latency limit.
    pub over_latency: usize,
    /// Already used by a hop within the distance.
    pub within_distance: usize,
    /// The threshold was `final_min_reliability` (last hop).
    pub last: bool,
    /// The reliability threshold that applied.
    pub min_reliability: f64,
    /// The latency limit that applied.
    pub max_latency: Duration,
    /// The distance that applied.
    pub distance: usize,
}

/// Why a chain could not be parsed or selected.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The chain text is too long.
    #[error("the chain is {len} bytes long; at most {MAX_SPEC_LEN} are allowed")]
    SpecTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The chain has more hops than a packet can carry.
    #[error("the chain has {hops} hops; a packet carries at most {MAX_HOPS}")]
    TooManyHops {
        /// Hops given.
        hops: usize,
    },
    /// A hop is empty (e.g. `a,,b` or a trailing comma).
    #[error("hop {hop} of the chain is empty; use `*` for a random remailer")]
    EmptyHop {
        /// The hop, from 1.
        hop: usize,
    },
    /// A hop is longer than any name or address can be.
    #[error("hop {hop} of the chain is longer than {MAX_HOP_LEN} bytes")]
    HopTooLong {
        /// The hop, from 1.
        hop: usize,
    },
    /// A hop contains a character no name or address may contain.
    #[error(
        "hop {hop} of the chain contains {ch:?}, which no remailer name or address may contain"
    )]
    BadCharacter {
        /// The hop, from 1.
        hop: usize,
        /// The character.
        ch: char,
    },
    /// A chain of no hops was asked for.
    #[error("a chain needs at least one hop")]
    NoHops,
    /// The chunk count is out of range.
    #[error("a message has 1 to {MAX_CHUNKS} chunks, not {chunks}")]
    Chunks {
        /// Chunks asked for.
        chunks: usize,
    },
    /// A reliability filter is not a fraction.
    #[error("{field} must be between 0 and 1")]
    Filter {
        /// The field.
        field: &'static str,
    },
    /// No known remailer has this name.
    #[error("hop {hop}: no known remailer is named {name:?}")]
    UnknownName {
        /// The hop, from 1.
        hop: usize,
        /// The name given.
        name: String,
    },
    /// No known remailer has this address.
    #[error("hop {hop}: no known remailer has the address {address}")]
    UnknownAddress {
        /// The hop, from 1.
        hop: usize,
        /// The address given.
        address: String,
    },
    /// Several remailers use the name.
    #[error(
        "hop {hop}: the name {name:?} is used by {} remailers ({}); give the address instead",
        .addresses.len(), .addresses.join(", ")
    )]
    NameClash {
        /// The hop, from 1.
        hop: usize,
        /// The name given.
        name: String,
        /// The addresses of the remailers using it.
        addresses: Vec<String>,
    },
    /// The named last hop does not deliver mail.
    #[error("hop {hop} (exit): {name} does not deliver mail; name an exit remailer or use `*`")]
    NotExit {
        /// The hop, from 1.
        hop: usize,
        /// The remailer's name.
        name: String,
    },
    /// Two named hops are the same remailer too close together.
    #[error(
        "hops {first} and {second} are both {name}; a remailer may not repeat within {distance} hops"
    )]
    NamedTooClose {
        /// The earlier hop, from 1.
        first: usize,
        /// The later hop, from 1.
        second: usize,
        /// The remailer's name.
        name: String,
        /// The distance rule.
        distance: usize,
    },
    /// Hops that must all differ have too few remailers to choose from.
    #[error(
        "hops {first} to {last} must be different remailers (distance {distance}), \
         but their {needed} random hops have only {available} to choose from"
    )]
    Repeats {
        /// The first of these hops, from 1.
        first: usize,
        /// The last of these hops, from 1.
        last: usize,
        /// The random hops among them.
        needed: usize,
        /// The remailers those hops may be.
        available: usize,
        /// The distance rule.
        distance: usize,
    },
    /// No valid chain exists; the hop where the search ran out of remailers.
    #[error("no remailer qualifies for hop {hop}{}: {excluded}", if *.exit { " (exit)" } else { "" })]
    NoneQualify {
        /// The hop, from 1.
        hop: usize,
        /// The hop is the exit of a mail message.
        exit: bool,
        /// What excluded the known remailers.
        excluded: Exclusions,
    },
}

impl fmt::Display for Exclusions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.known == 0 {
            return f.write_str("no remailers known");
        }
        write!(f, "{} known", self.known)?;
        let rel = if self.last { "relfinal" } else { "minrel" };
        let parts = [
            (self.not_exit, "not exit-capable".to_owned()),
            (self.unmeasured, "not measured yet".to_owned()),
            (
                self.below_reliability,
                format!("below {rel} {}", percent(self.min_reliability)),
            ),
            (
                self.over_latency,
                format!("over maxlat {}", duration(self.max_latency)),
            ),
            (
                self.within_distance,
                format!("used within distance {}", self.distance),
            ),
        ];
        for (n, what) in parts.iter().filter(|(n, _)| *n > 0) {
            write!(f, ", {n} {what}")?;
        }
        Ok(())
    }
}

/// `0.985` as `98.5%`.
fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 1000.0).round() / 10.0)
}

/// A duration in hours, minutes and seconds, e.g. `2h`, `1h 30m`, `45s`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [(s / 3600, "h"), (s / 60 % 60, "m"), (s % 60, "s")];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        text.join(" ")
    }
}
