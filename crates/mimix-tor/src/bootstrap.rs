//! Bootstrap progress: what Arti reports while it joins the Tor network,
//! in plain words, as log lines and on a watch channel.
//!
//! The task [`follow`] turns Arti's status events into
//! [`BootstrapProgress`] values and logs, at info, every change of the
//! percentage or of the reason Arti gives for being stuck. While the
//! client is not ready it also logs a warning every
//! [`TorConfig::bootstrap_warning`](crate::TorConfig::bootstrap_warning)
//! saying how long it has been and why, so that a node behind a firewall
//! or without a network says so in redirected logs and in the journal, not
//! only on a terminal. Nothing here ever stops the client: it keeps trying.

use std::time::Duration;

use arti_client::status::{BlockageKind, BootstrapEvents, BootstrapStatus};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// How far Arti has got joining the Tor network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapProgress {
    /// Rough progress, 0 to 100.
    pub percent: u8,
    /// Arti's description of the current step or of what is blocking it.
    pub description: String,
    /// Whether the client can carry traffic.
    pub ready: bool,
    /// Why the client seems stuck, in plain words with Arti's own
    /// message, if Arti thinks it is.
    pub blocked: Option<String>,
}

impl BootstrapProgress {
    /// Summarise one Arti status event.
    pub(crate) fn from_status(status: &BootstrapStatus) -> Self {
        let frac = status.as_frac().clamp(0.0, 1.0);
        // `frac` is within 0..=1, so this is within 0..=100.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let percent = (frac * 100.0).round() as u8;
        let blocked = status
            .blocked()
            .map(|b| format!("{} (Arti: {})", plain_words(&b.kind()), b.message()));
        Self {
            percent,
            description: status.to_string(),
            ready: status.ready_for_traffic(),
            blocked,
        }
    }

    /// Why the client is not ready yet: the plain-words reason when Arti
    /// gives one, else the step it is at.
    pub fn reason(&self) -> String {
        match &self.blocked {
            Some(b) => b.clone(),
            None => format!("no reason known yet; Arti says: {}", self.description),
        }
    }
}

/// What a kind of blockage means for an operator.
fn plain_words(kind: &BlockageKind) -> &'static str {
    match kind {
        BlockageKind::Offline => {
            "no connection to any Tor relay could be opened: is this machine online, \
             and may it open outgoing connections?"
        }
        BlockageKind::Filtering => {
            "connections to Tor relays open, but the Tor handshake fails: \
             this network may be blocking Tor"
        }
        BlockageKind::CantReachTor => "the Tor network cannot be reached",
        BlockageKind::ClockSkewed => {
            "this machine's clock seems to be wrong: check its date, time and time zone"
        }
        BlockageKind::CantBootstrap => {
            "the Tor directory cannot be downloaded from any relay or authority"
        }
        BlockageKind::Disabled => "the Tor client was not told to start",
        _ => "Tor is stuck",
    }
}

/// What to log, decided from progress and time alone (no I/O), so that it
/// can be tested without a network.
#[derive(Debug)]
pub(crate) struct ProgressLog {
    /// How long the client may be not ready before each warning.
    warn_every: Duration,
    /// The percentage and reason last logged.
    last: Option<(u8, Option<String>)>,
    /// Since when the client has not been ready (`None`: it is ready).
    not_ready_since: Option<Instant>,
    /// Whether it has ever been ready (the first wait is the bootstrap).
    was_ready: bool,
}

impl ProgressLog {
    /// A log for a client that started (not ready) at `started`.
    pub(crate) fn new(warn_every: Duration, started: Instant) -> Self {
        Self {
            warn_every,
            last: None,
            not_ready_since: Some(started),
            was_ready: false,
        }
    }

    /// An info line for new progress, if the percentage or the reason
    /// changed.
    pub(crate) fn on_progress(&mut self, p: &BootstrapProgress, now: Instant) -> Option<String> {
        if p.ready {
            self.not_ready_since = None;
            self.was_ready = true;
        } else if self.not_ready_since.is_none() {
            self.not_ready_since = Some(now);
        }
        let key = (p.percent, p.blocked.clone());
        if self.last.as_ref() == Some(&key) {
            return None;
        }
        self.last = Some(key);
        Some(match (&p.blocked, p.ready) {
            (_, true) => format!("Tor bootstrap: {}% (ready)", p.percent),
            (Some(b), false) => format!("Tor bootstrap: stuck at {}%: {b}", p.percent),
            (None, false) => format!("Tor bootstrap: {}", p.description),
        })
    }

