#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::clock::ManualClock;

#[test]
fn backoff_doubles_then_caps() {
    let r = Retry {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(6 * 3600),
        give_up_after: Duration::from_secs(86_400),
    };
    assert_eq!(r.delay(0, 1.0), Duration::from_secs(60));
    assert_eq!(r.delay(1, 1.0), Duration::from_secs(120));
    assert_eq!(r.delay(5, 1.0), Duration::from_secs(1920));
    assert_eq!(r.delay(9, 1.0), r.max);
    assert_eq!(r.delay(500, 1.0), r.max);
    assert_eq!(r.delay(0, 0.75), Duration::from_secs(45));
    assert_eq!(r.delay(0, 9.0), Duration::from_secs(75));
}

#[test]
fn settings_are_checked_with_the_tables_names() {
    let r = Retry {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(30),
        give_up_after: Duration::from_secs(86_400),
    };
    assert_eq!(r.validate(["a", "b", "c"]).unwrap_err().field, "b");
    let c = Caps {
        concurrency: 4,
        per_destination: 5,
    };
    assert_eq!(c.validate(["x", "y"]).unwrap_err().field, "y");
    let zero = Caps {
        concurrency: 0,
        per_destination: 0,
    };
    assert_eq!(zero.validate(["x", "y"]).unwrap_err().field, "x");
}

/// How an item's attempts behave.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Delivered after this long.
    Deliver(Duration),
    /// Never answers.
    Hang,
    /// Fails for now, every time, at once.
    Retry,
}

struct Item {
    destination: String,
    due: SystemTime,
    attempts: u32,
    first_queued: SystemTime,
    behaviour: Behaviour,
}

/// An in-memory queue: the worker under test talks to it as to the store.
struct MemQueue {
    items: Mutex<BTreeMap<u64, Item>>,
    delivered: Mutex<Vec<(u64, tokio::time::Instant)>>,
    outcomes: Mutex<Vec<(u64, &'static str)>>,
    attempts: AtomicU32,
    /// Items whose records fail before one succeeds.
    failing_records: AtomicU32,
    /// The size of each batch passed to `record`.
    records: Mutex<Vec<usize>>,
    /// How long each `record` takes, if set.
    slow_record: Mutex<Option<Duration>>,
    /// Due items looked at by all scans.
    looked: AtomicU32,
}

impl MemQueue {
    fn new() -> Self {
        Self {
            items: Mutex::new(BTreeMap::new()),
            delivered: Mutex::new(Vec::new()),
            outcomes: Mutex::new(Vec::new()),
            attempts: AtomicU32::new(0),
            failing_records: AtomicU32::new(0),
            records: Mutex::new(Vec::new()),
            slow_record: Mutex::new(None),
            looked: AtomicU32::new(0),
        }
    }

    fn add(&self, id: u64, destination: &str, now: SystemTime, behaviour: Behaviour) {
        self.items.lock().unwrap().insert(
            id,
            Item {
                destination: destination.into(),
                due: now,
                attempts: 0,
                first_queued: now,
                behaviour,
            },
        );
    }

    fn delivered(&self) -> Vec<(u64, tokio::time::Instant)> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Queue for MemQueue {
    type Item = Behaviour;
    type State = ();

    fn name(&self) -> &'static str {
        "test"
    }

    fn due(
        &self,
        now: SystemTime,
        limit: usize,
        skip: &mut Skip,
    ) -> Result<Vec<Due<Behaviour>>, StoreError> {
        // In ID order, as far as needed, as the store scans its index.
        let items = self.items.lock().unwrap();
        Ok(items
            .iter()
            .filter(|(_, i)| i.due <= now)
            .inspect(|_| {
                self.looked.fetch_add(1, Ordering::SeqCst);
            })
            .filter(|(id, i)| skip.take(**id, &i.destination))
            .take(limit)
            .map(|(id, i)| Due {
                id: *id,
                destination: i.destination.clone(),
                attempts: i.attempts,
                first_queued: i.first_queued,
                item: i.behaviour,
            })
            .collect())
    }

    async fn attempt(&self, due: &Due<Behaviour>) -> Attempt<()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match due.item {
            Behaviour::Deliver(d) => {
                tokio::time::sleep(d).await;
                Attempt::Delivered
            }
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                Attempt::Failed
            }
            Behaviour::Retry => Attempt::Retry(()),
        }
    }

    fn record(&self, outcomes: Vec<Recorded<Self>>) -> Result<(), StoreError> {
        self.records.lock().unwrap().push(outcomes.len());
        if let Some(d) = *self.slow_record.lock().unwrap() {
            // Real time: a write to a slow disk.
            std::thread::sleep(d);
        }
        // A failing batch fails whole; each of its items uses up one of
        // the failures.
        let n = u32::try_from(outcomes.len()).unwrap();
        if self
            .failing_records
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                (f > 0).then(|| f.saturating_sub(n))
            })
            .is_ok()
        {
            return Err(StoreError::Corrupt {
                what: "test",
                path: "/nowhere".into(),
                reason: "disk full".into(),
            });
        }
        for (due, outcome) in outcomes {
            self.record_one(due, outcome);
        }
        Ok(())
    }
}

