//! A small remailer network on this machine, shared by `mimix demo` and
//! `mimix testnet`: node configs, starting nodes on loopback or on a
//! private Tor network, an SMTP sink, and sending a message through.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mimix::clock::{Clock, SystemClock};
use mimix::config::Config;
use mimix::directory::KnownRemailer;
use mimix::node::Node;
use mimix::transport::{ClientLimits, Dialer, TransportKind, post_packet};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};
use mimix_tor::TorConfig;
use mimix_tor::testnet::{TestNetConfig, TestNetwork};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

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

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

/// Points `config` at the Tor network `network` (the Tor transport, onion
/// peers only), keeping its own directories.
pub(crate) fn use_network(config: &mut Config, network: &TorConfig) {
    config.transport.kind = TransportKind::Tor;
    let (state, cache) = (config.tor.state_dir.clone(), config.tor.cache_dir.clone());
    config.tor = network.clone().with_dirs(state, cache);
}

/// Starts the private Tor network with the given programs, printing how
/// long it took.
pub(crate) async fn start_network(programs: (PathBuf, PathBuf)) -> anyhow::Result<TestNetwork> {
    println!("starting a private Tor network on 127.0.0.1 (1 authority, 4 relays)...");
    let started = Instant::now();
    let config = TestNetConfig {
        tor: programs.0,
        tor_gencert: programs.1,
        ..TestNetConfig::default()
    };
    let net = TestNetwork::start(&config)
        .await
        .context("starting the Tor test network")?;
    println!("Tor test network ready after {:.1?}", started.elapsed());
    Ok(net)
}

/// Starts `n` nodes under `root` on `network`, each knowing all the others.
///
/// An onion address is known only once its node has run, so the nodes are
/// started once with an empty directory to create their onion keys, then
/// stopped and started again with the full directory (keeping their
/// addresses).
pub(crate) async fn start_nodes(
    root: &Path,
    n: usize,
    network: &TorConfig,
    smtp_port: u16,
) -> anyhow::Result<Vec<Node>> {
    let config = |i: usize, known: &[KnownRemailer]| -> anyhow::Result<Config> {
        let mut c = node_config(root, i, smtp_port);
        c.node.smtp_exit = i + 1 == n;
        c.transport.connect_timeout = Duration::from_secs(30);
        use_network(&mut c, network);
        c.directory.remailers = known.to_vec();
        c.validate()?;
        Ok(c)
    };
    let started = Instant::now();
    let mut known = Vec::new();
    let mut first = Vec::new();
    for i in 0..n {
        let node = Node::start(config(i, &[])?, Arc::new(SystemClock)).await?;
        known.push(KnownRemailer {
            name: format!("node{}", i + 1),
            address: node.address().to_owned(),
            conf: None,
        });
        first.push(node);
    }
    stop_nodes(first).await;
    let mut nodes = Vec::new();
    for (i, k) in known.iter().enumerate() {
        let node = Node::start(config(i, &known)?, Arc::new(SystemClock)).await?;
        if node.address() != k.address {
            bail!("{} changed its onion address across a restart", k.name);
        }
        nodes.push(node);
    }
    println!(
        "{n} nodes bootstrapped and launched their onion services in {:.1?}",
        started.elapsed()
    );
    Ok(nodes)
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
