//! Named monotonic counters, kept in the store so that they survive
//! restarts. Increments that belong to an event are written in the same
//! batch as the event; counts of events that write nothing else (a
//! rejected packet, say) are kept in a [`Tally`] and flushed now and then,
//! so that counting never waits for the store's write lock (which a
//! committer holds through its fsync).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Store, StoreError, be_u64};

/// Names of the counters the store and its users maintain.
pub mod names {
    /// Inbound packets accepted into the pool.
    pub const ACCEPTED: &str = "packets_accepted";
    /// Inbound packets rejected as replays (a known packet ID in a
    /// packet that is not a byte-identical copy; answered 409).
    pub const REPLAYS: &str = "packets_replayed";
    /// Byte-identical copies of a packet already held, answered 200 again
    /// without being decrypted.
    pub const DUPLICATES: &str = "packets_duplicate";
    /// Inbound packets that went through the peel (RSA decryption, unless
    /// refused before it).
    pub const PEELED: &str = "packets_peeled";
    /// Mail packets that ended at this middle node, re-encrypted to an
    /// exit it picked (randhop).
    pub const RANDHOP: &str = "randhop_rerouted";
    /// Mail packets that ended at this middle node and were dropped: no
    /// usable exit known.
    pub const RANDHOP_NO_EXIT: &str = "randhop_no_exit";
    /// Mail packets that ended at this middle node and were dropped: the
    /// new packet could not be built.
    pub const RANDHOP_FAILED: &str = "randhop_failed";
    /// Dummies inserted into the pool (without a replay entry).
    pub const DUMMIES_POOLED: &str = "dummies_pooled";
    /// Items released from the pool to the outbound queue.
    pub const RELEASED_FORWARD: &str = "pool_released_forward";
    /// Items released from the pool to the exit queue.
    pub const RELEASED_EXIT: &str = "pool_released_exit";
    /// Replay log entries pruned after expiry.
    pub const REPLAY_PRUNED: &str = "replay_pruned";
    /// Outbound packets delivered to their next hop.
    pub const OUTBOUND_DELIVERED: &str = "outbound_delivered";
    /// Outbound delivery attempts rescheduled.
    pub const OUTBOUND_RETRIED: &str = "outbound_retried";
    /// Outbound packets abandoned.
    pub const OUTBOUND_GIVEN_UP: &str = "outbound_given_up";
    /// Mail messages delivered by SMTP.
    pub const MAIL_DELIVERED: &str = "mail_delivered";
    /// Mail delivery attempts rescheduled.
    pub const MAIL_RETRIED: &str = "mail_retried";
    /// Mail messages dropped.
    pub const MAIL_DROPPED: &str = "mail_dropped";
    /// Messages (single chunks or reassembled sets) queued for SMTP.
    pub const MAIL_QUEUED: &str = "mail_queued";
    /// Exit chunks stored while waiting for their siblings.
    pub const CHUNKS_STORED: &str = "chunks_stored";
    /// Exit chunks whose chunk number was already stored.
    pub const CHUNKS_DUPLICATE: &str = "chunks_duplicate";
    /// Exit chunks whose chunk count disagreed with the stored set.
    pub const CHUNKS_COUNT_MISMATCH: &str = "chunks_count_mismatch";
    /// Exit chunks with an invalid chunk number, count or size.
    pub const CHUNKS_INVALID: &str = "chunks_invalid";
    /// Exit chunks refused because too many partial sets were open.
    pub const CHUNKS_OVER_LIMIT: &str = "chunks_over_limit";
    /// Dummy messages discarded at the exit.
    pub const EXIT_DUMMIES: &str = "exit_dummies_discarded";
    /// Incomplete chunk sets deleted after expiry.
    pub const PARTIALS_EXPIRED: &str = "partials_expired";
    /// Pool rounds run.
    pub const POOL_ROUNDS: &str = "pool_rounds";
    /// Payloads the exit refused (header policy, or every recipient
    /// blocked).
    pub const EXIT_REJECTED: &str = "exit_rejected";
    /// Recipients dropped because they are on the blocklist.
    pub const RECIPIENTS_BLOCKED: &str = "exit_recipients_blocked";
    /// Recipients whose server accepted a message.
    pub const RECIPIENTS_DELIVERED: &str = "exit_recipients_delivered";
    /// Recipients given up on after a permanent failure.
    pub const RECIPIENTS_FAILED: &str = "exit_recipients_failed";
    /// Recipient deliveries deferred for a later attempt.
    pub const RECIPIENTS_DEFERRED: &str = "exit_recipients_deferred";
    /// Recipients dropped: their address or domain had its deliveries for
    /// the day.
    pub const RECIPIENTS_RATE_LIMITED: &str = "exit_recipients_rate_limited";
    /// Recipients dropped: the day's rate-limit table was full.
    pub const RECIPIENTS_RATE_TABLE_FULL: &str = "exit_recipients_rate_table_full";
}

/// Counter increments waiting to be written: adding is a short in-memory
/// step, [`Tally::flush`] writes them all in one unsynced batch.
#[derive(Debug, Default)]
pub struct Tally {
    pending: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    /// Adds `n` to counter `name` (written at the next flush).
    pub fn add(&self, name: &str, n: u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match p.get_mut(name) {
            Some(v) => *v = v.saturating_add(n),
            None => {
                p.insert(name.to_owned(), n);
            }
        }
    }

    /// Writes what was added since the last flush (blocking: run it on the
    /// blocking pool). On failure the increments are kept for the next
    /// flush.
    pub fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let written = store.tx().and_then(|mut tx| {
            for (name, n) in &taken {
                tx.incr(name, *n);
            }
            tx.commit_unsynced()
        });
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                for (name, n) in taken {
                    self.add(&name, n);
                }
                Err(e)
            }
        }
    }

    /// The increments not yet written.
    pub fn pending(&self) -> BTreeMap<String, u64> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Store {
    /// Adds `n` to the counter `name`. Written to the OS but not synced:
    /// a counter of its own (a rejected packet, say) is statistics, and a
    /// flood of bad packets must not become a flood of fsyncs. Counters
    /// that belong to an event are written in that event's synced batch.
    pub fn incr(&self, name: &str, n: u64) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        tx.incr(name, n);
        tx.commit_unsynced()
    }

    /// The current value of counter `name` (0 if never incremented).
    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        match self
            .engine()?
            .ks
            .counters
            .get(name)
            .map_err(self.db_err("read counter"))?
        {
            None => Ok(0),
            Some(v) => be_u64(&v).ok_or_else(|| self.corrupt("counter", "not 8 bytes")),
        }
    }

    /// All counters by name.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for guard in self.engine()?.ks.counters.iter() {
            let (k, v) = guard.into_inner().map_err(self.db_err("read counters"))?;
            let name = String::from_utf8(k.to_vec())
                .map_err(|_| self.corrupt("counter", "name is not UTF-8"))?;
            let n = be_u64(&v).ok_or_else(|| self.corrupt("counter", "not 8 bytes"))?;
            out.insert(name, n);
        }
        Ok(out)
    }
}
