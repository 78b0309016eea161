//! `mimix send` and `mimix remailers`: the sender's side.
//!
//! What the sender knows of the network comes from a directory snapshot:
//! the local node's (`<data_dir>/directory.json`, written by a running
//! node), or the sender's own state directory, which `mimix remailers
//! update` fills over Tor from seed remailers, checking every conf against
//! the address it came from. Conf files given with `--conf` replace both.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mimix::clock::{Clock, SystemClock};
use mimix::config::{Config, default_data_dir};
use mimix::directory::chain::{ChainSpec, Filters};
use mimix::directory::snapshot::{FILE as SNAPSHOT, Snapshot};
use mimix::directory::stats::{StatsDocument, render_json};
use mimix::sender::{self, Compressed, Planned, Remailers};
use mimix::transport::{ClientLimits, Dialer, LoopbackDialer, TorDialer, post_packet};
use mimix_packet::{RemailerConf, armour};
use mimix_tor::TorConfig;
use serde_json::json;

use super::node::CONFIG_FILE;
use super::update;

/// Where the sender finds the network, and how it reaches it.
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// A node config: its `[tor]` network is used, and its data
    /// directory's directory snapshot when there is one.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The sender's state directory (default: $XDG_CACHE_HOME/mimix or
    /// ~/.cache/mimix), where `mimix remailers update` keeps the snapshot.
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Post over plain HTTP to loopback addresses, without Tor. Insecure:
    /// for local test networks only.
    #[arg(long, global = true)]
    pub insecure_direct: bool,
}

/// Arguments of `mimix send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The message (RFC 2822 text, as for sendmail), or `-` for standard
    /// input (the default).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The message file (the same as FILE).
    #[arg(long, conflicts_with = "file", hide = true)]
    message: Option<PathBuf>,
    /// Send a dummy instead of a message.
    #[arg(long, conflicts_with_all = ["file", "message"])]
    dummy: bool,
    /// The chain: remailer names, addresses or `*` (random), entry first.
    #[arg(long, default_value = "*,*,*", value_name = "HOP,...")]
    chain: String,
    /// Send every chunk this many times, each through its own chain (the
    /// exit delivers the message once).
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Write the armoured packets into this directory instead of sending.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A remailer-conf to use instead of the directory; repeat for each.
    #[arg(long = "conf", value_name = "FILE")]
    confs: Vec<PathBuf>,
    /// Print each packet's chain.
    #[arg(long, short)]
    verbose: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Gzip the message before splitting it (the exit inflates it); says
    /// how many packets that saved. For exits running mimix.
    #[arg(long, conflicts_with = "dummy")]
    gzip: bool,
    /// Put the message in the outbox for `mimix sender` to send at its
    /// next cover-traffic tick, instead of sending it now.
    #[arg(long, conflicts_with_all = ["dummy", "out"])]
    queue: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// `mimix remailers` subcommands.
#[derive(Debug, Subcommand)]
pub enum RemailersCmd {
    /// Fetch the remailers' confs and statistics over Tor from seed
    /// remailers into the state directory.
    Update(update::UpdateArgs),
}

/// Arguments of `mimix remailers`.
#[derive(Debug, Args)]
pub struct RemailersArgs {
    #[command(subcommand)]
    cmd: Option<RemailersCmd>,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// The sender's default state directory.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .map(|p| p.join("mimix"))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("mimix")))
}

impl NetworkArgs {
    /// The node config given, or the default node's if it has one.
    pub fn node_config(&self) -> anyhow::Result<Option<Config>> {
        if let Some(path) = &self.config {
            return Ok(Some(Config::load(path)?));
        }
        let Some(dir) = default_data_dir() else {
            return Ok(None);
        };
        let path = dir.join(CONFIG_FILE);
        Ok(if path.exists() {
            Some(Config::load(&path)?)
        } else {
            None
        })
    }

    /// The state directory to write to.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state {
            Some(d) => Ok(d.clone()),
            None => default_state_dir().context("no state directory: set HOME or pass --state"),
        }
    }

    /// The snapshot to read: `--state`, else the node's, else the
    /// default state directory's.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut tried = Vec::new();
        if self.state.is_none()
            && let Some(c) = self.node_config()?
        {
            tried.push(c.data_dir().to_owned());
        }
        tried.push(self.state_dir()?);
        for dir in &tried {
            if dir.join(SNAPSHOT).exists() {
                return Snapshot::read(dir).with_context(|| format!("in {}", dir.display()));
            }
        }
        let places: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no directory snapshot in {}: run a node, or `mimix remailers update --seed URL`",
            places.join(" or ")
        )
    }

    /// A dialer for the network: loopback, or a fresh Arti client whose
    /// state lives in `tmp`.
    pub async fn dialer(&self, tmp: &Path) -> anyhow::Result<Box<dyn Dialer>> {
        if self.insecure_direct {
            return Ok(Box::new(LoopbackDialer));
        }
        let tor = match self.node_config()? {
            Some(c) => c.tor,
            None => TorConfig::default(),
        };
        let tor = tor.with_dirs(tmp.join("state"), tmp.join("cache"));
        let client = mimix_tor::TorTransport::start(&tor)
            .await
            .context("starting the Tor client")?;
        Ok(Box::new(TorDialer::new(Arc::new(client))))
    }
}

