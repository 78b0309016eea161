//! Maintenance, each job on its own schedule:
//!
//! * every [`MAINTENANCE`]: prune the replay log and expired partial
//!   messages, rotate our keys (a new key is generated outside the
//!   keystore's lock and swapped in when ready), write the status file;
//! * every [`CONF`]: render our conf (the key advertised today, the
//!   remailers known alive);
//! * every [`FLUSH`]: write the counters tallied since the last flush
//!   (and the exit's recipient counts), and let the store recover from a
//!   failed write (a full disk) once it has room again;
//! * every [`SNAPSHOT`]: age the directory (dead remailers, lost pings)
//!   and write the snapshot senders read (`directory.json`).
//!
//! The remailers' confs are fetched by the directory's own queue worker
//! ([`crate::directory::fetch`]), on a schedule of their own.

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
/// How often the directory is aged and its snapshot written.
const SNAPSHOT: Duration = Duration::from_secs(15);
/// Longest a snapshot is kept when nothing but statistics changed.
const SNAPSHOT_MAX: Duration = Duration::from_secs(300);
/// How often our conf is rendered again.
const CONF: Duration = Duration::from_secs(5);

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

/// Ages the directory and writes its snapshot every [`SNAPSHOT`], until
/// `stop` is cancelled.
pub(crate) async fn directory(shared: Arc<Shared>, stop: CancellationToken) {
    // What the last snapshot held, and when it was written: it is written
    // again when the remailers change, or every SNAPSHOT_MAX for fresh
    // statistics, not every run (a Raspberry Pi's SD card thanks us).
    let last = Arc::new(std::sync::Mutex::new((Vec::new(), None::<u64>)));
    every(SNAPSHOT, Duration::ZERO, stop, || async {
        let (s, last) = (shared.clone(), last.clone());
        blocking("ageing the directory", move || {
            let lost = crate::directory::pinger::expire(&s.store, s.clock.now())
                .map_err(|e| e.to_string())?;
            s.tally.add("pings_lost", lost as u64);
            let now = s.unix_now();
            s.directory.age(now).map_err(|e| e.to_string())?;
            let snapshot = s.directory.snapshot(now);
            let confs: Vec<String> = snapshot.remailers.iter().map(|r| r.conf.clone()).collect();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let stale = last
                .1
                .is_none_or(|t| now.saturating_sub(t) >= SNAPSHOT_MAX.as_secs());
            if confs != last.0 || stale {
                snapshot
                    .write(s.config.data_dir())
                    .map_err(|e| e.to_string())?;
                *last = (confs, Some(now));
            }
            Ok::<_, String>(())
        })
        .await;
    })
    .await;
}

/// Renders our conf every [`CONF`] (an in-memory step), so a new key or a
/// change in the remailers known alive is published soon.
pub(crate) async fn conf(shared: Arc<Shared>, stop: CancellationToken) {
    every(CONF, CONF, stop, || async {
        if let Err(e) = shared.refresh_conf() {
            warn!("refreshing remailer-conf: {e}");
        }
    })
    .await;
}
