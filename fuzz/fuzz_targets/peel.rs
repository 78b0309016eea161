//! `peel` with known secret keys, on raw packets and on packets built
//! around a fuzzed inner header (input format: `mimix_packet::fuzzing`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mimix_packet::fuzzing::PeelHarness;

/// The reference vectors' remailers: delta (RSA-1024) first, then alpha
/// and gamma (RSA-4096).
const KEYS: [&str; 3] = [
    include_str!("../../tests/vectors/remailers/delta/secret.pem"),
    include_str!("../../tests/vectors/remailers/alpha/secret.pem"),
    include_str!("../../tests/vectors/remailers/gamma/secret.pem"),
];

fn harness() -> &'static PeelHarness {
    static HARNESS: OnceLock<PeelHarness> = OnceLock::new();
    HARNESS.get_or_init(|| match PeelHarness::new(&KEYS) {
        Ok(h) => h,
        Err(e) => panic!("peel harness: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness().check(data) {
        panic!("{e}");
    }
});
