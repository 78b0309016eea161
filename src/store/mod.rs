//! The durable store: the one place where the daemon keeps state that must
//! survive a crash.
//!
//! Everything lives in one fjall database with one keyspace per kind of
//! record: the replay log, the pool, the outbound queue (next-hop packets),
//! the exit queue (exit chunks released by the pool), partial messages
//! (chunks awaiting their siblings), the mail queue (reassembled messages
//! awaiting SMTP), key metadata, counters, the directory's keyring,
//! ping statistics and pings in flight, the digests of packets held (next
//! to the replay log) and the exit's per-day rate-limit counters. Every mutation that must
//! survive a crash is one fjall batch, committed and then persisted with
//! `fsync` before the call returns, so a step either happened completely
//! or not at all.
//!
//! Mutations are serialised by one write lock; reads are lock-free. Items
//! that are due or expire at a given time are found through secondary
//! keyspaces keyed by the big-endian time followed by the item's key, so
//! neither `due` nor the pruning functions scan whole queues.
//!
//! Times are stored as milliseconds since the Unix epoch; times before it
//! count as the epoch.

mod counters;
mod digests;
mod directory;
mod limits;
mod outbound;
mod partial;
mod pool;
mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use counters::{Tally, names as counter};
pub use directory::Table;
pub use limits::{RateLimits, Verdict};
pub use outbound::{MailId, MailItem, OutboundId, OutboundItem};
pub(crate) use partial::SetHeader;
pub use partial::{PartialChunk, PartialSet};
pub use pool::{Accepted, ExitChunk, ExitJobId, Inbound, PoolId, PoolItem, Released};
pub use secrets::keyed_hash;

/// Errors from the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created.
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A database operation failed (I/O error, corruption detected by the
    /// engine, database locked by another process, ...).
    #[error("store {op} failed in {path}: {source}")]
    Db {
        /// What the store was doing.
        op: &'static str,
        /// The store directory.
        path: PathBuf,
        /// The underlying error.
        source: fjall::Error,
    },
    /// A stored record could not be decoded.
    #[error("corrupt {what} record in store {path}: {reason}")]
    Corrupt {
        /// The kind of record.
        what: &'static str,
        /// The store directory.
        path: PathBuf,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode {what} record: {source}")]
    Encode {
        /// The kind of record.
        what: &'static str,
        /// The underlying error.
        source: postcard::Error,
    },
}

/// Handles to all keyspaces.
struct Keyspaces {
    /// Packet ID (16) -> expiry (u64 BE ms).
    replay: Keyspace,
    /// Expiry (8) ++ packet ID (16) -> empty.
    replay_exp: Keyspace,
    /// Item ID (8) -> [`PoolItem`].
    pool: Keyspace,
    /// Item ID (8) -> outbound record.
    outbound: Keyspace,
    /// Next attempt (8) ++ item ID (8) -> empty.
    outbound_due: Keyspace,
    /// Item ID (8) -> [`ExitChunk`].
    exitq: Keyspace,
    /// Message ID (16) ++ chunk (1) -> chunk record; chunk 0 is the set header.
    partial: Keyspace,
    /// Expiry (8) ++ message ID (16) -> empty.
    partial_exp: Keyspace,
    /// Item ID (8) -> mail record.
    mail: Keyspace,
    /// Next attempt (8) ++ item ID (8) -> empty.
    mail_due: Keyspace,
    /// Name -> bytes.
    meta: Keyspace,
    /// Name -> u64 BE.
    counters: Keyspace,
    /// Remailer address -> keyring entry (the directory's record).
    keyring: Keyspace,
    /// Remailer address -> ping statistics.
    stats: Keyspace,
    /// Message ID (16) -> ping in flight.
    pings: Keyspace,
    /// Expiry (8) ++ message ID (16) -> empty.
    pings_exp: Keyspace,
    /// Digest of a packet held (32) -> empty: see [`digests`].
    digests: Keyspace,
    /// Expiry (8) ++ digest (32) -> empty.
    digests_exp: Keyspace,
    /// Day (8) ++ tag (1) ++ keyed hash -> count: see [`limits`].
    limits: Keyspace,
}

/// State guarded by the write lock.
struct WriteState {
    /// Next item ID to hand out (pool, outbound, exit and mail items).
    next_id: u64,
    /// Number of partial chunk sets currently stored.
    partial_sets: usize,
}

struct Inner {
    path: PathBuf,
    db: Database,
    ks: Keyspaces,
    write: Mutex<WriteState>,
}

/// The durable store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl StoreError {
    /// Whether the store could not be opened because another process (a
    /// running node) holds it.
    pub fn is_locked(&self) -> bool {
        matches!(
            self,
            Self::Db {
                source: fjall::Error::Locked,
                ..
            }
        )
    }
}

