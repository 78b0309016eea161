//! The admin listener: how the operator sees a running node.
//!
//! | path | what |
//! |---|---|
//! | `GET /status.json` | the [`StatusReport`]: version, uptime, Tor and onion service, address, keys, pool and queues, counters, the last 24 h |
//! | `GET /history.json` | the [`HistoryDoc`]: hourly points for the charts |
//! | `GET /` | a status page with charts ([`page`]), no external assets |
//! | `GET /metrics` | Prometheus text ([`metrics`]), when `[admin] metrics = true` |
//! | `GET /remailer-conf.txt` | our current conf (what `mimix conf` prints) |
//!
//! # Where it listens
//!
//! `[admin] listen` ([`AdminConfig`]) is one of:
//!
//! * `"unix"`, **the default**: a unix socket `admin.sock` in the data
//!   directory, mode 0600 inside the 0700 data directory. It needs no
//!   port, cannot clash with anything, and only the node's own user (and
//!   root) can connect, so it is safe to have on everywhere; `mimix
//!   status` and `mimix conf` use it, as does `curl --unix-socket`.
//! * `"127.0.0.1:PORT"` (or `"[::1]:PORT"`): a loopback TCP port, which is
//!   what Prometheus and a browser can reach. Any local user can connect,
//!   so it is opt-in. Loopback addresses only (checked when the
//!   configuration is loaded), and requests must name a loopback host
//!   (`Host:`), so that a web page cannot reach the listener through DNS
//!   rebinding.
//! * `"off"`: no listener; `mimix status` then reads the status file the
//!   node writes every minute.
//!
//! The listener is separate from the transport: the onion service hands
//! its streams to the transport's server only, which serves nothing but
//! the collector and the conf. Nothing here is reachable from Tor.
//!
//! # Bounds
//!
//! At most [`server::MAX_CONNECTIONS`] connections; beyond that a
//! connection is closed at once and counted. A request head must arrive
//! within 10 s and fit 8 KiB and 32 header fields; only `GET` and `HEAD`
//! are served (no request bodies are read); a connection lives at most a
//! minute. The report is computed at most once a second, whatever the
//! number of requests.
//!
//! # History
//!
//! The counters' hourly [`history`] lives in the store; it is sampled
//! while the node runs, listener or not, so a stopped node's `mimix
//! status` also shows its last 24 hours.

pub mod client;
mod config;
pub mod history;
pub mod metrics;
pub mod page;
pub mod report;
mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use mimix_tor::{BootstrapProgress, OnionService};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::keystore::KeystoreError;
use crate::store::{Store, StoreError};
use crate::transport::TransportKind;
pub use config::{ADMIN_SOCKET, AdminConfig, AdminListen, Endpoint, MAX_SOCKET_PATH};
pub use history::{History, HistoryDoc};
use metrics::{Metrics, MetricsError};
pub use report::{NodeState, Source, StatusReport, TorReport};

/// How often the history sampler looks at the clock.
const SAMPLER_TICK: Duration = Duration::from_secs(60);

/// How long a computed report is served again.
const REPORT_CACHE: Duration = Duration::from_secs(1);

/// Why the admin side failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key metadata could not be read.
    #[error(transparent)]
    Keys(#[from] KeystoreError),
    /// The metrics could not be set up or written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A listener or socket operation failed.
    #[error("admin listener: {op} {what}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The address or socket path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A background task failed.
    #[error("admin: a background task failed")]
    Task,
}

/// What the admin listener reads from the running node, beyond the store.
pub trait NodeView: Send + Sync + 'static {
    /// Our published base URL.
    fn address(&self) -> String;
    /// Our current `remailer-conf.txt`.
    fn remailer_conf(&self) -> String;
    /// The pinger's figures per remailer (the `/stats.txt` rows as JSON),
    /// `None` without a pinger.
    fn pinger(&self) -> Option<serde_json::Value>;
}

/// What the node hands over once it is up.
struct Attached {
    view: Arc<dyn NodeView>,
    onion: Option<Arc<OnionService>>,
}

/// The admin side of a running node: its state, shared by the listener's
/// connections and the history sampler.
pub struct Admin {
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
    started_at: SystemTime,
    tor: Option<watch::Receiver<BootstrapProgress>>,
    attached: OnceLock<Attached>,
    history: Mutex<History>,
    metrics: Option<Metrics>,
    cache: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<StatusReport>)>>,
    /// Connections closed at once because too many were open.
    refused: AtomicU64,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// What [`Admin::start`] gives the node.
pub struct AdminHandle {
    admin: Arc<Admin>,
    tor_progress: watch::Sender<BootstrapProgress>,
    tasks: Vec<JoinHandle<()>>,
}

impl AdminHandle {
    /// Where the Tor client publishes its bootstrap progress.
    pub fn tor_progress(&self) -> watch::Sender<BootstrapProgress> {
        self.tor_progress.clone()
    }

    /// Hands over what the node reads live, once it is up: from then on
    /// the report says `running`.
    pub fn attach(&self, view: Arc<dyn NodeView>, onion: Option<Arc<OnionService>>) {
        let _ = self.admin.attached.set(Attached { view, onion });
    }

