//! Fetching the remailers' confs: the keyring's due entries are a queue,
//! served by the [`queue`](crate::queue) worker like every other (one fetch
//! per remailer at a time, `[directory] concurrency` in all). Each fetch
//! goes to the remailer's own address over the transport (over Tor, each
//! remailer on circuits of its own); what comes back must pass the
//! keyring's rules. A success schedules the next fetch at a random time
//! around `[directory] refresh`; a failure or a refusal is retried with
//! backoff; a remailer failing for `forget_after` is forgotten (a seed is
//! kept and tried again later).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use tokio::sync::Notify;
use tracing::debug;

use super::keyring::{Entry, Origin};
use super::{Directory, DirectoryConfig};
use crate::clock::Clock;
use crate::queue::{Attempt, Caps, Due, Outcome, Queue, Recorded, Retry, Skip, Worker};
use crate::store::StoreError;
use crate::transport::{ClientLimits, Dialer, fetch_conf};

/// Counts an event under a counter name.
pub type Count = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// The conf fetches as the worker sees them.
pub struct Fetches {
    dir: Arc<Directory>,
    dialer: Arc<dyn Dialer>,
    limits: ClientLimits,
    clock: Arc<dyn Clock>,
    config: DirectoryConfig,
    count: Count,
}

/// A remailer's place in the worker's books: a stable number for its
/// address.
fn id_of(address: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    address.hash(&mut h);
    h.finish()
}

fn secs(t: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t)
}

impl Fetches {
    /// The worker fetching the confs of `dir`'s remailers; `wake` is
    /// notified when new remailers are heard of.
    #[allow(clippy::too_many_arguments)]
    pub fn worker(
        dir: Arc<Directory>,
        dialer: Arc<dyn Dialer>,
        limits: ClientLimits,
        clock: Arc<dyn Clock>,
        config: &DirectoryConfig,
        count: Count,
        wake: Arc<Notify>,
    ) -> Worker<Self> {
        let retry = Retry {
            initial: Duration::from_secs(60).min(config.refresh),
            max: config.refresh,
            give_up_after: config.forget_after,
        };
        let caps = Caps {
            concurrency: config.concurrency,
            per_destination: 1,
        };
        let fetches = Self {
            dir,
            dialer,
            limits,
            clock: clock.clone(),
            config: config.clone(),
            count,
        };
        Worker::new(Arc::new(fetches), retry, caps, clock).with_waker(wake)
    }

    /// When the next fetch after a success is due: a random time between
    /// half and one and a half refresh periods from `now`.
    fn next_after_success(&self, now: u64) -> u64 {
        let refresh = self.config.refresh.as_secs_f64();
        let factor: f64 = rand::rng().random_range(0.5..1.5);
        now.saturating_add((refresh * factor) as u64)
    }

    /// Accepts `text` fetched from `address` (blocking).
    fn accept(&self, address: String, text: String) -> Result<bool, StoreError> {
        let now = super::pinger::unix(self.clock.now());
        let next = self.next_after_success(now);
        let result = self.dir.update(|ring| {
            let before: Vec<String> = ring.entries().map(|e| e.address.clone()).collect();
            let result = ring.accept(&address, &text, now, next, false);
            let mut changed = vec![address.clone()];
            changed.extend(
                ring.entries()
                    .filter(|e| !before.contains(&e.address))
                    .map(|e| e.address.clone()),
            );
            (result, changed)
        })?;
        match result {
            Ok(done) => {
                (self.count)("directory_confs_accepted", 1);
                (self.count)("directory_discovered", done.discovered as u64);
                (self.count)("directory_discovery_capped", done.capped as u64);
                Ok(true)
            }
            Err(refusal) => {
                debug!("refused a remailer-conf: {refusal}");
                (self.count)(&format!("directory_refused_{}", refusal.reason()), 1);
                Ok(false)
            }
        }
    }
}

impl Queue for Fetches {
    type Item = Origin;
    type State = ();

    fn name(&self) -> &'static str {
        "directory"
    }

    fn due(
        &self,
        now: SystemTime,
        limit: usize,
        skip: &mut Skip,
    ) -> Result<Vec<Due<Origin>>, StoreError> {
        let now = super::pinger::unix(now);
        Ok(self.dir.with_keyring(|ring| {
            ring.due(now)
                .into_iter()
                .filter(|e| skip.take(id_of(&e.address), &e.address))
                .take(limit)
                .map(|e: &Entry| Due {
                    id: id_of(&e.address),
                    destination: e.address.clone(),
                    attempts: e.failures,
                    first_queued: secs(e.last_ok.unwrap_or(e.first_seen)),
                    item: e.origin,
                })
                .collect()
        }))
    }

    async fn attempt(&self, due: &Due<Origin>) -> Attempt<()> {
        let fetched = fetch_conf(&*self.dialer, &due.destination, &self.limits).await;
        let text = match fetched {
            Ok(text) => text,
            Err(e) => {
                debug!("fetching a remailer-conf failed: {e}");
                (self.count)("directory_fetch_failed", 1);
                return Attempt::Retry(());
            }
        };
        let (me, address) = (self.clone_parts(), due.destination.clone());
        let accepted = tokio::task::spawn_blocking(move || me.accept(address, text)).await;
        match accepted {
            Ok(Ok(true)) => Attempt::Delivered,
            _ => Attempt::Retry(()),
        }
    }

    fn record(&self, outcomes: Vec<Recorded<Self>>) -> Result<(), StoreError> {
        outcomes
            .into_iter()
            .try_for_each(|(due, outcome)| self.record_one(due, outcome))
    }
}

impl Fetches {
    /// Records what became of one fetch in the keyring.
    fn record_one(&self, due: Due<Origin>, outcome: Outcome<()>) -> Result<(), StoreError> {
        let address = due.destination;
        match outcome {
            // Accepting already stored the entry and its next fetch.
            Outcome::Delivered => Ok(()),
            Outcome::Retry { at, .. } => self.dir.update(|ring| {
                ring.failed(&address, super::pinger::unix(at));
                ((), vec![address.clone()])
            }),
            Outcome::GaveUp | Outcome::Failed => self.dir.update(|ring| {
                if due.item == Origin::Seed {
                    let later =
                        super::pinger::unix(self.clock.now()) + self.config.refresh.as_secs();
                    ring.failed(&address, later);
                } else {
                    ring.forget(&address);
                }
                ((), vec![address.clone()])
            }),
        }
    }
}

impl Fetches {
    /// What the blocking half of an attempt needs.
    fn clone_parts(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            dialer: self.dialer.clone(),
            limits: self.limits.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            count: self.count.clone(),
        }
    }
}
