//! Reassembly of exit chunks ([`crate::exit::reassembly`]) on a real store
//! (fjall in a temporary directory, on `/dev/shm` when there is one), run
//! against an in-memory model of the rules in the module's documentation.
//!
//! # Input format
//!
//! Byte 0 sets the limit on open sets (`1 + (b & 3)`); the rest is a
//! sequence of at most [`MAX_OPS`] operations, each an opcode byte
//! (`op % 8`) and its arguments:
//!
//! * 0..=4, add a chunk with [`add_chunk`]; 5, the same through the pool
//!   and the exit queue ([`process_exit_queue`]). Arguments: a message
//!   selector (four message IDs), the chunk number, the chunk count and a
//!   flag byte: bit 0 makes a dummy, bit 3 keeps the numbers as given
//!   (else each is taken modulo 5, so 0 and small sets are common), bits
//!   1..=2 pick the payload: a length byte and that many input bytes, a
//!   full 10240-byte chunk, one byte too many, or empty.
//! * 6, let a number of minutes pass (one argument byte) and prune;
//!   sets expire an hour after their first chunk.
//! * 7, close and reopen the store (the first time in an input; later
//!   ones do nothing, as reopening is slow).
//!
//! # Properties
//!
//! Every outcome equals the model's; after every operation the store's
//! count of open sets and each set's header and chunks equal the model's;
//! at the end the mail queue holds exactly the completed messages (their
//! chunks concatenated in chunk order, under their first recipient's
//! domain) and every counter moved as the model says. The store is emptied
//! before each input, so inputs do not depend on each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mimix_packet::ExitType;

use super::{Violation, ensure};
use crate::exit::address::first_recipient_domain;
use crate::exit::reassembly::{
    ChunkOutcome, MAX_CHUNK_PAYLOAD, ReassemblyConfig, Rejection, add_chunk, process_exit_queue,
    prune,
};
use crate::store::{ExitChunk, MailId, PoolItem, Store, StoreError, counter};

const TARGET: &str = "reassembly";

/// Most operations run per input.
pub const MAX_OPS: usize = 64;

/// How long an incomplete set is kept.
const EXPIRY: Duration = Duration::from_secs(3600);

/// The counters reassembly maintains.
const COUNTERS: [&str; 8] = [
    counter::MAIL_QUEUED,
    counter::CHUNKS_STORED,
    counter::CHUNKS_DUPLICATE,
    counter::CHUNKS_COUNT_MISMATCH,
    counter::CHUNKS_INVALID,
    counter::CHUNKS_OVER_LIMIT,
    counter::EXIT_DUMMIES,
    counter::PARTIALS_EXPIRED,
];

/// Inputs run on one store before it is replaced by a fresh one: its
/// journal grows with every write, and reopening replays it.
const INPUTS_PER_STORE: usize = 64;

/// The store the inputs run on.
pub struct Harness {
    dir: tempfile::TempDir,
    state: Mutex<State>,
}

/// The current store and how many inputs it has run.
struct State {
    store: Option<Store>,
    inputs: usize,
    generation: usize,
}

/// The time each input starts at (the vectors' day).
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(20_786 * 86_400)
}

/// Far enough ahead that every set has expired and every mail is due.
fn end_of_time() -> SystemTime {
    start() + Duration::from_secs(100 * 365 * 86_400)
}

fn harness_err(e: StoreError) -> Violation {
    Violation::Harness(e.to_string())
}

impl Harness {
    /// Opens a store in a new temporary directory, `mimix-fuzz-store-*`
    /// in `/dev/shm` if there is one, else in the system's temporary
    /// directory. (A fuzz target never drops its harness: it leaves the
    /// directory behind.)
    pub fn new() -> Result<Self, Violation> {
        let shm = std::path::Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("mimix-fuzz-store-")
            .tempdir_in(parent)
            .map_err(|e| Violation::Harness(format!("temporary directory: {e}")))?;
        let store = Store::open(&dir.path().join("store-0")).map_err(harness_err)?;
        let state = State {
            store: Some(store),
            inputs: 0,
            generation: 0,
        };
        Ok(Self {
            dir,
            state: Mutex::new(state),
        })
    }

    /// The store for the next input: the current one, or a fresh one
    /// every [`INPUTS_PER_STORE`] inputs (or after a failed reopen).
    fn take_store(&self, state: &mut State) -> Result<Store, Violation> {
        state.inputs += 1;
        if let Some(store) = state.store.take() {
            if !state.inputs.is_multiple_of(INPUTS_PER_STORE) {
                return Ok(store);
            }
            let old = store.path().to_owned();
            drop(store);
            std::fs::remove_dir_all(&old)
                .map_err(|e| Violation::Harness(format!("remove {}: {e}", old.display())))?;
        }
        state.generation += 1;
        let path = self.dir.path().join(format!("store-{}", state.generation));
        Store::open(&path).map_err(harness_err)
    }

