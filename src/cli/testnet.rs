//! `mimix testnet`: a private Tor network on 127.0.0.1 (C tor: one
//! directory authority and four relays) and a few mimix nodes in this
//! process publishing onion services on it, with an SMTP sink that prints
//! what the exit delivers. Everything lives in a temporary directory and
//! is torn down on Ctrl-C.

use anyhow::{Context, bail};
use clap::Args;
use mimix::clock::SystemClock;
use mimix::config::Config;

use super::localnet::{NODES, smtp_sink, start_network, start_nodes, stop_nodes};

/// Arguments of `mimix testnet`.
#[derive(Debug, Args)]
pub struct TestnetArgs {
    /// How many mimix nodes to run (the last one is an exit).
    #[arg(long, default_value_t = NODES as u64, value_parser = clap::value_parser!(u64).range(3..=16))]
    nodes: u64,
}

/// `mimix testnet`: runs until Ctrl-C.
pub fn run(args: TestnetArgs) -> anyhow::Result<()> {
    super::node::init_logging("warn,tor_netdir=error,tor_guardmgr=error,tor_dirmgr=error");
    let Some(programs) = mimix_tor::testnet::find_tor() else {
        bail!("the `tor` and `tor-gencert` programs are needed (Debian package `tor`)");
    };
    // Tor clients write their state when the runtime shuts down, so the
    // directory must outlive the runtime.
    let dir = tempfile::Builder::new()
        .prefix("mimix-testnet-")
        .tempdir()
        .context("creating a temporary directory")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let (smtp_port, mut mail) = smtp_sink().await?;
        let setup = async {
            let net = start_network(programs).await?;
            let n = usize::try_from(args.nodes).unwrap_or(NODES);
            let nodes = start_nodes(dir.path(), n, net.network(), smtp_port).await?;
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
        println!("{}", Config::tor_table(net.network())?);
        let today = mimix::clock::Clock::epoch_day(&SystemClock);
        let mut names = Vec::new();
        let mut conf_args = String::new();
        for n in &nodes {
            let conf = n.remailer_conf();
            let name = mimix_packet::RemailerConf::parse_valid(&conf, today)
                .map(|c| c.name)
                .unwrap_or_default();
            let file = dir.path().join(format!("{name}.conf"));
            std::fs::write(&file, &conf).with_context(|| format!("writing {}", file.display()))?;
            println!(
                "{name}: {} (remailer-conf: {})",
                n.address(),
                file.display()
            );
            conf_args.push_str(&format!(" --conf {}", file.display()));
            names.push(name);
        }
        let cfg = dir.path().join("tor.toml");
        std::fs::write(
            &cfg,
            format!(
                "config_version = 1\n\n{}",
                Config::tor_table(net.network())?
            ),
        )
        .with_context(|| format!("writing {}", cfg.display()))?;
        // Entry, a middle node, the exit (the last node).
        let chain = match names.as_slice() {
            [first, .., before_last, last] => format!("{first},{before_last},{last}"),
            _ => names.join(","),
        };
        println!(
            "\nthe last node is the exit; it delivers to the SMTP sink on 127.0.0.1:{smtp_port}, \
             printed here. Send a message (from a file, or - for standard input) with:\n  \
             mimix send --config {}{conf_args} --chain {chain} FILE\n\
             Ctrl-C stops everything and removes {}",
            cfg.display(),
            dir.path().display()
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
