//! `mimix send --queue` and `mimix sender`: the outbox and the sender's
//! cover traffic ([`mimix::sender::cover`]).
//!
//! Both live in the sender's state directory (`--state`, as for `mimix
//! send`): the outbox in `outbox/`, the settings in `sender.toml` (every
//! key optional; see [`Settings`]). The sender is a command of its own
//! rather than a table of the node: it is the user's side, which needs no
//! remailer (like `mimix send`, it reads a node's directory snapshot when
//! there is one, else its own), and it keeps the node's timing and the
//! sender's apart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use mimix::clock::{Clock, SystemClock};
use mimix::directory::chain::{self, ChainSpec, Exit, Filters};
use mimix::sender::cover::{self, Cover, Directory, Post, Settings};
use mimix::sender::outbox::{Meta, Outbox};
use mimix::sender::{MAX_COPIES, Planned, Remailers, check_message};
use mimix::transport::{ClientLimits, Dialer};
use rand::Rng;
use serde_json::json;

use super::send::{NetworkArgs, load_remailers, post_with_retries};

/// The sender's settings file in its state directory.
pub const SETTINGS_FILE: &str = "sender.toml";

/// The outbox directory in the sender's state directory.
pub const OUTBOX_DIR: &str = "outbox";

/// Arguments of `mimix sender`.
#[derive(Debug, Args)]
pub struct SenderArgs {
    /// A remailer-conf to use instead of the directory; repeat for each
    /// (read again at every send).
    #[arg(long = "conf", value_name = "FILE")]
    confs: Vec<PathBuf>,
    #[command(flatten)]
    network: NetworkArgs,
}

/// The settings in `state`'s `sender.toml` (the defaults without one).
fn settings(state: &Path) -> anyhow::Result<Settings> {
    let path = state.join(SETTINGS_FILE);
    if !path.exists() {
        return Ok(Settings::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let s: Settings = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    s.validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(s)
}

/// The settings and the outbox of the sender's state directory.
fn open(network: &NetworkArgs) -> anyhow::Result<(Settings, Outbox)> {
    let state = network.state_dir()?;
    let s = settings(&state)?;
    let outbox = Outbox::open(&state.join(OUTBOX_DIR), s.caps())?;
    Ok((s, outbox))
}

/// `mimix send --queue`: checks the message as `mimix send` would (and
/// that its chain can be made from `remailers` now) and puts it in the
/// outbox.
pub fn queue(
    network: &NetworkArgs,
    remailers: &Remailers,
    message: &[u8],
    (chain, copies, gzip): (&str, usize, bool),
    as_json: bool,
) -> anyhow::Result<()> {
    check_message(message, gzip)?;
    if !(1..=MAX_COPIES).contains(&copies) {
        bail!("--copies must be 1 to {MAX_COPIES}");
    }
    let spec: ChainSpec = chain.parse()?;
    let rng = &mut rand::rng();
    let filters = Filters::default();
    chain::select(
        &spec,
        &remailers.candidates,
        &filters,
        Exit::Required,
        1,
        rng,
    )?;
    let (_, outbox) = open(network)?;
    let now = mimix::sender::outbox::secs(SystemClock.now());
    let meta = Meta {
        queued_at: now,
        chain: chain.to_owned(),
        copies,
        gzip,
        attempts: 0,
        not_before: 0,
    };
    let path = outbox.put(message, &meta, rng.next_u64())?;
    let queued = outbox.list()?.len();
    if as_json {
        println!("{}", json!({ "queued": path, "outbox": queued }));
    } else {
        println!(
            "queued {} ({queued} in the outbox); `mimix sender` sends it",
            path.display()
        );
    }
    Ok(())
}

/// Posts to first hops through a dialer (a few quick retries, as `mimix
/// send` does).
struct DialerPost {
    dialer: Box<dyn Dialer>,
    limits: ClientLimits,
}

impl Post for DialerPost {
    async fn post(&self, planned: &Planned) -> Result<(), String> {
        post_with_retries(&*self.dialer, planned, &self.limits)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `mimix sender`: sends from the outbox, or dummies, at random times until
/// SIGINT or SIGTERM.
pub fn run(a: SenderArgs) -> anyhow::Result<()> {
    super::node::init_logging("info");
    let (s, outbox) = open(&a.network)?;
    let (confs, network) = (a.confs.clone(), a.network.clone());
    // Fails early on a missing directory rather than at the first tick.
    load_remailers(&confs, &network, SystemClock.epoch_day())?;
    let directory: Directory =
        Box::new(move |day| load_remailers(&confs, &network, day).map_err(|e| format!("{e:#}")));
    eprintln!(
        "mimix sender: sending from {} at random times, on average every {}; \
         a dummy when nothing is queued (Ctrl-C stops)",
        outbox.dir().display(),
        mimix_settings::duration::format(s.mean_interval)
    );
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let tmp = tempfile::Builder::new()
        .prefix("mimix-sender-")
        .tempdir()
        .context("creating a temporary directory")?;
    let result = rt.block_on(async {
        let dialer = a.network.dialer(tmp.path()).await?;
        let post = DialerPost {
            dialer,
            limits: ClientLimits::default(),
        };
        let clock = Arc::new(SystemClock);
        let (r1, r2) = (cover::os_seeded(), cover::os_seeded());
        let sender = Cover::new(s, outbox, clock, directory, post, r1, r2);
        sender.run(super::node::wait_for_signal()).await;
        anyhow::Ok(())
    });
    drop(rt);
    drop(tmp);
    result
}