    /// Runs one input (see the module documentation); names the outcome:
    /// `completed` if a message was completed, else `stored`, `rejected`
    /// (only rejections, duplicates and dummies) or `empty`.
    pub fn check(&self, data: &[u8]) -> Result<&'static str, Violation> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let store = self.take_store(&mut state)?;
        let mut run = Run::new(store, data.first().copied().unwrap_or(0))?;
        let result = run.ops(data.get(1..).unwrap_or_default());
        let result = result.and_then(|()| run.finish());
        state.store = run.store.take();
        result
    }
}

/// A set as the model sees it.
struct ModelSet {
    chunks: u8,
    parts: BTreeMap<u8, Vec<u8>>,
    expires: SystemTime,
}

/// One input's run: the store, the model and what happened.
struct Run {
    /// `None` only while the store is being reopened.
    store: Option<Store>,
    path: std::path::PathBuf,
    limits: ReassemblyConfig,
    now: SystemTime,
    sets: HashMap<[u8; 16], ModelSet>,
    /// Messages completed in this run: later chunks are duplicates.
    done: std::collections::HashSet<[u8; 16]>,
    mails: Vec<(MailId, Vec<u8>)>,
    counted: BTreeMap<&'static str, u64>,
    before: BTreeMap<&'static str, u64>,
    stored: bool,
    reopened: bool,
}

impl Run {
    /// Empties the store and starts a run with at most `1 + (b & 3)` open
    /// sets.
    fn new(store: Store, b: u8) -> Result<Self, Violation> {
        empty(&store)?;
        let before = counters(&store)?;
        Ok(Self {
            path: store.path().to_owned(),
            store: Some(store),
            limits: ReassemblyConfig {
                expiry: EXPIRY,
                max_partial_sets: 1 + usize::from(b & 3),
            },
            now: start(),
            sets: HashMap::new(),
            done: std::collections::HashSet::new(),
            mails: Vec::new(),
            counted: BTreeMap::new(),
            before,
            stored: false,
            reopened: false,
        })
    }

    fn ops(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        for _ in 0..MAX_OPS {
            let Some((&op, rest)) = data.split_first() else {
                return Ok(());
            };
            data = rest;
            match op % 8 {
                6 => {
                    let Some((&minutes, rest)) = data.split_first() else {
                        return Ok(());
                    };
                    data = rest;
                    self.pass(u64::from(minutes))?;
                }
                7 if !self.reopened => self.reopen()?,
                7 => {}
                op => {
                    let Some((chunk, rest)) = parse_chunk(data) else {
                        return Ok(());
                    };
                    data = rest;
                    self.add(&chunk, op == 5)?;
                }
            }
            self.compare_sets()?;
        }
        Ok(())
    }

    fn add(&mut self, c: &ExitChunk, via_queue: bool) -> Result<(), Violation> {
        let expected = self.model_add(c);
        let got = if via_queue {
            let item = PoolItem::Exit {
                msg_id: c.msg_id,
                chunk: c.chunk,
                chunks: c.chunks,
                exit_type: c.exit_type,
                payload: c.payload.clone(),
            };
            let ids = self.store()?.pool_insert(&[item]).map_err(harness_err)?;
            self.store()?.release(&ids, self.now).map_err(harness_err)?;
            let outcomes = process_exit_queue(self.store()?, &self.limits, self.now, 10)
                .map_err(|e| Violation::Harness(e.to_string()))?;
            ensure(outcomes.len() == 1, TARGET, || {
                format!("exit queue gave {} outcomes for one job", outcomes.len())
            })?;
            outcomes.into_iter().next()
        } else {
            Some(
                add_chunk(self.store()?, &self.limits, c, self.now)
                    .map_err(|e| Violation::Harness(e.to_string()))?,
            )
        };
        match (got, expected) {
            (Some(ChunkOutcome::Complete(id)), Expected::Complete(message)) => {
                self.mails.push((id, message));
                Ok(())
            }
            (Some(got), Expected::Other(want)) if got == want => Ok(()),
            (got, want) => Err(Violation::Property {
                target: TARGET,
                what: format!("outcome {got:?}, model expects {want:?}"),
            }),
        }
    }

