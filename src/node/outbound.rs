//! Sending queued packets to their next hops.
//!
//! Every tick, the due items of the outbound queue are posted, each in its
//! own task, at most `concurrency` at once and at most
//! [`PER_PEER`] per next hop, so one dead next hop never holds up the
//! others. A failed post is retried with exponential backoff (with
//! jitter) until `give_up_after` has passed since the packet was queued;
//! a peer that refuses the packet (4xx) is not asked again. A 409 means the
//! peer already has it: delivered.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use mimix_packet::{Packet, armour};
use rand::RngExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Shared, blocking};
use crate::store::{OutboundId, OutboundItem};
use crate::transport::{ClientError, post_packet};

/// Most posts in flight to one next hop.
pub const PER_PEER: usize = 2;
/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);

/// The delay before attempt `attempts + 1`: `initial * 2^attempts`, capped
/// at `max`, then scaled by a random factor in [0.75, 1.25).
pub fn backoff(initial: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    let exp = initial.saturating_mul(1u32.checked_shl(attempts.min(30)).unwrap_or(u32::MAX));
    exp.min(max).mul_f64(jitter.clamp(0.75, 1.25))
}

#[derive(Default)]
struct InFlight {
    ids: HashSet<u64>,
    per_peer: HashMap<String, usize>,
}

/// Runs the delivery loop until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = shared.config.outbound.clone();
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let inflight = Arc::new(Mutex::new(InFlight::default()));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = shared.clock.now();
        let store = shared.store.clone();
        let limit = cfg.concurrency.max(1) * 8;
        let Some(due) = blocking("reading the outbound queue", move || {
            store.outbound_due(now, limit)
        })
        .await
        else {
            continue;
        };
        for item in due {
            {
                let mut f = inflight.lock().unwrap_or_else(|e| e.into_inner());
                let busy = f.per_peer.get(&item.next_hop).copied().unwrap_or(0);
                if f.ids.contains(&item.id.0) || busy >= PER_PEER {
                    continue;
                }
                f.ids.insert(item.id.0);
                *f.per_peer.entry(item.next_hop.clone()).or_default() += 1;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let (id, peer) = (item.id.0, item.next_hop.clone());
                deliver(&shared, item).await;
                let mut f = inflight.lock().unwrap_or_else(|e| e.into_inner());
                f.ids.remove(&id);
                if let Some(n) = f.per_peer.get_mut(&peer) {
                    *n -= 1;
                    if *n == 0 {
                        f.per_peer.remove(&peer);
                    }
                }
                drop(permit);
            });
        }
    }
}

enum Next {
    Delivered,
    Retry(SystemTime),
    GiveUp,
}

async fn deliver(shared: &Shared, item: OutboundItem) {
    let cfg = &shared.config.outbound;
    let next = match Packet::from_bytes(&item.packet) {
        None => {
            warn!("dropping a corrupt outbound packet");
            Next::GiveUp
        }
        Some(packet) => {
            let text = armour(&packet);
            match post_packet(
                &*shared.dialer,
                &item.next_hop,
                &text,
                &shared.client_limits,
            )
            .await
            {
                Ok(()) => Next::Delivered,
                // 409: the next hop already has the packet (we crashed
                // between its 200 and our record of it).
                Err(ClientError::Rejected { status, .. }) if status == StatusCode::CONFLICT => {
                    debug!("next hop already has the packet");
                    Next::Delivered
                }
                Err(e) if e.is_retryable() => {
                    let now = shared.clock.now();
                    let queued_for = now.duration_since(item.first_queued).unwrap_or_default();
                    if queued_for >= cfg.give_up_after {
                        info!("giving up on a packet after its retry period");
                        Next::GiveUp
                    } else {
                        debug!(attempts = item.attempts + 1, "post failed, will retry: {e}");
                        let jitter = rand::rng().random_range(0.75..1.25);
                        Next::Retry(
                            now + backoff(cfg.retry_initial, cfg.retry_max, item.attempts, jitter),
                        )
                    }
                }
                Err(e) => {
                    info!("next hop refused a packet: {e}");
                    Next::GiveUp
                }
            }
        }
    };
    let store = shared.store.clone();
    let id: OutboundId = item.id;
    blocking("updating the outbound queue", move || match next {
        Next::Delivered => store.outbound_delivered(id),
        Next::Retry(when) => store.outbound_retry_at(id, when),
        Next::GiveUp => store.outbound_give_up(id),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let (i, m) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(i, m, 0, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(i, m, 1, 1.0), Duration::from_secs(120));
        assert_eq!(backoff(i, m, 5, 1.0), Duration::from_secs(1920));
        assert_eq!(backoff(i, m, 9, 1.0), m);
        assert_eq!(backoff(i, m, 500, 1.0), m);
        assert_eq!(backoff(i, m, 0, 0.75), Duration::from_secs(45));
        assert_eq!(backoff(i, m, 0, 9.0), Duration::from_secs(75));
    }
}
