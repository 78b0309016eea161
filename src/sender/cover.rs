//! Sender cover traffic (draft 7: "send packets at regular intervals,
//! using a dummy message whenever appropriate"): `mimix sender`.
//!
//! The sender sends at random times: the gaps between two sends are drawn
//! from an exponential distribution with mean [`Settings::mean_interval`]
//! (a Poisson process), from a random source of their own ([`Schedule`]),
//! and every send time is the previous *scheduled* time plus a gap, so
//! neither the outbox nor how long a send took moves the schedule. At each
//! tick the oldest due message of the [`Outbox`] is sent (chains picked
//! now, as `mimix send` picks them); when there is none, or it cannot be
//! planned, a dummy goes through a random chain
//! ([`Settings::dummy_chain`]) instead. An observer of the sender's link
//! sees the same process whether or not, and whenever, the sender wrote.
//!
//! A message leaves the outbox only once every one of its packets was
//! posted (a 200 from each first hop). If one was not, the message stays,
//! with the backoff of the queue conventions ([`Retry`]: not before
//! `retry_initial * 2^attempts`, capped at `retry_max`, with jitter), and
//! is given up after `give_up_after` (moved to `failed/`). The retry only
//! makes it eligible again: it is sent at the first tick after that, so a
//! retry never adds a send at a time of its own. That is also why the
//! outbox is not served by [`crate::queue::Worker`], which sends an item as
//! soon as it is due: its timing would tell when the message was queued.
//! A retried message is planned afresh (new chains, new message ID);
//! chunks that got through the first time expire at the exit unassembled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mimix_settings::{Checked, check, days, duration, hours, minutes, size};
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::outbox::{Caps, Entry, Outbox, OutboxError, secs};
use super::{Planned, Remailers, SendError};
use crate::clock::Clock;
use crate::directory::chain::{ChainSpec, Filters};
use crate::queue::Retry;
use crate::safelog::sensitive;

/// `sender.toml` in the sender's state directory: cover traffic and the
/// outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Mean time between two sends (the gaps are exponential).
    #[serde(with = "duration")]
    pub mean_interval: Duration,
    /// The chain of the dummies sent when the outbox is empty.
    pub dummy_chain: String,
    /// Most messages in the outbox.
    pub max_messages: usize,
    /// Most bytes in the outbox.
    #[serde(with = "size")]
    pub max_bytes: u64,
    /// First wait before a message whose send failed is tried again;
    /// doubled after each failure.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between two tries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// A message still not sent this long after it was queued is given up
    /// (moved to `outbox/failed/`).
    #[serde(with = "duration")]
    pub give_up_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mean_interval: minutes(30),
            dummy_chain: "*,*,*".into(),
            max_messages: 100,
            max_bytes: 64 << 20,
            retry_initial: minutes(30),
            retry_max: hours(6),
            give_up_after: days(7),
        }
    }
}

impl Settings {
    /// Checks every value; fields are named relative to the file.
    pub fn validate(&self) -> Checked {
        check(
            self.mean_interval >= Duration::from_millis(100),
            "mean_interval",
            || "must be at least 100ms".into(),
        )?;
        check(
            self.dummy_chain.parse::<ChainSpec>().is_ok(),
            "dummy_chain",
            || format!("not a chain: {:?}", self.dummy_chain),
        )?;
        check(
            (1..=100_000).contains(&self.max_messages),
            "max_messages",
            || format!("must be 1 to 100000, got {}", self.max_messages),
        )?;
        let one = mimix_packet::layout::MAX_MESSAGE_LEN as u64;
        check(self.max_bytes >= one, "max_bytes", || {
            format!("must hold one message of the largest size, {one} bytes")
        })?;
        self.retry()
            .validate(["retry_initial", "retry_max", "give_up_after"])
    }

    /// The outbox caps.
    pub fn caps(&self) -> Caps {
        Caps {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
        }
    }

