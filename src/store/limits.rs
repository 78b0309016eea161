//! The exit's per-day delivery counters (see
//! [`crate::exit::limit`]): how many deliveries each recipient address and
//! each recipient domain had today.
//!
//! Keys start with the big-endian epoch day, so a day's records are one
//! range, deleted as a whole once the day is over. A day holds:
//!
//! | key | value |
//! |---|---|
//! | day ++ `0` | the day's hashing key: 32 random bytes |
//! | day ++ `1` | how many counters the day holds (u64 BE) |
//! | day ++ `2` ++ hash (16) | deliveries to one address (u64 BE) |
//! | day ++ `3` ++ hash (16) | deliveries to one domain (u64 BE) |
//!
//! Addresses and domains are stored only as a keyed hash under the day's
//! own key, which is deleted with the day: yesterday's counters cannot be
//! tested against a guessed address even by someone holding the disk.

use std::collections::HashMap;

use rand::CryptoRng;

use super::pool::PRUNE_BATCH;
use super::{Store, StoreError, Tx, be_u64, keyed_hash};

const TAG_KEY: u8 = 0;
const TAG_ENTRIES: u8 = 1;
const TAG_ADDRESS: u8 = 2;
const TAG_DOMAIN: u8 = 3;

/// The per-day caps; 0 turns a cap off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Most deliveries to one address per day.
    pub per_address: u32,
    /// Most deliveries to one domain per day.
    pub per_domain: u32,
    /// Most counters kept for one day; past it, recipients without a
    /// counter yet are refused.
    pub max_entries: u64,
}

/// What [`Store::rate_admit`] decided for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted: deliver.
    Admitted,
    /// The address had its deliveries for the day.
    OverAddress,
    /// The domain had its deliveries for the day.
    OverDomain,
    /// The day's table is full and this recipient has no counter yet.
    TableFull,
}

fn key(day: u64, tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rest.len());
    k.extend_from_slice(&day.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// A counter's key: its kind and the keyed hash of its text.
fn counter_key(day: u64, tag: u8, day_key: &[u8; 32], text: &str) -> Vec<u8> {
    let h = keyed_hash(day_key, &[&[tag], text.as_bytes()]);
    key(day, tag, h.get(..16).unwrap_or_default())
}

/// The counters of one admission, read from the store and updated in
/// memory until the batch is written.
struct Counts<'s> {
    store: &'s Store,
    day: u64,
    day_key: [u8; 32],
    entries: u64,
    counts: HashMap<Vec<u8>, u64>,
}

impl Counts<'_> {
    /// The count under `k` and whether it exists yet.
    fn get(&mut self, k: &[u8]) -> Result<(u64, bool), StoreError> {
        if let Some(n) = self.counts.get(k) {
            return Ok((*n, true));
        }
        let stored = self.store.limit_value(k)?;
        if let Some(n) = stored {
            self.counts.insert(k.to_vec(), n);
        }
        Ok((stored.unwrap_or(0), stored.is_some()))
    }

    /// Decides for one recipient and counts it if admitted.
    fn admit(&mut self, address: &str, limits: &RateLimits) -> Result<Verdict, StoreError> {
        let address = address.to_ascii_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        let kinds = [
            (
                TAG_ADDRESS,
                address.as_str(),
                limits.per_address,
                Verdict::OverAddress,
            ),
            (TAG_DOMAIN, domain, limits.per_domain, Verdict::OverDomain),
        ];
        let mut touched = Vec::new();
        let mut new = 0u64;
        for (tag, text, cap, over) in kinds {
            if cap == 0 {
                continue;
            }
            let k = counter_key(self.day, tag, &self.day_key, text);
            let (n, exists) = self.get(&k)?;
            if n >= u64::from(cap) {
                return Ok(over);
            }
            new += u64::from(!exists);
            touched.push((k, n));
        }
        if new > 0 && self.entries + new > limits.max_entries {
            return Ok(Verdict::TableFull);
        }
        self.entries += new;
        for (k, n) in touched {
            self.counts.insert(k, n.saturating_add(1));
        }
        Ok(Verdict::Admitted)
    }

    /// Puts the counters into `tx`.
    fn write(self, tx: &mut Tx<'_>) {
        let e = tx.engine.clone();
        let ks = &e.ks.limits;
        for (k, n) in self.counts {
            tx.batch.insert(ks, k, n.to_be_bytes());
        }
        tx.batch.insert(
            ks,
            key(self.day, TAG_ENTRIES, &[]),
            self.entries.to_be_bytes(),
        );
    }
}

impl Store {
    /// Decides, in order, whether each of `recipients` (`local@domain`)
    /// may have one more delivery on epoch day `day` under `limits`, and
    /// durably counts those admitted (one batch, synced, before it
    /// returns). The records of earlier days are deleted first; the day's
    /// hashing key is drawn from `rng` on the day's first call.
    pub fn rate_admit<R: CryptoRng + ?Sized>(
        &self,
        day: u64,
        recipients: &[&str],
        limits: &RateLimits,
        rng: &mut R,
    ) -> Result<Vec<Verdict>, StoreError> {
        self.prune_limits(day)?;
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks.limits;
        let key_key = key(day, TAG_KEY, &[]);
        let day_key = match ks.get(&key_key).map_err(self.db_err("read rate limits"))? {
            Some(v) => <[u8; 32]>::try_from(v.as_ref())
                .map_err(|_| self.corrupt("rate limit key", "not 32 bytes"))?,
            None => {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                tx.batch.insert(ks, key_key, k);
                k
            }
        };
        let entries = self.limit_value(&key(day, TAG_ENTRIES, &[]))?.unwrap_or(0);
        let mut counts = Counts {
            store: self,
            day,
            day_key,
            entries,
            counts: HashMap::new(),
        };
        let verdicts = recipients
            .iter()
            .map(|r| counts.admit(r, limits))
            .collect::<Result<Vec<_>, _>>()?;
        counts.write(&mut tx);
        tx.commit()?;
        Ok(verdicts)
    }

    /// How many counters epoch day `day` holds.
    pub fn rate_entries(&self, day: u64) -> Result<u64, StoreError> {
        Ok(self.limit_value(&key(day, TAG_ENTRIES, &[]))?.unwrap_or(0))
    }

    /// Deletes the records of every day before `day`; returns how many
    /// records went.
    pub fn prune_limits(&self, day: u64) -> Result<usize, StoreError> {
        let e = self.engine()?;
        let ks = &e.ks.limits;
        let end = key(day, 0, &[]);
        let mut total = 0;
        loop {
            let mut keys = Vec::new();
            for guard in ks.range(..end.as_slice()).take(PRUNE_BATCH) {
                keys.push(guard.key().map_err(self.db_err("scan rate limits"))?);
            }
            if keys.is_empty() {
                return Ok(total);
            }
            let mut tx = self.tx()?;
            for k in &keys {
                tx.batch.remove(ks, k.to_vec());
            }
            tx.commit()?;
            total += keys.len();
        }
    }

    fn limit_value(&self, k: &[u8]) -> Result<Option<u64>, StoreError> {
        let v = self
            .engine()?
            .ks
            .limits
            .get(k)
            .map_err(self.db_err("read rate limits"))?;
        v.map(|v| be_u64(&v).ok_or_else(|| self.corrupt("rate limit", "not 8 bytes")))
            .transpose()
    }
}
