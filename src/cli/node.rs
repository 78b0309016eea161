//! `mimix init`, `mimix run` and `mimix address` (`mimix status` and
//! `mimix conf` are in [`super::status`], `mimix send` in [`super::send`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use mimix::clock::{Clock, SystemClock};
use mimix::config::{Config, default_data_dir};
use mimix::directory::is_remailer_name;
use mimix::keystore::{Keystore, SystemKeyGenerator};
use mimix::node::{ADDRESS_FILE, Node, PLACEHOLDER_NAME};
use mimix::store::Store;
use mimix::transport::TransportKind;
use mimix_settings::fs::private_dir;

/// The config file `init` writes and `run` reads by default.
pub const CONFIG_FILE: &str = "mimix.toml";

/// Arguments of `mimix init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The name this remailer publishes (`Name:` in its remailer-conf):
    /// 1 to 32 ASCII letters, digits, '-', '_' or '.'.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Make the node an exit: it delivers mail by SMTP (review [exit]
    /// in the written config before the first run).
    #[arg(long)]
    exit: bool,
    /// The data directory (default: ~/.local/share/mimix).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where to write the config (default: <DIR>/mimix.toml).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Arguments naming the node's configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The config file (default: <data dir>/mimix.toml if it exists, else
    /// the built-in defaults).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory whose mimix.toml to read (default:
    /// ~/.local/share/mimix).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    data_dir: Option<PathBuf>,
}

/// `arg` made absolute (a relative path is taken from the working
/// directory, once), else the default data directory.
fn data_dir(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    match arg {
        Some(d) => std::path::absolute(d).with_context(|| format!("resolving {}", d.display())),
        None => default_data_dir().context("no data directory: set HOME or pass --data-dir"),
    }
}

/// Loads the configuration `mimix run` and `status` use.
pub fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    if let Some(path) = &args.config {
        return Ok(Config::load(path)?);
    }
    let dir = data_dir(args.data_dir.as_deref())?;
    let path = dir.join(CONFIG_FILE);
    if path.exists() {
        Ok(Config::load(&path)?)
    } else if args.data_dir.is_some() {
        bail!("no {} (run `mimix init` first)", path.display())
    } else {
        Ok(Config::default_for(&dir))
    }
}

/// `mimix init`: a commented config, the data directory and a first key.
pub fn init(a: InitArgs) -> anyhow::Result<()> {
    super::warn_if_root();
    if !is_remailer_name(&a.name) {
        bail!(
            "--name {:?}: 1 to 32 ASCII letters, digits, '-', '_' or '.'",
            a.name
        );
    }
    if a.name.eq_ignore_ascii_case(PLACEHOLDER_NAME) {
        bail!(
            "--name {:?} is the placeholder every default node has: choose another",
            a.name
        );
    }
    let dir = data_dir(a.data_dir.as_deref())?;
    let path = match &a.config {
        Some(p) => std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?,
        None => dir.join(CONFIG_FILE),
    };
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    private_dir(&dir)?;
    let text = Config::init_file(&dir, &a.name, a.exit)?;
    write_new_private(&path, &text)?;
    let config = Config::load(&path)?;
    let store = Store::open(&config.store_dir())?;
    let mut keys = Keystore::open(&config.keys_dir(), store, config.keys)?;
    let made = keys.rotate(SystemClock.epoch_day(), &mut SystemKeyGenerator)?;
    println!("wrote {}", path.display());
    for id in made.created {
        println!("new key {id}");
    }
    if config.transport.kind == TransportKind::Tor {
        let onion = mimix_tor::identity::ensure_identity(&config.tor)?;
        println!("onion address http://{onion}");
    }
    let role = if a.exit {
        "an exit: review [exit] (policy.from, smtp) before the first run"
    } else {
        "a middle node"
    };
    println!(
        "remailer {:?}, {role}; start it with: mimix run --config {}",
        a.name,
        path.display()
    );
    Ok(())
}

/// Writes `text` to a new file at `path`, mode 0600 (never replacing one).
fn write_new_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Sets up logging: `RUST_LOG` wins over the config's filter.
pub fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    // The storage engine's own info lines are noise to an operator.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("fjall=warn,lsm_tree=warn,{filter}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `mimix run`: runs the node until SIGINT or SIGTERM.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_logging(&config.node.log);
    if super::is_root() {
        tracing::warn!(
            "running as root: the node's files will be owned by root; run it as its own user \
             (the Debian package's service runs as _mimix)"
        );
    }
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

/// Returns on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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

/// `mimix address`: the node's published address: the configured one, the
/// direct transport's listening address, else the onion address its
/// identity key gives (known before the first start, from `mimix init`).
pub fn address(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    if let Some(a) = &config.node.address {
        println!("{a}");
        return Ok(());
    }
    if config.transport.kind == TransportKind::Direct {
        println!("http://{}", config.transport.listen);
        eprintln!("mimix: the direct transport: plain HTTP, not anonymous (tests only)");
        return Ok(());
    }
    match mimix_tor::identity::onion_address(&config.tor)? {
        Some(onion) => {
            println!("http://{onion}");
            Ok(())
        }
        None => {
            let path = config.data_dir().join(ADDRESS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no onion identity key in {} and no {} (`mimix init` makes the key)",
                    mimix_tor::identity::identity_dir(&config.tor).display(),
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(())
        }
    }
}
