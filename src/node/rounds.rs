//! The pool round: every `pool.interval`, one round of the timed dynamic
//! pool (with the round's dummies), releasing packets to the outbound
//! queue or the exit queue.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Shared;
use crate::pool;

/// Runs pool rounds until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = shared.config.pool.interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = shared.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut source = s.dummy_source();
            let policy = s.dummy_policy(&source);
            pool::run_round(
                &s.store,
                &s.config.pool,
                &policy,
                &mut source,
                &mut rand::rng(),
                &*s.clock,
            )
        })
        .await;
        match r {
            Ok(Ok(summary)) => {
                debug!(?summary, "pool round");
                if summary.forwarded > 0 {
                    shared.outbound_wake.notify_one();
                }
            }
            Ok(Err(e)) => warn!("pool round failed: {e}"),
            Err(_) => warn!("pool round failed: task panicked"),
        }
    }
}
