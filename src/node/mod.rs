//! The daemon: wires the transport, the codec, the store, the pool and the
//! exit together.
//!
//! Tasks, each stopped by one cancellation token:
//!
//! * the HTTP server, whose collector is [`intake::Intake`];
//! * the pool: every `pool.interval`, one round of the timed dynamic pool
//!   (with round dummies), releasing packets to the outbound queue or the
//!   exit queue;
//! * [`outbound`]: posts queued packets to their next hops;
//! * [`exit`]: reassembles exit chunks and delivers mail (exit nodes);
//! * maintenance: prunes the replay log and partial messages, rotates keys,
//!   refreshes the directory, writes the status file.

pub mod exit;
pub mod intake;
pub mod outbound;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mimix_packet::{Hop, build_dummy};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::config::{Config, TransportKind};
use crate::directory::Directory;
use crate::keystore::{KeyGenerator, Keystore, KeystoreError, RotationPolicy, SystemKeyGenerator};
use crate::pool::{self, DummyPolicy, DummySource, PoolParams};
use crate::store::{PoolItem, Store, StoreError};
use crate::transport::{ClientLimits, Dialer, LoopbackDialer, Server, ServerLimits, TorDialer};
use mimix_tor::{IncomingStreams, OnionService, TorNetwork, TorTransport};

/// How often maintenance runs.
const MAINTENANCE: Duration = Duration::from_secs(60);
/// How often the directory is refreshed.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(600);
/// How soon a missing remailer-conf is fetched again.
const DIRECTORY_RETRY: Duration = Duration::from_secs(3);
/// The status file `mimix status` reads while the node runs.
pub const STATUS_FILE: &str = "status.json";

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The keystore failed.
    #[error(transparent)]
    Keys(#[from] KeystoreError),
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data directory is accessible by other users.
    #[error("{0} is accessible by other users; run: chmod 700 {0}")]
    DataDirPermissions(PathBuf),
    /// The exit could not be set up.
    #[error("exit: {0}")]
    Exit(String),
    /// The configured transport is not available in this build.
    #[error("transport: {0}")]
    Transport(String),
}

/// State shared by the node's tasks.
pub(crate) struct Shared {
    pub store: Store,
    pub keys: RwLock<Keystore>,
    pub directory: Directory,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    pub address: String,
    pub dialer: Arc<dyn Dialer>,
    pub client_limits: ClientLimits,
    conf_text: RwLock<String>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Our current `remailer-conf.txt`.
    pub fn conf_text(&self) -> String {
        self.conf_text
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refresh_conf(&self) -> Result<(), KeystoreError> {
        let today = self.clock.epoch_day();
        let text = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .remailer_conf(
                &self.config.node.name,
                &self.address,
                self.config.node.smtp_exit,
                &self.directory.addresses(),
                today,
            )?;
        *self.conf_text.write().unwrap_or_else(|e| e.into_inner()) = text;
        Ok(())
    }

    fn dummy_policy(&self) -> DummyPolicy {
        let d = &self.config.dummies;
        if !d.enabled {
            return DummyPolicy::disabled();
        }
        DummyPolicy::new(d.per_inbound_mean, d.per_round_mean)
            .unwrap_or_else(|_| DummyPolicy::disabled())
    }

    fn dummy_source(&self) -> Dummies {
        Dummies {
            hops: self.directory.hops(self.clock.epoch_day()),
            today: self.clock.epoch_day(),
            len: usize::from(self.config.dummies.chain_length),
        }
    }

    /// Adds the dummies drawn for one inbound packet (in the background).
    pub fn inbound_dummies(self: &Arc<Self>) {
        let policy = self.dummy_policy();
        let mut source = self.dummy_source();
        if source.hops.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) =
                pool::add_inbound_dummies(&store, &policy, &mut source, &mut rand::rng())
            {
                warn!("adding dummies: {e}");
            }
        });
    }
}

/// Builds dummy packets through random chains of known remailers.
struct Dummies {
    hops: Vec<Hop>,
    today: u64,
    len: usize,
}

/// A dummy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DummyError {
    /// No remailer with a valid key is known.
    #[error("no known remailers for dummy chains")]
    NoRemailers,
    /// Building the packet failed.
    #[error(transparent)]
    Build(#[from] mimix_packet::BuildError),
}

