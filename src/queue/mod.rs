//! The one durable-queue worker: every queue of the shape "durable item,
//! destination, retry with backoff, caps per destination" is served by
//! [`Worker`]. The outbound queue (packets for next hops) and the mail
//! queue (messages for SMTP) are its two users today.
//!
//! # How it runs
//!
//! The worker keeps up to [`Caps::concurrency`] attempts in flight, at most
//! [`Caps::per_destination`] of them to one destination. Whenever a slot
//! is free it asks its [`Queue`] for due items, telling it which items are
//! in flight and which destinations are at their cap, so a dead or slow
//! destination holds only its own slots and never the head of the due
//! list. A finished attempt frees its slot as soon as its outcome is
//! queued for writing (the item itself stays out of scans until it is
//! written) and the worker refills it straight away; new work is announced
//! with the [`Notify`] from [`Worker::waker`], and a coarse poll catches
//! retries coming due.
//!
//! An attempt ends in one of three ways ([`Attempt`]): delivered, failed
//! for good, or worth retrying. A retry is scheduled after
//! [`Retry::delay`] (exponential backoff with jitter) until the item has
//! been queued for [`Retry::give_up_after`]; then it is given up. One
//! recorder writes outcomes with [`Queue::record`], all those waiting in
//! one batch, so a queue in the store pays one `fsync` for a group of
//! deliveries rather than one each; if that write fails the item
//! is parked for a while instead of being tried again at once (2 s, then
//! twice as long each time it happens again, up to a minute), so a full or
//! failing disk does not turn into a storm of repeated deliveries. The
//! first outcome that is written again shows the store has recovered: the
//! parked items are then due at once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mimix_settings::{Checked, check};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::store::{Area, StoreError};

mod slots;
use slots::{Event, Slots};

/// How often the worker looks for retries that have come due when nothing
/// else woke it.
const POLL: Duration = Duration::from_secs(1);

/// Longest an item whose outcome could not be recorded is parked.
const MAX_PARK: Duration = Duration::from_secs(60);

/// How long attempts in flight at shutdown get to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Most outcomes written in one batch.
const RECORD_BATCH: usize = 256;

/// Backoff of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait before the first retry; doubled after each failure.
    pub initial: Duration,
    /// Longest wait between retries.
    pub max: Duration,
    /// An item still undelivered this long after it was queued is given
    /// up.
    pub give_up_after: Duration,
}

impl Retry {
    /// The delay before attempt `attempts + 1`: `initial * 2^attempts`,
    /// capped at `max`, then scaled by `jitter`, clamped to [0.75, 1.25].
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let factor = 1u32.checked_shl(attempts.min(30)).unwrap_or(u32::MAX);
        let exp = self.initial.saturating_mul(factor);
        exp.min(self.max).mul_f64(jitter.clamp(0.75, 1.25))
    }

    /// Checks the three durations, named as the table names them.
    pub fn validate(&self, [initial, max, give_up]: [&str; 3]) -> Checked {
        check(self.initial >= Duration::from_secs(1), initial, || {
            "must be at least 1s".into()
        })?;
        check(self.max >= self.initial, max, || {
            format!("must be at least {initial}")
        })?;
        check(self.give_up_after >= self.initial, give_up, || {
            format!("must be at least {initial}")
        })
    }
}

/// How many attempts run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most attempts in flight in all.
    pub concurrency: usize,
    /// Most attempts in flight to one destination.
    pub per_destination: usize,
}

impl Caps {
    /// Checks both caps, named as the table names them.
    pub fn validate(&self, [concurrency, per_destination]: [&str; 2]) -> Checked {
        check((1..=1024).contains(&self.concurrency), concurrency, || {
            format!("must be 1 to 1024, got {}", self.concurrency)
        })?;
        check(
            (1..=self.concurrency).contains(&self.per_destination),
            per_destination,
            || format!("must be 1 to {concurrency} ({})", self.concurrency),
        )
    }
}

/// How much a queue (or the pool) may hold, in items and stored bytes;
/// at either cap the intake refuses new packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most items.
    pub count: u64,
    /// Most stored bytes.
    pub bytes: u64,
}

impl Limit {
    /// Checks both caps (at least one item, at least
    /// [`crate::pool::MIN_CAP_BYTES`]), named as the table names them.
    pub fn validate(&self, [count, bytes]: [&str; 2]) -> Checked {
        check(self.count >= 1, count, || "must be at least 1".into())?;
        let min = crate::pool::MIN_CAP_BYTES;
        check(self.bytes >= min, bytes, || {
            format!("must be at least {min} bytes")
        })
    }

    /// Whether a queue holding `held` is at either cap.
    pub fn full(&self, held: Area) -> bool {
        held.count >= self.count || held.bytes >= self.bytes
    }
}

