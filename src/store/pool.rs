//! The replay log, the pool, and the exit queue the pool releases exit
//! chunks into.

use std::collections::HashSet;
use std::time::SystemTime;

use mimix_packet::ExitType;
use serde::{Deserialize, Serialize};

use super::counters::names;
use super::engine::Engine;
use super::{Part, Store, StoreError, Tx, be_u64, time_id_key, time_key16, to_ms};
use crate::safelog::{bytes, sensitive};

/// Replay entries (or partial sets) deleted per batch when pruning.
pub(super) const PRUNE_BATCH: usize = 10_000;

/// A peeled packet waiting in the pool.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolItem {
    /// An intermediate packet for the next hop.
    Forward {
        /// The next hop's address, as given in the packet.
        next_hop: String,
        /// The binary 20480-byte packet for the next hop.
        #[serde(with = "serde_bytes")]
        packet: Vec<u8>,
    },
    /// A final-hop payload chunk.
    Exit {
        /// Message ID shared by all chunks of one message.
        msg_id: [u8; 16],
        /// Chunk number (1-based).
        chunk: u8,
        /// Number of chunks in the message.
        chunks: u8,
        /// SMTP or dummy.
        #[serde(with = "exit_type_byte")]
        exit_type: ExitType,
        /// The chunk's payload bytes (true length, no padding).
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

/// An exit chunk released from the pool, awaiting exit processing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitChunk {
    /// Message ID shared by all chunks of one message.
    pub msg_id: [u8; 16],
    /// Chunk number (1-based).
    pub chunk: u8,
    /// Number of chunks in the message.
    pub chunks: u8,
    /// SMTP or dummy.
    #[serde(with = "exit_type_byte")]
    pub exit_type: ExitType,
    /// The chunk's payload bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for PoolItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forward { next_hop, packet } => f
                .debug_struct("Forward")
                .field("next_hop", &sensitive(next_hop))
                .field("packet", &bytes(packet.len()))
                .finish(),
            Self::Exit {
                chunk,
                chunks,
                exit_type,
                payload,
                ..
            } => f
                .debug_struct("Exit")
                .field("chunk", &sensitive((chunk, chunks)))
                .field("exit_type", exit_type)
                .field("payload", &bytes(payload.len()))
                .finish_non_exhaustive(),
        }
    }
}

impl std::fmt::Debug for ExitChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitChunk")
            .field("chunk", &sensitive((self.chunk, self.chunks)))
            .field("exit_type", &self.exit_type)
            .field("payload", &bytes(self.payload.len()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

/// Exit types are stored as their wire byte; an unknown byte makes the
/// record corrupt.
mod exit_type_byte {
    use mimix_packet::ExitType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &ExitType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(t.byte())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ExitType, D::Error> {
        let b = u8::deserialize(d)?;
        ExitType::from_byte(b).map_err(serde::de::Error::custom)
    }
}

/// Identifies an item in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub u64);

/// Identifies an item in the exit queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExitJobId(pub u64);

/// One inbound packet to accept.
#[derive(Clone)]
pub struct Inbound {
    /// The packet ID (replay detection key).
    pub packet_id: [u8; 16],
    /// When the replay log entry for this ID may be pruned.
    pub replay_expires: SystemTime,
    /// SHA-256 of the binary packet as received, kept as long as the ID
    /// so that a byte-identical copy is recognised before any RSA work.
    pub digest: Option<[u8; 32]>,
    /// What goes into the pool.
    pub item: PoolItem,
}

/// The result of accepting one inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New packet: the ID is in the replay log and the item in the pool.
    New(PoolId),
    /// The ID was already in the replay log; nothing was written.
    Replay,
}

/// What [`Store::release`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Items moved to the outbound queue.
    pub forwarded: usize,
    /// Items moved to the exit queue.
    pub exits: usize,
    /// IDs that were not (or no longer) in the pool.
    pub missing: usize,
}

impl Store {
    /// Accepts one inbound packet: see [`Store::accept_batch`].
    pub fn accept(&self, inbound: &Inbound) -> Result<Accepted, StoreError> {
        let mut res = self.accept_batch(std::slice::from_ref(inbound))?;
        res.pop()
            .ok_or_else(|| self.corrupt("accept result", "batch returned no result"))
    }

