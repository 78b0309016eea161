//! Digests of the packets we hold, next to the replay log, so that a
//! byte-identical copy of a packet already accepted is answered 200 again
//! before any RSA work (a peer whose 200 reply was lost retries the same
//! bytes for days).
//!
//! A digest is written in the same batch as its packet ID and expires at
//! the same time: the table never holds more entries than the replay log.
//! It is keyed by the SHA-256 of the binary packet (see
//! `node::duplicate` for why the binary and not the armour).

use std::time::SystemTime;

use super::pool::PRUNE_BATCH;
use super::{Store, StoreError, Tx, to_ms};

/// A digest's index key: big-endian expiry then the digest.
fn exp_key(ms: u64, digest: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(digest);
    k
}

impl Tx<'_> {
    /// Records `digest` as a packet held until `expires`, in this batch.
    pub(crate) fn put_digest(&mut self, digest: &[u8; 32], expires: SystemTime) {
        let e = self.engine.clone();
        let ks = &e.ks;
        let exp = to_ms(expires);
        self.batch.insert(&ks.digests, digest, []);
        self.batch.insert(&ks.digests_exp, exp_key(exp, digest), []);
    }
}

impl Store {
    /// Whether a packet with this digest was accepted (and is still in the
    /// replay log).
    pub fn digest_known(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        self.engine()?
            .ks
            .digests
            .contains_key(digest)
            .map_err(self.db_err("read packet digests"))
    }

    /// Deletes digests whose expiry is at or before `now`; returns how
    /// many.
    pub fn prune_digests(&self, now: SystemTime) -> Result<usize, StoreError> {
        let end = exp_key(to_ms(now), &[0xff; 32]);
        let mut total = 0;
        loop {
            let mut tx = self.tx()?;
            let e = tx.engine.clone();
            let ks = &e.ks;
            let keys = self.keys_upto(&ks.digests_exp, &end, PRUNE_BATCH)?;
            if keys.is_empty() {
                return Ok(total);
            }
            for k in &keys {
                if let Some(digest) = k.get(8..) {
                    tx.batch.remove(&ks.digests, digest);
                }
                tx.batch.remove(&ks.digests_exp, k.as_slice());
            }
            tx.commit()?;
            total += keys.len();
        }
    }
}
