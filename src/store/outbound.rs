//! The outbound queue (packets for next hops) and the mail queue
//! (reassembled messages awaiting SMTP). Both are retry queues with the
//! same shape: a record keyspace keyed by item ID and a due index keyed by
//! next-attempt time and item ID, whose value is the item's destination so
//! that a scan can pass over the items of a busy destination without
//! reading their records. (Stores written before the index held
//! destinations have empty values; those items' records are read.)

use std::time::SystemTime;

use fjall::Keyspace;
use serde::{Deserialize, Serialize};

use super::counters::names;
use super::engine::Engine;
use super::{Part, Store, StoreError, Tx, be_u64_prefix, from_ms, time_id_key, to_ms};
use crate::safelog::{bytes, sensitive};

/// Most due-index entries one scan looks at: items of busy destinations
/// are passed over, but never without end.
pub const MAX_DUE_SCAN: usize = 20_000;

/// A queued record of either queue.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct QueueRecord {
    /// Where the item goes: the next hop's address, or the mail's
    /// destination (its first recipient's domain; empty in stores written
    /// before mail had one).
    pub(super) destination: String,
    /// The packet or message bytes.
    #[serde(with = "serde_bytes")]
    pub(super) payload: Vec<u8>,
    /// Delivery attempts that failed so far.
    pub(super) attempts: u32,
    /// When the item was first queued (ms).
    pub(super) first_queued: u64,
    /// When the item is next due (ms).
    pub(super) next_attempt: u64,
    /// Mail only: `payload` is an encoded, already policy-checked
    /// delivery (the recipients still pending), not the sender's bytes.
    pub(super) prepared: bool,
}

/// Identifies an item in the outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboundId(pub u64);

/// Identifies an item in the mail queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailId(pub u64);

/// What became of a queued item's delivery attempt, as recorded by
/// [`Store::outbound_record`] and [`Store::mail_record`].
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    /// Delivered: removed and counted as delivered.
    Delivered,
    /// Refused for good or given up: removed and counted as dropped.
    Dropped,
    /// Failed for now: due again at this time, one more failed attempt
    /// counted.
    Retry(SystemTime),
    /// Mail only: as [`Change::Retry`], the message replaced by a
    /// prepared delivery to the recipients still pending.
    RetryPrepared(SystemTime, Vec<u8>),
}

impl Change {
    /// The change for an outbound packet, whose payload stays as it is.
    fn for_outbound(self) -> Change {
        match self {
            Change::RetryPrepared(at, _) => Change::Retry(at),
            c => c,
        }
    }
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Delivered => f.write_str("Delivered"),
            Change::Dropped => f.write_str("Dropped"),
            Change::Retry(_) => f.write_str("Retry"),
            Change::RetryPrepared(_, p) => f
                .debug_tuple("RetryPrepared")
                .field(&bytes(p.len()))
                .finish(),
        }
    }
}

/// A packet queued for its next hop.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundItem {
    /// Queue item ID.
    pub id: OutboundId,
    /// The next hop's address.
    pub next_hop: String,
    /// The binary packet.
    pub packet: Vec<u8>,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// When it was first queued.
    pub first_queued: SystemTime,
    /// When it is (next) due.
    pub next_attempt: SystemTime,
}

/// A reassembled message queued for SMTP delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct MailItem {
    /// Queue item ID.
    pub id: MailId,
    /// The destination the delivery caps count it under.
    pub destination: String,
    /// The message bytes (RFC 2822 text as sent), or, when `prepared`, an
    /// encoded delivery to the recipients still pending.
    pub payload: Vec<u8>,
    /// Whether `payload` is a prepared delivery (set only by
    /// [`Change::RetryPrepared`], never by a sender).
    pub prepared: bool,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// When it was first queued.
    pub first_queued: SystemTime,
    /// When it is (next) due.
    pub next_attempt: SystemTime,
}

impl std::fmt::Debug for QueueRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRecord")
            .field("destination", &sensitive(&self.destination))
            .field("payload", &bytes(self.payload.len()))
            .field("attempts", &self.attempts)
            .field("prepared", &self.prepared)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OutboundItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundItem")
            .field("id", &self.id)
            .field("next_hop", &sensitive(&self.next_hop))
            .field("packet", &bytes(self.packet.len()))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MailItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailItem")
            .field("id", &self.id)
            .field("destination", &sensitive(&self.destination))
            .field("payload", &bytes(self.payload.len()))
            .field("prepared", &self.prepared)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Which queue an operation is on.
#[derive(Clone, Copy)]
enum Q {
    Outbound,
    Mail,
}

