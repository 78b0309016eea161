//! `Config::from_toml_str` on any text: accepted configs validate and round-trip, refusals name a field or line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mimix::fuzzing::config::check(data) {
        panic!("{e}");
    }
});