    /// The retry conventions of the outbox.
    pub fn retry(&self) -> Retry {
        Retry {
            initial: self.retry_initial,
            max: self.retry_max,
            give_up_after: self.give_up_after,
        }
    }
}

/// The send times: exponential gaps from a random source used for nothing
/// else.
#[derive(Debug)]
pub struct Schedule {
    rng: StdRng,
    exp: Option<Exp<f64>>,
    mean: Duration,
}

impl Schedule {
    /// Gaps with mean `mean`, drawn from `rng`.
    pub fn new(mean: Duration, rng: StdRng) -> Self {
        let exp = Exp::new(1.0 / mean.as_secs_f64().max(1e-3)).ok();
        Self { rng, exp, mean }
    }

    /// The next gap.
    pub fn next_gap(&mut self) -> Duration {
        match &self.exp {
            Some(e) => Duration::from_secs_f64(e.sample(&mut self.rng)),
            None => self.mean,
        }
    }
}

/// Posting a packet to its first hop: the network edge.
pub trait Post: Send + Sync {
    /// Posts `planned`; `Err` says why it was not accepted with a 200.
    fn post(&self, planned: &Planned) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the sender knows of the network on `day` (read afresh each tick:
/// a node keeps its snapshot up to date).
pub type Directory = Box<dyn Fn(u64) -> Result<Remailers, String> + Send + Sync>;

/// What one tick sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A queued message, all its packets posted; it left the outbox.
    Message {
        /// Its packets.
        packets: usize,
    },
    /// A queued message that could not be sent: it stays, for a retry.
    MessageFailed,
    /// A queued message given up on.
    GaveUp,
    /// A dummy, posted.
    Dummy,
    /// A dummy that could not be built or posted.
    DummyFailed,
}

impl Sent {
    /// What was sent, for the log (per-message events are debug, and no
    /// sizes: see `docs/logging.md`).
    pub fn what(&self) -> &'static str {
        match self {
            Sent::Message { .. } => "sent a queued message",
            Sent::MessageFailed => "a queued message was not sent; it waits for a retry",
            Sent::GaveUp => "a queued message was given up",
            Sent::Dummy => "sent a dummy",
            Sent::DummyFailed => "a dummy was not sent",
        }
    }
}

/// The running sender.
pub struct Cover<P: Post> {
    settings: Settings,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    directory: Directory,
    post: P,
    schedule: Schedule,
    rng: StdRng,
    next: Instant,
}