impl Store {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        mimix_settings::fs::create_private_dir(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.to_path_buf();
        let db_err = |op| {
            let path = path.clone();
            move |source| StoreError::Db { op, path, source }
        };
        let db = Database::builder(dir)
            .open()
            .map_err(db_err("open database"))?;
        let open_ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(db_err("open keyspace"))
        };
        let ks = Keyspaces {
            replay: open_ks("replay")?,
            replay_exp: open_ks("replay_exp")?,
            pool: open_ks("pool")?,
            outbound: open_ks("outbound")?,
            outbound_due: open_ks("outbound_due")?,
            exitq: open_ks("exitq")?,
            partial: open_ks("partial")?,
            partial_exp: open_ks("partial_exp")?,
            mail: open_ks("mail")?,
            mail_due: open_ks("mail_due")?,
            meta: open_ks("meta")?,
            counters: open_ks("counters")?,
            keyring: open_ks("keyring")?,
            stats: open_ks("stats")?,
            pings: open_ks("pings")?,
            pings_exp: open_ks("pings_exp")?,
            digests: open_ks("digests")?,
            digests_exp: open_ks("digests_exp")?,
            limits: open_ks("limits")?,
        };
        let mut next_id = 0u64;
        for k in [&ks.pool, &ks.outbound, &ks.exitq, &ks.mail] {
            if let Some(guard) = k.last_key_value() {
                let key = guard.key().map_err(db_err("read last key"))?;
                let id = be_u64(&key).ok_or_else(|| StoreError::Corrupt {
                    what: "item key",
                    path: path.clone(),
                    reason: format!("key of {} bytes, expected 8", key.len()),
                })?;
                next_id = next_id.max(id.saturating_add(1));
            }
        }
        let mut partial_sets = 0usize;
        for guard in ks.partial_exp.iter() {
            guard.key().map_err(db_err("count partial sets"))?;
            partial_sets += 1;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                db,
                ks,
                write: Mutex::new(WriteState {
                    next_id,
                    partial_sets,
                }),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads a small metadata value by name.
    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self
            .inner
            .ks
            .meta
            .get(name)
            .map_err(self.db_err("read metadata"))?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// Durably stores a small metadata value under `name`.
    pub fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.tx();
        tx.batch.insert(&self.inner.ks.meta, name, value);
        tx.commit()
    }

    /// Durably deletes the metadata value `name` (no error if absent).
    pub fn meta_delete(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.tx();
        tx.batch.remove(&self.inner.ks.meta, name);
        tx.commit()
    }

    /// Starts a write transaction: takes the write lock and an empty batch.
    pub(crate) fn tx(&self) -> Tx<'_> {
        let state = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        Tx {
            store: self,
            state,
            batch: self.inner.db.batch(),
            counters: BTreeMap::new(),
            partial_delta: 0,
        }
    }

    /// Maps a fjall error for operation `op`.
    fn db_err(&self, op: &'static str) -> impl FnOnce(fjall::Error) -> StoreError + use<> {
        let path = self.inner.path.clone();
        move |source| StoreError::Db { op, path, source }
    }

    /// A corrupt-record error.
    fn corrupt(&self, what: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what,
            path: self.inner.path.clone(),
            reason: reason.into(),
        }
    }

    /// Reads and decodes one record.
    fn get_rec<T: DeserializeOwned>(
        &self,
        ks: &Keyspace,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match ks.get(key).map_err(self.db_err("read"))? {
            None => Ok(None),
            Some(v) => self.decode(&v, what).map(Some),
        }
    }

    /// Decodes one record.
    fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &'static str,
    ) -> Result<T, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| self.corrupt(what, e.to_string()))
    }

    /// Collects up to `limit` keys of `ks` that sort at or before `end`,
    /// from the start of the keyspace.
    fn keys_upto(
        &self,
        ks: &Keyspace,
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for guard in ks.range(..=end) {
            if out.len() >= limit {
                break;
            }
            out.push(guard.key().map_err(self.db_err("scan index"))?.to_vec());
        }
        Ok(out)
    }
}

/// A write transaction: the write lock, a batch and pending counter
/// increments, committed together with `fsync`.
pub(crate) struct Tx<'a> {
    store: &'a Store,
    state: MutexGuard<'a, WriteState>,
    batch: OwnedWriteBatch,
    counters: BTreeMap<String, u64>,
    partial_delta: isize,
}

impl Tx<'_> {
    /// Hands out a fresh item ID.
    fn new_id(&mut self) -> u64 {
        let id = self.state.next_id;
        self.state.next_id = id.wrapping_add(1);
        id
    }

    /// Adds `n` to counter `name` as part of this transaction.
    pub(crate) fn incr(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_owned()).or_default() += n;
    }

    /// Encodes `value` and inserts it under `key` in `ks`.
    fn put<T: Serialize>(
        &mut self,
        ks: &Keyspace,
        key: &[u8],
        value: &T,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let bytes =
            postcard::to_stdvec(value).map_err(|source| StoreError::Encode { what, source })?;
        self.batch.insert(ks, key, bytes);
        Ok(())
    }

    /// Commits the batch and persists it with `fsync`.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        self.finish(PersistMode::SyncAll)
    }

    /// Commits the batch, flushing to the OS only: for batches that hold
    /// nothing but statistics.
    fn commit_unsynced(self) -> Result<(), StoreError> {
        self.finish(PersistMode::Buffer)
    }

    fn finish(mut self, mode: PersistMode) -> Result<(), StoreError> {
        let store = self.store;
        let ks = &store.inner.ks.counters;
        for (name, n) in std::mem::take(&mut self.counters) {
            let old = match ks.get(&name).map_err(store.db_err("read counter"))? {
                None => 0,
                Some(v) => be_u64(&v).ok_or_else(|| store.corrupt("counter", "not 8 bytes"))?,
            };
            self.batch
                .insert(ks, name.as_str(), old.saturating_add(n).to_be_bytes());
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, store.inner.db.batch());
        batch
            .durability(Some(mode))
            .commit()
            .map_err(store.db_err("commit"))?;
        let sets = self.state.partial_sets as isize + self.partial_delta;
        self.state.partial_sets = usize::try_from(sets).unwrap_or(0);
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Reads a big-endian u64 from exactly 8 bytes.
fn be_u64(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

/// Reads a big-endian u64 from the first 8 bytes of `b`.
fn be_u64_prefix(b: &[u8]) -> Option<u64> {
    b.get(..8).and_then(be_u64)
}

/// An index key: big-endian time then big-endian item ID.
fn time_id_key(ms: u64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// An index key: big-endian time then a 16-byte ID.
fn time_key16(ms: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

#[cfg(test)]
mod tests;