    /// The model of one chunk's reassembly; updates the model's sets and
    /// counters.
    fn model_add(&mut self, c: &ExitChunk) -> Expected {
        use Expected::Other;
        if c.exit_type == ExitType::Dummy {
            return self.count(counter::EXIT_DUMMIES, Other(ChunkOutcome::Dummy));
        }
        if c.chunks == 0 || c.chunk == 0 || c.chunk > c.chunks {
            let r = Other(ChunkOutcome::Rejected(Rejection::BadChunkNumber));
            return self.count(counter::CHUNKS_INVALID, r);
        }
        if c.payload.len() > MAX_CHUNK_PAYLOAD {
            let r = Other(ChunkOutcome::Rejected(Rejection::TooLarge));
            return self.count(counter::CHUNKS_INVALID, r);
        }
        if self.done.contains(&c.msg_id) {
            return self.count(counter::CHUNKS_DUPLICATE, Other(ChunkOutcome::Duplicate));
        }
        let open = self.sets.len();
        let Some(set) = self.sets.get_mut(&c.msg_id) else {
            if c.chunks == 1 {
                self.done.insert(c.msg_id);
                return self.count(counter::MAIL_QUEUED, Expected::Complete(c.payload.clone()));
            }
            if open >= self.limits.max_partial_sets {
                let r = Other(ChunkOutcome::Rejected(Rejection::TooManyPartials));
                return self.count(counter::CHUNKS_OVER_LIMIT, r);
            }
            let parts = BTreeMap::from([(c.chunk, c.payload.clone())]);
            let set = ModelSet {
                chunks: c.chunks,
                parts,
                expires: self.now + EXPIRY,
            };
            self.sets.insert(c.msg_id, set);
            self.stored = true;
            let r = Other(ChunkOutcome::Stored {
                have: 1,
                chunks: c.chunks,
            });
            return self.count(counter::CHUNKS_STORED, r);
        };
        if set.chunks != c.chunks {
            let r = Other(ChunkOutcome::Rejected(Rejection::CountMismatch));
            return self.count(counter::CHUNKS_COUNT_MISMATCH, r);
        }
        if set.parts.contains_key(&c.chunk) {
            return self.count(counter::CHUNKS_DUPLICATE, Other(ChunkOutcome::Duplicate));
        }
        set.parts.insert(c.chunk, c.payload.clone());
        if set.parts.len() == usize::from(set.chunks) {
            let message = set.parts.values().flatten().copied().collect();
            self.sets.remove(&c.msg_id);
            self.done.insert(c.msg_id);
            return self.count(counter::MAIL_QUEUED, Expected::Complete(message));
        }
        let have = u8::try_from(set.parts.len()).unwrap_or(u8::MAX);
        self.stored = true;
        let r = Other(ChunkOutcome::Stored {
            have,
            chunks: c.chunks,
        });
        self.count(counter::CHUNKS_STORED, r)
    }

    fn count(&mut self, name: &'static str, e: Expected) -> Expected {
        *self.counted.entry(name).or_default() += 1;
        e
    }

    /// Lets `minutes` pass and prunes expired sets.
    fn pass(&mut self, minutes: u64) -> Result<(), Violation> {
        self.now += Duration::from_secs(60 * minutes);
        let now = self.now;
        let before = self.sets.len();
        self.sets.retain(|_, s| s.expires > now);
        let expired = before - self.sets.len();
        if expired > 0 {
            *self.counted.entry(counter::PARTIALS_EXPIRED).or_default() += expired as u64;
        }
        let pruned = prune(self.store()?, now).map_err(|e| Violation::Harness(e.to_string()))?;
        ensure(pruned == expired, TARGET, || {
            format!("pruned {pruned} sets, model expired {expired}")
        })
    }

    /// Closes the store, then opens it again.
    fn reopen(&mut self) -> Result<(), Violation> {
        self.reopened = true;
        self.store = None;
        self.store = Some(Store::open(&self.path).map_err(harness_err)?);
        Ok(())
    }

    fn store(&self) -> Result<&Store, Violation> {
        self.store
            .as_ref()
            .ok_or_else(|| Violation::Harness("store closed".into()))
    }

    /// The store's sets against the model's.
    fn compare_sets(&self) -> Result<(), Violation> {
        let store = self.store()?;
        let count = store.partial_count();
        ensure(count == self.sets.len(), TARGET, || {
            format!(
                "store counts {count} open sets, model has {}",
                self.sets.len()
            )
        })?;
        for sel in 0..4u8 {
            let id = [sel; 16];
            let set = store.partial_set(&id).map_err(harness_err)?;
            let chunks = store.partial_chunks(&id).map_err(harness_err)?;
            let model = self.sets.get(&id);
            let same = match (set, model) {
                (None, None) => chunks.is_empty(),
                (Some(s), Some(m)) => {
                    let bytes: usize = m.parts.values().map(Vec::len).sum();
                    s.chunks == m.chunks
                        && usize::from(s.have) == m.parts.len()
                        && s.bytes == bytes as u64
                        && s.expires == m.expires
                        && chunks.len() == m.parts.len()
                        && chunks
                            .iter()
                            .zip(&m.parts)
                            .all(|(c, (n, p))| c.chunk == *n && c.payload == *p)
                }
                _ => false,
            };
            ensure(same, TARGET, || {
                format!("set {sel}: store {set:?}, model has {}", model.is_some())
            })?;
        }
        Ok(())
    }