impl MemQueue {
    fn record_one(&self, due: Due<Behaviour>, outcome: Outcome<()>) {
        let mut items = self.items.lock().unwrap();
        let name = match outcome {
            Outcome::Delivered => {
                items.remove(&due.id);
                self.delivered
                    .lock()
                    .unwrap()
                    .push((due.id, tokio::time::Instant::now()));
                "delivered"
            }
            Outcome::Failed => {
                items.remove(&due.id);
                "failed"
            }
            Outcome::GaveUp => {
                items.remove(&due.id);
                "gave up"
            }
            Outcome::Retry { at, .. } => {
                if let Some(i) = items.get_mut(&due.id) {
                    i.due = at;
                    i.attempts += 1;
                }
                "retry"
            }
        };
        self.outcomes.lock().unwrap().push((due.id, name));
    }
}

fn retry() -> Retry {
    Retry {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(86_400),
    }
}

fn start(
    queue: &Arc<MemQueue>,
    clock: &ManualClock,
    caps: Caps,
) -> (CancellationToken, Arc<Notify>) {
    let worker = Worker::new(queue.clone(), retry(), caps, Arc::new(clock.clone()))
        .with_jitter(Arc::new(|| 1.0));
    let wake = worker.waker();
    let stop = CancellationToken::new();
    tokio::spawn(worker.run(stop.clone()));
    (stop, wake)
}

/// Waits (in paused time) until `n` items are delivered, at most `limit`.
async fn until_delivered(queue: &MemQueue, n: usize, limit: Duration) {
    let t0 = tokio::time::Instant::now();
    while queue.delivered().len() < n {
        assert!(
            t0.elapsed() < limit,
            "only {} delivered",
            queue.delivered().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_is_refilled_at_once() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    for id in 0..20 {
        queue.add(
            id,
            "hop",
            clock.now(),
            Behaviour::Deliver(Duration::from_millis(100)),
        );
    }
    let caps = Caps {
        concurrency: 8,
        per_destination: 2,
    };
    let t0 = tokio::time::Instant::now();
    let (stop, _) = start(&queue, &clock, caps);
    until_delivered(&queue, 20, Duration::from_secs(30)).await;
    let took = t0.elapsed();
    // Two at a time, 100 ms each: ten rounds. A worker that waits for a
    // tick to refill a slot would need ten ticks.
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_millis(1100), "{took:?}");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_destination_holds_only_its_own_slots() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    // The tarpit's items come first in the due list.
    for id in 0..150 {
        queue.add(id, "tarpit", clock.now(), Behaviour::Hang);
    }
    for id in 150..155 {
        queue.add(
            id,
            "ok",
            clock.now(),
            Behaviour::Deliver(Duration::from_millis(10)),
        );
    }
    let caps = Caps {
        concurrency: 4,
        per_destination: 2,
    };
    let t0 = tokio::time::Instant::now();
    let (stop, _) = start(&queue, &clock, caps);
    until_delivered(&queue, 5, Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    // The tarpit got its two slots and no more.
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 2 + 5);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn new_work_is_picked_up_when_woken() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    let caps = Caps {
        concurrency: 2,
        per_destination: 2,
    };
    let (stop, wake) = start(&queue, &clock, caps);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = tokio::time::Instant::now();
    queue.add(1, "hop", clock.now(), Behaviour::Deliver(Duration::ZERO));
    wake.notify_one();
    until_delivered(&queue, 1, Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_then_give_up() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    queue.add(1, "hop", clock.now(), Behaviour::Retry);
    let caps = Caps {
        concurrency: 1,
        per_destination: 1,
    };
    let (stop, _) = start(&queue, &clock, caps);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Not due again before its backoff: one attempt so far.
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 1);
    let due = queue.items.lock().unwrap()[&1].due;
    assert_eq!(due, clock.now() + Duration::from_secs(60));
    clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 2);
    let due = queue.items.lock().unwrap()[&1].due;
    assert_eq!(due, clock.now() + Duration::from_secs(120));
    // Past its retry period, the next failure gives it up.
    clock.advance(Duration::from_secs(86_400));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcomes = queue.outcomes.lock().unwrap().clone();
    assert_eq!(outcomes, vec![(1, "retry"), (1, "retry"), (1, "gave up")]);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unrecorded_outcome_parks_the_item_instead_of_a_storm() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    queue.add(1, "hop", clock.now(), Behaviour::Deliver(Duration::ZERO));
    queue.failing_records.store(3, Ordering::SeqCst);
    let caps = Caps {
        concurrency: 1,
        per_destination: 1,
    };
    let (stop, _) = start(&queue, &clock, caps);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Parked 2 s, then 4 s: three attempts in ten seconds, not one per
    // poll or per wake-up.
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 3);
    until_delivered(&queue, 1, Duration::from_secs(60)).await;
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 4);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn attempts_in_flight_finish_and_are_recorded_at_shutdown() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    queue.add(
        1,
        "slow",
        clock.now(),
        Behaviour::Deliver(Duration::from_secs(3)),
    );
    queue.add(2, "hang", clock.now(), Behaviour::Hang);
    let caps = Caps {
        concurrency: 4,
        per_destination: 1,
    };
    let worker = Worker::new(queue.clone(), retry(), caps, Arc::new(clock.clone()));
    let stop = CancellationToken::new();
    let run = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 2);
    let t0 = tokio::time::Instant::now();
    stop.cancel();
    run.await.unwrap();
    // The slow one finished and was recorded; the hanging one was given
    // up on after the grace period, its item left due.
    assert_eq!(queue.delivered().len(), 1);
    assert!(t0.elapsed() >= SHUTDOWN_GRACE, "{:?}", t0.elapsed());
    assert!(queue.items.lock().unwrap().contains_key(&2));
}