    /// Accepts several inbound packets in one batch and one `fsync`
    /// (group commit). For each packet, in order: if its ID is in the
    /// replay log (or earlier in this batch) the result is
    /// [`Accepted::Replay`] and nothing is written for it; otherwise its ID
    /// goes into the replay log and its item into the pool. Either the whole
    /// batch is durable when this returns `Ok`, or nothing of it is.
    pub fn accept_batch(&self, inbound: &[Inbound]) -> Result<Vec<Accepted>, StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(inbound.len());
        let mut new = 0u64;
        for p in inbound {
            let known = ks
                .replay
                .contains_key(p.packet_id)
                .map_err(self.db_err("read replay log"))?;
            if known || !seen.insert(p.packet_id) {
                out.push(Accepted::Replay);
                continue;
            }
            let exp = to_ms(p.replay_expires);
            tx.batch.insert(&ks.replay, p.packet_id, exp.to_be_bytes());
            tx.batch
                .insert(&ks.replay_exp, time_key16(exp, &p.packet_id), []);
            if let Some(d) = &p.digest {
                tx.put_digest(d, p.replay_expires);
            }
            let id = tx.new_id();
            tx.put_new(Part::Pool, &ks.pool, &id.to_be_bytes(), &p.item, "pool")?;
            out.push(Accepted::New(PoolId(id)));
            new += 1;
        }
        let replays = out.len() as u64 - new;
        if replays > 0 {
            tx.incr(names::REPLAYS, replays);
        }
        if new > 0 {
            tx.incr(names::ACCEPTED, new);
            tx.commit()?;
        } else {
            tx.commit_unsynced()?;
        }
        Ok(out)
    }

    /// Whether `packet_id` is in the replay log.
    pub fn replay_contains(&self, packet_id: &[u8; 16]) -> Result<bool, StoreError> {
        self.engine()?
            .ks
            .replay
            .contains_key(packet_id)
            .map_err(self.db_err("read replay log"))
    }

    /// Logs `packet_id` in the replay log without pooling anything, for a
    /// packet whose peeled result is discarded (an exit packet at a middle
    /// node): its replay must be refused like any other. Counts `counter`
    /// in the same batch, or returns `false` (and counts a replay) when the
    /// ID was already logged. `digest` is kept as in [`Inbound::digest`].
    pub fn log_packet_id(
        &self,
        packet_id: &[u8; 16],
        digest: Option<&[u8; 32]>,
        replay_expires: SystemTime,
        counter: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        if self.replay_contains(packet_id)? {
            tx.incr(names::REPLAYS, 1);
            tx.commit_unsynced()?;
            return Ok(false);
        }
        let exp = to_ms(replay_expires);
        tx.batch.insert(&ks.replay, packet_id, exp.to_be_bytes());
        tx.batch
            .insert(&ks.replay_exp, time_key16(exp, packet_id), []);
        if let Some(d) = digest {
            tx.put_digest(d, replay_expires);
        }
        tx.incr(counter, 1);
        tx.commit()?;
        Ok(true)
    }

    /// Deletes replay log entries whose expiry is at or before `now`, using
    /// the time index, and the packet digests that expire with them.
    /// Returns how many replay entries were deleted.
    pub fn prune_replay(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.prune_digests(now)?;
        let end = time_key16(to_ms(now), &[0xff; 16]);
        let mut total = 0;
        loop {
            let mut tx = self.tx()?;
            let e = tx.engine.clone();
            let ks = &e.ks;
            let keys = self.keys_upto(&ks.replay_exp, &end, PRUNE_BATCH)?;
            if keys.is_empty() {
                return Ok(total);
            }
            for k in &keys {
                if let Some(pid) = k.get(8..) {
                    tx.batch.remove(&ks.replay, pid);
                }
                tx.batch.remove(&ks.replay_exp, k.as_slice());
            }
            tx.incr(names::REPLAY_PRUNED, keys.len() as u64);
            tx.commit()?;
            total += keys.len();
        }
    }

    /// Number of items in the pool (no disk access).
    pub fn pool_count(&self) -> Result<usize, StoreError> {
        Ok(usize::try_from(self.usage().pool.count).unwrap_or(usize::MAX))
    }

    /// IDs of all items in the pool (tests and tools; the pool round
    /// streams them with [`Store::pool_snapshot`] instead).
    pub fn pool_ids(&self) -> Result<Vec<PoolId>, StoreError> {
        self.pool_snapshot()?.collect()
    }

    /// The pool as it is now: its size and its IDs in key order, read
    /// lazily from one consistent view of the database, so a pool round
    /// needs memory independent of the pool's size. Items added after the
    /// snapshot is taken are not in it; items released meanwhile still
    /// are (releasing them again counts them as missing).
    pub fn pool_snapshot(&self) -> Result<PoolSnapshot, StoreError> {
        // Under the write lock, so the count and the view agree.
        let tx = self.tx()?;
        let len = usize::try_from(tx.state.usage.pool.count).unwrap_or(usize::MAX);
        let engine = tx.engine.clone();
        let iter = engine.ks.pool.iter();
        drop(tx);
        Ok(PoolSnapshot {
            len,
            iter,
            store: self.clone(),
            _engine: engine,
        })
    }

    /// The pool item `id`, if present.
    pub fn pool_get(&self, id: PoolId) -> Result<Option<PoolItem>, StoreError> {
        self.get_rec(&self.engine()?.ks.pool, &id.0.to_be_bytes(), "pool")
    }

    /// Inserts items into the pool without replay entries (dummies), in one
    /// durable batch.
    pub fn pool_insert(&self, items: &[PoolItem]) -> Result<Vec<PoolId>, StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let id = tx.new_id();
            tx.put_new(Part::Pool, &e.ks.pool, &id.to_be_bytes(), item, "pool")?;
            ids.push(PoolId(id));
        }
        tx.incr(names::DUMMIES_POOLED, items.len() as u64);
        tx.commit()?;
        Ok(ids)
    }

    /// Atomically removes the items `ids` from the pool, putting forward
    /// items into the outbound queue (first attempt at `now`) and exit
    /// items into the exit queue, in one durable batch. IDs not in the pool
    /// are counted as missing and otherwise ignored.
    pub fn release(&self, ids: &[PoolId], now: SystemTime) -> Result<Released, StoreError> {
        let now_ms = to_ms(now);
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        let mut done = HashSet::new();
        let mut r = Released::default();
        for &PoolId(id) in ids {
            let key = id.to_be_bytes();
            let item: Option<(PoolItem, usize)> = self.get_sized(&ks.pool, &key, "pool")?;
            let Some((item, len)) = item.filter(|_| done.insert(id)) else {
                r.missing += 1;
                continue;
            };
            tx.batch.remove(&ks.pool, key);
            tx.usage.remove(Part::Pool, len);
            match item {
                PoolItem::Forward { next_hop, packet } => {
                    tx.batch.insert(
                        &ks.outbound_due,
                        time_id_key(now_ms, id),
                        next_hop.as_bytes(),
                    );
                    let rec = super::outbound::QueueRecord {
                        destination: next_hop,
                        payload: packet,
                        attempts: 0,
                        first_queued: now_ms,
                        next_attempt: now_ms,
                        prepared: false,
                    };
                    tx.put_new(Part::Outbound, &ks.outbound, &key, &rec, "outbound")?;
                    r.forwarded += 1;
                }
                PoolItem::Exit {
                    msg_id,
                    chunk,
                    chunks,
                    exit_type,
                    payload,
                } => {
                    let job = ExitChunk {
                        msg_id,
                        chunk,
                        chunks,
                        exit_type,
                        payload,
                    };
                    tx.put_new(Part::Exits, &ks.exitq, &key, &job, "exit queue")?;
                    r.exits += 1;
                }
            }
        }
        if r.forwarded > 0 {
            tx.incr(names::RELEASED_FORWARD, r.forwarded as u64);
        }
        if r.exits > 0 {
            tx.incr(names::RELEASED_EXIT, r.exits as u64);
        }
        tx.commit()?;
        Ok(r)
    }

    /// Up to `limit` exit chunks awaiting exit processing, oldest first.
    pub fn exit_jobs(&self, limit: usize) -> Result<Vec<(ExitJobId, ExitChunk)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.engine()?.ks.exitq.iter().take(limit) {
            let (k, v) = guard.into_inner().map_err(self.db_err("list exit queue"))?;
            let id = be_u64(&k).ok_or_else(|| self.corrupt("exit queue key", "not 8 bytes"))?;
            out.push((ExitJobId(id), self.decode(&v, "exit queue")?));
        }
        Ok(out)
    }

    /// Durably removes exit job `id` (for exit processing that does not go
    /// through reassembly). Returns whether it existed.
    pub fn exit_job_done(&self, id: ExitJobId) -> Result<bool, StoreError> {
        let mut tx = self.tx()?;
        let existed = tx.take_exit_job(id)?;
        tx.commit()?;
        Ok(existed)
    }
}

