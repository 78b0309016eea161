//! The pinger job: pings every usable remailer at random times (see
//! [`crate::directory::pinger`]). Each ping is posted straight to the
//! remailer, not through the outbound queue: a ping that cannot be
//! delivered is a lost ping, which is what the statistics are to show.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mimix_packet::{Hop, armour};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Shared, blocking, every};
use crate::directory::pinger::{self, build_ping};
use crate::transport::post_packet;

/// Runs the pinger until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let config = shared.config.pinger;
    if !config.enabled {
        return;
    }
    let tick = (config.interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let next = std::sync::Mutex::new(HashMap::<String, SystemTime>::new());
    every(tick, tick, stop, || async {
        let now = shared.clock.now();
        let due = {
            let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
            due_pings(&shared, &mut next, now)
        };
        for hop in due {
            tokio::spawn(ping(shared.clone(), hop));
        }
    })
    .await;
}

/// The remailers due for a ping at `now`; schedules the next one of each.
/// A remailer seen for the first time gets its first ping at a random
/// time, so restarts and new remailers do not ping in a burst.
fn due_pings(shared: &Shared, next: &mut HashMap<String, SystemTime>, now: SystemTime) -> Vec<Hop> {
    let config = &shared.config.pinger;
    let rng = &mut rand::rng();
    let hops = shared.directory.hops(pinger::unix(now));
    next.retain(|a, _| hops.iter().any(|h| &h.address == a));
    let mut due = Vec::new();
    for hop in hops {
        if hop.address == shared.address {
            continue;
        }
        let at = next
            .entry(hop.address.clone())
            .or_insert_with(|| now + config.next_gap(rng));
        if *at <= now {
            *at = now + config.next_gap(rng);
            due.push(hop);
        }
    }
    due
}

/// Sends one ping through `through`.
async fn ping(shared: Arc<Shared>, through: Hop) {
    let today = shared.clock.epoch_day();
    let key = {
        let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.current(today).map(|k| k.public().clone())
    };
    let Some(key) = key else {
        return;
    };
    let us = Hop {
        key,
        address: shared.address.clone(),
    };
    let Ok((msg_id, packet)) = build_ping(&mut rand::rng(), &through, &us, today) else {
        debug!("building a ping failed");
        return;
    };
    let (s, address) = (shared.clone(), through.address.clone());
    let now = shared.clock.now();
    let stored = blocking("recording a ping", move || {
        pinger::sent(&s.directory, &s.config.pinger, &msg_id, &address, now)
    })
    .await;
    if stored.is_none() {
        return;
    }
    shared.tally.add("pings_sent", 1);
    let posted = post_packet(
        &*shared.dialer,
        &through.address,
        &armour(&packet),
        &shared.client_limits,
    )
    .await;
    if let Err(e) = posted {
        debug!("a ping could not be posted: {e}");
        shared.tally.add("pings_not_posted", 1);
    }
}