/// A due item as the worker sees it.
#[derive(Clone)]
pub struct Due<T> {
    /// The item's ID in its queue.
    pub id: u64,
    /// Where it goes (a next hop's address, a mail domain): the key of the
    /// per-destination cap.
    pub destination: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was first queued.
    pub first_queued: SystemTime,
    /// The item itself.
    pub item: T,
}

impl<T> std::fmt::Debug for Due<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("destination", &crate::safelog::sensitive(&self.destination))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<S> {
    /// Done: remove the item.
    Delivered,
    /// Failed for good (refused, invalid): remove the item.
    Failed,
    /// Failed for now; `S` is what the next attempt needs (for mail: the
    /// recipients still pending).
    Retry(S),
}

/// What the worker asks the queue to record.
#[derive(Debug)]
pub enum Outcome<S> {
    /// Delivered.
    Delivered,
    /// Failed for good.
    Failed,
    /// Still failing after [`Retry::give_up_after`].
    GaveUp,
    /// Try again at `at`, with `state`.
    Retry {
        /// When the item is due again.
        at: SystemTime,
        /// What the next attempt needs.
        state: S,
    },
}

/// What the worker passes to [`Queue::due`]: the items to leave out and
/// the room left per destination.
#[derive(Debug, Default)]
pub struct Skip {
    /// Items in flight or parked.
    ids: HashSet<u64>,
    /// Attempts in flight per destination, plus the items this scan took.
    busy: HashMap<String, usize>,
    /// Most attempts in flight to one destination.
    cap: usize,
    /// Destinations whose items were left for want of room.
    refused: HashSet<String>,
}

impl Skip {
    /// Leaves out `ids` and takes items for a destination only while its
    /// `busy` count (attempts in flight) is below `cap`.
    pub fn new(ids: HashSet<u64>, busy: HashMap<String, usize>, cap: usize) -> Self {
        Self {
            ids,
            busy,
            cap,
            refused: HashSet::new(),
        }
    }

    /// Whether the scan takes the item `id` for `destination`: it is not
    /// in flight or parked and its destination is below its cap, counting
    /// the items this scan took already. A taken item counts against its
    /// destination's cap.
    pub fn take(&mut self, id: u64, destination: &str) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        if self.busy.get(destination).copied().unwrap_or(0) >= self.cap {
            if !self.refused.contains(destination) {
                self.refused.insert(destination.to_owned());
            }
            return false;
        }
        *self.busy.entry(destination.to_owned()).or_default() += 1;
        true
    }
}

/// A durable queue served by a [`Worker`].
pub trait Queue: Send + Sync + 'static {
    /// A queued item.
    type Item: Send + 'static;
    /// What a retry keeps.
    type State: Send + 'static;

    /// The queue's name, for logs.
    fn name(&self) -> &'static str;

    /// Up to `limit` items due at `now`, earliest first, each one that
    /// [`Skip::take`] takes. Runs on the blocking pool.
    fn due(
        &self,
        now: SystemTime,
        limit: usize,
        skip: &mut Skip,
    ) -> Result<Vec<Due<Self::Item>>, StoreError>;

    /// Tries to deliver one item.
    fn attempt(&self, due: &Due<Self::Item>) -> impl Future<Output = Attempt<Self::State>> + Send;

    /// Records what became of several items, all or none (one durable
    /// write for a queue kept in the store). Runs on the blocking pool.
    fn record(&self, outcomes: Vec<Recorded<Self>>) -> Result<(), StoreError>;
}

/// An item and what became of it, waiting to be recorded.
pub type Recorded<Q> = (Due<<Q as Queue>::Item>, Outcome<<Q as Queue>::State>);

/// Where retry jitter comes from: a factor in [0.75, 1.25).
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Jitter from the thread's CSPRNG.
pub fn random_jitter() -> Jitter {
    Arc::new(|| rand::RngExt::random_range(&mut rand::rng(), 0.75..1.25))
}

/// Serves one [`Queue`].
pub struct Worker<Q: Queue> {
    queue: Arc<Q>,
    retry: Retry,
    caps: Caps,
    clock: Arc<dyn Clock>,
    jitter: Jitter,
    wake: Arc<Notify>,
}