/// Reads the message: a file, or standard input.
fn read_message(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    match path.filter(|p| *p != Path::new("-")) {
        Some(p) => {
            out = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        }
        None => {
            let limit = mimix_packet::layout::MAX_MESSAGE_LEN as u64 + 1;
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut out)
                .context("reading the message from standard input")?;
        }
    }
    Ok(out)
}

/// The remailers usable on `today`: from the conf files `confs`, or when
/// none are given from the directory snapshot.
pub fn load_remailers(
    confs: &[PathBuf],
    network: &NetworkArgs,
    today: u64,
) -> anyhow::Result<Remailers> {
    if confs.is_empty() {
        return Ok(Remailers::from_snapshot(&network.snapshot()?, today));
    }
    let mut parsed = Vec::new();
    for path in confs {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        parsed.push(
            RemailerConf::parse_valid(&text, today)
                .with_context(|| format!("remailer-conf {}", path.display()))?,
        );
    }
    Ok(Remailers::from_confs(&parsed))
}

impl SendArgs {
    fn remailers(&self, today: u64) -> anyhow::Result<Remailers> {
        load_remailers(&self.confs, &self.network, today)
    }

    /// The packets, and with `--gzip` what compression came to.
    fn plan(&self, today: u64) -> anyhow::Result<(Vec<Planned>, Option<Compressed>)> {
        let spec: ChainSpec = self.chain.parse()?;
        let remailers = self.remailers(today)?;
        let filters = Filters::default();
        let rng = &mut rand::rng();
        if self.dummy {
            let dummy = sender::plan_dummy(rng, &spec, &remailers, &filters, today)?;
            return Ok((vec![dummy], None));
        }
        let message = read_message(self.message.as_deref().or(self.file.as_deref()))?;
        let (f, copies) = (&filters, self.copies);
        if self.gzip {
            let (planned, c) =
                sender::plan_compressed(rng, &message, &spec, &remailers, f, copies, today)?;
            return Ok((planned, Some(c)));
        }
        let planned = sender::plan(rng, &message, &spec, &remailers, f, copies, today)?;
        Ok((planned, None))
    }
}

/// Tells on standard error what `--gzip` saved.
fn report_gzip(c: &Compressed) {
    let saved = c.packets_saved();
    let what = if saved >= 0 { "saved" } else { "cost" };
    eprintln!(
        "gzip: {} -> {} bytes, {} -> {} packets ({what} {})",
        c.plain_len,
        c.payload.len(),
        c.packets_before(),
        c.packets_after(),
        saved.unsigned_abs()
    );
}

/// What `--gzip` saved, for `--json`.
fn gzip_json(c: Option<&Compressed>) -> serde_json::Value {
    c.map_or(serde_json::Value::Null, |c| {
        json!({
            "bytes_before": c.plain_len,
            "bytes_after": c.payload.len(),
            "packets_before": c.packets_before(),
            "packets_after": c.packets_after(),
            "packets_saved": c.packets_saved(),
        })
    })
}

