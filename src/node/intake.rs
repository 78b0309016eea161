//! Receiving packets: the transport's [`Collector`].
//!
//! A submitted packet is dearmoured and peeled on the blocking pool (RSA is
//! most of the work), two peels per core at a time so that forwarding and
//! the HTTP side keep their share of the CPU under a flood of submissions
//! (the others wait without holding a thread), every integrity check
//! passing before its packet ID
//! is looked at. Then the ID goes into the replay log and the peeled result
//! into the pool in one durable batch; only after that batch is on disk
//! does the transport answer 200. Concurrent submissions share one fsync
//! (group commit): a single committer task takes whatever has queued up
//! while the previous batch was being written. A byte-identical copy of a
//! packet we hold is answered 200 before the peel ([`super::duplicate`]).
//! A mail packet reaching a middle node is re-encrypted to an exit
//! ([`super::randhop`]); a dummy is discarded, its ID logged all the same;
//! so is the ID of a packet refused for its next hop, so that it stays
//! refused (as a replay) when it comes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mimix_packet::{ExitType, Outcome, dearmour, peel};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use super::duplicate::{self, Seen};
use super::{Shared, randhop};
use crate::directory::pinger;
use crate::store::{Accepted, Inbound, PoolItem, counter};
use crate::transport::{
    ADMINKEY_PATH, BLOCKME_PATH, Collector, HELP_PATH, PeerUrl, Rejection, STATS_PATH,
};

/// Most packets written in one batch.
const MAX_BATCH: usize = 128;
/// Packets waiting for the committer before the node answers 503.
const COMMIT_QUEUE: usize = 1024;
/// Pause after a failed batch write, doubled while writes keep failing.
const FIRST_COMMIT_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between batch writes while they fail.
const MAX_COMMIT_PAUSE: Duration = Duration::from_secs(5);

/// The committer's answer: accepted or a replay, or `Err` when the write
/// failed (already logged).
type Reply = oneshot::Sender<Result<Accepted, ()>>;

/// The node's collector.
pub struct Intake {
    shared: Arc<Shared>,
    commits: mpsc::Sender<(Inbound, Reply)>,
    /// Peels running or waiting; beyond `max_peeling` the node is overloaded.
    peeling: AtomicUsize,
    max_peeling: usize,
    /// Two permits per core: peels running at once (enough to keep every
    /// core busy between one peel and the next).
    cpus: Semaphore,
}

impl Intake {
    /// Starts the committer task and returns the collector.
    pub(crate) fn start(shared: Arc<Shared>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(COMMIT_QUEUE);
        tokio::spawn(committer(shared.clone(), rx));
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Arc::new(Self {
            shared,
            commits: tx,
            peeling: AtomicUsize::new(0),
            max_peeling: cores * 32,
            cpus: Semaphore::new(cores * 2),
        })
    }

    /// Counts a refusal (in memory; flushed to the store every second, so
    /// a flood of bad packets never waits for the store's write lock).
    fn count(&self, name: &str) {
        self.shared.tally.add(name, 1);
    }

