//! Reassembly of multi-chunk messages at the exit (wire format 7.2).
//!
//! Each exit chunk is stored durably under its message ID; when every
//! chunk `1..=chunks` of a message is present, the set is removed and the
//! chunks, concatenated in chunk-number order, are queued for SMTP in the
//! same batch. A single-chunk message goes straight to the mail queue.
//!
//! Unlike the reference implementation, a duplicated chunk number is
//! ignored (and counted) instead of blocking completion, a chunk whose
//! chunk count disagrees with the stored set is rejected (and counted),
//! unknown exit types are rejected rather than treated as SMTP, and the
//! number of open sets is bounded. Dummies (exit type 1) are discarded and
//! counted here, so callers may pass every exit chunk in.
//!
//! A chunk of a message that was already completed is a duplicate (a
//! sender's copy, `mimix send --copies`): the completed message IDs are
//! remembered for `expiry`. A chunk arriving after its set expired starts
//! a new set, which expires like any other.
//!
//! This module only reassembles: a node without SMTP that re-sends
//! single-chunk messages elsewhere must take such jobs off the exit queue
//! itself ([`Store::exit_job_done`]) before calling
//! [`process_exit_queue`].

use std::time::{Duration, SystemTime};

use mimix_packet::ExitType;
use mimix_settings::{Checked, check, days, duration, positive};
use serde::{Deserialize, Serialize};

use crate::store::{
    ExitChunk, ExitJobId, MailId, SetHeader, Store, StoreError, Tx, counter, to_ms,
};

/// Largest payload of one chunk.
pub const MAX_CHUNK_PAYLOAD: usize = mimix_packet::layout::BODY_LEN;

/// Largest reassembled message: 255 full chunks.
pub const MAX_MESSAGE: usize = mimix_packet::layout::MAX_MESSAGE_LEN;

/// Errors from reassembly (only store failures: bad chunks are outcomes).
#[derive(Debug, thiserror::Error)]
pub enum ReassemblyError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `[exit.reassembly]`: limits on the partial messages kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyConfig {
    /// How long an incomplete set is kept after its first chunk arrived.
    #[serde(with = "duration")]
    pub expiry: Duration,
    /// Largest number of incomplete sets stored at once (each can hold up
    /// to 2.6 MB); chunks that would open one more are rejected.
    pub max_partial_sets: usize,
}

impl Default for ReassemblyConfig {
    /// 256 open sets (at most 256 * 255 * 10240 bytes, about 670 MB) kept
    /// for 28 days, the reference's chunk store lifetime.
    fn default() -> Self {
        Self {
            expiry: days(28),
            max_partial_sets: 256,
        }
    }
}

impl ReassemblyConfig {
    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        positive(self.expiry, "expiry")?;
        check(self.max_partial_sets >= 1, "max_partial_sets", || {
            "must be at least 1".into()
        })
    }
}

/// Why a chunk was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Chunk number 0, above the chunk count, or a chunk count of 0.
    BadChunkNumber,
    /// The chunk count differs from the one of the stored set.
    CountMismatch,
    /// The payload is longer than one chunk can be.
    TooLarge,
    /// The chunk would open a set beyond [`ReassemblyConfig::max_partial_sets`].
    TooManyPartials,
}

/// What happened to one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Stored; the message still lacks chunks.
    Stored {
        /// Distinct chunks stored so far.
        have: u8,
        /// Chunks the message has.
        chunks: u8,
    },
    /// The message is complete and queued for SMTP.
    Complete(MailId),
    /// This chunk number was already stored; ignored.
    Duplicate,
    /// A dummy: discarded.
    Dummy,
    /// Rejected (and counted).
    Rejected(Rejection),
}