    /// A warning, when the client has not been ready for at least
    /// `warn_every` (call it every `warn_every`).
    pub(crate) fn on_tick(&self, p: &BootstrapProgress, now: Instant) -> Option<String> {
        let since = self.not_ready_since?;
        let waited = now.saturating_duration_since(since);
        if p.ready || waited < self.warn_every {
            return None;
        }
        let what = match self.was_ready {
            false => "Tor has not finished bootstrapping",
            true => "Tor has not been ready",
        };
        Some(format!(
            "{what} for {} (at {}%): {}; still trying",
            whole_seconds(waited),
            p.percent,
            p.reason()
        ))
    }
}

/// `d` rounded down to whole seconds, in words ("5m 3s").
fn whole_seconds(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// Follows Arti's bootstrap events until the client is dropped: publishes
/// each on `progress`, logs changes at info, and warns every `warn_every`
/// while the client is not ready.
pub(crate) async fn follow(
    mut events: BootstrapEvents,
    progress: watch::Sender<BootstrapProgress>,
    warn_every: Duration,
) {
    let start = Instant::now();
    let mut log = ProgressLog::new(warn_every, start);
    let mut tick = tokio::time::interval_at(start + warn_every, warn_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            status = events.next() => {
                let Some(status) = status else { break };
                let p = BootstrapProgress::from_status(&status);
                if let Some(line) = log.on_progress(&p, Instant::now()) {
                    tracing::info!(percent = p.percent, ready = p.ready, "{line}");
                }
                progress.send_replace(p);
            }
            _ = tick.tick() => {
                let p = progress.borrow().clone();
                if let Some(line) = log.on_tick(&p, Instant::now()) {
                    tracing::warn!(percent = p.percent, "{line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const WARN: Duration = Duration::from_secs(300);

    fn at(percent: u8, blocked: Option<&str>) -> BootstrapProgress {
        BootstrapProgress {
            percent,
            description: format!("{percent}%: connecting to the internet; not downloading"),
            ready: false,
            blocked: blocked.map(str::to_owned),
        }
    }

    #[test]
    fn logs_each_change_of_percent_or_reason_once() {
        let t0 = Instant::now();
        let mut log = ProgressLog::new(WARN, t0);
        assert_eq!(
            log.on_progress(&at(0, None), t0).unwrap(),
            "Tor bootstrap: 0%: connecting to the internet; not downloading"
        );
        assert_eq!(log.on_progress(&at(0, None), t0), None, "no repeat");
        let stuck = log.on_progress(&at(0, Some("offline")), t0).unwrap();
        assert_eq!(stuck, "Tor bootstrap: stuck at 0%: offline");
        assert_eq!(log.on_progress(&at(0, Some("offline")), t0), None);
        let ready = BootstrapProgress {
            ready: true,
            ..at(100, None)
        };
        assert_eq!(
            log.on_progress(&ready, t0).unwrap(),
            "Tor bootstrap: 100% (ready)"
        );
    }

    #[test]
    fn warns_every_period_while_not_ready_with_how_long_and_why() {
        let t0 = Instant::now();
        let mut log = ProgressLog::new(WARN, t0);
        let p = at(8, Some("no connection to any Tor relay could be opened"));
        log.on_progress(&p, t0);
        assert_eq!(log.on_tick(&p, t0 + Duration::from_secs(299)), None);
        assert_eq!(
            log.on_tick(&p, t0 + WARN).unwrap(),
            "Tor has not finished bootstrapping for 5m (at 8%): \
             no connection to any Tor relay could be opened; still trying"
        );
        let later = log.on_tick(&p, t0 + 2 * WARN + Duration::from_secs(3));
        assert!(later.unwrap().contains("for 10m 3s (at 8%)"));
        let unknown = log.on_tick(&at(8, None), t0 + WARN).unwrap();
        assert!(
            unknown.contains("no reason known yet; Arti says: 8%: connecting"),
            "{unknown}"
        );
    }

    #[test]
    fn no_warning_once_ready_and_a_new_wait_after_losing_the_network() {
        let t0 = Instant::now();
        let mut log = ProgressLog::new(WARN, t0);
        let ready = BootstrapProgress {
            ready: true,
            ..at(100, None)
        };
        log.on_progress(&ready, t0);
        assert_eq!(log.on_tick(&ready, t0 + 10 * WARN), None);
        let lost_at = t0 + 10 * WARN;
        let lost = at(90, Some("offline"));
        log.on_progress(&lost, lost_at);
        assert_eq!(log.on_tick(&lost, lost_at + WARN / 2), None);
        let w = log.on_tick(&lost, lost_at + WARN).unwrap();
        assert!(
            w.starts_with("Tor has not been ready for 5m (at 90%): offline"),
            "{w}"
        );
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(whole_seconds(Duration::from_millis(2500)), "2s");
        assert_eq!(whole_seconds(Duration::from_secs(180)), "3m");
        assert_eq!(whole_seconds(Duration::from_secs(3 * 3600 + 65)), "3h 1m");
    }
}
