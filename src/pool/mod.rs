//! The timed dynamic pool mix (draft section 3.1) and, in [`dummies`], the
//! dummy traffic policy (draft section 3.2).
//!
//! Every `interval` the node calls [`run_round`]: it adds a geometric
//! number of dummies to the pool, computes how many items to send with
//! [`send_count`], picks them uniformly at random with a CSPRNG while
//! streaming the pool's IDs from the store ([`Selection`], selection
//! sampling), and releases them through the store, which moves them to
//! the outbound queue or the exit queue in durable batches of at most
//! [`RELEASE_BATCH`] items. A round's memory is therefore bounded whatever
//! the size of the pool. After each accepted inbound packet the node calls
//! [`add_inbound_dummies`]. Dummy packets themselves are built by the node
//! through [`DummySource`], so this module knows nothing of the packet
//! codec.
//!
//! The pool owns its settings: [`PoolConfig`] is the `[pool]` table and
//! [`DummyConfig`] the `[dummies]` table.

pub mod dummies;

use std::time::Duration;

use mimix_settings::{Checked, check, duration, minutes, size};
use rand::{CryptoRng, RngExt};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::store::{Area, Store, StoreError, counter};
use dummies::insert_dummies;
pub use dummies::{
    DummyConfig, DummyPolicy, DummySource, MAX_DUMMIES_PER_DRAW, add_inbound_dummies,
};

/// Errors from the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dummy source failed to build a dummy.
    #[error("cannot build dummy message: {0}")]
    Dummy(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A dummy-rate mean was negative or not finite.
    #[error("invalid dummy mean {0}: must be finite and >= 0")]
    InvalidMean(f64),
}

/// `[pool]`: the parameters of the timed dynamic pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Mixing interval `t`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Minimum number of messages kept in the pool.
    pub min: usize,
    /// Largest fraction of the pool sent in one round, in (0, 1].
    pub rate: f64,
    /// Most items in the pool: at this many, new packets are refused (503
    /// with Retry-After) before any work is done on them.
    pub max_packets: u64,
    /// Most bytes the pool may hold, the same way.
    #[serde(with = "size")]
    pub max_bytes: u64,
}

impl Default for PoolConfig {
    /// The draft's defaults: 15 minutes, 45 messages, 65 %; room for
    /// 10,000 packets (about 200 MB on disk, nothing in memory).
    fn default() -> Self {
        Self {
            interval: minutes(15),
            min: 45,
            rate: 0.65,
            max_packets: 10_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl PoolConfig {
    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(self.interval >= Duration::from_secs(1), "interval", || {
            "must be at least 1s".into()
        })?;
        check(
            self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1.0,
            "rate",
            || format!("must be a fraction in (0, 1], got {}", self.rate),
        )?;
        check(self.max_packets > self.min as u64, "max_packets", || {
            format!(
                "must be more than min ({}), got {}",
                self.min, self.max_packets
            )
        })?;
        check(self.max_bytes >= MIN_CAP_BYTES, "max_bytes", || {
            format!(
                "must be at least {MIN_CAP_BYTES} bytes, got {}",
                self.max_bytes
            )
        })
    }

    /// Whether a pool holding `held` is full.
    pub fn full(&self, held: Area) -> bool {
        held.count >= self.max_packets || held.bytes >= self.max_bytes
    }
}

/// Smallest byte cap of the pool or a queue: room for a few dozen packets.
pub const MIN_CAP_BYTES: u64 = 1024 * 1024;

/// How many of `n` pooled messages to send this round: the draft's
/// `min(n - min, floor(n * rate))`, but at least one whenever `n > min`
/// and the rate is above 0. With the draft's formula alone a quiet
/// remailer never sends: with `min = 0` and `rate = 0.65` one message
/// waits for ever (`floor(0.65) = 0`). A rate outside `[0, 1]` (or NaN) is
/// clamped into it.
pub fn send_count(n: usize, min: usize, rate: f64) -> usize {
    let above = n.saturating_sub(min);
    let rate = if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    };
    if above == 0 || rate == 0.0 {
        return 0;
    }
    // n * rate <= n, so the cast back cannot overflow; floor as specified.
    let by_rate = (n as f64 * rate).floor() as usize;
    above.min(by_rate.max(1))
}

/// Items released per store batch in a pool round.
pub const RELEASE_BATCH: usize = 128;

/// A uniformly random subset of `count` elements of `items` (all of them
/// if `count >= items.len()`), in their original order, drawn with `rng`.
pub fn select<T: Clone, R: CryptoRng + ?Sized>(items: &[T], count: usize, rng: &mut R) -> Vec<T> {
    Selection::new(
        items.iter().cloned().map(Ok::<T, ()>),
        items.len(),
        count,
        rng,
    )
    .filter_map(Result::ok)
    .collect()
}

/// Selection sampling (Knuth's Algorithm S): from a stream of `n` items,
/// yields a uniformly random subset of `count` of them (every subset of
/// that size equally likely), in stream order, holding nothing but two
/// counters. Item `t` (from 0) is taken with probability
/// `(count - taken) / (n - t)`. Errors in the stream are passed on.
pub struct Selection<'r, I, R: ?Sized> {
    items: I,
    rng: &'r mut R,
    /// Items not yet looked at, of the `n` announced.
    left: usize,
    /// Items still to take.
    wanted: usize,
}