impl<P: Post> std::fmt::Debug for Cover<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cover")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a message was not sent at a tick.
#[derive(Debug, thiserror::Error)]
enum TickError {
    /// The directory could not be read.
    #[error("the directory: {0}")]
    Directory(String),
    /// Its chain string does not parse (it did when it was queued).
    #[error(transparent)]
    Chain(#[from] crate::directory::chain::ChainError),
    /// Its packets could not be built.
    #[error(transparent)]
    Plan(#[from] SendError),
}

impl<P: Post> Cover<P> {
    /// A sender over `outbox`; its first tick is one gap after now.
    /// `schedule_rng` draws the send times and nothing else; `rng` builds
    /// the packets.
    pub fn new(
        settings: Settings,
        outbox: Outbox,
        clock: Arc<dyn Clock>,
        directory: Directory,
        post: P,
        schedule_rng: StdRng,
        rng: StdRng,
    ) -> Self {
        let mut schedule = Schedule::new(settings.mean_interval, schedule_rng);
        let next = Instant::now() + schedule.next_gap();
        Self {
            settings,
            outbox,
            clock,
            directory,
            post,
            schedule,
            rng,
            next,
        }
    }

    /// Waits for the next tick and sends; returns when it was scheduled
    /// and what went.
    pub async fn step(&mut self) -> (Instant, Sent) {
        let at = self.next;
        tokio::time::sleep_until(at).await;
        self.next = at + self.schedule.next_gap();
        (at, self.tick().await)
    }

    /// Sends at every tick until `stop` resolves.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                (_, sent) = self.step() => debug!("cover traffic: {}", sent.what()),
            }
        }
    }

    /// One tick: the oldest due message, else a dummy.
    async fn tick(&mut self) -> Sent {
        let due = match self.outbox.next_due(self.clock.now()) {
            Ok(due) => due,
            Err(e) => {
                warn!("reading the outbox: {e}");
                None
            }
        };
        let Some((entry, message)) = due else {
            return self.dummy().await;
        };
        match self.plan(&entry, &message) {
            Ok(planned) => self.send_message(&entry, &message, &planned).await,
            Err(e) => {
                warn!("a queued message cannot be sent now ({e}); a dummy goes instead");
                let sent = self.failed(&entry, &message);
                self.dummy().await;
                sent
            }
        }
    }

    fn plan(&mut self, entry: &Entry, message: &[u8]) -> Result<Vec<Planned>, TickError> {
        let today = self.clock.epoch_day();
        let remailers = (self.directory)(today).map_err(TickError::Directory)?;
        let spec: ChainSpec = entry.meta.chain.parse()?;
        let (f, copies, rng) = (&Filters::default(), entry.meta.copies, &mut self.rng);
        Ok(if entry.meta.gzip {
            super::plan_compressed(rng, message, &spec, &remailers, f, copies, today)?.0
        } else {
            super::plan(rng, message, &spec, &remailers, f, copies, today)?
        })
    }

    async fn send_message(&mut self, entry: &Entry, message: &[u8], planned: &[Planned]) -> Sent {
        if let Err(e) = post_all(&self.post, planned).await {
            warn!("a first hop did not accept a queued message's packet; it stays queued");
            debug!("the post failed: {}", sensitive(&e));
            return self.failed(entry, message);
        }
        if let Err(e) = self.outbox.remove(entry) {
            warn!("removing a sent message from the outbox: {e}");
        }
        Sent::Message {
            packets: planned.len(),
        }
    }

    /// Records a failed attempt: retried later, or given up.
    fn failed(&mut self, entry: &Entry, message: &[u8]) -> Sent {
        let now = self.clock.now();
        let queued_for = secs(now).saturating_sub(entry.meta.queued_at);
        let retry = self.settings.retry();
        let r: Result<Sent, OutboxError> = if queued_for >= retry.give_up_after.as_secs() {
            self.outbox.give_up(entry).map(|to| {
                warn!(
                    "gave up on a queued message; it is kept in {}",
                    to.display()
                );
                Sent::GaveUp
            })
        } else {
            let jitter = self.rng.random_range(0.75..1.25);
            let delay = retry.delay(entry.meta.attempts, jitter);
            let r = self.outbox.retry_later(entry, message, now, delay);
            r.map(|()| Sent::MessageFailed)
        };
        r.unwrap_or_else(|e| {
            warn!("recording a failed send in the outbox: {e}");
            Sent::MessageFailed
        })
    }

    async fn dummy(&mut self) -> Sent {
        let today = self.clock.epoch_day();
        let planned = (self.directory)(today).and_then(|r| {
            let spec: ChainSpec = self
                .settings
                .dummy_chain
                .parse()
                .map_err(|e| format!("{e}"))?;
            super::plan_dummy(&mut self.rng, &spec, &r, &Filters::default(), today)
                .map_err(|e| e.to_string())
        });
        let result = match planned {
            Ok(p) => self.post.post(&p).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Sent::Dummy,
            Err(e) => {
                warn!("a dummy was not sent");
                debug!("the dummy failed: {}", sensitive(&e));
                Sent::DummyFailed
            }
        }
    }
}

/// Posts every packet, stopping at the first one not accepted.
async fn post_all<P: Post>(post: &P, planned: &[Planned]) -> Result<(), String> {
    for p in planned {
        post.post(p).await?;
    }
    Ok(())
}

/// A random source for [`Cover::new`], seeded from the operating system's.
pub fn os_seeded() -> StdRng {
    rand::SeedableRng::from_rng(&mut rand::rng())
}

#[cfg(test)]
#[path = "cover_tests.rs"]
mod tests;
