//! Arti messages that mislead an operator, reworded or lowered.
//!
//! | Arti says (target, level) | why it misleads | what the log shows |
//! |---|---|---|
//! | `Reached circuit build retry limit, exiting...` (`tor_circmgr`, warn) | nothing exits: one circuit request gave up, Tor goes on | debug, reworded |
//! | `Request failed` (`tor_circmgr`, warn) | says nothing; the caller logs the error itself | debug |
//! | `Requested N relays, but only M were usable ...` (`tor_netdir`, warn, once a second) | on a small private network (`tor.network = "custom"`) there are never enough relays for the guard sample; harmless | debug, custom networks only |
//!
//! The original event is dropped (for every layer) and the replacement,
//! if any, is logged under the target `mimix::tor`. Only events the filter
//! lets through are looked at, so a filter that hides Arti's warnings
//! hides these too.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// The target of the replacement lines.
pub const TARGET: &str = "mimix::tor";

/// What to do with one Arti message.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Log it unchanged.
    Keep,
    /// Drop it and log this at debug instead.
    Debug(String),
}

/// The layer that rewords or lowers the messages in the table above.
#[derive(Debug, Clone, Copy)]
pub struct ArtiNoise {
    small_network: bool,
}

impl ArtiNoise {
    /// `small_network`: the node joins a private Tor network.
    pub fn new(small_network: bool) -> Self {
        Self { small_network }
    }

    /// The rule for a message from `target`.
    fn action(&self, target: &str, message: &str) -> Action {
        if target.starts_with("tor_circmgr") {
            if message.starts_with("Reached circuit build retry limit") {
                return Action::Debug(
                    "Tor gave up one circuit request after repeated failures \
                     (the node keeps running and Tor keeps trying)"
                        .into(),
                );
            }
            if message == "Request failed" {
                return Action::Debug("Tor: a circuit request failed".into());
            }
        }
        if self.small_network
            && target.starts_with("tor_netdir")
            && message.starts_with("Requested ")
            && message.contains(" relays, but only ")
        {
            return Action::Debug(format!("Tor (small network): {message}"));
        }
        Action::Keep
    }
}

impl<S: Subscriber> Layer<S> for ArtiNoise {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("tor_") || *meta.level() > tracing::Level::WARN {
            return true;
        }
        let mut message = Message::default();
        event.record(&mut message);
        match self.action(meta.target(), &message.0) {
            Action::Keep => true,
            Action::Debug(text) => {
                tracing::debug!(target: TARGET, "{text}");
                false
            }
        }
    }
}

/// The `message` field of an event, as text.
#[derive(Debug, Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    // The whole layer, installed as the process's logger, is tested in
    // tests/logging.rs: a replacement is logged from inside the dispatch
    // of the original, which works with the global logger only.
    use super::*;

    #[test]
    fn the_false_exiting_is_reworded() {
        let noise = ArtiNoise::new(false);
        let Action::Debug(text) = noise.action(
            "tor_circmgr::mgr",
            "Reached circuit build retry limit, exiting...",
        ) else {
            panic!("kept")
        };
        assert!(!text.contains("exiting"), "{text}");
        assert!(text.contains("keeps running"), "{text}");
        assert_eq!(
            noise.action("tor_circmgr::mgr", "Request failed"),
            Action::Debug("Tor: a circuit request failed".into())
        );
    }

    #[test]
    fn too_few_relays_is_lowered_on_small_networks_only() {
        let msg = "Requested 36 relays, but only 0 were usable, and only 0 were chosen after weighting Guard.";
        assert_eq!(
            ArtiNoise::new(true).action("tor_netdir", msg),
            Action::Debug(format!("Tor (small network): {msg}"))
        );
        assert_eq!(
            ArtiNoise::new(false).action("tor_netdir", msg),
            Action::Keep
        );
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let noise = ArtiNoise::new(true);
        assert_eq!(
            noise.action("tor_dirmgr", "Unable to download a usable directory."),
            Action::Keep
        );
        assert_eq!(
            noise.action("tor_netdir", "Requested a thing"),
            Action::Keep
        );
    }
}
