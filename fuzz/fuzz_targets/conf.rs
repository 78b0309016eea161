//! `RemailerConf::parse` on arbitrary text; accepted confs must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mimix_packet::fuzzing::check_conf(data) {
        panic!("{e}");
    }
});