    /// The mail queue and the counters against the model.
    fn finish(&mut self) -> Result<&'static str, Violation> {
        let mut queued = self
            .store()?
            .mail_due(end_of_time(), 100_000, &mut |_, _| true)
            .map_err(harness_err)?;
        queued.sort_by_key(|m| m.id.0);
        self.mails.sort_by_key(|(id, _)| id.0);
        ensure(queued.len() == self.mails.len(), TARGET, || {
            format!(
                "{} mails queued, model completed {}",
                queued.len(),
                self.mails.len()
            )
        })?;
        for (q, (id, message)) in queued.iter().zip(&self.mails) {
            let domain = first_recipient_domain(message);
            ensure(
                q.id == *id && q.payload == *message && q.destination == domain,
                TARGET,
                || "a queued mail differs from the completed message".into(),
            )?;
        }
        let after = counters(self.store()?)?;
        for name in COUNTERS {
            let moved =
                after.get(name).copied().unwrap_or(0) - self.before.get(name).copied().unwrap_or(0);
            let want = self.counted.get(name).copied().unwrap_or(0);
            ensure(moved == want, TARGET, || {
                format!("counter {name} moved by {moved}, model says {want}")
            })?;
        }
        Ok(if !self.mails.is_empty() {
            "completed"
        } else if self.stored {
            "stored"
        } else if self.counted.is_empty() {
            "empty"
        } else {
            "rejected"
        })
    }
}

/// What the model expects of one chunk.
#[derive(Debug)]
enum Expected {
    /// A complete message with this text is queued.
    Complete(Vec<u8>),
    /// Any other outcome.
    Other(ChunkOutcome),
}

/// The reassembly counters' values.
fn counters(store: &Store) -> Result<BTreeMap<&'static str, u64>, Violation> {
    COUNTERS
        .iter()
        .map(|&n| store.counter(n).map(|v| (n, v)).map_err(harness_err))
        .collect()
}

/// Removes every set, queued mail and exit job left by an earlier input.
fn empty(store: &Store) -> Result<(), Violation> {
    prune(store, end_of_time()).map_err(|e| Violation::Harness(e.to_string()))?;
    // The marks of completed messages live in the replay log.
    store.prune_replay(end_of_time()).map_err(harness_err)?;
    for job in store.exit_jobs(100_000).map_err(harness_err)? {
        store.exit_job_done(job.0).map_err(harness_err)?;
    }
    for m in store
        .mail_due(end_of_time(), 100_000, &mut |_, _| true)
        .map_err(harness_err)?
    {
        store
            .mail_record(vec![(m.id, crate::store::Change::Delivered)])
            .map_err(harness_err)?;
    }
    let clean = store.partial_count() == 0 && store.mail_len().map_err(harness_err)? == 0;
    ensure(clean, TARGET, || "the store could not be emptied".into())
}

/// Parses an add operation's arguments (see the module documentation).
fn parse_chunk(data: &[u8]) -> Option<(ExitChunk, &[u8])> {
    let (&[sel, chunk, chunks, flags], rest) = data.split_first_chunk::<4>()?;
    let (chunk, chunks) = if flags & 8 != 0 {
        (chunk, chunks)
    } else {
        (chunk % 5, chunks % 5)
    };
    let (payload, rest) = match (flags >> 1) & 3 {
        0 => {
            let (&len, rest) = rest.split_first()?;
            let len = usize::from(len).min(rest.len());
            (rest.get(..len)?.to_vec(), rest.get(len..)?)
        }
        1 => (vec![chunk; MAX_CHUNK_PAYLOAD], rest),
        2 => (vec![chunk; MAX_CHUNK_PAYLOAD + 1], rest),
        _ => (Vec::new(), rest),
    };
    let exit_type = if flags & 1 != 0 {
        ExitType::Dummy
    } else {
        ExitType::Smtp
    };
    let c = ExitChunk {
        msg_id: [sel % 4; 16],
        chunk,
        chunks,
        exit_type,
        payload,
    };
    Some((c, rest))
}