    /// Peels on the blocking pool; returns the packet ID and the item to
    /// store, or the counter of a discarded packet.
    async fn peel(&self, armoured: String) -> Result<([u8; 16], Peeled), Rejection> {
        self.count(counter::PEELED);
        let shared = self.shared.clone();
        let _cpu = self.cpus.acquire().await.map_err(|_| Rejection::Internal)?;
        let result = tokio::task::spawn_blocking(move || {
            let packet = dearmour(&armoured).map_err(|_| "armour")?;
            let window = shared.config.replay.window(shared.clock.epoch_day());
            let peeled = {
                let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner());
                peel(&packet, &*keys, &window, &mut rand::rng()).map_err(|e| e.reason())?
            };
            let ping = returned_ping(&shared, &peeled.outcome);
            Ok((peeled, ping))
        })
        .await
        .map_err(|_| Rejection::Internal)?;
        let (peeled, ping) = match result {
            Ok(p) => p,
            Err(reason) => {
                debug!(reason, "rejected a packet");
                self.count(&format!("rejected_{reason}"));
                return Err(Rejection::Invalid(reason));
            }
        };
        if ping {
            // One of our pings, back: counted, discarded like a dummy.
            return Ok((peeled.packet_id, Peeled::Discard("pings_returned")));
        }
        match peeled.outcome {
            Outcome::Forward { next_hop, packet } => {
                let allowed = PeerUrl::parse(&next_hop)
                    .and_then(|u| self.shared.dialer.policy().check(&u))
                    .is_ok();
                if !allowed {
                    return Ok((peeled.packet_id, Peeled::RefusedHop));
                }
                Ok((
                    peeled.packet_id,
                    Peeled::Pool(PoolItem::Forward {
                        next_hop,
                        packet: packet.as_bytes().to_vec(),
                    }),
                ))
            }
            Outcome::Exit(chunk) => {
                if !self.shared.config.node.smtp_exit {
                    // A middle node takes exit packets (the sender could not
                    // know better) but cannot deliver them.
                    let counter = match chunk.exit_type {
                        ExitType::Dummy => "exit_dummies_discarded",
                        ExitType::Smtp if self.shared.config.node.randhop => {
                            let item = match randhop::reroute(&self.shared, chunk).await {
                                Ok(item) => Peeled::Reroute(item),
                                Err(counter) => Peeled::Discard(counter),
                            };
                            return Ok((peeled.packet_id, item));
                        }
                        ExitType::Smtp => "exit_dropped_middle_node",
                    };
                    return Ok((peeled.packet_id, Peeled::Discard(counter)));
                }
                Ok((
                    peeled.packet_id,
                    Peeled::Pool(PoolItem::Exit {
                        msg_id: chunk.msg_id,
                        chunk: chunk.chunk,
                        chunks: chunk.chunks,
                        exit_type: chunk.exit_type,
                        payload: chunk.payload,
                    }),
                ))
            }
        }
    }
}

/// Whether `outcome` is one of our pings coming back; if so its return is
/// recorded (blocking).
fn returned_ping(shared: &Shared, outcome: &Outcome) -> bool {
    let Outcome::Exit(chunk) = outcome else {
        return false;
    };
    if chunk.exit_type != ExitType::Dummy || chunk.chunks != 1 {
        return false;
    }
    match pinger::returned(&shared.directory, &chunk.msg_id, shared.clock.now()) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(e) => {
            warn!("recording a ping: {e}");
            false
        }
    }
}

/// What a peeled packet becomes.
enum Peeled {
    /// An item for the pool.
    Pool(PoolItem),
    /// A mail packet re-encrypted to an exit (randhop), for the pool.
    Reroute(PoolItem),
    /// Nothing but its ID in the replay log, counted under this name.
    Discard(&'static str),
    /// Refused for its next hop: its ID goes into the replay log.
    RefusedHop,
}

impl Intake {
    /// Logs the ID of a packet that is discarded: a replay of it is
    /// refused like any other, so replaying cannot tell a discarded packet
    /// (a dummy ending here) from a forwarded one.
    async fn discard(
        &self,
        packet_id: [u8; 16],
        digest: Option<[u8; 32]>,
        replay_expires: std::time::SystemTime,
        counter: &'static str,
    ) -> Result<(), Rejection> {
        let store = self.shared.store.clone();
        let logged = tokio::task::spawn_blocking(move || {
            store.log_packet_id(&packet_id, digest.as_ref(), replay_expires, counter)
        })
        .await;
        match logged {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(Rejection::Replay),
            Ok(Err(e)) => {
                warn!("logging a packet ID: {e}");
                Err(Rejection::Overloaded)
            }
            Err(_) => Err(Rejection::Internal),
        }
    }
}

impl Intake {
    /// Refuses a packet whose next hop may not be contacted, logging its
    /// ID (counted as `rejected_next_hop`) so that the same packet is
    /// refused as a replay if it comes again.
    async fn refuse_hop(
        &self,
        packet_id: [u8; 16],
        replay_expires: std::time::SystemTime,
    ) -> Result<(), Rejection> {
        // No digest: a byte-identical copy must be refused too, not
        // answered 200 as a packet we hold.
        self.discard(packet_id, None, replay_expires, "rejected_next_hop")
            .await?;
        Err(Rejection::Invalid("next hop not allowed"))
    }

    /// Why a new packet cannot be taken now, checked before any work is
    /// done on it (no disk access): the pool or a queue is at its cap, or
    /// the store cannot write (a full disk, or a failed write it has not
    /// recovered from yet). `None` if it can.
    fn full(&self) -> Option<&'static str> {
        let (store, config) = (&self.shared.store, &self.shared.config);
        let held = store.usage();
        if config.pool.full(held.pool) {
            Some("rejected_pool_full")
        } else if config.outbound.full(held.outbound) {
            Some("rejected_outbound_full")
        } else if config.node.smtp_exit && config.exit.retry.full(held.mail) {
            Some("rejected_mail_full")
        } else if !store.accepts_new() {
            Some("rejected_store_unwritable")
        } else {
            None
        }
    }
}

