//! `mimix demo`: a small remailer network in one process.
//!
//! Four nodes and an in-process SMTP sink; a message goes through a
//! three-hop chain, with pool intervals of two seconds, and the mail the
//! exit delivers is printed. When the `tor` program is installed the nodes
//! talk over a private Tor network on 127.0.0.1 (see
//! [`super::testnet`]); otherwise over plain loopback HTTP (the insecure
//! direct transport). Nothing leaves the machine either way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, KnownRemailer, TransportKind};
use crate::node::Node;
use crate::transport::{ClientLimits, Dialer, LoopbackDialer, post_packet};

/// Nodes in the demo network.
pub(crate) const NODES: usize = 4;

/// The demo's message.
const MESSAGE: &str = "To: alice@example.org\n\
From: bob@sender.example\n\
Subject: Hello through mimix\n\
X-Mailer: identifying-client 1.0\n\
\n\
This message crossed three remailers: each peeled one layer, pooled it\n\
and passed it on. The exit replaced the sender's From and dropped the\n\
identifying headers before delivering it.\n";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A throwaway directory removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh private directory `<tmp>/<prefix>-<pid>`.
    pub(crate) fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        crate::node::private_dir(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo: over a private Tor network if `tor` is installed, else
/// on plain loopback.
pub fn run() -> anyhow::Result<()> {
    super::node::init_logging("error");
    // Tor clients write their state when the runtime shuts down, so the
    // directory must outlive the runtime.
    let dir = TempDir::new("mimix-demo")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        match super::testnet::find_tor() {
            Some(programs) => super::testnet::demo(programs, &dir.0).await,
            None => {
                println!(
                    "mimix demo: the `tor` program is not installed, so the nodes use plain \
                     loopback HTTP instead of a private Tor network (install the `tor` package \
                     for the Tor version)"
                );
                loopback_demo(&dir.0).await
            }
        }
    });
    drop(rt);
    drop(dir);
    result
}

/// The config of demo node `i` (1-based name `node<i>`) under `root`:
/// fast pool rounds and retries, 2048-bit keys, the last node an exit
/// delivering to the sink on `smtp_port`. The transport is left to the
/// caller.
pub(crate) fn node_config(root: &Path, i: usize, smtp_port: u16) -> Config {
    let name = format!("node{}", i + 1);
    let mut c = Config::default_for(&root.join(&name));
    c.node.name = name;
    c.node.smtp_exit = i == NODES - 1;
    c.pool.interval = Duration::from_secs(2);
    c.pool.min = 0;
    c.pool.rate = 1.0;
    c.keys.bits = 2048;
    c.outbound.retry_initial = Duration::from_secs(1);
    c.outbound.retry_max = Duration::from_secs(4);
    c.exit.smtp.host = "127.0.0.1".into();
    c.exit.smtp.port = smtp_port;
    c.exit.retry.initial = Duration::from_secs(1);
    c
}

async fn loopback_demo(dir: &Path) -> anyhow::Result<()> {
    let (smtp_port, mut mail) = smtp_sink().await?;
    println!(
        "mimix demo: {NODES} remailers on loopback (insecure direct transport, no Tor), SMTP sink on port {smtp_port}"
    );
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect::<Result<_, _>>()?;
    let known: Vec<KnownRemailer> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| KnownRemailer {
            name: format!("node{}", i + 1),
            address: format!("http://127.0.0.1:{p}"),
            conf: None,
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut c = node_config(dir, i, smtp_port);
        c.transport.kind = TransportKind::Direct;
        c.transport.listen = ([127, 0, 0, 1], *port).into();
        c.directory.remailers = known.clone();
        c.validate()?;
        nodes.push(Node::start(c, Arc::new(SystemClock)).await?);
    }
    let delivered =
        send_and_wait(&nodes, &LoopbackDialer, &mut mail, Duration::from_secs(60)).await;
    stop_nodes(nodes).await;
    let text = delivered?;
    println!("--- delivered by the exit ---\n{text}--- end ---");
    Ok(())
}

/// Stops the nodes and waits for them.
pub(crate) async fn stop_nodes(nodes: Vec<Node>) {
    for n in &nodes {
        n.stop_token().cancel();
    }
    for n in nodes {
        n.wait().await;
    }
}

/// Sends the demo message through the first two nodes and the last one,
/// posting it with `dialer` (retrying while the entry is not reachable
/// yet), and waits up to `wait` for the exit to deliver it.
pub(crate) async fn send_and_wait(
    nodes: &[Node],
    dialer: &dyn Dialer,
    mail: &mut mpsc::Receiver<String>,
    wait: Duration,
) -> anyhow::Result<String> {
    let today = SystemClock.epoch_day();
    let mut hops = Vec::new();
    for i in [0, 1, nodes.len().saturating_sub(1)] {
        let node = nodes.get(i).context("too few nodes")?;
        let conf = RemailerConf::parse_valid(&node.remailer_conf(), today)?;
        println!(
            "  hop: {} at {} (key {})",
            conf.name,
            conf.address,
            conf.key.key_id()
        );
        hops.push(Hop {
            key: conf.key,
            address: conf.address,
        });
    }
    let packets = build_message(
        &mut rand::rng(),
        &hops,
        ExitType::Smtp,
        MESSAGE.as_bytes(),
        today,
    )?;
    let started = Instant::now();
    let limits = ClientLimits::default();
    for p in &packets {
        loop {
            match post_packet(dialer, &hops[0].address, &armour(p), &limits).await {
                Ok(()) => break,
                // A freshly published onion service may not be reachable yet.
                Err(e) if e.is_retryable() && started.elapsed() < wait => {
                    tracing::debug!("posting to the entry failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(anyhow::Error::new(e).context("posting to the entry")),
            }
        }
    }
    println!(
        "sent after {:.1?}; waiting for the pools to release it...\n",
        started.elapsed()
    );
    match tokio::time::timeout(wait, mail.recv()).await {
        Ok(Some(text)) => {
            println!("delivered {:.1?} after sending", started.elapsed());
            Ok(text)
        }
        _ => bail!("no mail was delivered within {wait:?}"),
    }
}

/// A minimal SMTP server on a free loopback port that hands each message's
/// text to the channel. Returns the port.
pub(crate) async fn smtp_sink() -> anyhow::Result<(u16, mpsc::Receiver<String>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = smtp_session(sock, tx).await;
            });
        }
    });
    Ok((port, rx))
}

async fn smtp_session(
    sock: tokio::net::TcpStream,
    tx: mpsc::Sender<String>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"220 mimix-demo ESMTP\r\n").await?;
    while let Some(line) = lines.next_line().await? {
        let cmd = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match cmd.as_str() {
            "DATA" => {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut text = String::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    text.push_str(l.strip_prefix('.').unwrap_or(&l));
                    text.push('\n');
                }
                let _ = tx.send(text).await;
                w.write_all(b"250 queued\r\n").await?;
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                break;
            }
            _ => w.write_all(b"250 ok\r\n").await?,
        }
    }
    Ok(())
}