    /// The listener's and the sampler's tasks; they end when the node's
    /// stop token is cancelled.
    pub fn into_tasks(self) -> Vec<JoinHandle<()>> {
        self.tasks
    }
}

impl Admin {
    /// Loads the history, binds the listener (if `[admin] listen` is not
    /// `off`) and starts serving and sampling until `stop` is cancelled.
    /// Call it with the store open, so no other node uses this data
    /// directory (a stale socket is then safe to replace).
    pub async fn start(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Result<AdminHandle, AdminError> {
        let started_at = clock.now();
        let s = store.clone();
        let history = match tokio::task::spawn_blocking(move || History::load(&s)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                warn!("starting a new counter history: {e}");
                History::default()
            }
            Err(_) => return Err(AdminError::Task),
        };
        let metrics = match config.admin.metrics {
            true => Some(Metrics::new(report::unix_secs(started_at))?),
            false => None,
        };
        let (tor_progress, rx) = watch::channel(BootstrapProgress::default());
        let admin = Arc::new(Admin {
            config: config.clone(),
            store,
            clock,
            started_at,
            tor: (config.transport.kind == TransportKind::Tor).then_some(rx),
            attached: OnceLock::new(),
            history: Mutex::new(history),
            metrics,
            cache: tokio::sync::Mutex::new(None),
            refused: AtomicU64::new(0),
        });
        let mut tasks = vec![tokio::spawn(sample(admin.clone(), stop.clone()))];
        if let Some(endpoint) = config.admin.endpoint(config.data_dir()) {
            let bound = server::bind(&endpoint).await?;
            info!(%endpoint, metrics = config.admin.metrics, "admin listener started");
            tasks.push(tokio::spawn(server::serve(bound, admin.clone(), stop)));
        }
        Ok(AdminHandle {
            admin,
            tor_progress,
            tasks,
        })
    }

    /// The current report (computed at most once every [`REPORT_CACHE`]).
    pub async fn report(self: &Arc<Self>) -> Result<Arc<StatusReport>, AdminError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, r)) = cache.as_ref()
            && at.elapsed() < REPORT_CACHE
        {
            return Ok(r.clone());
        }
        let now = self.clock.now();
        let a = self.clone();
        let mut r = tokio::task::spawn_blocking(move || {
            let history = a.history.lock().unwrap_or_else(|e| e.into_inner());
            StatusReport::from_store(&a.store, &a.config, now, &history, Source::Live)
        })
        .await
        .map_err(|_| AdminError::Task)??;
        self.fill_live(&mut r, now);
        let r = Arc::new(r);
        *cache = Some((tokio::time::Instant::now(), r.clone()));
        Ok(r)
    }

    /// Adds what only the running node knows.
    fn fill_live(&self, r: &mut StatusReport, now: SystemTime) {
        let attached = self.attached.get();
        r.state = match attached {
            Some(_) => NodeState::Running,
            None => NodeState::Starting,
        };
        r.started_at = Some(report::unix_secs(self.started_at));
        r.uptime_secs = Some(
            now.duration_since(self.started_at)
                .map_or(0, |d| d.as_secs()),
        );
        r.tor = self.tor.as_ref().map(|rx| {
            let p = rx.borrow();
            TorReport {
                bootstrap_percent: p.percent,
                bootstrap: p.description.clone(),
                ready: p.ready,
                onion_service: attached
                    .and_then(|a| a.onion.as_ref())
                    .map(|o| o.publish_state().into()),
            }
        });
        if let Some(a) = attached {
            r.address = Some(a.view.address());
        }
    }

    /// The chart points up to `live`.
    pub fn history_doc(&self, live: &StatusReport) -> HistoryDoc {
        let pinger = self.attached.get().and_then(|a| a.view.pinger());
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        HistoryDoc {
            now: live.now,
            points: history.points(&live.sample()),
            pinger,
        }
    }

    /// The scrape, if metrics are on.
    pub fn metrics(&self, live: &StatusReport) -> Option<Result<String, AdminError>> {
        let m = self.metrics.as_ref()?;
        m.update(live, self.refused.load(Ordering::Relaxed));
        Some(m.render().map_err(AdminError::from))
    }

    /// Our conf, once the node is up.
    pub fn remailer_conf(&self) -> Option<String> {
        self.attached.get().map(|a| a.view.remailer_conf())
    }

    fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Samples the counters once an hour (see [`History::due`]) into the
/// store, until `stop` is cancelled.
async fn sample(admin: Arc<Admin>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = admin.clock.now();
        let due = {
            let h = admin.history.lock().unwrap_or_else(|e| e.into_inner());
            h.due(report::unix_secs(now))
        };
        if !due {
            continue;
        }
        let a = admin.clone();
        let done = tokio::task::spawn_blocking(move || {
            let sample = history::Sample {
                at: report::unix_secs(now),
                pool: u64::try_from(a.store.pool_count()?).unwrap_or(u64::MAX),
                counters: a.store.counters()?,
            };
            let mut h = a.history.lock().unwrap_or_else(|e| e.into_inner());
            match h.record(sample) {
                true => h.save(&a.store),
                false => Ok(()),
            }
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("saving the counter history: {e}"),
            Err(_) => warn!("saving the counter history: task failed"),
        }
    }
}

#[cfg(test)]
mod tests;