impl Tx<'_> {
    /// Removes exit job `id` as part of this transaction; returns whether
    /// it existed.
    pub(crate) fn take_exit_job(&mut self, id: ExitJobId) -> Result<bool, StoreError> {
        let e = self.engine.clone();
        let ks = &e.ks.exitq;
        let key = id.0.to_be_bytes();
        let size = ks
            .size_of(key)
            .map_err(self.store.db_err("read exit queue"))?;
        let Some(size) = size else {
            return Ok(false);
        };
        self.batch.remove(ks, key);
        self.usage
            .remove(Part::Exits, usize::try_from(size).unwrap_or(0));
        Ok(true)
    }
}

/// The pool's IDs as [`Store::pool_snapshot`] found them.
pub struct PoolSnapshot {
    len: usize,
    iter: fjall::Iter,
    store: Store,
    /// Keeps the database the view belongs to.
    _engine: std::sync::Arc<Engine>,
}

impl std::fmt::Debug for PoolSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSnapshot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PoolSnapshot {
    /// Items in the pool when the snapshot was taken.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Iterator for PoolSnapshot {
    type Item = Result<PoolId, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let guard = self.iter.next()?;
        let store = &self.store;
        Some(
            guard
                .key()
                .map_err(store.db_err("list pool"))
                .and_then(|k| be_u64(&k).ok_or_else(|| store.corrupt("pool key", "not 8 bytes")))
                .map(PoolId),
        )
    }
}
