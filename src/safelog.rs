//! Safe logging by type, with arti's [`safelog`](::safelog) crate.
//!
//! What identifies a message or a user (packet and message IDs, next-hop
//! and peer addresses, chains, recipients, message sizes and counts,
//! payload text) must never reach the logs at info or above, and reaches
//! debug only through [`Sensitive`]: it shows as `[scrubbed]` unless the
//! operator turned safe logging off (`node.safe_logging = false`, for
//! debugging a test network). The types that carry such data (queued
//! items, pool items, deliveries) print their identifying fields through
//! it in their `Debug` output, so logging one whole is safe too.
//!
//! `docs/logging.md` lists the levels and what each may contain.

pub use ::safelog::{Guard, Sensitive, sensitive};

/// Turns safe logging off for as long as the returned guard lives (the
/// whole process, for `node.safe_logging = false`).
pub fn disable() -> Result<Guard, ::safelog::Error> {
    ::safelog::disable_safe_logging()
}

/// A byte count shown only when safe logging is off.
pub fn bytes(n: usize) -> Sensitive<usize> {
    sensitive(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sensitive_values_are_scrubbed_unless_disabled() {
        let next_hop = sensitive("http://secret.onion");
        assert_eq!(format!("{next_hop}"), "[scrubbed]");
        assert_eq!(format!("{:?}", bytes(20480)), "[scrubbed]");
        let shown = ::safelog::with_safe_logging_suppressed(|| format!("{next_hop}"));
        assert_eq!(shown, "http://secret.onion");
    }
}
