//! Packets built in the test process against the running nodes' published
//! keys (for chains `mimix packet build` refuses, such as one ending at a
//! middle node), public pages, and waiting on a node's live counters.

use std::time::{Duration, Instant};

use mimix::clock::{Clock, SystemClock};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::net::{NodeProc, counter, get_conf, http};

/// `GET path` from the node on `port`: the status and body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    http(port, req.as_bytes()).unwrap_or_else(|| panic!("GET {path} from port {port} failed"))
}

/// The chain hop of the node on `port`, from its published conf.
pub fn hop(port: u16) -> Hop {
    let text = get_conf(port).unwrap_or_else(|| panic!("no conf from port {port}"));
    let conf = RemailerConf::parse(&text).unwrap();
    Hop {
        key: conf.key,
        address: conf.address,
    }
}

/// The armoured packets of a mail message with `payload` through `chain`
/// (every chunk through the same chain), built with a seeded RNG.
pub fn mail_packets(chain: &[Hop], payload: &[u8], seed: u64) -> Vec<String> {
    let rng = &mut StdRng::seed_from_u64(seed);
    build_message(rng, chain, ExitType::Smtp, payload, SystemClock.epoch_day())
        .unwrap()
        .iter()
        .map(armour)
        .collect()
}

/// Polls `node`'s live status until `done` says yes; panics after
/// `timeout` with the last status.
pub fn wait_status(
    node: &NodeProc,
    timeout: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = node.status();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting on {} for {what}: {}",
            node.name,
            status["counters"]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Counter `name` of `status` equals `want`.
pub fn is(status: &serde_json::Value, name: &str, want: u64) -> bool {
    counter(status, name) == want
}
