//! Start a private Tor network on 127.0.0.1 and print its `[tor]` table as
//! TOML.
//!
//! `cargo run -p mimix-tor --example testnet -- [AUTHORITIES RELAYS] [--arti] [--wait]`
//!
//! Without `--wait` the network is stopped again as soon as it is ready
//! (useful to time start-up); with it, it runs until Ctrl-C. `--arti` also
//! bootstraps an Arti client on the network and prints its bootstrap time
//! and this process's memory use.

use std::time::Instant;

use mimix_tor::testnet::{TestNetConfig, TestNetwork};

#[derive(serde::Serialize)]
struct Printed<'a> {
    tor: &'a mimix_tor::TorConfig,
}

/// This process's resident and peak resident memory.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.iter().any(|a| a == "--wait");
    let arti = args.iter().any(|a| a == "--arti");
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let mut config = TestNetConfig::default();
    if let [authorities, relays] = numbers[..] {
        config.authorities = authorities;
        config.relays = relays;
    }
    let started = Instant::now();
    let net = TestNetwork::start(&config).await?;
    let t = net.timings();
    eprintln!(
        "ready: {}+{} nodes, keygen {:.1?}, consensus {:.1?} after launch, total {:.1?}",
        config.authorities,
        config.relays,
        t.keygen,
        t.consensus,
        started.elapsed()
    );
    println!("{}", toml::to_string(&Printed { tor: net.network() })?);
    let client_dir = tempfile::tempdir()?;
    let _client = if arti {
        let t = Instant::now();
        let config = net.network().clone().with_dirs(
            client_dir.path().join("state"),
            client_dir.path().join("cache"),
        );
        let client = mimix_tor::TorTransport::start(&config).await?;
        eprintln!("arti bootstrap {:.1?}; {}", t.elapsed(), memory());
        Some(client)
    } else {
        None
    };
    if wait {
        eprintln!("files in {}; Ctrl-C stops the network", net.dir().display());
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