/// Remailers compare by address for the chain rule.
#[derive(Clone)]
struct ByAddress(Hop);

impl PartialEq for ByAddress {
    fn eq(&self, other: &Self) -> bool {
        self.0.address == other.0.address
    }
}

impl DummySource for Dummies {
    type Error = DummyError;

    fn make_dummy(&mut self) -> Result<PoolItem, DummyError> {
        let rng = &mut rand::rng();
        let all: Vec<ByAddress> = self.hops.iter().cloned().map(ByAddress).collect();
        let chain: Vec<Hop> = pool::dummy_chain(&all, self.len, rng)
            .ok_or(DummyError::NoRemailers)?
            .into_iter()
            .map(|h| h.0)
            .collect();
        let first = chain
            .first()
            .ok_or(DummyError::NoRemailers)?
            .address
            .clone();
        let packet = build_dummy(rng, &chain, self.today)?;
        Ok(PoolItem::Forward {
            next_hop: first,
            packet: packet.as_bytes().to_vec(),
        })
    }
}

/// Where the node's packets come in.
enum Listener {
    /// The direct transport's TCP listener.
    Tcp(tokio::net::TcpListener),
    /// Our onion service.
    Onion {
        tor: Arc<TorTransport>,
        incoming: IncomingStreams,
        service: OnionService,
    },
}

/// The file holding our published address (like C tor's `hostname`).
pub const ADDRESS_FILE: &str = "address";

/// The Arti network settings from the `[tor]` table.
pub fn tor_network(c: &crate::config::TorConfig) -> TorNetwork {
    match c.network {
        crate::config::TorNetworkKind::Public => TorNetwork::Public,
        crate::config::TorNetworkKind::Custom => TorNetwork::Custom {
            authorities: c
                .authorities
                .iter()
                .map(|a| mimix_tor::Authority {
                    v3ident: a.v3ident.clone(),
                    dirports: a.dirports.clone(),
                })
                .collect(),
            fallbacks: c
                .fallbacks
                .iter()
                .map(|f| mimix_tor::FallbackRelay {
                    rsa_identity: f.rsa_identity.clone(),
                    ed_identity: f.ed_identity.clone(),
                    orports: f.orports.clone(),
                })
                .collect(),
            hsdir_interval: c
                .hsdir_interval
                .map(|d| u32::try_from(d.as_secs() / 60).unwrap_or(u32::MAX)),
        },
    }
}

/// Opens the configured transport: the dialer for peers, where packets
/// come in, and our published address.
async fn open_transport(config: &Config) -> Result<(Arc<dyn Dialer>, Listener, String), NodeError> {
    let t = &config.transport;
    match t.kind {
        TransportKind::Direct => {
            warn!(
                "transport is 'direct': plain HTTP without Tor, NOT anonymous (development and tests only)"
            );
            let io = |source| NodeError::Io {
                op: "listening on",
                path: PathBuf::from(t.listen.to_string()),
                source,
            };
            let listener = tokio::net::TcpListener::bind(t.listen).await.map_err(io)?;
            let local = listener.local_addr().map_err(io)?;
            let address = config
                .node
                .address
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            Ok((Arc::new(LoopbackDialer), Listener::Tcp(listener), address))
        }
        TransportKind::Tor => {
            let tc = &config.tor;
            info!("starting the embedded Tor client");
            let (tx, rx) = tokio::sync::watch::channel(mimix_tor::BootstrapProgress::default());
            let progress = tokio::spawn(show_progress(rx));
            let started = TorTransport::start_with_progress(
                &tc.state_dir,
                &tc.cache_dir,
                &tor_network(tc),
                tx,
            )
            .await;
            progress.abort();
            let tor = Arc::new(
                started
                    .map_err(|e| NodeError::Transport(e.to_string()))?
                    .with_dial_timeout(t.connect_timeout),
            );
            let (onion, incoming, service) = tor
                .launch_onion_service(&tc.service_nickname)
                .await
                .map_err(|e| NodeError::Transport(e.to_string()))?;
            let address = config
                .node
                .address
                .clone()
                .unwrap_or_else(|| format!("http://{onion}"));
            let path = config.data_dir().join(ADDRESS_FILE);
            std::fs::write(&path, format!("{address}\n")).map_err(|source| NodeError::Io {
                op: "writing",
                path,
                source,
            })?;
            info!("onion service launched");
            let dialer: Arc<dyn Dialer> = if t.allow_clearnet_hops {
                Arc::new(TorDialer::allowing_clearnet(tor.clone()))
            } else {
                Arc::new(TorDialer::new(tor.clone()))
            };
            Ok((
                dialer,
                Listener::Onion {
                    tor,
                    incoming,
                    service,
                },
                address,
            ))
        }
    }
}

