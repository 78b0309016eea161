//! The outbound queue: packets posted to their next hops, served by the
//! [`queue`](crate::queue) worker (at most `concurrency` posts at once,
//! `per_peer` to one next hop). A failed post is retried with exponential
//! backoff (with jitter) until `give_up_after` has passed since the packet
//! was queued; a peer that refuses the packet (4xx) is not asked again. A
//! 409 means the peer already has it: delivered.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use mimix_packet::{Packet, armour};
use mimix_settings::{Checked, days, duration, hours, minutes, size};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::Shared;
use crate::queue::{Attempt, Caps, Due, Limit, Outcome, Queue, Recorded, Retry, Skip, Worker};
use crate::store::{Change, OutboundId, StoreError};
use crate::transport::{ClientError, post_packet};

/// `[outbound]`: delivery of packets to next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Wait before the first retry; doubled after each failure.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// A packet not delivered this long after it was queued is dropped.
    #[serde(with = "duration")]
    pub give_up_after: Duration,
    /// Most deliveries in progress at once.
    pub concurrency: usize,
    /// Most deliveries in progress to one next hop, so a dead or slow next
    /// hop holds only its own share.
    pub per_peer: usize,
    /// Most packets queued for next hops: at this many, new packets are
    /// refused (503 with Retry-After) before any work is done on them.
    pub max_queued: u64,
    /// Most bytes queued for next hops, the same way.
    #[serde(with = "size")]
    pub max_queued_bytes: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            retry_initial: minutes(1),
            retry_max: hours(6),
            give_up_after: days(7),
            concurrency: 32,
            per_peer: 8,
            max_queued: 10_000,
            max_queued_bytes: 256 * 1024 * 1024,
        }
    }
}

impl OutboundConfig {
    /// The queue worker's backoff.
    pub fn retry(&self) -> Retry {
        Retry {
            initial: self.retry_initial,
            max: self.retry_max,
            give_up_after: self.give_up_after,
        }
    }

    /// The queue worker's caps.
    pub fn caps(&self) -> Caps {
        Caps {
            concurrency: self.concurrency,
            per_destination: self.per_peer,
        }
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        self.retry()
            .validate(["retry_initial", "retry_max", "give_up_after"])?;
        self.caps().validate(["concurrency", "per_peer"])?;
        self.limit().validate(["max_queued", "max_queued_bytes"])
    }

    /// The queue's caps.
    pub fn limit(&self) -> Limit {
        Limit {
            count: self.max_queued,
            bytes: self.max_queued_bytes,
        }
    }

    /// Whether an outbound queue holding `held` is full.
    pub fn full(&self, held: crate::store::Area) -> bool {
        self.limit().full(held)
    }
}

/// The outbound queue as the worker sees it.
pub(crate) struct Outbound(pub Arc<Shared>);

impl Outbound {
    /// The worker serving the outbound queue of `shared`.
    pub fn worker(shared: &Arc<Shared>) -> Worker<Self> {
        let c = &shared.config.outbound;
        Worker::new(
            Arc::new(Self(shared.clone())),
            c.retry(),
            c.caps(),
            shared.clock.clone(),
        )
        .with_waker(shared.outbound_wake.clone())
    }
}

impl Queue for Outbound {
    type Item = Vec<u8>;
    type State = ();

    fn name(&self) -> &'static str {
        "outbound"
    }

    fn due(
        &self,
        now: SystemTime,
        limit: usize,
        skip: &mut Skip,
    ) -> Result<Vec<Due<Vec<u8>>>, StoreError> {
        let items = self
            .0
            .store
            .outbound_due(now, limit, &mut |id, hop| skip.take(id, hop))?;
        Ok(items
            .into_iter()
            .map(|i| Due {
                id: i.id.0,
                destination: i.next_hop,
                attempts: i.attempts,
                first_queued: i.first_queued,
                item: i.packet,
            })
            .collect())
    }

    async fn attempt(&self, due: &Due<Vec<u8>>) -> Attempt<()> {
        let Some(packet) = Packet::from_bytes(&due.item) else {
            debug!("dropping a corrupt outbound packet");
            return Attempt::Failed;
        };
        let shared = &self.0;
        let posted = post_packet(
            &*shared.dialer,
            &due.destination,
            &armour(&packet),
            &shared.client_limits,
        )
        .await;
        match posted {
            Ok(()) => Attempt::Delivered,
            // 409: the next hop already has the packet (we crashed between
            // its 200 and our record of it).
            Err(ClientError::Rejected { status, .. }) if status == StatusCode::CONFLICT => {
                debug!("next hop already has the packet");
                Attempt::Delivered
            }
            Err(e) if e.is_retryable() => {
                debug!(attempts = due.attempts + 1, "post failed, will retry: {e}");
                Attempt::Retry(())
            }
            Err(e) => {
                debug!("next hop refused a packet: {e}");
                Attempt::Failed
            }
        }
    }

    fn record(&self, outcomes: Vec<Recorded<Self>>) -> Result<(), StoreError> {
        let changes = outcomes
            .into_iter()
            .map(|(due, outcome)| {
                let change = match outcome {
                    Outcome::Delivered => Change::Delivered,
                    Outcome::Failed | Outcome::GaveUp => Change::Dropped,
                    Outcome::Retry { at, .. } => Change::Retry(at),
                };
                (OutboundId(due.id), change)
            })
            .collect();
        self.0.store.outbound_record(changes).map(drop)
    }
}
