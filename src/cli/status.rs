//! `mimix status` and `mimix conf`: read live from the running node's
//! admin listener; when it is not running, from its store (and keys); when
//! it runs without a reachable listener, from the status file it writes
//! every minute. Each says which it did.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use mimix::admin::client::{self, ClientError};
use mimix::admin::{History, NodeState, Source, StatusReport};
use mimix::clock::{Clock, SystemClock};
use mimix::config::Config;
use mimix::keystore::Keystore;
use mimix::node::{ADDRESS_FILE, STATUS_FILE};
use mimix::store::Store;
use mimix::transport::TransportKind;

use super::node::{ConfigArgs, load_config};

/// Arguments of `mimix status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the report as JSON (for programs) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `mimix status`: a table, or the JSON report with `--json`.
pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let config = load_config(&a.config)?;
    let (report, how) = read_status(&config)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report, &how));
    }
    Ok(())
}

/// `mimix conf`: our remailer-conf, from the running node or rendered from
/// the store and keys. Says on standard error which it did.
pub fn conf(args: ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let live = match config.admin.endpoint(config.data_dir()) {
        Some(ep) => match fetch(&ep, "/remailer-conf.txt") {
            Ok(text) => {
                print!("{text}");
                eprintln!("mimix: from the running node ({ep})");
                return Ok(());
            }
            Err(ClientError::Status { status, .. }) if status.as_u16() == 503 => {
                bail!("the node is still starting: its conf is not ready yet (see `mimix status`)")
            }
            Err(e) => e.to_string(),
        },
        None => "the admin listener is off".to_owned(),
    };
    let store = match Store::open(&config.store_dir()) {
        Ok(s) => s,
        Err(e) if e.is_locked() => bail!(
            "the node is running but its conf cannot be read: {live}; it serves it at \
             <address>/remailer-conf.txt"
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("cannot open the store")),
    };
    let address = published_address(&config).with_context(|| {
        format!(
            "no published address yet: run the node once (it writes {})",
            config.data_dir().join(ADDRESS_FILE).display()
        )
    })?;
    let now = mimix::directory::pinger::unix(SystemClock.now());
    let known = mimix::directory::stored_alive(&store, &config.directory, &address, now)?;
    let keys = Keystore::open(&config.keys_dir(), store, config.keys)?;
    let text = keys.remailer_conf(
        &config.node.name,
        &address,
        config.node.smtp_exit,
        config
            .exit
            .published_contact(config.node.smtp_exit)
            .as_deref(),
        &known,
        SystemClock.epoch_day(),
    )?;
    print!("{text}");
    eprintln!("mimix: the node is not running; rendered from its store and keys");
    Ok(())
}

/// One `GET` from the admin listener.
fn fetch(ep: &mimix::admin::Endpoint, path: &str) -> Result<String, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ClientError::Connect {
            what: ep.to_string(),
            source,
        })?;
    rt.block_on(client::get(ep, path))
}

/// The node's report, and how it was read.
fn read_status(config: &Config) -> anyhow::Result<(StatusReport, String)> {
    let not_live = match config.admin.endpoint(config.data_dir()) {
        Some(ep) => match fetch(&ep, "/status.json") {
            Ok(body) => {
                let report = serde_json::from_str(&body).context("reading the node's report")?;
                return Ok((report, format!("live from the running node ({ep})")));
            }
            Err(e) if e.not_listening() => "its admin listener is not reachable".to_owned(),
            Err(e) => e.to_string(),
        },
        None => "its admin listener is off".to_owned(),
    };
    match Store::open(&config.store_dir()) {
        Ok(store) => {
            let history = History::load(&store).unwrap_or_default();
            let now = SystemClock.now();
            let mut r = StatusReport::from_store(&store, config, now, &history, Source::Store)?;
            r.address = published_address(config);
            Ok((r, "the node is not running: read from its store".to_owned()))
        }
        Err(e) if e.is_locked() => {
            let path = config.data_dir().join(STATUS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the store is locked by a running node and {not_live}; reading its status \
                     file {}",
                    path.display()
                )
            })?;
            let r: StatusReport = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            let age = secs_since(r.now);
            Ok((
                r,
                format!(
                    "the node runs but {not_live}: read its status file, written {} ago",
                    age_text(age)
                ),
            ))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot open the store")),
    }
}

