//! The timed dynamic pool mix (draft section 3.1) and, in [`dummies`], the
//! dummy traffic policy (draft section 3.2).
//!
//! Every `interval` the node calls [`run_round`]: it adds a geometric
//! number of dummies to the pool, computes how many items to send with
//! [`send_count`], picks them uniformly at random with a CSPRNG
//! ([`select`]) and releases them through the store, which moves them to
//! the outbound queue or the exit queue in one durable batch. After each
//! accepted inbound packet the node calls [`add_inbound_dummies`]. Dummy
//! packets themselves are built by the node through [`DummySource`], so
//! this module knows nothing of the packet codec.
//!
//! The pool owns its settings: [`PoolConfig`] is the `[pool]` table and
//! [`DummyConfig`] the `[dummies]` table.

pub mod dummies;

use std::time::Duration;

use mimix_settings::{Checked, check, duration, minutes};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::store::{Store, StoreError, counter};
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
}

impl Default for PoolConfig {
    /// The draft's defaults: 15 minutes, 45 messages, 65 %.
    fn default() -> Self {
        Self {
            interval: minutes(15),
            min: 45,
            rate: 0.65,
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
        )
    }
}

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

/// A uniformly random subset of `count` elements of `items` (all of them
/// if `count >= items.len()`), in random order, drawn with `rng`.
pub fn select<T: Clone, R: CryptoRng + ?Sized>(items: &[T], count: usize, rng: &mut R) -> Vec<T> {
    let count = count.min(items.len());
    rand::seq::index::sample(rng, items.len(), count)
        .into_iter()
        .filter_map(|i| items.get(i).cloned())
        .collect()
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
/// counts the pool, selects `send_count` items uniformly at random and
/// releases them (one durable batch) at the clock's current time.
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
    let ids = store.pool_ids()?;
    let count = send_count(ids.len(), params.min, params.rate);
    let chosen = select(&ids, count, rng);
    let released = store.release(&chosen, clock.now())?;
    store.incr(counter::POOL_ROUNDS, 1)?;
    Ok(RoundSummary {
        pool_before,
        dummies_added,
        pool_size: ids.len(),
        selected: chosen.len(),
        forwarded: released.forwarded,
        exits: released.exits,
    })
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
