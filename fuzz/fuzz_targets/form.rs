//! `decode_packet_form` on any POST body, against a model; accepted values round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mimix::fuzzing::form::check(data) {
        panic!("{e}");
    }
});