/// Adds one exit chunk received at `now`; see the module documentation.
/// Every outcome is durable (and counted) when this returns `Ok`.
pub fn add_chunk(
    store: &Store,
    limits: &ReassemblyConfig,
    chunk: &ExitChunk,
    now: SystemTime,
) -> Result<ChunkOutcome, ReassemblyError> {
    let mut tx = store.tx()?;
    let outcome = add_in(&mut tx, limits, chunk, now)?;
    tx.commit()?;
    Ok(outcome)
}

/// Processes exit job `id` (a chunk the pool released): adds the chunk as
/// [`add_chunk`] does and removes the job from the exit queue in the same
/// batch, so a crash never loses or doubles it.
pub fn process_exit_job(
    store: &Store,
    limits: &ReassemblyConfig,
    id: ExitJobId,
    chunk: &ExitChunk,
    now: SystemTime,
) -> Result<ChunkOutcome, ReassemblyError> {
    let mut tx = store.tx()?;
    if !tx.take_exit_job(id)? {
        // Already processed (e.g. by a concurrent caller): nothing to do.
        return Ok(ChunkOutcome::Duplicate);
    }
    let outcome = add_in(&mut tx, limits, chunk, now)?;
    tx.commit()?;
    Ok(outcome)
}

/// Processes up to `max` jobs of the exit queue, oldest first. Returns
/// their outcomes in order.
pub fn process_exit_queue(
    store: &Store,
    limits: &ReassemblyConfig,
    now: SystemTime,
    max: usize,
) -> Result<Vec<ChunkOutcome>, ReassemblyError> {
    let mut out = Vec::new();
    for (id, chunk) in store.exit_jobs(max)? {
        out.push(process_exit_job(store, limits, id, &chunk, now)?);
    }
    Ok(out)
}

/// Deletes incomplete sets that expired at or before `now` (counted).
/// Returns how many were deleted.
pub fn prune(store: &Store, now: SystemTime) -> Result<usize, ReassemblyError> {
    Ok(store.prune_partials(now)?)
}

/// Queues a complete message for SMTP under its routing hint (its first
/// recipient's domain, see [`super::route_hint`]), and remembers its ID
/// so that copies of it are not delivered again.
fn complete(
    tx: &mut Tx<'_>,
    limits: &ReassemblyConfig,
    c: &ExitChunk,
    message: &[u8],
    now: SystemTime,
) -> Result<MailId, StoreError> {
    tx.mark_message_done(&c.msg_id, now + limits.expiry);
    let domain = super::route_hint(message);
    tx.enqueue_mail(&domain, message, now)
}

/// Rejects with `why`, counting it under `name`.
fn reject(tx: &mut Tx<'_>, name: &str, why: Rejection) -> ChunkOutcome {
    tx.incr(name, 1);
    ChunkOutcome::Rejected(why)
}

