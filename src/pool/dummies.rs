//! The dummy traffic policy (draft section 3.2): geometric numbers of
//! dummies per inbound message and per pool round, and the random chains
//! they travel.
//!
//! [`DummyConfig`] is the `[dummies]` table; [`DummyConfig::policy`] gives
//! the [`DummyPolicy`] the pool draws from.

use mimix_settings::{Checked, check};
use rand::CryptoRng;
use rand_distr::{Distribution, Geometric};
use serde::{Deserialize, Serialize};

use super::PoolError;
use crate::store::{PoolItem, Store};

/// Largest number of dummies one draw may produce, whatever the mean: a
/// guard against absurd configurations, far in the tail for sane ones.
pub const MAX_DUMMIES_PER_DRAW: u64 = 100;

/// Largest mean a `[dummies]` rate may be set to.
const MAX_MEAN: f64 = 10.0;

/// `[dummies]`: dummy traffic (draft 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DummyConfig {
    /// Whether dummies are made at all.
    pub enabled: bool,
    /// Mean number of dummies added per accepted inbound packet.
    pub per_inbound_mean: f64,
    /// Mean number of dummies added before each pool round.
    pub per_round_mean: f64,
    /// Hops in a dummy's chain (1 to 10).
    pub chain_length: u8,
}

impl Default for DummyConfig {
    /// One dummy per 32 inbound messages and one per 9 rounds on average,
    /// through four hops (draft section 3.2).
    fn default() -> Self {
        let policy = DummyPolicy::default();
        Self {
            enabled: true,
            per_inbound_mean: policy.inbound_mean,
            per_round_mean: policy.round_mean,
            chain_length: 4,
        }
    }
}

impl DummyConfig {
    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        for (mean, field) in [
            (self.per_inbound_mean, "per_inbound_mean"),
            (self.per_round_mean, "per_round_mean"),
        ] {
            check(
                mean.is_finite() && (0.0..=MAX_MEAN).contains(&mean),
                field,
                || format!("must be a mean number of dummies from 0 to {MAX_MEAN}, got {mean}"),
            )?;
        }
        let max = mimix_packet::layout::MAX_HOPS;
        check(
            (1..=max).contains(&usize::from(self.chain_length)),
            "chain_length",
            || format!("must be 1 to {max} hops, got {}", self.chain_length),
        )
    }

    /// The policy these settings describe (never dummies when disabled).
    pub fn policy(&self) -> DummyPolicy {
        if !self.enabled {
            return DummyPolicy::disabled();
        }
        DummyPolicy::new(self.per_inbound_mean, self.per_round_mean)
            .unwrap_or_else(|_| DummyPolicy::disabled())
    }
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

/// Builds dummy messages for the pool; implemented by the node, which owns
/// the packet codec and the directory.
pub trait DummySource {
    /// The error building a dummy can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds one dummy message, ready to be pooled.
    fn make_dummy(&mut self) -> Result<PoolItem, Self::Error>;
}

/// Builds `n` dummies and inserts them into the pool in one batch.
pub(super) fn insert_dummies<S: DummySource + ?Sized>(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

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
}