struct PeelSlot<'a>(&'a AtomicUsize);

impl Drop for PeelSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Collector for Intake {
    async fn submit(&self, armoured: String) -> Result<(), Rejection> {
        if let Some(counter) = self.full() {
            self.count(counter);
            return Err(Rejection::Overloaded);
        }
        if self.peeling.fetch_add(1, Ordering::SeqCst) >= self.max_peeling {
            self.peeling.fetch_sub(1, Ordering::SeqCst);
            self.count("rejected_overloaded");
            return Err(Rejection::Overloaded);
        }
        let slot = PeelSlot(&self.peeling);
        let digest = match duplicate::check(&self.shared, &armoured).await {
            Seen::Held => {
                self.count(counter::DUPLICATES);
                return Ok(());
            }
            Seen::New(digest) => digest,
        };
        let peeled = self.peel(armoured).await;
        drop(slot);
        let (packet_id, peeled) = peeled?;
        let replay_expires = self.shared.clock.now() + self.shared.config.replay.retention;
        let (item, rerouted) = match peeled {
            Peeled::Pool(item) => (item, false),
            Peeled::Reroute(item) => (item, true),
            Peeled::Discard(counter) => {
                return self
                    .discard(packet_id, digest, replay_expires, counter)
                    .await;
            }
            Peeled::RefusedHop => return self.refuse_hop(packet_id, replay_expires).await,
        };
        let next_hop = match &item {
            PoolItem::Forward { next_hop, .. } => Some(next_hop.clone()),
            PoolItem::Exit { .. } => None,
        };
        let inbound = Inbound {
            packet_id,
            replay_expires,
            digest,
            item,
        };
        let (tx, rx) = oneshot::channel();
        if self.commits.try_send((inbound, tx)).is_err() {
            self.count("rejected_overloaded");
            return Err(Rejection::Overloaded);
        }
        match rx.await {
            Ok(Ok(Accepted::New(_))) => {
                if rerouted {
                    self.count(counter::RANDHOP);
                }
                self.shared.inbound_dummies();
                if let Some(hop) = next_hop {
                    self.shared.hear_of(hop);
                }
                Ok(())
            }
            Ok(Ok(Accepted::Replay)) => Err(Rejection::Replay),
            // The store could not write (a full disk, say): try later.
            Ok(Err(())) => Err(Rejection::Overloaded),
            Err(_) => Err(Rejection::Internal),
        }
    }

    fn remailer_conf(&self) -> String {
        self.shared.conf_text()
    }

    fn page(&self, path: &str) -> Option<String> {
        let pages = self.shared.pages();
        match path {
            STATS_PATH => Some(self.shared.directory.stats_text(self.shared.unix_now())),
            HELP_PATH => Some(pages.help.clone()),
            ADMINKEY_PATH => pages.admin_key.clone(),
            BLOCKME_PATH => Some(pages.blockme.clone()),
            _ => None,
        }
    }
}

/// Writes queued packets in batches, one fsync per batch. After a failed
/// write it pauses before the next batch, twice as long after each failure
/// in a row (up to [`MAX_COMMIT_PAUSE`]); the packets that come meanwhile
/// wait or are refused with 503, so a failing disk is not hammered.
async fn committer(shared: Arc<Shared>, mut rx: mpsc::Receiver<(Inbound, Reply)>) {
    let mut pause = Duration::ZERO;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<Inbound>, Vec<Reply>) = batch.into_iter().unzip();
        let store = shared.store.clone();
        let result = tokio::task::spawn_blocking(move || store.accept_batch(&items)).await;
        match result {
            Ok(Ok(accepted)) => {
                pause = Duration::ZERO;
                for (reply, a) in replies.into_iter().zip(accepted) {
                    let _ = reply.send(Ok(a));
                }
            }
            Ok(Err(e)) => {
                if pause.is_zero() {
                    warn!("writing a batch of packets: {e}");
                } else {
                    debug!("writing a batch of packets: {e}");
                }
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
                pause = (pause * 2).clamp(FIRST_COMMIT_PAUSE, MAX_COMMIT_PAUSE);
                tokio::time::sleep(pause).await;
            }
            Err(_) => {
                // The blocking task panicked; the replies are dropped and
                // the submitters answer 500.
            }
        }
    }
}
