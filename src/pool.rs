//! The timed dynamic pool mix (draft section 3.1) and the dummy traffic
//! policy (draft section 3.2).
//!
//! Every `interval` the node calls [`run_round`]: it adds a geometric
//! number of dummies to the pool, computes how many items to send with
//! [`send_count`], picks them uniformly at random with a CSPRNG
//! ([`select`]) and releases them through the store, which moves them to
//! the outbound queue or the exit queue in one durable batch. After each
//! accepted inbound packet the node calls [`add_inbound_dummies`]. Dummy
//! packets themselves are built by the node through [`DummySource`], so
//! this module knows nothing of the packet codec.

use std::time::Duration;

use rand::CryptoRng;
use rand_distr::{Distribution, Geometric};

use crate::clock::Clock;
use crate::store::{PoolItem, Store, StoreError, counter};

/// Largest number of dummies one draw may produce, whatever the mean: a
/// guard against absurd configurations, far in the tail for sane ones.
pub const MAX_DUMMIES_PER_DRAW: u64 = 100;

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

/// Parameters of the timed dynamic pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolParams {
    /// Mixing interval `t`.
    pub interval: Duration,
    /// Minimum number of messages kept in the pool.
    pub min: usize,
    /// Largest fraction of the pool sent in one round.
    pub rate: f64,
}

impl Default for PoolParams {
    /// The draft's defaults: 15 minutes, 45 messages, 65 %.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15 * 60),
            min: 45,
            rate: 0.65,
        }
    }
}

/// How many of `n` pooled messages to send this round:
/// `max(0, min(n - min, floor(n * rate)))`. A rate outside `[0, 1]` (or
/// NaN) is clamped into it.
pub fn send_count(n: usize, min: usize, rate: f64) -> usize {
    let Some(above) = n.checked_sub(min) else {
        return 0;
    };
    let rate = if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    };
    // n * rate <= n, so the cast back cannot overflow; floor as specified.
    let by_rate = (n as f64 * rate).floor() as usize;
    above.min(by_rate).min(n)
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

/// The dummy traffic policy: geometric numbers of dummies per inbound
/// message and per pool round, each given by its mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DummyPolicy {
    inbound_mean: f64,
    round_mean: f64,
}

impl DummyPolicy {
    /// A policy whose draws average `inbound_mean` dummies per inbound
    /// message and `round_mean` per round (0 disables either).
    pub fn new(inbound_mean: f64, round_mean: f64) -> Result<Self, PoolError> {
        for m in [inbound_mean, round_mean] {
            if !m.is_finite() || m < 0.0 {
                return Err(PoolError::InvalidMean(m));
            }
        }
        Ok(Self {
            inbound_mean,
            round_mean,
        })
    }

    /// A policy that never creates dummies.
    pub fn disabled() -> Self {
        Self {
            inbound_mean: 0.0,
            round_mean: 0.0,
        }
    }

    /// Mean dummies per inbound message.
    pub fn inbound_mean(&self) -> f64 {
        self.inbound_mean
    }

    /// Mean dummies per round.
    pub fn round_mean(&self) -> f64 {
        self.round_mean
    }

    /// Draws the number of dummies to add after one inbound message.
    pub fn inbound_count<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> u64 {
        draw_geometric(self.inbound_mean, rng)
    }

    /// Draws the number of dummies to add before one pool round.
    pub fn round_count<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> u64 {
        draw_geometric(self.round_mean, rng)
    }
}

impl Default for DummyPolicy {
    /// One dummy per 32 inbound messages and one per 9 rounds on average
    /// (draft section 3.2).
    fn default() -> Self {
        Self {
            inbound_mean: 1.0 / 32.0,
            round_mean: 1.0 / 9.0,
        }
    }
}

/// Draws from the geometric distribution (failures before the first
/// success) with mean `mean`, i.e. success probability `1 / (1 + mean)`,
/// capped at [`MAX_DUMMIES_PER_DRAW`]. Means are validated by
/// [`DummyPolicy::new`]; an invalid one draws 0.
fn draw_geometric<R: CryptoRng + ?Sized>(mean: f64, rng: &mut R) -> u64 {
    match Geometric::new(1.0 / (1.0 + mean)) {
        Ok(g) => g.sample(rng).min(MAX_DUMMIES_PER_DRAW),
        Err(_) => 0,
    }
}

/// Picks a dummy chain of `len` hops from `remailers` uniformly at random
/// under the draft's rule that no remailer appears twice unless two other
/// remailers separate them (hop `i` differs from hops `i-1` and `i-2`).
/// Duplicate entries in `remailers` are ignored.
///
/// With fewer than three distinct remailers a chain of `len` hops may be
/// impossible: the chain is then shortened to the number of distinct
/// remailers (one or two hops). Returns `None` if `remailers` is empty or
/// `len` is 0.
pub fn dummy_chain<T: Clone + PartialEq, R: CryptoRng + ?Sized>(
    remailers: &[T],
    len: usize,
    rng: &mut R,
) -> Option<Vec<T>> {
    let mut distinct: Vec<&T> = Vec::new();
    for r in remailers {
        if !distinct.contains(&r) {
            distinct.push(r);
        }
    }
    let len = len.min(if distinct.len() >= 3 {
        len
    } else {
        distinct.len()
    });
    if len == 0 {
        return None;
    }
    let mut chain: Vec<T> = Vec::with_capacity(len);
    for i in 0..len {
        let recent = chain.get(i.saturating_sub(2)..).unwrap_or_default();
        let candidates: Vec<&T> = distinct
            .iter()
            .copied()
            .filter(|r| !recent.contains(*r))
            .collect();
        let pick = select(&candidates, 1, rng);
        chain.push(T::clone(pick.first()?));
    }
    Some(chain)
}