/// `mimix send`.
pub fn send(a: SendArgs) -> anyhow::Result<()> {
    if a.queue {
        let message = read_message(a.message.as_deref().or(a.file.as_deref()))?;
        let remailers = a.remailers(SystemClock.epoch_day())?;
        let q = (a.chain.as_str(), a.copies, a.gzip);
        return super::sender::queue(&a.network, &remailers, &message, q, a.json);
    }
    let (planned, compressed) = a.plan(SystemClock.epoch_day())?;
    if let Some(c) = &compressed {
        report_gzip(c);
    }
    let gzip = gzip_json(compressed.as_ref());
    if let Some(dir) = &a.out {
        return write_packets(&a, dir, &planned, gzip);
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // Arti writes its state when the runtime stops: the folder outlives it.
    let tmp = tempfile::Builder::new()
        .prefix("mimix-send-")
        .tempdir()
        .context("creating a temporary directory")?;
    let result = rt.block_on(async {
        let dialer = a.network.dialer(tmp.path()).await?;
        // SIGINT or SIGTERM: the temporary folder is removed below.
        let stop = super::node::wait_for_signal();
        tokio::select! {
            r = post_all(&a, &*dialer, &planned, gzip) => r,
            _ = stop => bail!("interrupted"),
        }
    });
    drop(rt);
    drop(tmp);
    result
}

/// Posts every packet to its first hop, reporting each.
async fn post_all(
    a: &SendArgs,
    dialer: &dyn Dialer,
    planned: &[Planned],
    gzip: serde_json::Value,
) -> anyhow::Result<()> {
    let limits = ClientLimits::default();
    let mut results = Vec::new();
    let mut failed = 0;
    for (i, p) in planned.iter().enumerate() {
        let outcome = post_with_retries(dialer, p, &limits).await;
        if !a.json {
            let what = match &outcome {
                Ok(()) => "posted".to_owned(),
                Err(e) => format!("FAILED: {e}"),
            };
            println!(
                "packet {}/{}: {what} to {}",
                i + 1,
                planned.len(),
                p.first_hop()
            );
            if a.verbose {
                println!("  chain: {}", p.chain.join(" -> "));
            }
        }
        failed += usize::from(outcome.is_err());
        let mut r = json!({ "first_hop": p.first_hop(), "ok": outcome.is_ok() });
        if a.verbose {
            r["chain"] = json!(p.chain);
        }
        if let Err(e) = outcome {
            r["error"] = json!(e.to_string());
        }
        results.push(r);
    }
    if a.json {
        let sent = planned.len() - failed;
        let mut out = json!({ "packets": planned.len(), "sent": sent, "results": results });
        if !gzip.is_null() {
            out["gzip"] = gzip;
        }
        println!("{out}");
    }
    if failed > 0 {
        bail!("{failed} of {} packets could not be posted", planned.len());
    }
    Ok(())
}

/// Posts one packet, retrying a few times on errors worth retrying (a
/// fresh onion circuit sometimes fails once).
pub(super) async fn post_with_retries(
    dialer: &dyn Dialer,
    p: &Planned,
    limits: &ClientLimits,
) -> Result<(), mimix::transport::ClientError> {
    let text = armour(&p.packet);
    let mut tries = 0;
    loop {
        match post_packet(dialer, p.first_hop(), &text, limits).await {
            Err(e) if e.is_retryable() && tries < 5 => {
                tries += 1;
                tracing::debug!("post failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

/// `--out`: writes `packet-N.txt` files instead of sending.
fn write_packets(
    a: &SendArgs,
    dir: &Path,
    planned: &[Planned],
    gzip: serde_json::Value,
) -> anyhow::Result<()> {
    mimix_settings::fs::create_private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    for (i, p) in planned.iter().enumerate() {
        let path = dir.join(format!("packet-{}.txt", i + 1));
        std::fs::write(&path, armour(&p.packet))
            .with_context(|| format!("writing {}", path.display()))?;
        if !a.json {
            println!("{}: first hop {}", path.display(), p.first_hop());
        }
    }
    if a.json {
        let firsts: Vec<&str> = planned.iter().map(Planned::first_hop).collect();
        let mut out = json!({ "packets": planned.len(), "first_hops": firsts });
        if !gzip.is_null() {
            out["gzip"] = gzip;
        }
        println!("{out}");
    }
    Ok(())
}

/// Names claimed by more than one usable remailer, with their addresses.
fn clashes(r: &Remailers) -> Vec<(String, Vec<String>)> {
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in &r.candidates {
        by_name
            .entry(c.name.to_ascii_lowercase())
            .or_default()
            .push(c.address.clone());
    }
    by_name.into_iter().filter(|(_, a)| a.len() > 1).collect()
}

/// `mimix remailers`: the remailers and their statistics.
pub fn remailers(a: RemailersArgs) -> anyhow::Result<()> {
    if let Some(RemailersCmd::Update(u)) = a.cmd {
        return update::run(u, &a.network);
    }
    let snapshot = a.network.snapshot()?;
    let today = SystemClock.epoch_day();
    let usable = Remailers::from_snapshot(&snapshot, today);
    let doc = snapshot
        .stats()
        .unwrap_or_else(|| StatsDocument::new(Vec::new(), snapshot.generated_at, 12));
    if a.json {
        let mut out = render_json(&doc);
        out["usable"] = json!(usable.candidates.len());
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", mimix::directory::stats::render_text(&doc));
    println!(
        "\n{} remailers usable for chains (keys valid today), snapshot of {}",
        usable.candidates.len(),
        mimix_packet::conf::epoch_day_to_date(snapshot.generated_at / 86_400)
    );
    for (name, addresses) in clashes(&usable) {
        println!(
            "name clash: {name} is claimed by {}; name one by its address in --chain",
            addresses.join(" and ")
        );
    }
    Ok(())
}
