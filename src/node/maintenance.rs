//! Maintenance, each job on its own schedule:
//!
//! * every [`MAINTENANCE`]: prune the replay log and expired partial
//!   messages, rotate our keys (a new key is generated outside the
//!   keystore's lock and swapped in when ready), render our conf for the
//!   day, write the status file;
//! * every [`FLUSH`]: write the counters tallied since the last flush
//!   (and the exit's recipient counts), and let the store recover from a
//!   failed write (a full disk) once it has room again;
//! * the directory: the known remailers' confs are fetched every few
//!   seconds while some are missing, then every [`DIRECTORY_REFRESH`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Shared, blocking, every, mail, status};
use crate::exit::{Exit, ExitCounts};
use crate::keystore::{KeyGenerator, SystemKeyGenerator};

/// How often maintenance runs.
const MAINTENANCE: Duration = Duration::from_secs(60);
/// How often tallied counters are written.
const FLUSH: Duration = Duration::from_secs(1);
/// How often the directory is refreshed once every conf is known.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(600);
/// How soon a missing remailer-conf is fetched again.
const DIRECTORY_RETRY: Duration = Duration::from_secs(3);

/// Runs the periodic maintenance until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    every(MAINTENANCE, Duration::ZERO, stop, || maintain(&shared)).await;
}

/// One maintenance run.
async fn maintain(shared: &Arc<Shared>) {
    let s = shared.clone();
    blocking("pruning", move || {
        let now = s.clock.now();
        s.store.prune_replay(now).map_err(|e| e.to_string())?;
        crate::exit::reassembly::prune(&s.store, now).map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    })
    .await;
    rotate_keys(shared).await;
    if let Err(e) = shared.refresh_conf() {
        warn!("refreshing remailer-conf: {e}");
    }
    let s = shared.clone();
    blocking("writing the status file", move || status::write(&s)).await;
}

/// Makes a new key if one is due (generated on the blocking pool, without
/// holding the keystore's lock, which every peel takes) and deletes
/// expired ones.
async fn rotate_keys(shared: &Arc<Shared>) {
    let today = shared.clock.epoch_day();
    let bits = {
        let keys = shared.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.needs_key(today).then(|| keys.key_bits())
    };
    if let Some(bits) = bits {
        let made = blocking("generating a key", move || {
            SystemKeyGenerator.generate(bits)
        })
        .await;
        if let Some((key, pem)) = made {
            let s = shared.clone();
            blocking("installing a new key", move || {
                s.keys
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .add_key(today, key, &pem)
            })
            .await;
        }
    }
    let s = shared.clone();
    blocking("deleting expired keys", move || {
        s.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .prune(today)
    })
    .await;
}

/// Writes tallied counters every [`FLUSH`] until `stop` is cancelled, and
/// once more on the way out.
pub(crate) async fn flush_counters(
    shared: Arc<Shared>,
    exit: Option<Arc<Exit>>,
    stop: CancellationToken,
) {
    let last = std::sync::Mutex::new(ExitCounts::default());
    let flush = || async {
        if let Some(exit) = &exit {
            let now = exit.counts();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            mail::count_recipients(&shared, now, *last);
            *last = now;
        }
        let s = shared.clone();
        blocking("writing counters", move || {
            s.store.heal();
            if s.store.writes_failing() {
                // Kept for a later flush; the failure is logged once.
                return Ok(());
            }
            s.tally.flush(&s.store)
        })
        .await;
    };
    every(FLUSH, FLUSH, stop, flush).await;
    flush().await;
}

/// Fetches the known remailers' confs: every few seconds while some are
/// missing, then every [`DIRECTORY_REFRESH`].
pub(crate) async fn directory(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let today = shared.clock.epoch_day();
        shared
            .directory
            .refresh(&*shared.dialer, &shared.client_limits, today)
            .await;
        let wait = if shared.directory.incomplete() {
            DIRECTORY_RETRY
        } else {
            DIRECTORY_REFRESH
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
