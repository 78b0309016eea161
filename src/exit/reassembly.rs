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
#[path = "reassembly_tests.rs"]
mod tests;
