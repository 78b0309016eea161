//! `mimix testnet`: a private Tor network on 127.0.0.1 (C tor: one
//! directory authority and four relays) and a few mimix nodes in this
//! process publishing onion services on it, with an SMTP sink that prints
//! what the exit delivers. Everything lives in a temporary directory and
//! is torn down on Ctrl-C. Also the Tor half of `mimix demo`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use mimix_tor::TorNetwork;
use mimix_tor::testnet::{TestNetConfig, TestNetwork};

use super::demo::{NODES, TempDir, node_config, send_and_wait, smtp_sink, stop_nodes};
use crate::clock::SystemClock;
use crate::config::{
    Config, KnownRemailer, TorAuthority, TorFallback, TorNetworkKind, TransportKind,
};
use crate::node::Node;
use crate::transport::TorDialer;

/// Arguments of `mimix testnet`.
#[derive(Debug, Args)]
pub struct TestnetArgs {
    /// How many mimix nodes to run (the last one is an exit).
    #[arg(long, default_value_t = NODES as u64, value_parser = clap::value_parser!(u64).range(3..=16))]
    nodes: u64,
}

/// The `tor` and `tor-gencert` programs, if installed: from `PATH`, else
/// from `/usr/sbin` or `/usr/bin` (Debian's locations).
pub fn find_tor() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    };
    Some((find("tor")?, find("tor-gencert")?))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `[tor]` table of a node config for `network` (TOML text, ending in
/// a newline). Its array tables come last, so append other tables after it.
pub fn tor_toml(network: &TorNetwork) -> String {
    let TorNetwork::Custom {
        authorities,
        fallbacks,
        hsdir_interval,
    } = network
    else {
        return "[tor]\nnetwork = \"public\"\n".to_owned();
    };
    let addrs = |a: &[std::net::SocketAddr]| {
        a.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::from("[tor]\nnetwork = \"custom\"\n");
    if let Some(m) = hsdir_interval {
        let _ = writeln!(s, "hsdir_interval = \"{m}m\"");
    }
    for a in authorities {
        let _ = write!(
            s,
            "\n[[tor.authorities]]\nv3ident = \"{}\"\ndirports = [{}]\n",
            a.v3ident,
            addrs(&a.dirports)
        );
    }
    for f in fallbacks {
        let _ = write!(
            s,
            "\n[[tor.fallbacks]]\nrsa_identity = \"{}\"\ned_identity = \"{}\"\norports = [{}]\n",
            f.rsa_identity,
            f.ed_identity,
            addrs(&f.orports)
        );
    }
    s
}

/// Points `config` at `network` (the Tor transport, onion peers only).
pub fn use_network(config: &mut Config, network: &TorNetwork) {
    config.transport.kind = TransportKind::Tor;
    match network {
        TorNetwork::Public => config.tor.network = TorNetworkKind::Public,
        TorNetwork::Custom {
            authorities,
            fallbacks,
            hsdir_interval,
        } => {
            config.tor.network = TorNetworkKind::Custom;
            config.tor.authorities = authorities
                .iter()
                .map(|a| TorAuthority {
                    v3ident: a.v3ident.clone(),
                    dirports: a.dirports.clone(),
                })
                .collect();
            config.tor.fallbacks = fallbacks
                .iter()
                .map(|f| TorFallback {
                    rsa_identity: f.rsa_identity.clone(),
                    ed_identity: f.ed_identity.clone(),
                    orports: f.orports.clone(),
                })
                .collect();
            config.tor.hsdir_interval =
                hsdir_interval.map(|m| Duration::from_secs(u64::from(m) * 60));
        }
    }
}

/// Starts the private Tor network with the given programs, printing how
/// long it took.
async fn start_network(programs: (PathBuf, PathBuf)) -> anyhow::Result<TestNetwork> {
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
async fn start_nodes(
    root: &Path,
    n: usize,
    network: &TorNetwork,
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

/// The Tor half of `mimix demo`.
pub(crate) async fn demo(programs: (PathBuf, PathBuf), dir: &Path) -> anyhow::Result<()> {
    let (smtp_port, mut mail) = smtp_sink().await?;
    println!("mimix demo: {NODES} remailers as onion services on a private Tor network");
    let work = async {
        let net = start_network(programs).await?;
        let nodes = start_nodes(dir, NODES, net.network(), smtp_port).await?;
        let client = mimix_tor::TorTransport::start(
            &dir.join("client/state"),
            &dir.join("client/cache"),
            net.network(),
        )
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

/// `mimix testnet`: runs until Ctrl-C.
pub fn run(args: TestnetArgs) -> anyhow::Result<()> {
    super::node::init_logging("warn,tor_netdir=error,tor_guardmgr=error,tor_dirmgr=error");
    let Some(programs) = find_tor() else {
        bail!("the `tor` and `tor-gencert` programs are needed (Debian package `tor`)");
    };
    // Tor clients write their state when the runtime shuts down, so the
    // directory must outlive the runtime.
    let dir = TempDir::new("mimix-testnet")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let (smtp_port, mut mail) = smtp_sink().await?;
        let setup = async {
            let net = start_network(programs).await?;
            let n = usize::try_from(args.nodes).unwrap_or(NODES);
            let nodes = start_nodes(&dir.0, n, net.network(), smtp_port).await?;
            anyhow::Ok((net, nodes))
        };
        let (net, nodes) = tokio::select! {
            r = setup => r?,
            _ = tokio::signal::ctrl_c() => {
                println!("interrupted; cleaning up");
                return Ok(());
            }
        };
        println!("\n# [tor] table for nodes and `mimix send --config` on this network:\n");
        println!("{}", tor_toml(net.network()));
        let today = crate::clock::Clock::epoch_day(&SystemClock);
        for n in &nodes {
            let conf = n.remailer_conf();
            let name = mimix_packet::RemailerConf::parse_valid(&conf, today)
                .map(|c| c.name)
                .unwrap_or_default();
            let file = dir.0.join(format!("{name}.conf"));
            std::fs::write(&file, &conf)
                .with_context(|| format!("writing {}", file.display()))?;
            println!("{name}: {} (remailer-conf: {})", n.address(), file.display());
        }
        let cfg = dir.0.join("tor.toml");
        std::fs::write(&cfg, format!("config_version = 1\n\n{}", tor_toml(net.network())))
            .with_context(|| format!("writing {}", cfg.display()))?;
        println!(
            "\nthe last node is the exit; it delivers to the SMTP sink on 127.0.0.1:{smtp_port}, \
             printed here. Try:\n  mimix send --config {} --conf {}/node1.conf ... --chain node1,node2,node{} --message FILE\n\
             Ctrl-C stops everything and removes {}",
            cfg.display(),
            dir.0.display(),
            args.nodes,
            dir.0.display()
        );
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                m = mail.recv() => match m {
                    Some(text) => println!("--- delivered by the exit ---\n{text}--- end ---"),
                    None => break,
                },
            }
        }
        println!("stopping the nodes and the Tor network");
        stop_nodes(nodes).await;
        drop(net);
        Ok(())
    });
    drop(rt);
    drop(dir);
    result
}
