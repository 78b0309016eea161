//! `mimix init`, `mimix run` and `mimix address` (`mimix status` and
//! `mimix conf` are in [`super::status`], `mimix send` in [`super::send`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use mimix::clock::{Clock, SystemClock};
use mimix::config::{Config, default_data_dir};
use mimix::keystore::{Keystore, SystemKeyGenerator};
use mimix::node::{ADDRESS_FILE, Node};
use mimix::store::Store;
use mimix_settings::fs::private_dir;

/// The config file `init` writes and `run` reads by default.
pub const CONFIG_FILE: &str = "mimix.toml";

/// Arguments of `mimix init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The data directory (default: ~/.local/share/mimix).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Arguments naming the node's configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The config file (default: <data dir>/mimix.toml if it exists, else
    /// the built-in defaults).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn data_dir(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    match arg {
        Some(d) => Ok(d.to_owned()),
        None => default_data_dir().context("no data directory: set HOME or pass --data-dir"),
    }
}

/// Loads the configuration `mimix run` and `status` use.
pub fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    if let Some(path) = &args.config {
        return Ok(Config::load(path)?);
    }
    let dir = data_dir(None)?;
    let path = dir.join(CONFIG_FILE);
    if path.exists() {
        Ok(Config::load(&path)?)
    } else {
        Ok(Config::default_for(&dir))
    }
}

/// `mimix init`: a commented config, the data directory and a first key.
pub fn init(a: InitArgs) -> anyhow::Result<()> {
    let dir = data_dir(a.data_dir.as_deref())?;
    private_dir(&dir)?;
    let path = dir.join(CONFIG_FILE);
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let text = Config::init_template(&dir)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let config = Config::load(&path)?;
    let store = Store::open(&config.store_dir())?;
    let mut keys = Keystore::open(&config.keys_dir(), store, config.keys)?;
    let made = keys.rotate(SystemClock.epoch_day(), &mut SystemKeyGenerator)?;
    println!("wrote {}", path.display());
    for id in made.created {
        println!("new key {id}");
    }
    Ok(())
}

/// Sets up logging: `RUST_LOG` wins over the config's filter.
pub fn init_logging(filter: &str) {
    super::logs::init_stderr(filter);
}

/// `mimix run`: runs the node until SIGINT or SIGTERM.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let logging = super::logs::init_run(&config)?;
    // Kept for the whole run: identifying values then show in debug logs.
    let _unsafe_logging = match config.node.safe_logging {
        true => None,
        false => {
            tracing::warn!("safe logging is off: debug logs show addresses and packet details");
            Some(mimix::safelog::disable().context("turning safe logging off")?)
        }
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let reloader = super::logs::on_hangup(logging, move || load_config(&args))?;
        // Signals are handled from the start: SIGTERM while Tor
        // bootstraps stops the start-up cleanly.
        let signalled = tokio_util::sync::CancellationToken::new();
        let token = signalled.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        let node = tokio::select! {
            n = Node::start(config, Arc::new(SystemClock)) => n?,
            _ = signalled.cancelled() => {
                tracing::info!("stopped by a signal before the node had started");
                return Ok(());
            }
        };
        let _ = reloader.set(node.reloader());
        // systemd (Type=notify): the node is up, its onion service published.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let stop = node.stop_token();
        tokio::spawn(async move {
            signalled.cancelled().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            stop.cancel();
        });
        node.wait().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `mimix address`: the node's published address (written at start).
pub fn address(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    if let Some(a) = &config.node.address {
        println!("{a}");
        return Ok(());
    }
    let path = config.data_dir().join(ADDRESS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run the node once to create its onion service)",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(())
}
