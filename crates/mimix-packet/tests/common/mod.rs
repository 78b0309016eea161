//! Test support: the reference vectors shipped under `tests/vectors`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;

use mimix_packet::SecretKey;
use serde_json::Value;

/// The epoch day the vectors were made on: "now" for every vector test.
pub const VECTOR_DAY: u64 = 20786;

pub fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

pub fn read(rel: &str) -> String {
    let p = vectors().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap()
}

pub fn secret(name: &str) -> SecretKey {
    SecretKey::from_pem(&read(&format!("remailers/{name}/secret.pem"))).unwrap()
}

pub fn secrets() -> HashMap<String, SecretKey> {
    ["alpha", "beta", "gamma", "delta"]
        .into_iter()
        .map(|n| (n.to_owned(), secret(n)))
        .collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// A deterministic CSPRNG for tests.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}