impl<'r, I, R: CryptoRng + ?Sized> Selection<'r, I, R> {
    /// Selects `count` of the `n` items `items` yields.
    pub fn new(items: I, n: usize, count: usize, rng: &'r mut R) -> Self {
        Self {
            items,
            rng,
            left: n,
            wanted: count.min(n),
        }
    }
}

impl<I, T, E, R> Iterator for Selection<'_, I, R>
where
    I: Iterator<Item = Result<T, E>>,
    R: CryptoRng + ?Sized,
{
    type Item = Result<T, E>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.wanted > 0 && self.left > 0 {
            let item = match self.items.next()? {
                Ok(item) => item,
                Err(e) => return Some(Err(e)),
            };
            let take = self.rng.random_range(0..self.left) < self.wanted;
            self.left -= 1;
            if take {
                self.wanted -= 1;
                return Some(Ok(item));
            }
        }
        None
    }
}

/// What one pool round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Items in the pool before the round's dummies were added.
    pub pool_before: usize,
    /// Dummies added before mixing.
    pub dummies_added: usize,
    /// Items the mixing algorithm saw (`n`).
    pub pool_size: usize,
    /// Items selected to send (`count`).
    pub selected: usize,
    /// Selected items moved to the outbound queue.
    pub forwarded: usize,
    /// Selected items moved to the exit queue.
    pub exits: usize,
}