/// The reassembly step, inside the caller's transaction.
fn add_in(
    tx: &mut Tx<'_>,
    limits: &ReassemblyConfig,
    c: &ExitChunk,
    now: SystemTime,
) -> Result<ChunkOutcome, ReassemblyError> {
    if c.exit_type == ExitType::Dummy {
        tx.incr(counter::EXIT_DUMMIES, 1);
        return Ok(ChunkOutcome::Dummy);
    }
    if c.chunks == 0 || c.chunk == 0 || c.chunk > c.chunks {
        return Ok(reject(
            tx,
            counter::CHUNKS_INVALID,
            Rejection::BadChunkNumber,
        ));
    }
    if c.payload.len() > MAX_CHUNK_PAYLOAD {
        return Ok(reject(tx, counter::CHUNKS_INVALID, Rejection::TooLarge));
    }
    if tx.message_done(&c.msg_id)? {
        tx.incr(counter::CHUNKS_DUPLICATE, 1);
        return Ok(ChunkOutcome::Duplicate);
    }
    let len = c.payload.len() as u64;
    let Some(mut header) = tx.partial_header(&c.msg_id)? else {
        if c.chunks == 1 {
            return Ok(ChunkOutcome::Complete(complete(
                tx, limits, c, &c.payload, now,
            )?));
        }
        if tx.partial_sets() >= limits.max_partial_sets {
            return Ok(reject(
                tx,
                counter::CHUNKS_OVER_LIMIT,
                Rejection::TooManyPartials,
            ));
        }
        let expiry = u64::try_from(limits.expiry.as_millis()).unwrap_or(u64::MAX);
        let header = SetHeader {
            chunks: c.chunks,
            have: 1,
            bytes: len,
            expires: to_ms(now).saturating_add(expiry),
        };
        tx.partial_put_chunk(&c.msg_id, c.chunk, &c.payload, &header, true)?;
        tx.incr(counter::CHUNKS_STORED, 1);
        return Ok(ChunkOutcome::Stored {
            have: 1,
            chunks: c.chunks,
        });
    };
    if header.chunks != c.chunks {
        return Ok(reject(
            tx,
            counter::CHUNKS_COUNT_MISMATCH,
            Rejection::CountMismatch,
        ));
    }
    if tx.partial_has_chunk(&c.msg_id, c.chunk)? {
        tx.incr(counter::CHUNKS_DUPLICATE, 1);
        return Ok(ChunkOutcome::Duplicate);
    }
    if header.bytes.saturating_add(len) > MAX_MESSAGE as u64 {
        return Ok(reject(tx, counter::CHUNKS_INVALID, Rejection::TooLarge));
    }
    if header.have.saturating_add(1) >= header.chunks {
        let message = tx.partial_take(&c.msg_id, &header, (c.chunk, &c.payload))?;
        return Ok(ChunkOutcome::Complete(complete(
            tx, limits, c, &message, now,
        )?));
    }
    header.have += 1;
    header.bytes += len;
    tx.partial_put_chunk(&c.msg_id, c.chunk, &c.payload, &header, false)?;
    tx.incr(counter::CHUNKS_STORED, 1);
    Ok(ChunkOutcome::Stored {
        have: header.have,
        chunks: header.chunks,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::PoolItem;

    const DAY: Duration = Duration::from_secs(86_400);

    fn chunk(id: u8, n: u8, of: u8, payload: &[u8]) -> ExitChunk {
        ExitChunk {
            msg_id: [id; 16],
            chunk: n,
            chunks: of,
            exit_type: ExitType::Smtp,
            payload: payload.to_vec(),
        }
    }

    /// Three distinguishable parts of a message: full chunks, short last.
    fn parts() -> Vec<Vec<u8>> {
        vec![vec![b'a'; 10_240], vec![b'b'; 10_240], b"the end".to_vec()]
    }

    fn mail_payload(store: &Store, clock: &ManualClock, id: MailId) -> Vec<u8> {
        let due = store.mail_due(clock.now(), 100, &|_, _| false).unwrap();
        due.into_iter().find(|m| m.id == id).unwrap().payload
    }

    fn setup() -> (tempfile::TempDir, Store, ManualClock, ReassemblyConfig) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (
            dir,
            store,
            ManualClock::at_epoch_day(20_000),
            ReassemblyConfig::default(),
        )
    }

    #[test]
    fn copies_of_a_completed_message_are_duplicates() {
        let (_d, store, clock, lim) = setup();
        let t = clock.now();
        let single = chunk(1, 1, 1, b"To: a@example.org\n\nhi");
        assert!(matches!(
            add_chunk(&store, &lim, &single, t).unwrap(),
            ChunkOutcome::Complete(_)
        ));
        assert_eq!(
            add_chunk(&store, &lim, &single, t).unwrap(),
            ChunkOutcome::Duplicate
        );
        let p = parts();
        for n in 1..=3u8 {
            add_chunk(&store, &lim, &chunk(2, n, 3, &p[usize::from(n) - 1]), t).unwrap();
        }
        // The second copy's chunks come after the first completed.
        for n in 1..=3u8 {
            assert_eq!(
                add_chunk(&store, &lim, &chunk(2, n, 3, &p[usize::from(n) - 1]), t).unwrap(),
                ChunkOutcome::Duplicate
            );
        }
        assert_eq!(store.mail_len().unwrap(), 2, "each message delivered once");
        assert_eq!(store.partial_count(), 0, "no set left open by the copies");
        // The record expires with the reassembly window.
        store.prune_replay(t + lim.expiry).unwrap();
        assert!(matches!(
            add_chunk(&store, &lim, &single, t + lim.expiry).unwrap(),
            ChunkOutcome::Complete(_)
        ));
    }

    #[test]
    fn single_chunk_goes_straight_to_mail() {
        let (_d, store, clock, lim) = setup();
        let out = add_chunk(&store, &lim, &chunk(1, 1, 1, b"hello"), clock.now()).unwrap();
        let ChunkOutcome::Complete(id) = out else {
            panic!("{out:?}");
        };
        assert_eq!(mail_payload(&store, &clock, id), b"hello");
        assert_eq!(store.partial_count(), 0);
        assert_eq!(store.counter(counter::MAIL_QUEUED).unwrap(), 1);
    }

    fn assemble(order: &[u8]) {
        let (_d, store, clock, lim) = setup();
        let parts = parts();
        let mut result = None;
        for (i, &n) in order.iter().enumerate() {
            let c = chunk(7, n, 3, &parts[usize::from(n) - 1]);
            let out = add_chunk(&store, &lim, &c, clock.now()).unwrap();
            if i + 1 < order.len() {
                assert_eq!(
                    out,
                    ChunkOutcome::Stored {
                        have: i as u8 + 1,
                        chunks: 3
                    }
                );
                assert_eq!(
                    store.partial_set(&[7; 16]).unwrap().unwrap().have,
                    i as u8 + 1
                );
            } else {
                result = Some(out);
            }
        }
        let Some(ChunkOutcome::Complete(id)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(mail_payload(&store, &clock, id), parts.concat());
        assert_eq!(store.partial_set(&[7; 16]).unwrap(), None);
        assert!(store.partial_chunks(&[7; 16]).unwrap().is_empty());
        assert_eq!(store.partial_count(), 0);
        assert_eq!(store.counter(counter::CHUNKS_STORED).unwrap(), 2);
    }

    #[test]
    fn reassembles_in_order() {
        assemble(&[1, 2, 3]);
    }

    #[test]
    fn reassembles_out_of_order() {
        assemble(&[3, 1, 2]);
        assemble(&[2, 3, 1]);
        assemble(&[3, 2, 1]);
    }

    #[test]
    fn duplicates_are_ignored_and_do_not_block() {
        let (_d, store, clock, lim) = setup();
        let p = parts();
        let t = clock.now();
        add_chunk(&store, &lim, &chunk(2, 2, 3, &p[1]), t).unwrap();
        let dup = add_chunk(&store, &lim, &chunk(2, 2, 3, b"evil"), t).unwrap();
        assert_eq!(dup, ChunkOutcome::Duplicate);
        add_chunk(&store, &lim, &chunk(2, 1, 3, &p[0]), t).unwrap();
        assert_eq!(
            add_chunk(&store, &lim, &chunk(2, 1, 3, &p[0]), t).unwrap(),
            ChunkOutcome::Duplicate
        );
        let out = add_chunk(&store, &lim, &chunk(2, 3, 3, &p[2]), t).unwrap();
        let ChunkOutcome::Complete(id) = out else {
            panic!("{out:?}");
        };
        assert_eq!(mail_payload(&store, &clock, id), p.concat());
        assert_eq!(store.counter(counter::CHUNKS_DUPLICATE).unwrap(), 2);
    }

    #[test]
    fn disagreeing_counts_are_rejected() {
        let (_d, store, clock, lim) = setup();
        let t = clock.now();
        add_chunk(&store, &lim, &chunk(3, 1, 2, b"one "), t).unwrap();
        for bad in [chunk(3, 2, 3, b"x"), chunk(3, 1, 1, b"y")] {
            assert_eq!(
                add_chunk(&store, &lim, &bad, t).unwrap(),
                ChunkOutcome::Rejected(Rejection::CountMismatch)
            );
        }
        assert_eq!(store.counter(counter::CHUNKS_COUNT_MISMATCH).unwrap(), 2);
        let out = add_chunk(&store, &lim, &chunk(3, 2, 2, b"two"), t).unwrap();
        let ChunkOutcome::Complete(id) = out else {
            panic!("{out:?}");
        };
        assert_eq!(mail_payload(&store, &clock, id), b"one two");
    }

    #[test]
    fn invalid_chunks_dummies_and_unknown_types() {
        let (_d, store, clock, lim) = setup();
        let t = clock.now();
        let bad_number = ChunkOutcome::Rejected(Rejection::BadChunkNumber);
        for (n, of) in [(0, 3), (4, 3), (0, 0), (1, 0)] {
            assert_eq!(
                add_chunk(&store, &lim, &chunk(4, n, of, b"x"), t).unwrap(),
                bad_number
            );
        }
        let big = chunk(4, 1, 2, &[0; MAX_CHUNK_PAYLOAD + 1]);
        assert_eq!(
            add_chunk(&store, &lim, &big, t).unwrap(),
            ChunkOutcome::Rejected(Rejection::TooLarge)
        );
        assert_eq!(store.counter(counter::CHUNKS_INVALID).unwrap(), 5);

        let mut dummy = chunk(5, 1, 1, b"From: dummy@dummy\n\npayload");
        dummy.exit_type = ExitType::Dummy;
        assert_eq!(
            add_chunk(&store, &lim, &dummy, t).unwrap(),
            ChunkOutcome::Dummy
        );
        assert_eq!(store.counter(counter::EXIT_DUMMIES).unwrap(), 1);
        assert_eq!(store.mail_len().unwrap(), 0);
        assert_eq!(store.partial_count(), 0);
    }

    #[test]
    fn open_sets_are_bounded() {
        let (_d, store, clock, _) = setup();
        let lim = ReassemblyConfig {
            max_partial_sets: 2,
            ..ReassemblyConfig::default()
        };
        let t = clock.now();
        add_chunk(&store, &lim, &chunk(1, 1, 2, b"a"), t).unwrap();
        add_chunk(&store, &lim, &chunk(2, 1, 3, b"b"), t).unwrap();
        assert_eq!(
            add_chunk(&store, &lim, &chunk(3, 1, 2, b"c"), t).unwrap(),
            ChunkOutcome::Rejected(Rejection::TooManyPartials)
        );
        assert_eq!(store.counter(counter::CHUNKS_OVER_LIMIT).unwrap(), 1);
        // Existing sets still grow; single chunks need no set.
        assert!(matches!(
            add_chunk(&store, &lim, &chunk(2, 2, 3, b"b"), t).unwrap(),
            ChunkOutcome::Stored { have: 2, chunks: 3 }
        ));
        assert!(matches!(
            add_chunk(&store, &lim, &chunk(9, 1, 1, b"z"), t).unwrap(),
            ChunkOutcome::Complete(_)
        ));
        // Completing a set frees a slot.
        assert!(matches!(
            add_chunk(&store, &lim, &chunk(1, 2, 2, b"a"), t).unwrap(),
            ChunkOutcome::Complete(_)
        ));
        assert_eq!(store.partial_count(), 1);
        assert!(matches!(
            add_chunk(&store, &lim, &chunk(3, 1, 2, b"c"), t).unwrap(),
            ChunkOutcome::Stored { .. }
        ));
    }

    #[test]
    fn incomplete_sets_expire() {
        let (_d, store, clock, lim) = setup();
        add_chunk(&store, &lim, &chunk(1, 1, 2, b"old"), clock.now()).unwrap();
        clock.advance(DAY);
        add_chunk(&store, &lim, &chunk(2, 1, 2, b"newer"), clock.now()).unwrap();
        assert_eq!(store.partial_count(), 2);

        clock.advance(27 * DAY - Duration::from_secs(1));
        assert_eq!(prune(&store, clock.now()).unwrap(), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(prune(&store, clock.now()).unwrap(), 1);
        assert_eq!(store.partial_set(&[1; 16]).unwrap(), None);
        assert!(store.partial_chunks(&[1; 16]).unwrap().is_empty());
        assert_eq!(store.partial_set(&[2; 16]).unwrap().unwrap().have, 1);
        assert_eq!(store.partial_count(), 1);
        assert_eq!(store.counter(counter::PARTIALS_EXPIRED).unwrap(), 1);

        // The late sibling of the expired set starts a new set.
        assert!(matches!(
            add_chunk(&store, &lim, &chunk(1, 2, 2, b"late"), clock.now()).unwrap(),
            ChunkOutcome::Stored { have: 1, chunks: 2 }
        ));
        clock.advance(DAY);
        assert_eq!(prune(&store, clock.now()).unwrap(), 1);
    }

    #[test]
    fn partials_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_epoch_day(20_000);
        let lim = ReassemblyConfig::default();
        {
            let store = Store::open(dir.path()).unwrap();
            add_chunk(&store, &lim, &chunk(8, 2, 2, b" world"), clock.now()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.partial_count(), 1);
        let out = add_chunk(&store, &lim, &chunk(8, 1, 2, b"hello"), clock.now()).unwrap();
        let ChunkOutcome::Complete(id) = out else {
            panic!("{out:?}");
        };
        assert_eq!(mail_payload(&store, &clock, id), b"hello world");
        assert_eq!(store.partial_count(), 0);
    }

    #[test]
    fn largest_message_reassembles() {
        let (_d, store, clock, lim) = setup();
        let t = clock.now();
        let mut last = None;
        for n in (1..=255u8).rev() {
            let c = chunk(9, n, 255, &[n; MAX_CHUNK_PAYLOAD]);
            last = Some(add_chunk(&store, &lim, &c, t).unwrap());
        }
        let Some(ChunkOutcome::Complete(id)) = last else {
            panic!("{last:?}");
        };
        let msg = mail_payload(&store, &clock, id);
        assert_eq!(msg.len(), MAX_MESSAGE);
        assert!(
            msg.chunks(MAX_CHUNK_PAYLOAD)
                .zip(1..=255u8)
                .all(|(c, n)| c.iter().all(|&b| b == n))
        );
    }

    #[test]
    fn exit_queue_jobs_are_consumed_with_their_outcome() {
        let (_d, store, clock, lim) = setup();
        let exit = |n: u8, exit_type: ExitType, payload: &[u8]| PoolItem::Exit {
            msg_id: [1; 16],
            chunk: n,
            chunks: if exit_type == ExitType::Dummy { 1 } else { 2 },
            exit_type,
            payload: payload.to_vec(),
        };
        let ids = store
            .pool_insert(&[
                exit(2, ExitType::Smtp, b"B"),
                exit(1, ExitType::Smtp, b"A"),
                exit(1, ExitType::Dummy, b"D"),
            ])
            .unwrap();
        store.release(&ids, clock.now()).unwrap();
        let outcomes = process_exit_queue(&store, &lim, clock.now(), 10).unwrap();
        assert_eq!(outcomes.len(), 3);
        assert!(matches!(outcomes[0], ChunkOutcome::Stored { .. }));
        let ChunkOutcome::Complete(id) = outcomes[1] else {
            panic!("{outcomes:?}");
        };
        assert_eq!(outcomes[2], ChunkOutcome::Dummy);
        assert_eq!(mail_payload(&store, &clock, id), b"AB");
        assert!(store.exit_jobs(10).unwrap().is_empty());
        assert!(
            process_exit_queue(&store, &lim, clock.now(), 10)
                .unwrap()
                .is_empty()
        );
    }
}
