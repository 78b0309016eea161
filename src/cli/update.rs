//! `mimix remailers update`: fill the sender's state directory over Tor.
//!
//! Starting from seed remailers, every conf is fetched from the address it
//! claims (the keyring's rules: a conf naming another address is refused),
//! remailers listed in accepted confs are fetched too (bounded), and the
//! statistics table is taken from the first seed that publishes one. The
//! result is written as the directory snapshot senders read.

use anyhow::{Context, bail};
use clap::Args;
use mimix::clock::{Clock, SystemClock};
use mimix::directory::DirectoryConfig;
use mimix::directory::keyring::Keyring;
use mimix::directory::snapshot::{Remailer, Snapshot};
use mimix::directory::stats::{MAX_TEXT_LEN, parse_text};
use mimix::transport::{ClientLimits, Dialer, STATS_PATH, fetch_conf, fetch_page};

use super::send::NetworkArgs;

/// Fetches in flight at once.
const CONCURRENCY: usize = 8;

/// Arguments of `mimix remailers update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A remailer to start from (its onion URL); repeat for several.
    /// Default: the node config's `[directory]` seeds and remailers.
    #[arg(long = "seed", value_name = "URL")]
    seeds: Vec<String>,
    /// Most remailers to fetch.
    #[arg(long, default_value_t = 200)]
    max: usize,
}

/// Runs `mimix remailers update`.
pub fn run(u: UpdateArgs, network: &NetworkArgs) -> anyhow::Result<()> {
    let mut seeds = u.seeds.clone();
    if seeds.is_empty()
        && let Some(c) = network.node_config()?
    {
        seeds.extend(c.directory.addresses().map(str::to_owned));
    }
    if seeds.is_empty() {
        bail!("no seed remailer: pass --seed URL (an onion URL of a remailer)");
    }
    let state = network.state_dir()?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let tmp = tempfile::Builder::new()
        .prefix("mimix-update-")
        .tempdir()
        .context("creating a temporary directory")?;
    let result = rt.block_on(async {
        let dialer = network.dialer(tmp.path()).await?;
        crawl(&*dialer, &seeds, u.max).await
    });
    drop(rt);
    drop(tmp);
    let (snapshot, refused, stats_from) = result?;
    mimix_settings::fs::private_dir(&state)?;
    snapshot.write(&state)?;
    println!(
        "{} remailers written to {} ({refused} refused or unreachable); statistics {}",
        snapshot.remailers.len(),
        state.display(),
        match stats_from {
            Some(s) => format!("from {s}"),
            None => "from no seed".to_owned(),
        }
    );
    Ok(())
}

/// Fetches confs breadth first from `seeds`; returns the snapshot, how many
/// remailers were refused or unreachable, and where the stats came from.
async fn crawl(
    dialer: &dyn Dialer,
    seeds: &[String],
    max: usize,
) -> anyhow::Result<(Snapshot, usize, Option<String>)> {
    let now = mimix::directory::pinger::unix(SystemClock.now());
    let config = DirectoryConfig {
        max_remailers: max.max(seeds.len()),
        max_candidates: max.max(seeds.len()),
        max_new_per_fetch: max,
        ..DirectoryConfig::default()
    };
    let mut ring = Keyring::new(&config, None, Some(dialer.policy()));
    for s in seeds {
        ring.add_seed(s, None, now);
    }
    let limits = ClientLimits::default();
    let mut refused = 0;
    loop {
        let due: Vec<String> = ring.due(now).iter().map(|e| e.address.clone()).collect();
        if due.is_empty() {
            break;
        }
        for batch in due.chunks(CONCURRENCY) {
            let fetched = fetch_all(dialer, batch, &limits).await;
            for (address, text) in fetched {
                let ok =
                    text.is_some_and(|t| ring.accept(&address, &t, now, u64::MAX, false).is_ok());
                if !ok {
                    refused += 1;
                    ring.failed(&address, u64::MAX);
                }
            }
        }
    }
    let mut stats = None;
    for s in seeds {
        if let Ok(text) = fetch_page(dialer, s, STATS_PATH, MAX_TEXT_LEN, &limits).await
            && parse_text(&text).is_ok()
        {
            stats = Some((text, s.clone()));
            break;
        }
    }
    let remailers = ring
        .usable(now)
        .into_iter()
        .filter_map(|(e, _)| {
            Some(Remailer {
                address: e.address.clone(),
                conf: e.conf.clone()?,
            })
        })
        .collect();
    let (text, from) = stats.unzip();
    Ok((Snapshot::new(remailers, text, now), refused, from))
}

/// Fetches the confs of `batch` concurrently.
async fn fetch_all(
    dialer: &dyn Dialer,
    batch: &[String],
    limits: &ClientLimits,
) -> Vec<(String, Option<String>)> {
    let fetches = batch.iter().map(|a| async move {
        let text = fetch_conf(dialer, a, limits).await.ok();
        (a.clone(), text)
    });
    futures::future::join_all(fetches).await
}
