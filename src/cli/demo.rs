//! `mimix demo`: a small remailer network in one process.
//!
//! Four nodes on loopback (the insecure direct transport: no Tor) and an
//! in-process SMTP sink; a message goes through a three-hop chain, with
//! pool intervals of two seconds, and the mail the exit delivers is
//! printed. Nothing leaves the machine.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, KnownRemailer, TransportKind};
use crate::node::Node;
use crate::transport::{ClientLimits, LoopbackDialer, post_packet};

const NODES: usize = 4;

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
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    super::node::init_logging("error");
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(demo())
}

async fn demo() -> anyhow::Result<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("mimix-demo-{}", std::process::id())));
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
        let mut c = Config::default_for(&dir.0.join(format!("node{}", i + 1)));
        c.node.name = format!("node{}", i + 1);
        c.node.smtp_exit = i == NODES - 1;
        c.transport.kind = TransportKind::Direct;
        c.transport.listen = ([127, 0, 0, 1], *port).into();
        c.pool.interval = Duration::from_secs(2);
        c.pool.min = 0;
        c.pool.rate = 1.0;
        c.keys.bits = 2048;
        c.exit.smtp.host = "127.0.0.1".into();
        c.exit.smtp.port = smtp_port;
        c.exit.retry.initial = Duration::from_secs(1);
        c.directory.remailers = known.clone();
        c.validate()?;
        nodes.push(Node::start(c, Arc::new(SystemClock)).await?);
    }
    let today = SystemClock.epoch_day();
    let mut hops = Vec::new();
    for i in [0, 1, NODES - 1] {
        let conf = RemailerConf::parse_valid(&nodes[i].remailer_conf(), today)?;
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
    for p in &packets {
        post_packet(
            &LoopbackDialer,
            &hops[0].address,
            &armour(p),
            &ClientLimits::default(),
        )
        .await?;
    }
    println!("sent; waiting for the pools to release it...\n");
    let delivered = tokio::time::timeout(Duration::from_secs(60), mail.recv()).await;
    for n in &nodes {
        n.stop_token().cancel();
    }
    for n in nodes {
        n.wait().await;
    }
    match delivered {
        Ok(Some(text)) => {
            println!("--- delivered by the exit ---\n{text}--- end ---");
            Ok(())
        }
        _ => bail!("no mail was delivered within 60 s"),
    }
}

/// A minimal SMTP server that hands each message's text to the channel.
async fn smtp_sink() -> anyhow::Result<(u16, mpsc::Receiver<String>)> {
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
