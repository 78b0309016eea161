//! `mimix init`, `mimix run`, `mimix status` and `mimix send`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use mimix_packet::armour;

use crate::clock::SystemClock;
use crate::config::{Config, default_data_dir};
use crate::node::{Node, STATUS_FILE, private_dir};
use crate::store::Store;
use crate::transport::{ClientLimits, Dialer, LoopbackDialer, TorDialer, post_packet};

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

/// Arguments of `mimix send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    what: super::packet::MessageArgs,
    /// Post over plain HTTP to a loopback address, without Tor. Insecure:
    /// for local test networks only.
    #[arg(long)]
    insecure_direct: bool,
    /// A node config whose `[tor]` table says which Tor network to use
    /// (default: the public network).
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
    let k = &config.keys;
    let policy = crate::keystore::RotationPolicy {
        bits: k.bits as usize,
        lifetime_days: k.lifetime_days(),
        renew_before_days: k.renew_before_days(),
        grace_days: k.grace_days(),
    };
    let mut keys = crate::keystore::Keystore::open(&config.keys_dir(), store, policy)?;
    let today = crate::clock::Clock::epoch_day(&SystemClock);
    let made = keys.rotate(today, &mut crate::keystore::SystemKeyGenerator)?;
    println!("wrote {}", path.display());
    for id in made.created {
        println!("new key {id}");
    }
    Ok(())
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
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let node = Node::start(config, Arc::new(SystemClock)).await?;
        let stop = node.stop_token();
        tokio::spawn(async move {
            wait_for_signal().await;
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

/// `mimix status`: counters and queue sizes.
pub fn status(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    // A running node holds the store; it writes its status file every minute.
    match Store::open(&config.store_dir()) {
        Ok(store) => {
            let doc = serde_json::json!({
                "running": false,
                "pool": store.pool_count()?,
                "outbound": store.outbound_len()?,
                "mail": store.mail_len()?,
                "partials": store.partial_count(),
                "counters": store.counters()?,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Err(_) => {
            let path = config.data_dir().join(STATUS_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("the node is running; reading {}", path.display()))?;
            let mut doc: serde_json::Value = serde_json::from_str(&text)?;
            doc["running"] = serde_json::json!(true);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(())
}

/// `mimix send`: builds the packets and posts them to the chain's entry,
/// over Tor (a fresh, temporary Tor client) unless `--insecure-direct`.
pub fn send(a: SendArgs) -> anyhow::Result<()> {
    let today = crate::clock::Clock::epoch_day(&SystemClock);
    let packets = a.what.build(today)?;
    let entry = entry_address(&a.what.confs, &a.what.chain, today)?;
    let network = match &a.config {
        Some(path) => crate::node::tor_network(&Config::load(path)?.tor),
        None => mimix_tor::TorNetwork::Public,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let limits = ClientLimits::default();
        // Kept until the end: the Tor client writes its state on shutdown.
        let state = tempdir()?;
        let dialer: Box<dyn Dialer> = if a.insecure_direct {
            Box::new(LoopbackDialer)
        } else {
            let tor = mimix_tor::TorTransport::start(
                &state.0.join("state"),
                &state.0.join("cache"),
                &network,
            )
            .await
            .context("starting the Tor client")?;
            Box::new(TorDialer::new(Arc::new(tor)))
        };
        for (i, p) in packets.iter().enumerate() {
            let mut tries = 0;
            loop {
                match post_packet(&*dialer, &entry, &armour(p), &limits).await {
                    Ok(()) => break,
                    // A fresh onion circuit sometimes fails once.
                    Err(e) if e.is_retryable() && tries < 5 => {
                        tries += 1;
                        tracing::debug!("post failed, retrying: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "posting packet {} of {}",
                            i + 1,
                            packets.len()
                        )));
                    }
                }
            }
        }
        println!(
            "{}",
            serde_json::json!({ "packets": packets.len(), "sent": packets.len() })
        );
        drop(dialer);
        drop(state);
        Ok(())
    })
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    let mut name = [0u8; 8];
    rand::RngExt::fill(&mut rand::rng(), &mut name);
    let dir = std::env::temp_dir().join(format!("mimix-send-{}", hex::encode(name)));
    private_dir(&dir)?;
    Ok(TempDir(dir))
}

/// `mimix address`: the node's published address (written at start).
pub fn address(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    if let Some(a) = &config.node.address {
        println!("{a}");
        return Ok(());
    }
    let path = config.data_dir().join(crate::node::ADDRESS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run the node once to create its onion service)",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(())
}

fn entry_address(confs: &[PathBuf], chain: &[String], today: u64) -> anyhow::Result<String> {
    let first = chain.first().context("empty chain")?;
    for path in confs {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let conf = mimix_packet::RemailerConf::parse_valid(&text, today)?;
        if &conf.name == first {
            return Ok(conf.address);
        }
    }
    bail!("no remailer-conf given for {first:?}")
}