/// Builds dummy messages for the pool; implemented by the node, which owns
/// the packet codec and the directory.
pub trait DummySource {
    /// The error building a dummy can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds one dummy message, ready to be pooled.
    fn make_dummy(&mut self) -> Result<PoolItem, Self::Error>;
}

/// Builds `n` dummies and inserts them into the pool in one batch.
fn insert_dummies<S: DummySource + ?Sized>(
    store: &Store,
    source: &mut S,
    n: u64,
) -> Result<usize, PoolError> {
    if n == 0 {
        return Ok(0);
    }
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(
            source
                .make_dummy()
                .map_err(|e| PoolError::Dummy(Box::new(e)))?,
        );
    }
    store.pool_insert(&items)?;
    Ok(items.len())
}

/// Adds the dummies due after one inbound message was pooled (a geometric
/// draw with the policy's inbound mean). Returns how many were added.
pub fn add_inbound_dummies<S: DummySource + ?Sized, R: CryptoRng + ?Sized>(
    store: &Store,
    policy: &DummyPolicy,
    source: &mut S,
    rng: &mut R,
) -> Result<usize, PoolError> {
    let n = policy.inbound_count(rng);
    insert_dummies(store, source, n)
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
    params: &PoolParams,
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

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::clock::ManualClock;

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
        ];
        for &(n, min, rate, want) in cases {
            assert_eq!(
                send_count(n, min, rate),
                want,
                "n={n} min={min} rate={rate}"
            );
        }
    }

    fn mean_of(n: usize, mut draw: impl FnMut() -> u64) -> f64 {
        (0..n).map(|_| draw() as f64).sum::<f64>() / n as f64
    }

    #[test]
    fn dummy_rates_match_their_means() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0001);
        let policy = DummyPolicy::default();
        let n = 200_000;
        // Standard errors: about 0.0004 (inbound) and 0.0008 (round).
        let inbound = mean_of(n, || policy.inbound_count(&mut rng));
        assert!(
            (inbound - 1.0 / 32.0).abs() < 0.002,
            "inbound mean {inbound}"
        );
        let round = mean_of(n, || policy.round_count(&mut rng));
        assert!((round - 1.0 / 9.0).abs() < 0.004, "round mean {round}");

        // The zero class has probability p = 1 / (1 + mean).
        let zeros = (0..n).filter(|_| policy.round_count(&mut rng) == 0).count();
        let p0 = zeros as f64 / n as f64;
        assert!((p0 - 0.9).abs() < 0.004, "P(0) = {p0}");

        let custom = DummyPolicy::new(2.0, 0.0).unwrap();
        let m = mean_of(n, || custom.inbound_count(&mut rng));
        assert!((m - 2.0).abs() < 0.03, "custom mean {m}");
        assert!((0..1000).all(|_| custom.round_count(&mut rng) == 0));
        let off = DummyPolicy::disabled();
        assert!((0..1000).all(|_| off.inbound_count(&mut rng) == 0));
    }

    #[test]
    fn dummy_policy_rejects_bad_means() {
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                DummyPolicy::new(bad, 1.0),
                Err(PoolError::InvalidMean(_))
            ));
            assert!(DummyPolicy::new(1.0, bad).is_err());
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

    fn chain_ok<T: PartialEq>(c: &[T]) -> bool {
        c.iter()
            .enumerate()
            .all(|(i, h)| (1..=2).all(|back| i < back || c.get(i - back) != Some(h)))
    }

    proptest! {
        #[test]
        fn dummy_chain_separates_repeats(seed: u64, n in 1usize..8, len in 0usize..8, dup in 0usize..3) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut remailers: Vec<usize> = (0..n).collect();
            remailers.extend((0..dup.min(n)).map(|i| i % n));
            match dummy_chain(&remailers, len, &mut rng) {
                None => prop_assert_eq!(len, 0),
                Some(c) => {
                    prop_assert_eq!(c.len(), if n >= 3 { len } else { len.min(n) });
                    prop_assert!(chain_ok(&c), "chain {:?}", c);
                    prop_assert!(c.iter().all(|h| *h < n));
                }
            }
        }
    }

    #[test]
    fn dummy_chain_small_sets_and_spread() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0003);
        assert_eq!(dummy_chain::<u8, _>(&[], 4, &mut rng), None);
        assert_eq!(dummy_chain(&["a"], 4, &mut rng), Some(vec!["a"]));
        let two = dummy_chain(&["a", "b", "a"], 4, &mut rng).unwrap();
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        // With three remailers every hop is forced by the first two, and
        // every remailer shows up as the first hop.
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = dummy_chain(&[1, 2, 3], 4, &mut rng).unwrap();
            assert_eq!(c[3], c[0]);
            firsts.insert(c[0]);
        }
        assert_eq!(firsts.len(), 3);
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
                exit_type: 0,
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
        let params = PoolParams::default();
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
    fn round_and_inbound_dummies_go_into_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let mut rng = StdRng::seed_from_u64(0x5eed_0005);
        let mut src = Dummies {
            made: 0,
            fail: false,
        };
        let params = PoolParams {
            min: 1000,
            ..PoolParams::default()
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
