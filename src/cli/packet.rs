//! `mimix packet ...` and `mimix keygen`: offline tools over the codec, for
//! operators debugging a packet and for tests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mimix_packet::conf::{date_to_epoch_day, epoch_day_to_date};
use mimix_packet::crypto::digest::sha256;
use mimix_packet::{
    ExitType, Hop, Outcome, Packet, RemailerConf, SecretKey, TimeWindow, armour, build_dummy,
    build_message, dearmour, peel,
};
use serde_json::json;

use mimix::clock::{Clock, SystemClock};
use mimix::keystore::files::{read_secret_file, write_secret_file};

/// How far into the past `packet peel` accepts timestamps by default.
const PEEL_MAX_AGE_DAYS: u64 = 14;

/// `mimix packet` subcommands.
#[derive(Debug, Subcommand)]
pub enum PacketCmd {
    /// Peel one layer off an armoured packet and print what it holds as JSON.
    Peel(PeelArgs),
    /// Build the packet(s) of a message (or a dummy) for a chain.
    Build(BuildArgs),
}

/// Arguments of `mimix packet peel`.
#[derive(Debug, Args)]
pub struct PeelArgs {
    /// A secret key (PEM); repeat for several.
    #[arg(long = "key", required = true, value_name = "FILE")]
    keys: Vec<PathBuf>,
    /// Evaluate the timestamp window as of this day (YYYY-MM-DD), not today.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
    /// How many days into the past timestamps are accepted.
    #[arg(long, default_value_t = PEEL_MAX_AGE_DAYS)]
    max_age_days: u64,
    /// Write the armoured next-hop packet here.
    #[arg(long, value_name = "FILE")]
    next: Option<PathBuf>,
    /// Write the exit payload here.
    #[arg(long, value_name = "FILE")]
    payload: Option<PathBuf>,
    /// The armoured packet.
    #[arg(value_name = "FILE")]
    packet: PathBuf,
}

/// What to build: the remailers' confs, the chain, and a message or a
/// dummy (shared by `mimix packet build` and `mimix send`).
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// A remailer-conf.txt file; repeat for each remailer.
    #[arg(long = "conf", required = true, value_name = "FILE")]
    pub confs: Vec<PathBuf>,
    /// Remailer names, entry first, exit last, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAME,...")]
    pub chain: Vec<String>,
    /// The RFC 2822 message.
    #[arg(
        long,
        conflicts_with = "dummy",
        required_unless_present = "dummy",
        value_name = "FILE"
    )]
    pub message: Option<PathBuf>,
    /// A dummy packet instead of a message.
    #[arg(long)]
    pub dummy: bool,
}

impl MessageArgs {
    /// Builds the packets as of `today`.
    pub fn build(&self, today: u64) -> anyhow::Result<Vec<Packet>> {
        let message = if self.dummy {
            None
        } else {
            self.message.as_deref()
        };
        if message.is_none() && !self.dummy {
            bail!("--message or --dummy is required");
        }
        build_packets(&self.confs, &self.chain, message, today)
    }
}

