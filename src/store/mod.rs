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
//! neither `due` nor the pruning functions scan whole queues. What the
//! pool and the queues hold is counted in memory ([`Usage`]), so caps are
//! checked without reading the disk.
//!
//! A failed write (a full disk, say) does not poison the store: it refuses
//! writes ([`StoreError::Unavailable`]) until the disk has room again and
//! then reopens the database by itself (see [`engine`]).
//!
//! Times are stored as milliseconds since the Unix epoch; times before it
//! count as the epoch.

mod config;
mod counters;
mod digests;
mod directory;
mod engine;
mod limits;
mod outbound;
mod partial;
mod pool;
mod secrets;
mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::{Keyspace, OwnedWriteBatch, PersistMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::StoreConfig;
pub use counters::{Tally, names as counter};
pub use directory::Table;
use engine::{Engine, Health};
pub use limits::{RateLimits, Verdict};
pub use outbound::{Change, MailId, MailItem, OutboundId, OutboundItem};
pub(crate) use partial::SetHeader;
pub use partial::{PartialChunk, PartialSet};
pub use pool::{Accepted, ExitChunk, ExitJobId, Inbound, PoolId, PoolItem, PoolSnapshot, Released};
pub use secrets::keyed_hash;
pub(crate) use usage::Part;
pub use usage::{Area, Usage};

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
    /// An earlier write failed (a full disk, say) and the database has not
    /// been reopened yet; it is reopened by itself once the disk has room.
    #[error("store in {path} cannot be written now: {reason}")]
    Unavailable {
        /// The store directory.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

/// State guarded by the write lock.
struct WriteState {
    /// Next item ID to hand out (pool, outbound, exit and mail items).
    next_id: u64,
    /// Number of partial chunk sets currently stored.
    partial_sets: usize,
    /// What the pool and the queues hold.
    usage: Usage,
}

struct Inner {
    path: PathBuf,
    config: StoreConfig,
    /// The open database; `None` only while it is being reopened (or a
    /// reopening failed).
    engine: RwLock<Option<Arc<Engine>>>,
    write: Mutex<WriteState>,
    /// [`WriteState::usage`] for readers.
    usage: usage::Cells,
    health: Health,
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
    /// Opens (creating if needed) the store in directory `dir`, with the
    /// default [`StoreConfig`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, &StoreConfig::default())
    }

    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open_with(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        mimix_settings::fs::create_private_dir(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let engine = Engine::open(dir, config)?;
        let state = engine.scan_state(dir)?;
        let cells = usage::Cells::default();
        cells.set(&state.usage);
        Ok(Store {
            inner: Arc::new(Inner {
                path: dir.to_path_buf(),
                config: *config,
                engine: RwLock::new(Some(Arc::new(engine))),
                write: Mutex::new(state),
                usage: cells,
                health: Health::new(dir, config),
            }),
        })
    }

    /// What the pool and the queues hold (no disk access).
    pub fn usage(&self) -> Usage {
        self.inner.usage.get()
    }

    /// Bytes free on the store's file system (read at most twice a second).
    pub fn free_space(&self) -> u64 {
        self.inner.health.free_space()
    }

    /// Whether the store takes new items now: no failed write is pending
    /// and at least [`StoreConfig::min_free_space`] is free. Cheap: the
    /// intake asks before every packet.
    pub fn accepts_new(&self) -> bool {
        !self.inner.health.failed() && self.inner.health.has_room()
    }

    /// Whether a write failed and the store has not recovered yet (writes
    /// fail with [`StoreError::Unavailable`] meanwhile).
    pub fn writes_failing(&self) -> bool {
        self.inner.health.failed()
    }

    /// After a failed write, reopens the database if the disk has room
    /// again (and the backoff has passed). Call it now and then: writers
    /// do the same, but a node that is refusing packets may have none.
    pub fn heal(&self) {
        if self.inner.health.failed() && self.inner.health.may_reopen() {
            drop(self.tx());
        }
    }

    /// The open database.
    fn engine(&self) -> Result<Arc<Engine>, StoreError> {
        self.inner
            .engine
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| self.unavailable("the database is being reopened"))
    }

    fn unavailable(&self, reason: &'static str) -> StoreError {
        StoreError::Unavailable {
            path: self.inner.path.clone(),
            reason,
        }
    }

    /// Reopens the database after a failed write, with the write lock
    /// held; `state` is read afresh from the reopened database.
    fn reopen(&self, state: &mut WriteState) -> Result<(), StoreError> {
        let old = self
            .inner
            .engine
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(old) = old {
            engine::release(old);
        }
        let engine = Engine::open(&self.inner.path, &self.inner.config)?;
        *state = engine.scan_state(&self.inner.path)?;
        self.inner.usage.set(&state.usage);
        *self.inner.engine.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(engine));
        Ok(())
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads a small metadata value by name.
    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self
            .engine()?
            .ks
            .meta
            .get(name)
            .map_err(self.db_err("read metadata"))?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// Durably stores a small metadata value under `name`.
    pub fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        tx.batch.insert(&e.ks.meta, name, value);
        tx.commit()
    }

    /// Durably deletes the metadata value `name` (no error if absent).
    pub fn meta_delete(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        tx.batch.remove(&e.ks.meta, name);
        tx.commit()
    }

    /// Starts a write transaction: takes the write lock and an empty batch.
    /// After a failed write the database is reopened first (when the disk
    /// has room and the backoff has passed); until then this fails with
    /// [`StoreError::Unavailable`], so nothing writes to a poisoned
    /// database.
    pub(crate) fn tx(&self) -> Result<Tx<'_>, StoreError> {
        let mut state = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        let health = &self.inner.health;
        if health.failed() {
            if !health.may_reopen() {
                return Err(self.unavailable("a write failed; waiting for free disk space"));
            }
            let reopened = self.reopen(&mut state);
            health.reopened(reopened.is_ok());
            match reopened {
                Ok(()) => tracing::warn!("store reopened after a failed write"),
                Err(e) => {
                    tracing::warn!("reopening the store: {e}");
                    return Err(self.unavailable("reopening after a failed write failed"));
                }
            }
        }
        let engine = self.engine()?;
        Ok(Tx {
            store: self,
            state,
            batch: engine.db.batch(),
            engine,
            counters: BTreeMap::new(),
            partial_delta: 0,
            usage: usage::Delta::default(),
        })
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
        Ok(self.get_sized(ks, key, what)?.map(|(v, _)| v))
    }

    /// Reads and decodes one record; also returns its stored size.
    fn get_sized<T: DeserializeOwned>(
        &self,
        ks: &Keyspace,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<(T, usize)>, StoreError> {
        match ks.get(key).map_err(self.db_err("read"))? {
            None => Ok(None),
            Some(v) => self.decode(&v, what).map(|rec| Some((rec, v.len()))),
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
    engine: Arc<Engine>,
    batch: OwnedWriteBatch,
    counters: BTreeMap<String, u64>,
    partial_delta: isize,
    usage: usage::Delta,
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

    /// Encodes `value` and inserts it under `key` in `ks`; returns the
    /// stored size.
    fn put<T: Serialize>(
        &mut self,
        ks: &Keyspace,
        key: &[u8],
        value: &T,
        what: &'static str,
    ) -> Result<usize, StoreError> {
        let bytes =
            postcard::to_stdvec(value).map_err(|source| StoreError::Encode { what, source })?;
        let len = bytes.len();
        self.batch.insert(ks, key, bytes);
        Ok(len)
    }

    /// As [`Tx::put`] for a new record of `part`, counted in its usage.
    fn put_new<T: Serialize>(
        &mut self,
        part: Part,
        ks: &Keyspace,
        key: &[u8],
        value: &T,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let len = self.put(ks, key, value, what)?;
        self.usage.add(part, len);
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
        let engine = self.engine.clone();
        let ks = &engine.ks.counters;
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
        let batch = std::mem::replace(&mut self.batch, engine.db.batch());
        if let Err(e) = batch.durability(Some(mode)).commit() {
            // fjall poisons the database on a failed write: reopen it
            // before anything else is written.
            store.inner.health.fail();
            return Err(store.db_err("commit")(e));
        }
        let sets = self.state.partial_sets as isize + self.partial_delta;
        self.state.partial_sets = usize::try_from(sets).unwrap_or(0);
        let delta = std::mem::take(&mut self.usage);
        self.state.usage.apply(&delta);
        store.inner.usage.set(&self.state.usage);
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