impl<Q: Queue> std::fmt::Debug for Worker<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name())
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl<Q: Queue> Worker<Q> {
    /// A worker for `queue`.
    pub fn new(queue: Arc<Q>, retry: Retry, caps: Caps, clock: Arc<dyn Clock>) -> Self {
        Self {
            queue,
            retry,
            caps,
            clock,
            jitter: random_jitter(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The same worker, woken by `wake` (shared with whoever queues items).
    #[must_use]
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// The same worker with retry jitter from `jitter`.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Notifying this wakes the worker to look for due items at once (call
    /// it after queueing new items).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Serves the queue until `stop` is cancelled. No attempt starts after
    /// that; those in flight get [`SHUTDOWN_GRACE`] to finish and have
    /// their outcome recorded (an attempt cut short leaves its item due, to
    /// be tried again after a restart: the next hop then answers 409 if it
    /// had it already).
    pub async fn run(self, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        // Bounded: attempts wait (holding their slots) while this many
        // outcomes are queued for a slow disk.
        let (record_tx, record_rx) = mpsc::channel::<Recorded<Q>>(self.caps.concurrency.max(1));
        tokio::spawn(record(self.queue.clone(), record_rx, events_tx.clone()));
        let mut slots = Slots::default();
        // A steady tick, not a sleep restarted at every delivery: retries
        // coming due are seen within a second however busy the queue is.
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.fill(&mut slots, &record_tx, &events_tx).await;
            tokio::select! {
                _ = stop.cancelled() => break,
                e = events.recv() => {
                    let Some(e) = e else { break };
                    slots.event(e);
                    while let Ok(e) = events.try_recv() {
                        slots.event(e);
                    }
                }
                _ = self.wake.notified() => slots.only = None,
                _ = poll.tick() => slots.only = None,
            }
        }
        let drain = async {
            while !slots.settled() {
                match events.recv().await {
                    Some(e) => slots.event(e),
                    None => break,
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            debug!(
                "{}: attempts still in flight at shutdown",
                self.queue.name()
            );
        }
    }

    /// Starts attempts for due items while slots are free. The queue takes
    /// items only for destinations below their cap ([`Skip::take`]), so
    /// one scan fills every slot it can.
    async fn fill(
        &self,
        slots: &mut Slots,
        record: &mpsc::Sender<Recorded<Q>>,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let cap = self.caps.per_destination.max(1);
        let wanted = slots.wanted(slots.free(self.caps.concurrency), cap);
        if wanted == 0 {
            return;
        }
        let mut skip = slots.skip(cap);
        let (queue, now) = (self.queue.clone(), self.clock.now());
        let due = tokio::task::spawn_blocking(move || {
            let due = queue.due(now, wanted, &mut skip);
            (due, skip.refused)
        })
        .await;
        let due = match due {
            Ok((Ok(due), refused)) => {
                if due.len() < wanted {
                    // All there was: what is left waits for room.
                    slots.only = Some(refused);
                }
                due
            }
            Ok((Err(e), _)) => {
                warn!("reading the {} queue: {e}", self.queue.name());
                return;
            }
            Err(_) => {
                warn!("reading the {} queue: task failed", self.queue.name());
                return;
            }
        };
        for item in due {
            // The queue honours the caps; checked again all the same.
            if slots.free(self.caps.concurrency) == 0
                || slots.busy(&item.destination) >= cap
                || slots.is_pending(item.id)
            {
                continue;
            }
            slots.start(item.id, &item.destination);
            self.spawn_attempt(item, record.clone(), events.clone());
        }
    }

    /// Runs one attempt and hands its outcome to the recorder; its slot is
    /// free once the outcome is queued (the item stays out of scans until
    /// the outcome is written).
    fn spawn_attempt(
        &self,
        due: Due<Q::Item>,
        record: mpsc::Sender<Recorded<Q>>,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let queue = self.queue.clone();
        let (retry, clock, jitter) = (self.retry, self.clock.clone(), self.jitter.clone());
        tokio::spawn(async move {
            let attempt = queue.attempt(&due).await;
            let outcome = decide(attempt, &due, &retry, clock.now(), jitter());
            let destination = due.destination.clone();
            let _ = record.send((due, outcome)).await;
            let _ = events.send(Event::Attempted(destination));
        });
    }
}

/// Writes outcomes as they come, as many as are waiting in one batch (so
/// a queue in the store pays one `fsync` for a whole group of deliveries).
async fn record<Q: Queue>(
    queue: Arc<Q>,
    mut outcomes: mpsc::Receiver<Recorded<Q>>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match outcomes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ids: Vec<u64> = batch.iter().map(|(due, _)| due.id).collect();
        let q = queue.clone();
        let recorded = tokio::task::spawn_blocking(move || q.record(batch)).await;
        let error = match recorded {
            Ok(written) => written.err().map(|e| e.to_string()),
            Err(_) => Some("task failed".to_owned()),
        };
        if let Some(e) = &error {
            warn!("recording {} deliveries: {e}", queue.name());
        }
        for id in ids {
            let unrecorded = error.is_some();
            let _ = events.send(Event::Recorded { id, unrecorded });
        }
    }
}

/// Turns an attempt into the outcome to record.
fn decide<T, S>(
    attempt: Attempt<S>,
    due: &Due<T>,
    retry: &Retry,
    now: SystemTime,
    jitter: f64,
) -> Outcome<S> {
    match attempt {
        Attempt::Delivered => Outcome::Delivered,
        Attempt::Failed => Outcome::Failed,
        Attempt::Retry(state) => {
            let queued_for = now.duration_since(due.first_queued).unwrap_or_default();
            if queued_for >= retry.give_up_after {
                debug!("giving up on an item after its retry period");
                Outcome::GaveUp
            } else {
                Outcome::Retry {
                    at: now + retry.delay(due.attempts, jitter),
                    state,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