/// Our published base URL as the node would use it, if known.
fn published_address(config: &Config) -> Option<String> {
    if let Some(a) = &config.node.address {
        return Some(a.clone());
    }
    match config.transport.kind {
        TransportKind::Direct => Some(format!("http://{}", config.transport.listen)),
        TransportKind::Tor => std::fs::read_to_string(config.data_dir().join(ADDRESS_FILE))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    }
}

fn secs_since(t: u64) -> u64 {
    mimix::admin::report::unix_secs(SystemClock.now()).saturating_sub(t)
}

fn age_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn time_text(secs: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// The human table.
fn table(r: &StatusReport, how: &str) -> String {
    let mut out = String::new();
    let role = if r.exit { "exit" } else { "middle" };
    let state = match r.state {
        NodeState::Starting => "starting",
        NodeState::Running => "running",
        NodeState::Stopped => "not running",
    };
    let _ = writeln!(
        out,
        "mimix {} node {:?} ({role}), {state}",
        r.version, r.name
    );
    let _ = writeln!(out, "  ({how})");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<18}{v}");
    };
    if let (Some(up), Some(since)) = (r.uptime_secs, r.started_at) {
        row(
            "uptime",
            format!("{} (since {})", age_text(up), time_text(since)),
        );
    }
    row("transport", transport_text(r));
    row(
        "address",
        r.address.clone().unwrap_or_else(|| "not known yet".into()),
    );
    for k in &r.keys {
        let mark = if k.advertised { ", advertised" } else { "" };
        row(
            "key",
            format!(
                "{} valid {} to {}{mark}",
                k.key_id, k.valid_from, k.valid_to
            ),
        );
    }
    if r.keys.is_empty() {
        row("key", "none yet".into());
    }
    if let Some(next) = &r.next_key {
        row("next key", next.clone());
    }
    row("pool", format!("{} packets", r.pool));
    row(
        "queues",
        format!(
            "outbound {}, mail {}, partial messages {}",
            r.outbound, r.mail, r.partials
        ),
    );
    match &r.last_24h {
        None => row("last 24 h", "no history yet".into()),
        Some(w) => {
            let _ = writeln!(out, "last 24 hours (since {})", time_text(w.since));
            let mut row = |k: &str, v: String| {
                let _ = writeln!(out, "  {k:<18}{v}");
            };
            row("packets in", w.packets_in.to_string());
            row("packets out", w.packets_out.to_string());
            row(
                "dummies",
                format!("{} made, {} ended here", w.dummies_made, w.dummies_ended),
            );
            let total: u64 = w.rejects.values().sum();
            let reasons: Vec<String> = w.rejects.iter().map(|(k, n)| format!("{k} {n}")).collect();
            match reasons.is_empty() {
                true => row("refused", "0".into()),
                false => row("refused", format!("{total}: {}", reasons.join(", "))),
            }
            if r.exit {
                row(
                    "exit",
                    format!(
                        "{} messages delivered ({} recipients), {} dropped, {} refused",
                        w.mail_delivered, w.recipients_delivered, w.mail_dropped, w.exit_refused
                    ),
                );
            }
        }
    }
    out
}

fn transport_text(r: &StatusReport) -> String {
    match (r.transport, &r.tor) {
        (TransportKind::Direct, _) => "direct (plain loopback HTTP, no Tor: tests only)".into(),
        (TransportKind::Tor, None) => "tor".into(),
        (TransportKind::Tor, Some(t)) => {
            let onion = match t.onion_service {
                Some(s) => format!(
                    "onion service {}",
                    serde_json::json!(s).as_str().unwrap_or("?")
                ),
                None => "onion service not launched yet".into(),
            };
            let tor = if t.ready { "ready" } else { "bootstrapping" };
            // Arti's description starts with the percentage.
            let step = match t.bootstrap.is_empty() {
                true => format!("{}%", t.bootstrap_percent),
                false => t.bootstrap.clone(),
            };
            format!("tor {tor} ({step}), {onion}")
        }
    }
}
