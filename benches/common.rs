//! Shared set-up for the benchmarks: keys of each size and packets to peel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use mimix_packet::{ExitType, Hop, Packet, SecretKey, build_message};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The day the test vectors were made; packets are built and peeled "then".
pub const DAY: u64 = 20786;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The PKCS#1 PEM of a test key of `bits` (vector keys for 4096 and 1024).
pub fn pem(bits: usize) -> String {
    let p = match bits {
        4096 => root().join("tests/vectors/remailers/alpha/secret.pem"),
        1024 => root().join("tests/vectors/remailers/delta/secret.pem"),
        b => root().join(format!("tests/keys/test-{b}.pem")),
    };
    std::fs::read_to_string(p).unwrap()
}

pub fn secret(bits: usize) -> SecretKey {
    SecretKey::from_pem(&pem(bits)).unwrap()
}

pub fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

pub fn hop(key: &SecretKey, name: &str) -> Hop {
    Hop {
        key: key.public().clone(),
        address: format!("http://{name}.example.onion"),
    }
}

/// A two-hop packet whose first hop is `first` (so peeling it forwards,
/// the common case for a middle node).
pub fn packet_for(first: &SecretKey) -> Packet {
    let second = secret(4096);
    let msg = vec![b'm'; 4000];
    build_message(
        &mut rng(),
        &[hop(first, "a"), hop(&second, "b")],
        ExitType::Smtp,
        &msg,
        DAY,
    )
    .unwrap()
    .remove(0)
}
