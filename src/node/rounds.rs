//! The pool round: every `pool.interval`, one round of the timed dynamic
//! pool (with the round's dummies), releasing packets to the outbound
//! queue or the exit queue.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Shared, every};
use crate::pool;

/// Runs pool rounds until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = shared.config.pool.interval;
    every(interval, interval, stop, || round(&shared)).await;
}

/// One round, on the blocking pool; wakes the outbound queue if it
/// released packets to it.
async fn round(shared: &Arc<Shared>) {
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
