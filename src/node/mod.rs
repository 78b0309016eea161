//! The daemon: wires the transport, the codec, the store, the pool and the
//! exit together. One file per job:
//!
//! | file | job |
//! |---|---|
//! | [`start`] | start-up wiring: data directory, store, keys, transport, tasks |
//! | [`intake`] | the HTTP server's collector: peel, check, store |
//! | `duplicate` | byte-identical copies of packets held: 200 before the peel |
//! | `randhop` | mail packets ending at a middle node, re-encrypted to an exit |
//! | [`rounds`] | the pool round every `pool.interval` |
//! | [`outbound`] | the outbound queue: posts to next hops |
//! | [`mail`] | reassembly and the mail queue (exit nodes) |
//! | [`pinger`] | pings through every known remailer |
//! | [`maintenance`] | pruning, key rotation, counters, directory ageing and snapshot |
//! | [`status`] | what the admin listener reads; the status file `mimix status` reads when it is off |
//! | [`lifecycle`] | the start and stop lines |
//! | [`reload`] | what a new configuration changes while the node runs (SIGHUP) |
//!
//! The node's own settings are [`NodeConfig`] (`[node]`),
//! [`ReplayConfig`] (`[replay]`) and [`OutboundConfig`] (`[outbound]`).
//! Every task stops when the node's cancellation token is cancelled.

mod duplicate;
pub mod intake;
mod lifecycle;
mod mail;
mod maintenance;
mod outbound;
mod pinger;
mod randhop;
pub mod reload;
mod replay;
mod rounds;
mod settings;
mod shared;
mod start;
mod status;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mimix_tor::{OnionService, TorTransport};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::keystore::{KeyGenerator, KeystoreError, SystemKeyGenerator};
use crate::store::StoreError;
pub use lifecycle::uptime;
pub use outbound::OutboundConfig;
pub use reload::{Reloaded, Reloader};
pub use replay::ReplayConfig;
pub use settings::{NodeConfig, PLACEHOLDER_NAME};
pub use shared::DummyError;
pub(crate) use shared::{Shared, blocking, every};
pub use status::STATUS_FILE;

/// The file holding our published address (like C tor's `hostname`).
pub const ADDRESS_FILE: &str = "address";

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The keystore failed.
    #[error(transparent)]
    Keys(#[from] KeystoreError),
    /// The directory could not be opened.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// The data directory could not be made, or others can get in.
    #[error(transparent)]
    Dir(#[from] mimix_settings::fs::PrivateDirError),
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
    /// The exit could not be set up.
    #[error("exit: {0}")]
    Exit(String),
    /// The admin listener could not start.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The configured transport is not available in this build.
    #[error("transport: {0}")]
    Transport(String),
    /// The node has no name of its own yet.
    #[error("[node] {0}")]
    Unnamed(mimix_settings::Invalid),
}

/// A running node.
pub struct Node {
    shared: Arc<Shared>,
    listen: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The exit's delivery side, on an exit node (its blocklist reloads).
    exit: Option<Arc<Exit>>,
    /// The start time and counters, for the stop line.
    baseline: lifecycle::Baseline,
    /// The Tor client and our onion service, kept alive while the node runs.
    _tor: Option<(Arc<TorTransport>, Arc<OnionService>)>,
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
        let stop = CancellationToken::new();
        let started = start::start(config, clock, keygen, &stop).await?;
        let baseline = lifecycle::Baseline::now(&started.shared);
        tracing::info!("{}", lifecycle::start_line(&started.shared));
        Ok(Node {
            shared: started.shared,
            listen: started.listen,
            stop,
            tasks: started.tasks,
            exit: started.exit,
            baseline,
            _tor: started.tor,
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

    /// The node's directory: the remailers it knows and its measurements.
    pub fn directory(&self) -> Arc<crate::directory::Directory> {
        self.shared.directory.clone()
    }

    /// A token that stops the node when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the node is stopped, then for its tasks to finish, and
    /// logs the stop line.
    pub async fn wait(self) {
        self.stop.cancelled().await;
        for t in self.tasks {
            let _ = t.await;
        }
        let s = self.shared.clone();
        blocking("writing the status file", move || status::write(&s)).await;
        let s = self.shared.clone();
        let baseline = self.baseline;
        let line = tokio::task::spawn_blocking(move || lifecycle::stop_line(&s, &baseline)).await;
        if let Ok(line) = line {
            tracing::info!("{line}");
        }
    }
}