/// Shows bootstrap progress on a terminal (the Tor crate also logs it).
async fn show_progress(mut rx: tokio::sync::watch::Receiver<mimix_tor::BootstrapProgress>) {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return;
    }
    while rx.changed().await.is_ok() {
        let p = rx.borrow().clone();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\rTor bootstrap: {:>3}% {:<60}",
            p.percent, p.description
        );
        if p.ready {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Creates `dir` with mode 0700, or checks an existing one is private.
pub fn private_dir(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |op| {
        move |source| NodeError::Io {
            op,
            path: dir.to_owned(),
            source,
        }
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("creating"))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(io("reading"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(NodeError::DataDirPermissions(dir.to_owned()));
    }
    Ok(())
}

/// A running node.
pub struct Node {
    shared: Arc<Shared>,
    listen: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The Tor client and our onion service, kept alive while the node runs.
    _tor: Option<(Arc<TorTransport>, OnionService)>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node's state and starts its tasks.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Node, NodeError> {
        Self::start_with(config, clock, &mut SystemKeyGenerator).await
    }

    /// As [`Node::start`], with a key generator of the caller's choosing.
    pub async fn start_with(
        config: Config,
        clock: Arc<dyn Clock>,
        keygen: &mut dyn KeyGenerator,
    ) -> Result<Node, NodeError> {
        private_dir(config.data_dir())?;
        let store = Store::open(&config.store_dir())?;
        let k = &config.keys;
        let policy = RotationPolicy {
            bits: k.bits as usize,
            lifetime_days: k.lifetime_days(),
            renew_before_days: k.renew_before_days(),
            grace_days: k.grace_days(),
        };
        let mut keys = Keystore::open(&config.keys_dir(), store.clone(), policy)?;
        keys.rotate(clock.epoch_day(), keygen)?;

        let (dialer, listener, address) = open_transport(&config).await?;
        let today = clock.epoch_day();
        let (directory, errors) = Directory::new(&config.directory.remailers, today);
        for e in errors {
            warn!("{e}");
        }
        let t = &config.transport;
        let client_limits = ClientLimits {
            connect_timeout: t.connect_timeout,
            request_timeout: t.request_timeout,
            max_conf_bytes: usize::try_from(t.max_conf_size).unwrap_or(usize::MAX),
        };
        let server_limits = ServerLimits {
            max_body_bytes: usize::try_from(t.max_body).unwrap_or(usize::MAX),
            max_connections: t.max_connections,
            header_read_timeout: t.header_read_timeout,
            body_read_timeout: t.body_read_timeout,
            ..ServerLimits::default()
        };
        let exit = if config.node.smtp_exit {
            Some(
                exit::ExitWorker::new(&config, clock.clone())
                    .map_err(|e| NodeError::Exit(e.to_string()))?,
            )
        } else {
            None
        };
        let shared = Arc::new(Shared {
            store,
            keys: RwLock::new(keys),
            directory,
            clock,
            config,
            address,
            dialer,
            client_limits,
            conf_text: RwLock::new(String::new()),
        });
        shared.refresh_conf()?;

        let stop = CancellationToken::new();
        let intake = intake::Intake::start(shared.clone());
        let mut tasks = Vec::new();
        let server = Server::new(intake, server_limits, stop.clone());
        let (listen, tor) = match listener {
            Listener::Tcp(l) => {
                let addr = l.local_addr().ok();
                tasks.push(tokio::spawn(async move { server.serve_tcp(l).await }));
                (addr, None)
            }
            Listener::Onion {
                tor,
                mut incoming,
                service,
            } => {
                let token = stop.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let stream = tokio::select! {
                            _ = token.cancelled() => break,
                            s = incoming.accept() => s,
                        };
                        let Some(stream) = stream else { break };
                        let server = server.clone();
                        tokio::spawn(async move {
                            if let Err(e) = server.serve_connection(stream).await {
                                debug!("onion connection: {e}");
                            }
                        });
                    }
                }));
                (None, Some((tor, service)))
            }
        };
        tasks.push(tokio::spawn(pool_loop(shared.clone(), stop.clone())));
        tasks.push(tokio::spawn(outbound::run(shared.clone(), stop.clone())));
        tasks.push(tokio::spawn(maintenance(shared.clone(), stop.clone())));
        tasks.push(tokio::spawn(directory_loop(shared.clone(), stop.clone())));
        if let Some(worker) = exit {
            tasks.push(tokio::spawn(exit::run(
                shared.clone(),
                worker,
                stop.clone(),
            )));
        }
        info!(
            smtp_exit = shared.config.node.smtp_exit,
            "mimix node started"
        );
        Ok(Node {
            shared,
            listen,
            stop,
            tasks,
            _tor: tor,
        })
    }

    /// The TCP address the HTTP server listens on (direct transport only).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Our published base URL.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Our current `remailer-conf.txt`.
    pub fn remailer_conf(&self) -> String {
        self.shared.conf_text()
    }

    /// A token that stops the node when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the node is stopped, then for its tasks to finish.
    pub async fn wait(self) {
        self.stop.cancelled().await;
        for t in self.tasks {
            let _ = t.await;
        }
        write_status(&self.shared);
    }
}

