//! The logger of the commands (see [`mimix::logging`]) and what SIGHUP
//! does to `mimix run`: read the configuration again and apply what can
//! change live (the log filter and log file here, the rest through
//! [`Reloader`]).

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use mimix::config::Config;
use mimix::logging::{self, FilterChange, LogSettings, Logging};
use mimix::node::{Reloaded, Reloader};
use mimix_tor::NetworkKind;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Logging to standard error only, with `filter` (`RUST_LOG` wins): the
/// commands other than `mimix run`. A second call does nothing.
pub fn init_stderr(filter: &str) {
    let _ = logging::init(&LogSettings::stderr(filter));
}

/// The logger of `mimix run`: `node.log`, `node.log_file`, `RUST_LOG`.
pub fn init_run(config: &Config) -> anyhow::Result<Logging> {
    let settings = LogSettings {
        file: config.node.log_file.clone(),
        small_network: config.tor.network == NetworkKind::Custom,
        ..LogSettings::stderr(&config.node.log)
    };
    logging::init(&settings).context("setting up the log")
}

/// Where the running node's [`Reloader`] is put once it has started;
/// before that, SIGHUP reloads the log settings only.
pub type NodeSlot = Arc<OnceLock<Reloader>>;

/// Handles SIGHUP from now on (also while Tor bootstraps, which SIGHUP
/// would otherwise end): each one calls `load` and applies the result.
/// Must be called within the runtime.
pub fn on_hangup<F>(logging: Logging, load: F) -> anyhow::Result<NodeSlot>
where
    F: Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
{
    let mut hangups = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    let slot = NodeSlot::default();
    let node = Arc::clone(&slot);
    let load = Arc::new(load);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            hangup(&load, &logging, &node).await;
        }
    });
    Ok(slot)
}

/// One SIGHUP: `load`, then apply the log settings and, once the node has
/// started, the rest.
async fn hangup<F>(load: &Arc<F>, logging: &Logging, node: &NodeSlot)
where
    F: Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
{
    info!("SIGHUP: reading the configuration again");
    let load = Arc::clone(load);
    let new = match tokio::task::spawn_blocking(move || load()).await {
        Ok(Ok(new)) => new,
        Ok(Err(e)) => {
            warn!("configuration not reloaded, the running one stays: {e:#}");
            return;
        }
        Err(e) => {
            warn!("configuration not reloaded: {e}");
            return;
        }
    };
    apply_logging(logging, &new);
    let Some(reloader) = node.get().cloned() else {
        info!("the node is still starting: only the log settings were reloaded");
        return;
    };
    match tokio::task::spawn_blocking(move || reloader.reload(&new)).await {
        Ok(Ok(r)) => report(&r),
        Ok(Err(e)) => warn!("pages and blocklist not reloaded, the old ones stay: {e}"),
        Err(e) => warn!("pages and blocklist not reloaded: {e}"),
    }
}

/// The new log filter and log file.
fn apply_logging(logging: &Logging, new: &Config) {
    match logging.set_filter(&new.node.log) {
        Ok(FilterChange::Set) => {}
        Ok(FilterChange::EnvWins) => info!("RUST_LOG is set: the log filter stays as it says"),
        Err(e) => warn!("log filter not changed: {e}"),
    }
    let path = new.node.log_file.as_deref();
    match logging.reopen(path) {
        Ok(true) => info!("log file opened again"),
        Ok(false) if path.is_some() && !logging.has_file() => {
            warn!("node.log_file was not set at start: a log file is added at the next restart");
        }
        Ok(false) => {}
        Err(e) => warn!("log file not opened again, the old one stays in use: {e}"),
    }
}

/// The node's reload, as log lines.
fn report(r: &Reloaded) {
    let blocklist = match r.blocklist {
        Some(n) => format!(", blocklist read again ({n} entries)"),
        None => String::new(),
    };
    info!("configuration reloaded: help and admin key pages read again{blocklist}");
    if !r.kept.is_empty() {
        warn!(
            "changed settings that take effect at the next restart: {}",
            r.kept.join(", ")
        );
    }
}