#[tokio::test(start_paused = true)]
async fn parked_items_go_at_once_when_an_outcome_is_recorded_again() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    for id in 1..=4 {
        queue.add(id, "hop", clock.now(), Behaviour::Deliver(Duration::ZERO));
    }
    // The first four records fail (a full disk): every item is parked,
    // for 2 s after its first failure.
    queue.failing_records.store(4, Ordering::SeqCst);
    let caps = Caps {
        concurrency: 4,
        per_destination: 4,
    };
    let (stop, wake) = start(&queue, &clock, caps);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 4);
    assert!(queue.delivered().is_empty());
    // A new item is recorded fine: the store is back, and the parked ones
    // are tried at once rather than when their parking ends.
    queue.add(5, "other", clock.now(), Behaviour::Deliver(Duration::ZERO));
    wake.notify_one();
    until_delivered(&queue, 5, Duration::from_millis(100)).await;
    stop.cancel();
}

#[tokio::test]
async fn outcomes_waiting_while_one_is_written_are_written_together() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    for id in 0..20 {
        let hop = format!("hop{id}");
        queue.add(id, &hop, clock.now(), Behaviour::Deliver(Duration::ZERO));
    }
    *queue.slow_record.lock().unwrap() = Some(Duration::from_millis(200));
    let caps = Caps {
        concurrency: 20,
        per_destination: 1,
    };
    let (stop, _) = start(&queue, &clock, caps);
    until_delivered(&queue, 20, Duration::from_secs(10)).await;
    stop.cancel();
    // All 20 finish at once; the ones that come while the first batch is
    // written (200 ms) go in the next: one write per group, not per item.
    let records = queue.records.lock().unwrap().clone();
    assert_eq!(records.iter().sum::<usize>(), 20);
    assert!(records.len() <= 2, "{records:?}");
}

#[tokio::test(start_paused = true)]
async fn a_long_queue_for_one_busy_destination_is_not_scanned_at_every_delivery() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    for id in 0..1000 {
        queue.add(
            id,
            "hop",
            clock.now(),
            Behaviour::Deliver(Duration::from_millis(1)),
        );
    }
    let caps = Caps {
        concurrency: 8,
        per_destination: 2,
    };
    let (stop, wake) = start(&queue, &clock, caps);
    until_delivered(&queue, 1000, Duration::from_secs(60)).await;
    // Each freed slot asks for the one item that fits it, found at the
    // head of the queue: a few items looked at per delivery, not the
    // whole queue (about 250,000 in all).
    let looked = queue.looked.load(Ordering::SeqCst);
    assert!(looked < 10_000, "{looked} items looked at");
    // New work for another destination is still taken at once.
    queue.add(
        5000,
        "other",
        clock.now(),
        Behaviour::Deliver(Duration::ZERO),
    );
    wake.notify_one();
    until_delivered(&queue, 1001, Duration::from_millis(100)).await;
    stop.cancel();
}

#[tokio::test]
async fn attempts_go_on_while_outcomes_are_written() {
    let clock = ManualClock::at_epoch_day(20_000);
    let queue = Arc::new(MemQueue::new());
    for id in 0..12 {
        queue.add(id, "hop", clock.now(), Behaviour::Deliver(Duration::ZERO));
    }
    // Every write takes 300 ms: a slow disk.
    *queue.slow_record.lock().unwrap() = Some(Duration::from_millis(300));
    let caps = Caps {
        concurrency: 2,
        per_destination: 2,
    };
    let (stop, _) = start(&queue, &clock, caps);
    while queue.records.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the first write is under way, the two slots were refilled:
    // more attempts than slots, up to the outcomes the recorder queues
    // (as many as the concurrency) and the two waiting to queue theirs.
    let attempts = queue.attempts.load(Ordering::SeqCst);
    assert_eq!(queue.records.lock().unwrap().len(), 1);
    assert!((4..=6).contains(&attempts), "{attempts} attempts");
    until_delivered(&queue, 12, Duration::from_secs(30)).await;
    stop.cancel();
}