impl Q {
    /// The queue's records, its due index and its name.
    fn keyspaces(self, e: &Engine) -> (&Keyspace, &Keyspace, &'static str) {
        let ks = &e.ks;
        match self {
            Q::Outbound => (&ks.outbound, &ks.outbound_due, "outbound"),
            Q::Mail => (&ks.mail, &ks.mail_due, "mail"),
        }
    }

    /// The counters of delivered, dropped and retried items.
    fn counters(self) -> [&'static str; 3] {
        match self {
            Q::Outbound => [
                names::OUTBOUND_DELIVERED,
                names::OUTBOUND_GIVEN_UP,
                names::OUTBOUND_RETRIED,
            ],
            Q::Mail => [
                names::MAIL_DELIVERED,
                names::MAIL_DROPPED,
                names::MAIL_RETRIED,
            ],
        }
    }

    /// Where the queue's usage is counted.
    fn part(self) -> Part {
        match self {
            Q::Outbound => Part::Outbound,
            Q::Mail => Part::Mail,
        }
    }
}

impl Store {
    /// Due records of queue `q`, oldest due first, at most `limit`, each
    /// one that `take` takes (given the item ID and its destination). At
    /// most [`MAX_DUE_SCAN`] index entries are looked at.
    fn q_due(
        &self,
        q: Q,
        now: SystemTime,
        limit: usize,
        take: &mut dyn FnMut(u64, &str) -> bool,
    ) -> Result<Vec<(u64, QueueRecord)>, StoreError> {
        let e = self.engine()?;
        let (data, due, what) = q.keyspaces(&e);
        let end = time_id_key(to_ms(now), u64::MAX);
        let mut out = Vec::new();
        for guard in due.range(..=end.as_slice()).take(MAX_DUE_SCAN) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = guard.into_inner().map_err(self.db_err("scan index"))?;
            let id = k
                .get(8..)
                .and_then(be_u64_prefix)
                .ok_or_else(|| self.corrupt("due index key", "not 16 bytes"))?;
            let indexed = std::str::from_utf8(&v).unwrap_or_default();
            if !indexed.is_empty() && !take(id, indexed) {
                continue;
            }
            let Some(rec) = self.get_rec::<QueueRecord>(data, &id.to_be_bytes(), what)? else {
                continue;
            };
            if indexed.is_empty() && !take(id, &rec.destination) {
                continue;
            }
            out.push((id, rec));
        }
        Ok(out)
    }

    /// Records what became of several items of queue `q` in one durable
    /// batch; an item no longer queued is passed over. Returns how many
    /// were queued.
    fn q_record(&self, q: Q, changes: &[(u64, Change)]) -> Result<usize, StoreError> {
        let mut tx = self.tx()?;
        let mut seen = std::collections::HashSet::new();
        let mut found = 0;
        for (id, change) in changes {
            if seen.insert(*id) && tx.q_change(q, *id, change)? {
                found += 1;
            }
        }
        tx.commit()?;
        Ok(found)
    }

    fn q_len(&self, q: Q) -> Result<usize, StoreError> {
        let u = self.usage();
        let area = match q {
            Q::Outbound => u.outbound,
            Q::Mail => u.mail,
        };
        Ok(usize::try_from(area.count).unwrap_or(usize::MAX))
    }

    /// Durably queues `packet` for `next_hop`, due at `now`.
    pub fn outbound_enqueue(
        &self,
        next_hop: &str,
        packet: &[u8],
        now: SystemTime,
    ) -> Result<OutboundId, StoreError> {
        let mut tx = self.tx()?;
        let id = tx.enqueue(Q::Outbound, next_hop, packet, to_ms(now))?;
        tx.commit()?;
        Ok(OutboundId(id))
    }

    /// Up to `limit` outbound packets due at or before `now`, earliest due
    /// first (ties by queue order), each one that `take` takes (given the
    /// item ID and its next hop).
    pub fn outbound_due(
        &self,
        now: SystemTime,
        limit: usize,
        take: &mut dyn FnMut(u64, &str) -> bool,
    ) -> Result<Vec<OutboundItem>, StoreError> {
        Ok(self
            .q_due(Q::Outbound, now, limit, take)?
            .into_iter()
            .map(|(id, r)| OutboundItem {
                id: OutboundId(id),
                next_hop: r.destination,
                packet: r.payload,
                attempts: r.attempts,
                first_queued: from_ms(r.first_queued),
                next_attempt: from_ms(r.next_attempt),
            })
            .collect())
    }

    /// Records what became of several outbound packets in one durable
    /// batch ([`Change::RetryPrepared`] counts as a plain retry). Returns
    /// how many were queued.
    pub fn outbound_record(&self, changes: Vec<(OutboundId, Change)>) -> Result<usize, StoreError> {
        let changes: Vec<_> = changes
            .into_iter()
            .map(|(id, c)| (id.0, c.for_outbound()))
            .collect();
        self.q_record(Q::Outbound, &changes)
    }

    /// Number of packets in the outbound queue.
    pub fn outbound_len(&self) -> Result<usize, StoreError> {
        self.q_len(Q::Outbound)
    }

    /// Durably queues a message for SMTP delivery to `destination` (the
    /// key of the delivery caps), due at `now`.
    pub fn mail_enqueue(
        &self,
        destination: &str,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<MailId, StoreError> {
        let mut tx = self.tx()?;
        let id = tx.enqueue_mail(destination, payload, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// Up to `limit` messages due at or before `now`, earliest due first,
    /// each one that `take` takes (given the item ID and its destination).
    pub fn mail_due(
        &self,
        now: SystemTime,
        limit: usize,
        take: &mut dyn FnMut(u64, &str) -> bool,
    ) -> Result<Vec<MailItem>, StoreError> {
        Ok(self
            .q_due(Q::Mail, now, limit, take)?
            .into_iter()
            .map(|(id, r)| MailItem {
                id: MailId(id),
                destination: r.destination,
                payload: r.payload,
                prepared: r.prepared,
                attempts: r.attempts,
                first_queued: from_ms(r.first_queued),
                next_attempt: from_ms(r.next_attempt),
            })
            .collect())
    }

    /// Records what became of several messages in one durable batch.
    /// Returns how many were queued.
    pub fn mail_record(&self, changes: Vec<(MailId, Change)>) -> Result<usize, StoreError> {
        let changes: Vec<_> = changes.into_iter().map(|(id, c)| (id.0, c)).collect();
        self.q_record(Q::Mail, &changes)
    }

    /// Number of messages in the mail queue.
    pub fn mail_len(&self) -> Result<usize, StoreError> {
        self.q_len(Q::Mail)
    }
}

impl Tx<'_> {
    /// Applies `change` to item `id` of queue `q` in this transaction;
    /// whether the item was queued.
    fn q_change(&mut self, q: Q, id: u64, change: &Change) -> Result<bool, StoreError> {
        let e = self.engine.clone();
        let (data, due, what) = q.keyspaces(&e);
        let key = id.to_be_bytes();
        let Some((mut rec, old_len)) = self.store.get_sized::<QueueRecord>(data, &key, what)?
        else {
            return Ok(false);
        };
        let [delivered, dropped, retried] = q.counters();
        self.batch.remove(due, time_id_key(rec.next_attempt, id));
        let (when, prepared) = match change {
            Change::Delivered | Change::Dropped => {
                self.batch.remove(data, key);
                self.usage.remove(q.part(), old_len);
                let counter = if *change == Change::Delivered {
                    delivered
                } else {
                    dropped
                };
                self.incr(counter, 1);
                return Ok(true);
            }
            Change::Retry(at) => (*at, None),
            Change::RetryPrepared(at, p) => (*at, Some(p)),
        };
        rec.attempts = rec.attempts.saturating_add(1);
        rec.next_attempt = to_ms(when);
        if let Some(p) = prepared {
            rec.payload.clone_from(p);
            rec.prepared = true;
        }
        self.batch.insert(
            due,
            time_id_key(rec.next_attempt, id),
            rec.destination.as_bytes(),
        );
        let new_len = self.put(data, &key, &rec, what)?;
        self.usage.resize(q.part(), old_len, new_len);
        self.incr(retried, 1);
        Ok(true)
    }

    fn enqueue(
        &mut self,
        q: Q,
        destination: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let e = self.engine.clone();
        let (data, due, what) = q.keyspaces(&e);
        let id = self.new_id();
        let rec = QueueRecord {
            destination: destination.to_owned(),
            payload: payload.to_vec(),
            attempts: 0,
            first_queued: now_ms,
            next_attempt: now_ms,
            prepared: false,
        };
        self.put_new(q.part(), data, &id.to_be_bytes(), &rec, what)?;
        self.batch
            .insert(due, time_id_key(now_ms, id), destination.as_bytes());
        Ok(id)
    }

    /// Queues a message for SMTP as part of this transaction (counted).
    pub(crate) fn enqueue_mail(
        &mut self,
        destination: &str,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<MailId, StoreError> {
        let id = self.enqueue(Q::Mail, destination, payload, to_ms(now))?;
        self.incr(names::MAIL_QUEUED, 1);
        Ok(MailId(id))
    }
}