async fn pool_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let p = &shared.config.pool;
    let params = PoolParams {
        interval: p.interval,
        min: p.min,
        rate: p.rate,
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + params.interval,
        params.interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = shared.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut source = s.dummy_source();
            let policy = if source.hops.is_empty() {
                DummyPolicy::disabled()
            } else {
                s.dummy_policy()
            };
            pool::run_round(
                &s.store,
                &params,
                &policy,
                &mut source,
                &mut rand::rng(),
                &*s.clock,
            )
        })
        .await;
        match r {
            Ok(Ok(summary)) => debug!(?summary, "pool round"),
            Ok(Err(e)) => warn!("pool round failed: {e}"),
            Err(_) => warn!("pool round failed: task panicked"),
        }
    }
}

/// Fetches the known remailers' confs: every few seconds while some are
/// missing, then every [`DIRECTORY_REFRESH`].
async fn directory_loop(shared: Arc<Shared>, stop: CancellationToken) {
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

async fn maintenance(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let today = shared.clock.epoch_day();
        shared
            .directory
            .refresh(&*shared.dialer, &shared.client_limits, today)
            .await;
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = s.clock.now();
            if let Err(e) = s.store.prune_replay(now) {
                warn!("pruning the replay log: {e}");
            }
            if let Err(e) = crate::exit::reassembly::prune(&s.store, now) {
                warn!("pruning partial messages: {e}");
            }
            let rotated = s
                .keys
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .rotate(s.clock.epoch_day(), &mut SystemKeyGenerator);
            if let Err(e) = rotated {
                warn!("key rotation: {e}");
            }
            // Also picks up a new day's choice of advertised key.
            if let Err(e) = s.refresh_conf() {
                warn!("refreshing remailer-conf: {e}");
            }
            write_status(&s);
        })
        .await;
    }
}

/// Runs a store operation on the blocking pool. A failure is logged as
/// `what` and gives `None`: the caller tries again on its next tick.
pub(crate) async fn blocking<T, E, F>(what: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            warn!("{what}: {e}");
            None
        }
        Err(_) => {
            warn!("{what}: task failed");
            None
        }
    }
}

/// Writes the counters and queue sizes to `<data_dir>/status.json`.
fn write_status(shared: &Shared) {
    let store = &shared.store;
    let mut doc = serde_json::json!({
        "pool": store.pool_count().unwrap_or(0),
        "outbound": store.outbound_len().unwrap_or(0),
        "mail": store.mail_len().unwrap_or(0),
        "partials": store.partial_count(),
    });
    if let Ok(c) = store.counters() {
        doc["counters"] = serde_json::json!(c);
    }
    let path = shared.config.data_dir().join(STATUS_FILE);
    let tmp = path.with_extension("json.tmp");
    let r = std::fs::write(&tmp, doc.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        warn!("writing {}: {e}", path.display());
    }
}
