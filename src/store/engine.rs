//! The fjall database under the store, and how the store survives a full
//! or failing disk.
//!
//! [`Engine`] is one open database with its keyspaces, opened with the
//! memory bounds of [`StoreConfig`]. fjall treats a failed journal write
//! or a failed flush as fatal: the database is *poisoned* and refuses
//! every later write, for ever. The store therefore never writes to a
//! poisoned engine: after a failed write it marks itself failed
//! ([`Health`]), answers [`StoreError::Unavailable`] to writers, and
//! reopens the database (journal recovery drops a torn tail; nothing
//! committed is lost) once the disk has room again, retrying with backoff.
//! Nothing needs a restart.
//!
//! The free space of the store's file system is looked up (`statvfs`) at
//! most every [`FREE_SPACE_TTL`], so the intake can refuse new packets
//! cheaply while it is below [`StoreConfig::min_free_space`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::config::StoreConfig;
use super::usage::{Part, Usage};
use super::{StoreError, WriteState, be_u64};

/// How long a free-space reading is used before the next `statvfs`.
const FREE_SPACE_TTL: Duration = Duration::from_millis(500);

/// First wait before reopening after a failed write; doubled up to
/// [`MAX_REOPEN_WAIT`].
const FIRST_REOPEN_WAIT: Duration = Duration::from_millis(250);

/// Longest wait between two reopening attempts.
const MAX_REOPEN_WAIT: Duration = Duration::from_secs(10);

/// How long a reopening waits for readers to let go of the old engine.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Smallest journal limit fjall accepts (and the most we want on a small
/// board: the journal is rotated at 64 MB anyway).
const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

/// Most table files the engine keeps open (fjall's default, 900, would
/// take most of a 1024 open-files limit).
const MAX_CACHED_FILES: usize = 128;

/// Handles to all keyspaces.
pub(super) struct Keyspaces {
    /// Packet ID (16) -> expiry (u64 BE ms).
    pub(super) replay: Keyspace,
    /// Expiry (8) ++ packet ID (16) -> empty.
    pub(super) replay_exp: Keyspace,
    /// Item ID (8) -> [`PoolItem`](super::PoolItem).
    pub(super) pool: Keyspace,
    /// Item ID (8) -> outbound record.
    pub(super) outbound: Keyspace,
    /// Next attempt (8) ++ item ID (8) -> destination.
    pub(super) outbound_due: Keyspace,
    /// Item ID (8) -> [`ExitChunk`](super::ExitChunk).
    pub(super) exitq: Keyspace,
    /// Message ID (16) ++ chunk (1) -> chunk record; chunk 0 is the set header.
    pub(super) partial: Keyspace,
    /// Expiry (8) ++ message ID (16) -> empty.
    pub(super) partial_exp: Keyspace,
    /// Item ID (8) -> mail record.
    pub(super) mail: Keyspace,
    /// Next attempt (8) ++ item ID (8) -> destination.
    pub(super) mail_due: Keyspace,
    /// Name -> bytes.
    pub(super) meta: Keyspace,
    /// Name -> u64 BE.
    pub(super) counters: Keyspace,
    /// Remailer address -> keyring entry (the directory's record).
    pub(super) keyring: Keyspace,
    /// Remailer address -> ping statistics.
    pub(super) stats: Keyspace,
    /// Message ID (16) -> ping in flight.
    pub(super) pings: Keyspace,
    /// Expiry (8) ++ message ID (16) -> empty.
    pub(super) pings_exp: Keyspace,
    /// Digest of a packet held (32) -> empty: see [`super::digests`].
    pub(super) digests: Keyspace,
    /// Expiry (8) ++ digest (32) -> empty.
    pub(super) digests_exp: Keyspace,
    /// Day (8) ++ tag (1) ++ keyed hash -> count: see [`super::limits`].
    pub(super) limits: Keyspace,
}

/// One open database.
pub(super) struct Engine {
    pub(super) db: Database,
    pub(super) ks: Keyspaces,
}

