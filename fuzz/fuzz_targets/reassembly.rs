//! Sequences of exit chunks through reassembly on a real store (fjall on
//! /dev/shm), against a model (input format: `mimix::fuzzing::reassembly`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mimix::fuzzing::reassembly::Harness;

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| match Harness::new() {
        Ok(h) => h,
        Err(e) => panic!("reassembly harness: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness().check(data) {
        panic!("{e}");
    }
});