/// Arguments of `mimix packet build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    what: MessageArgs,
    /// Build as of this day (YYYY-MM-DD), not today.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
    /// Directory for packet-1.txt, packet-2.txt, ...
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Arguments of `mimix keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 4096, value_name = "BITS")]
    bits: usize,
    /// Where to write the secret key (PKCS#1 PEM, mode 0600). Refuses to overwrite.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub(crate) fn day(at: Option<&str>) -> anyhow::Result<u64> {
    match at {
        Some(s) => date_to_epoch_day(s).with_context(|| format!("--at {s}: expected YYYY-MM-DD")),
        None => Ok(SystemClock.epoch_day()),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs a `mimix packet` subcommand.
pub fn run(cmd: PacketCmd) -> anyhow::Result<()> {
    match cmd {
        PacketCmd::Peel(a) => run_peel(a),
        PacketCmd::Build(a) => run_build(a),
    }
}

fn run_peel(a: PeelArgs) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for path in &a.keys {
        let pem = read_secret_file(path)?;
        keys.push(
            SecretKey::from_pem(&pem).with_context(|| format!("loading key {}", path.display()))?,
        );
    }
    let window = TimeWindow::new(day(a.at.as_deref())?, a.max_age_days);
    let packet = dearmour(&read_text(&a.packet)?).context("packet rejected")?;
    let peeled = peel(&packet, &keys, &window, &mut rand::rng()).context("packet rejected")?;
    let mut out = json!({
        "keyid": peeled.key_id.to_hex(),
        "packet_id": hex::encode(peeled.packet_id),
        "timestamp": epoch_day_to_date(u64::from(peeled.timestamp)),
    });
    match peeled.outcome {
        Outcome::Forward { next_hop, packet } => {
            out["type"] = json!("intermediate");
            out["next_hop"] = json!(next_hop);
            if let Some(p) = &a.next {
                write_text(p, &armour(&packet))?;
            }
        }
        Outcome::Exit(chunk) => {
            out["type"] = json!("exit");
            out["msg_id"] = json!(hex::encode(chunk.msg_id));
            out["chunk"] = json!(chunk.chunk);
            out["chunks"] = json!(chunk.chunks);
            out["exit_type"] = json!(chunk.exit_type.name());
            out["payload_len"] = json!(chunk.payload.len());
            out["payload_sha256"] = json!(hex::encode(sha256(&[&chunk.payload])));
            if let Some(p) = &a.payload {
                fs::write(p, &chunk.payload).with_context(|| format!("writing {}", p.display()))?;
            }
        }
    }
    println!("{out}");
    Ok(())
}

/// True when the header block of `msg` names at least one recipient.
fn has_recipient(msg: &[u8]) -> bool {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\n\n").next().unwrap_or("");
    head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("to:") || l.starts_with("cc:") || l.starts_with("bcc:")
    })
}

/// Reads remailer-confs and builds the packets of a message (or a dummy)
/// for the named chain, as of `today`.
pub fn build_packets(
    confs: &[PathBuf],
    names: &[String],
    message: Option<&Path>,
    today: u64,
) -> anyhow::Result<Vec<Packet>> {
    let mut by_name: HashMap<String, RemailerConf> = HashMap::new();
    for path in confs {
        let conf = RemailerConf::parse_valid(&read_text(path)?, today)
            .with_context(|| format!("remailer-conf {}", path.display()))?;
        by_name.insert(conf.name.clone(), conf);
    }
    let mut chain = Vec::new();
    for name in names {
        let conf = by_name
            .get(name)
            .with_context(|| format!("no remailer-conf given for {name:?}"))?;
        chain.push(Hop {
            key: conf.key.clone(),
            address: conf.address.clone(),
        });
    }
    let rng = &mut rand::rng();
    let Some(path) = message else {
        return Ok(vec![build_dummy(rng, &chain, today)?]);
    };
    let msg = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !has_recipient(&msg) {
        bail!(
            "{}: the message has no To, Cc or Bcc header",
            path.display()
        );
    }
    if let Some(exit) = names
        .last()
        .and_then(|n| by_name.get(n))
        .filter(|c| !c.smtp)
    {
        bail!(
            "{}: the exit remailer does not deliver mail (SMTP: No)",
            exit.name
        );
    }
    Ok(build_message(rng, &chain, ExitType::Smtp, &msg, today)?)
}

fn run_build(a: BuildArgs) -> anyhow::Result<()> {
    let packets = a.what.build(day(a.at.as_deref())?)?;
    mimix_settings::fs::create_private_dir(&a.out)
        .with_context(|| format!("creating {}", a.out.display()))?;
    let mut files = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let path = a.out.join(format!("packet-{}.txt", i + 1));
        write_text(&path, &armour(p))?;
        files.push(path.display().to_string());
    }
    println!(
        "{}",
        json!({
            "packets": packets.len(),
            "chain": a.what.chain,
            "exit_type": if a.what.dummy { "dummy" } else { "smtp" },
            "files": files,
        })
    );
    Ok(())
}

/// Runs `mimix keygen`.
pub fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let (key, pem) = SecretKey::generate(a.bits)?;
    write_secret_file(&a.out, pem.as_bytes())?;
    println!("{}", key.key_id());
    Ok(())
}