/// Runs one round of the timed dynamic pool: adds the round's dummies,
/// takes a snapshot of the pool, selects `send_count` items uniformly at
/// random while streaming its IDs, and releases them in durable batches of
/// at most [`RELEASE_BATCH`] items, at the clock's current time. If a
/// batch fails, the items of the batches before it are released and the
/// rest stay in the pool for a later round.
pub fn run_round<S: DummySource + ?Sized, R: CryptoRng + ?Sized>(
    store: &Store,
    params: &PoolConfig,
    dummies: &DummyPolicy,
    source: &mut S,
    rng: &mut R,
    clock: &dyn Clock,
) -> Result<RoundSummary, PoolError> {
    let pool_before = store.pool_count()?;
    let dummies_added = insert_dummies(store, source, dummies.round_count(rng))?;
    let snapshot = store.pool_snapshot()?;
    let pool_size = snapshot.len();
    let count = send_count(pool_size, params.min, params.rate);
    let mut summary = RoundSummary {
        pool_before,
        dummies_added,
        pool_size,
        ..RoundSummary::default()
    };
    let now = clock.now();
    let mut batch = Vec::with_capacity(count.min(RELEASE_BATCH));
    let release = |batch: &mut Vec<_>, summary: &mut RoundSummary| {
        let released = store.release(batch, now)?;
        summary.selected += batch.len();
        summary.forwarded += released.forwarded;
        summary.exits += released.exits;
        batch.clear();
        Ok::<_, PoolError>(())
    };
    for id in Selection::new(snapshot, pool_size, count, rng) {
        batch.push(id?);
        if batch.len() >= RELEASE_BATCH {
            release(&mut batch, &mut summary)?;
        }
    }
    if !batch.is_empty() {
        release(&mut batch, &mut summary)?;
    }
    store.incr(counter::POOL_ROUNDS, 1)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::PoolItem;

    #[test]
    fn send_count_table() {
        let cases: &[(usize, usize, f64, usize)] = &[
            (0, 45, 0.65, 0),
            (10, 45, 0.65, 0),
            (44, 45, 0.65, 0),
            (45, 45, 0.65, 0),
            (46, 45, 0.65, 1),
            (50, 45, 0.65, 5),
            (100, 45, 0.65, 55),
            (128, 45, 0.65, 83),
            (129, 45, 0.65, 83),
            (200, 45, 0.65, 130),
            (1000, 45, 0.65, 650),
            (10, 0, 0.65, 6),
            (10, 0, 1.0, 10),
            (10, 0, 1.5, 10),
            (10, 0, -1.0, 0),
            (10, 0, f64::NAN, 0),
            (1_000_000, 45, 0.65, 650_000),
            // Liveness: more than `min` pooled always sends one.
            (1, 0, 0.65, 1),
            (1, 0, 0.01, 1),
            (46, 45, 0.01, 1),
            (2, 0, 0.4, 1),
            (3, 0, 0.65, 1),
        ];
        for &(n, min, rate, want) in cases {
            assert_eq!(
                send_count(n, min, rate),
                want,
                "n={n} min={min} rate={rate}"
            );
        }
    }

    #[test]
    fn streamed_selection_takes_exactly_count_uniformly() {
        // Every subset of 2 of 5 is equally likely (10 subsets).
        let mut rng = StdRng::seed_from_u64(0x5eed_0003);
        let mut subsets = std::collections::BTreeMap::new();
        let trials = 20_000;
        for _ in 0..trials {
            let s: Vec<usize> = Selection::new((0..5).map(Ok::<_, ()>), 5, 2, &mut rng)
                .map(Result::unwrap)
                .collect();
            assert_eq!(s.len(), 2);
            *subsets.entry(s).or_insert(0u32) += 1;
        }
        assert_eq!(subsets.len(), 10);
        let expected = f64::from(trials) / 10.0;
        let chi2: f64 = subsets
            .values()
            .map(|&h| (f64::from(h) - expected).powi(2) / expected)
            .sum();
        // 9 degrees of freedom: P(chi2 > 27.9) = 0.001.
        assert!(chi2 < 27.9, "chi-square {chi2}, subsets {subsets:?}");
        // More wanted than there are, or a short stream: what there is.
        let all: Vec<_> = Selection::new((0..3).map(Ok::<_, ()>), 3, 9, &mut rng).collect();
        assert_eq!(all.len(), 3);
        let short: Vec<_> = Selection::new((0..2).map(Ok::<_, ()>), 5, 5, &mut rng).collect();
        assert_eq!(short.len(), 2);
        // Errors are passed on.
        let mut errs = Selection::new([Err(1), Ok(2)].into_iter(), 2, 2, &mut rng);
        assert_eq!(errs.next(), Some(Err(1)));
    }

    #[test]
    fn rounds_release_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let mut rng = StdRng::seed_from_u64(0x5eed_0006);
        let mut src = Dummies {
            made: 0,
            fail: false,
        };
        fill(&store, 1000, 0);
        let params = PoolConfig {
            min: 10,
            rate: 0.65,
            ..PoolConfig::default()
        };
        let off = DummyPolicy::disabled();
        let s = run_round(&store, &params, &off, &mut src, &mut rng, &clock).unwrap();
        assert_eq!((s.pool_size, s.selected, s.forwarded), (1000, 650, 650));
        assert_eq!(store.pool_count().unwrap(), 350);
        assert_eq!(store.outbound_len().unwrap(), 650);
        // ceil(650 / 128) = 6 release batches, one synced commit each.
        assert_eq!(store.counter(counter::RELEASED_FORWARD).unwrap(), 650);
        assert_eq!(store.usage().pool.count, 350);
        assert_eq!(store.usage().outbound.count, 650);
    }

    #[test]
    fn selection_is_uniform() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0002);
        let items: Vec<usize> = (0..20).collect();
        let trials = 20_000;
        let mut hits = [0u32; 20];
        for _ in 0..trials {
            let mut s = select(&items, 5, &mut rng);
            assert_eq!(s.len(), 5);
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), 5, "no item twice");
            for i in s {
                hits[i] += 1;
            }
        }
        let expected = f64::from(trials) * 5.0 / 20.0;
        let chi2: f64 = hits
            .iter()
            .map(|&h| (f64::from(h) - expected).powi(2) / expected)
            .sum();
        // 19 degrees of freedom: P(chi2 > 43.8) = 0.001.
        assert!(chi2 < 43.8, "chi-square {chi2}, hits {hits:?}");
        assert_eq!(select(&items, 50, &mut rng).len(), 20);
        assert!(select::<usize, _>(&[], 3, &mut rng).is_empty());
    }

    struct Dummies {
        made: usize,
        fail: bool,
    }

    impl DummySource for Dummies {
        type Error = std::io::Error;
        fn make_dummy(&mut self) -> Result<PoolItem, Self::Error> {
            if self.fail {
                return Err(std::io::Error::other("no remailers"));
            }
            self.made += 1;
            Ok(PoolItem::Forward {
                next_hop: "http://dummy".into(),
                packet: vec![0; 64],
            })
        }
    }

    fn fill(store: &Store, forwards: usize, exits: usize) {
        let mut items = Vec::new();
        for i in 0..forwards {
            items.push(PoolItem::Forward {
                next_hop: format!("http://hop{i}"),
                packet: vec![1; 64],
            });
        }
        for i in 0..exits {
            items.push(PoolItem::Exit {
                msg_id: [i as u8; 16],
                chunk: 1,
                chunks: 1,
                exit_type: mimix_packet::ExitType::Smtp,
                payload: vec![2; 10],
            });
        }
        store.pool_insert(&items).unwrap();
    }

    #[test]
    fn round_sends_send_count_items() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let mut rng = StdRng::seed_from_u64(0x5eed_0004);
        let mut src = Dummies {
            made: 0,
            fail: false,
        };
        let params = PoolConfig::default();
        let off = DummyPolicy::disabled();

        fill(&store, 30, 10);
        let s = run_round(&store, &params, &off, &mut src, &mut rng, &clock).unwrap();
        assert_eq!(
            (s.pool_size, s.selected),
            (40, 0),
            "below min: nothing sent"
        );
        assert_eq!(store.pool_count().unwrap(), 40);

        fill(&store, 50, 10);
        let s = run_round(&store, &params, &off, &mut src, &mut rng, &clock).unwrap();
        assert_eq!(s.pool_size, 100);
        assert_eq!(s.selected, 55);
        assert_eq!(s.forwarded + s.exits, 55);
        assert_eq!(store.pool_count().unwrap(), 45);
        assert_eq!(store.outbound_len().unwrap(), s.forwarded);
        assert_eq!(store.exit_jobs(1000).unwrap().len(), s.exits);
        assert_eq!(src.made, 0);
        assert_eq!(store.counter(counter::POOL_ROUNDS).unwrap(), 2);
    }

    #[test]
    fn a_quiet_remailer_sends_its_one_message_in_the_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let mut rng = StdRng::seed_from_u64(0x5eed_0005);
        let mut src = Dummies {
            made: 0,
            fail: false,
        };
        let params = PoolConfig {
            min: 0,
            rate: 0.65,
            ..PoolConfig::default()
        };
        let off = DummyPolicy::disabled();
        fill(&store, 0, 1);
        let s = run_round(&store, &params, &off, &mut src, &mut rng, &clock).unwrap();
        assert_eq!((s.pool_size, s.selected, s.exits), (1, 1, 1));
        assert_eq!(store.pool_count().unwrap(), 0);

        // Three messages leave one per round: floor(1.95) = 1, then
        // floor(1.3) = 1, then the last one (floor(0.65) = 0, at least 1).
        fill(&store, 3, 0);
        let mut sent = Vec::new();
        while store.pool_count().unwrap() > 0 {
            clock.advance(params.interval);
            let s = run_round(&store, &params, &off, &mut src, &mut rng, &clock).unwrap();
            sent.push(s.selected);
        }
        assert_eq!(sent, vec![1, 1, 1]);
    }

    #[test]
    fn round_and_inbound_dummies_go_into_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let mut rng = StdRng::seed_from_u64(0x5eed_0005);
        let mut src = Dummies {
            made: 0,
            fail: false,
        };
        let params = PoolConfig {
            min: 1000,
            ..PoolConfig::default()
        };
        let many = DummyPolicy::new(3.0, 3.0).unwrap();

        let mut added = 0;
        for _ in 0..50 {
            let s = run_round(&store, &params, &many, &mut src, &mut rng, &clock).unwrap();
            assert_eq!(s.pool_size, s.pool_before + s.dummies_added);
            added += s.dummies_added;
        }
        for _ in 0..50 {
            added += add_inbound_dummies(&store, &many, &mut src, &mut rng).unwrap();
        }
        assert_eq!(src.made, added);
        assert_eq!(store.pool_count().unwrap(), added);
        assert_eq!(
            store.counter(counter::DUMMIES_POOLED).unwrap(),
            added as u64
        );
        // 100 draws of mean 3: far from zero.
        assert!(added > 150, "added {added}");

        src.fail = true;
        let r = loop {
            match add_inbound_dummies(&store, &many, &mut src, &mut rng) {
                Ok(0) => continue,
                other => break other,
            }
        };
        assert!(matches!(r, Err(PoolError::Dummy(_))));
    }
}
