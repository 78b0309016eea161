//! `mimix demo`: a small remailer network in one process.
//!
//! Four nodes and an in-process SMTP sink; a message goes through a
//! three-hop chain, with pool intervals of two seconds, and the mail the
//! exit delivers is printed. When the `tor` program is installed the nodes
//! talk over a private Tor network on 127.0.0.1 (see [`super::localnet`]);
//! otherwise over plain loopback HTTP (the insecure direct transport).
//! Nothing leaves the machine either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mimix::clock::SystemClock;
use mimix::directory::KnownRemailer;
use mimix::node::Node;
use mimix::transport::{LoopbackDialer, TorDialer, TransportKind};

use super::localnet::{
    NODES, free_port, node_config, send_and_wait, smtp_sink, start_network, start_nodes, stop_nodes,
};

/// Runs the demo: over a private Tor network if `tor` is installed, else
/// on plain loopback.
pub fn run() -> anyhow::Result<()> {
    super::node::init_logging("error");
    // Tor clients write their state when the runtime shuts down, so the
    // directory must outlive the runtime.
    let dir = tempfile::Builder::new()
        .prefix("mimix-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        match mimix_tor::testnet::find_tor() {
            Some(programs) => tor_demo(programs, dir.path()).await,
            None => {
                println!(
                    "mimix demo: the `tor` program is not installed, so the nodes use plain \
                     loopback HTTP instead of a private Tor network (install the `tor` package \
                     for the Tor version)"
                );
                loopback_demo(dir.path()).await
            }
        }
    });
    drop(rt);
    drop(dir);
    result
}

/// The Tor half of `mimix demo`.
async fn tor_demo(programs: (PathBuf, PathBuf), dir: &Path) -> anyhow::Result<()> {
    let (smtp_port, mut mail) = smtp_sink().await?;
    println!("mimix demo: {NODES} remailers as onion services on a private Tor network");
    let work = async {
        let net = start_network(programs).await?;
        let nodes = start_nodes(dir, NODES, net.network(), smtp_port).await?;
        let client_config = net
            .network()
            .clone()
            .with_dirs(dir.join("client/state"), dir.join("client/cache"));
        let client = mimix_tor::TorTransport::start(&client_config)
            .await
            .context("starting the sender's Tor client")?;
        let dialer = TorDialer::new(Arc::new(client));
        let delivered = send_and_wait(&nodes, &dialer, &mut mail, Duration::from_secs(120)).await;
        stop_nodes(nodes).await;
        drop(dialer);
        drop(net);
        delivered
    };
    let text = tokio::select! {
        r = work => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    println!("--- delivered by the exit ---\n{text}--- end ---");
    Ok(())
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
