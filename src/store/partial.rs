//! Storage of partial messages: exit chunks waiting for their siblings.
//! The reassembly policy lives in `crate::exit::reassembly`; this module
//! only provides the transactional primitives it is built from.
//!
//! Layout: key `msg_id ++ 0` holds the set header, key `msg_id ++ k` the
//! raw payload of chunk `k` (1-based), and the expiry index holds
//! `expiry ++ msg_id`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::counters::names;
use super::{Store, StoreError, Tx, from_ms, time_key16, to_ms};

/// Partial sets deleted per batch when pruning (each has up to 255 chunks).
const PRUNE_SETS_PER_BATCH: usize = 64;

/// The stored header of a partial chunk set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SetHeader {
    /// Number of chunks of the message.
    pub(crate) chunks: u8,
    /// Number of distinct chunks stored.
    pub(crate) have: u8,
    /// Total payload bytes stored.
    pub(crate) bytes: u64,
    /// When the set expires (ms).
    pub(crate) expires: u64,
}

/// Public view of a stored partial set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialSet {
    /// Number of chunks the message has.
    pub chunks: u8,
    /// Number of distinct chunks stored so far.
    pub have: u8,
    /// Total payload bytes stored so far.
    pub bytes: u64,
    /// When the incomplete set will be deleted.
    pub expires: SystemTime,
}

/// One stored chunk of a partial set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialChunk {
    /// Chunk number (1-based).
    pub chunk: u8,
    /// Its payload.
    pub payload: Vec<u8>,
}

fn chunk_key(msg_id: &[u8; 16], chunk: u8) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(msg_id);
    k[16] = chunk;
    k
}

impl Store {
    /// The partial set for `msg_id`, if one is stored.
    pub fn partial_set(&self, msg_id: &[u8; 16]) -> Result<Option<PartialSet>, StoreError> {
        let h: Option<SetHeader> = self.get_rec(
            &self.engine()?.ks.partial,
            &chunk_key(msg_id, 0),
            "partial set",
        )?;
        Ok(h.map(|h| PartialSet {
            chunks: h.chunks,
            have: h.have,
            bytes: h.bytes,
            expires: from_ms(h.expires),
        }))
    }

    /// The chunks stored for `msg_id`, in chunk order.
    pub fn partial_chunks(&self, msg_id: &[u8; 16]) -> Result<Vec<PartialChunk>, StoreError> {
        let mut out = Vec::new();
        for guard in self.engine()?.ks.partial.prefix(msg_id) {
            let (k, v) = guard
                .into_inner()
                .map_err(self.db_err("read partial chunks"))?;
            match k.get(16) {
                Some(0) => {}
                Some(&chunk) if k.len() == 17 => out.push(PartialChunk {
                    chunk,
                    payload: v.to_vec(),
                }),
                _ => return Err(self.corrupt("partial chunk key", "not 17 bytes")),
            }
        }
        Ok(out)
    }

    /// Number of partial sets currently stored.
    pub fn partial_count(&self) -> usize {
        self.inner
            .write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partial_sets
    }

    /// Deletes every partial set whose expiry is at or before `now`
    /// (counted), using the expiry index. Returns how many were deleted.
    pub fn prune_partials(&self, now: SystemTime) -> Result<usize, StoreError> {
        let end = time_key16(to_ms(now), &[0xff; 16]);
        let mut total = 0;
        loop {
            let mut tx = self.tx()?;
            let e = tx.engine.clone();
            let ks = &e.ks;
            let keys = self.keys_upto(&ks.partial_exp, &end, PRUNE_SETS_PER_BATCH)?;
            if keys.is_empty() {
                return Ok(total);
            }
            for k in &keys {
                let msg_id = k
                    .get(8..)
                    .and_then(|m| <[u8; 16]>::try_from(m).ok())
                    .ok_or_else(|| self.corrupt("partial expiry key", "not 24 bytes"))?;
                tx.remove_partial_records(&msg_id)?;
                tx.batch.remove(&ks.partial_exp, k.as_slice());
                tx.partial_delta -= 1;
            }
            tx.incr(names::PARTIALS_EXPIRED, keys.len() as u64);
            tx.commit()?;
            total += keys.len();
        }
    }
}

