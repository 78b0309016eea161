//! Start a private Tor network on 127.0.0.1 and print its Arti network
//! configuration as TOML.
//!
//! `cargo run -p mimix-tor --example testnet -- [AUTHORITIES RELAYS] [--wait]`
//!
//! Without `--wait` the network is stopped again as soon as it is ready
//! (useful to time start-up); with it, it runs until Ctrl-C.

use std::time::Instant;

use mimix_tor::testnet::{TestNetConfig, TestNetwork};

#[derive(serde::Serialize)]
struct Printed<'a> {
    network: &'a mimix_tor::TorNetwork,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.iter().any(|a| a == "--wait");
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
    println!(
        "{}",
        toml::to_string(&Printed {
            network: net.network()
        })?
    );
    if wait {
        eprintln!("files in {}; Ctrl-C stops the network", net.dir().display());
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