impl Engine {
    /// Opens (creating if needed) the database in `dir`.
    pub(super) fn open(dir: &Path, config: &StoreConfig) -> Result<Engine, StoreError> {
        let db_err = |op| {
            let path = dir.to_path_buf();
            move |source| StoreError::Db { op, path, source }
        };
        let db = Database::builder(dir)
            .cache_size(config.cache_size)
            .max_journaling_size(MAX_JOURNAL)
            .max_cached_files(Some(MAX_CACHED_FILES))
            .open()
            .map_err(db_err("open database"))?;
        let buffer = config.write_buffer;
        let open_ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(buffer)
            })
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
        Ok(Engine { db, ks })
    }

    /// Reads what the write lock guards from the database: the next item
    /// ID, the number of partial sets and the usage of the pool and queues.
    pub(super) fn scan_state(&self, path: &Path) -> Result<WriteState, StoreError> {
        let db_err = |op| {
            let path = path.to_path_buf();
            move |source| StoreError::Db { op, path, source }
        };
        let ks = &self.ks;
        let mut next_id = 0u64;
        for k in [&ks.pool, &ks.outbound, &ks.exitq, &ks.mail] {
            if let Some(guard) = k.last_key_value() {
                let key = guard.key().map_err(db_err("read last key"))?;
                let id = be_u64(&key).ok_or_else(|| StoreError::Corrupt {
                    what: "item key",
                    path: path.to_path_buf(),
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
        let mut usage = Usage::default();
        for (part, k) in [
            (Part::Pool, &ks.pool),
            (Part::Outbound, &ks.outbound),
            (Part::Exits, &ks.exitq),
            (Part::Mail, &ks.mail),
        ] {
            usage.scan(part, k).map_err(db_err("count records"))?;
        }
        Ok(WriteState {
            next_id,
            partial_sets,
            usage,
        })
    }
}

/// Whether the store can write, and the free space of its file system.
pub(super) struct Health {
    path: PathBuf,
    min_free: u64,
    /// A write failed; the engine must be reopened before the next one.
    failed: AtomicBool,
    /// When to try reopening next, and how many attempts failed.
    retry: Mutex<(Instant, u32)>,
    /// Free bytes at the last reading.
    free: AtomicU64,
    /// When the free space was last read.
    free_read: Mutex<Option<Instant>>,
}

impl Health {
    pub(super) fn new(path: &Path, config: &StoreConfig) -> Self {
        Self {
            path: path.to_path_buf(),
            min_free: config.min_free_space,
            failed: AtomicBool::new(false),
            retry: Mutex::new((Instant::now(), 0)),
            free: AtomicU64::new(u64::MAX),
            free_read: Mutex::new(None),
        }
    }

    /// Bytes free for unprivileged writers on the store's file system
    /// (read at most every [`FREE_SPACE_TTL`]; `u64::MAX` if unknown).
    pub(super) fn free_space(&self) -> u64 {
        let mut read = self.free_read.lock().unwrap_or_else(|e| e.into_inner());
        if read.is_none_or(|t| t.elapsed() >= FREE_SPACE_TTL) {
            let free = match rustix::fs::statvfs(&self.path) {
                Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
                Err(_) => u64::MAX,
            };
            self.free.store(free, Ordering::Relaxed);
            *read = Some(Instant::now());
        }
        self.free.load(Ordering::Relaxed)
    }

    /// Whether the disk has the room the configuration asks for.
    pub(super) fn has_room(&self) -> bool {
        self.free_space() >= self.min_free
    }

    /// Whether a write failed and the engine has not been reopened since.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records a failed write.
    pub(super) fn fail(&self) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
            *retry = (Instant::now() + FIRST_REOPEN_WAIT, 0);
            // Read the free space afresh: a full disk is the likely cause.
            *self.free_read.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Whether reopening may be tried now: the backoff has passed and the
    /// disk has room.
    pub(super) fn may_reopen(&self) -> bool {
        let due = self.retry.lock().unwrap_or_else(|e| e.into_inner()).0 <= Instant::now();
        due && self.has_room()
    }

    /// Records the outcome of a reopening attempt.
    pub(super) fn reopened(&self, ok: bool) {
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *retry = (Instant::now(), 0);
            self.failed.store(false, Ordering::Release);
        } else {
            let attempts = retry.1.saturating_add(1);
            let wait = FIRST_REOPEN_WAIT
                .saturating_mul(1u32.checked_shl(attempts.min(8)).unwrap_or(u32::MAX))
                .min(MAX_REOPEN_WAIT);
            *retry = (Instant::now() + wait, attempts);
        }
    }
}

/// Waits (a little) until `engine` is the last handle to its database,
/// then drops it, so that the database's lock is released.
pub(super) fn release(engine: std::sync::Arc<Engine>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while std::sync::Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(engine);
}