/// The replay-log key recording that message `msg_id` was completed: a
/// digest under its own label, so it can never equal a packet ID.
fn done_key(msg_id: &[u8; 16]) -> [u8; 16] {
    let digest = mimix_packet::crypto::digest::sha256(&[b"mimix completed message", msg_id]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl Tx<'_> {
    /// Whether message `msg_id` was completed (and queued for delivery)
    /// before: later copies of its chunks are duplicates.
    pub(crate) fn message_done(&self, msg_id: &[u8; 16]) -> Result<bool, StoreError> {
        self.store.replay_contains(&done_key(msg_id))
    }

    /// Records that message `msg_id` was completed, until `expires`.
    pub(crate) fn mark_message_done(&mut self, msg_id: &[u8; 16], expires: SystemTime) {
        let e = self.engine.clone();
        let ks = &e.ks;
        let key = done_key(msg_id);
        let exp = to_ms(expires);
        self.batch.insert(&ks.replay, key, exp.to_be_bytes());
        self.batch.insert(&ks.replay_exp, time_key16(exp, &key), []);
    }

    /// The header of the set `msg_id`, if stored.
    pub(crate) fn partial_header(
        &self,
        msg_id: &[u8; 16],
    ) -> Result<Option<SetHeader>, StoreError> {
        self.store.get_rec(
            &self.engine.ks.partial,
            &chunk_key(msg_id, 0),
            "partial set",
        )
    }

    /// Whether chunk `chunk` of set `msg_id` is stored.
    pub(crate) fn partial_has_chunk(
        &self,
        msg_id: &[u8; 16],
        chunk: u8,
    ) -> Result<bool, StoreError> {
        self.engine
            .ks
            .partial
            .contains_key(chunk_key(msg_id, chunk))
            .map_err(self.store.db_err("read partial chunk"))
    }

    /// Number of partial sets stored, including this transaction's changes.
    pub(crate) fn partial_sets(&self) -> usize {
        usize::try_from(self.state.partial_sets as isize + self.partial_delta).unwrap_or(0)
    }

    /// Stores chunk `chunk` and the updated `header` of set `msg_id`;
    /// `new_set` says whether the header is new (then it is indexed by
    /// expiry).
    pub(crate) fn partial_put_chunk(
        &mut self,
        msg_id: &[u8; 16],
        chunk: u8,
        payload: &[u8],
        header: &SetHeader,
        new_set: bool,
    ) -> Result<(), StoreError> {
        let e = self.engine.clone();
        let ks = &e.ks;
        self.batch
            .insert(&ks.partial, chunk_key(msg_id, chunk), payload);
        self.put(&ks.partial, &chunk_key(msg_id, 0), header, "partial set")?;
        if new_set {
            self.batch
                .insert(&ks.partial_exp, time_key16(header.expires, msg_id), []);
            self.partial_delta += 1;
        }
        Ok(())
    }

    /// Removes the set `msg_id` (header, chunks and expiry index entry) and
    /// returns its chunks concatenated in chunk order, with `extra` (a chunk
    /// not stored yet) placed at its position.
    pub(crate) fn partial_take(
        &mut self,
        msg_id: &[u8; 16],
        header: &SetHeader,
        extra: (u8, &[u8]),
    ) -> Result<Vec<u8>, StoreError> {
        let chunks = self.store.partial_chunks(msg_id)?;
        let mut out =
            Vec::with_capacity(usize::try_from(header.bytes).unwrap_or(0) + extra.1.len());
        let mut extra = Some(extra);
        for c in &chunks {
            if let Some((_, p)) = extra.filter(|(n, _)| *n < c.chunk) {
                out.extend_from_slice(p);
                extra = None;
            }
            out.extend_from_slice(&c.payload);
        }
        if let Some((_, p)) = extra {
            out.extend_from_slice(p);
        }
        self.remove_partial_records(msg_id)?;
        let e = self.engine.clone();
        let ks = &e.ks;
        self.batch
            .remove(&ks.partial_exp, time_key16(header.expires, msg_id));
        self.partial_delta -= 1;
        Ok(out)
    }

    /// Removes the header and all chunks of set `msg_id` from the batch.
    fn remove_partial_records(&mut self, msg_id: &[u8; 16]) -> Result<(), StoreError> {
        let e = self.engine.clone();
        let ks = &e.ks.partial;
        for guard in ks.prefix(msg_id) {
            let k = guard
                .key()
                .map_err(self.store.db_err("read partial chunks"))?;
            self.batch.remove(ks, k);
        }
        Ok(())
    }
}
