//! `blocklist::Rules::parse` on any text: line-by-line errors, entries block what they say.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mimix::fuzzing::blocklist::check(data) {
        panic!("{e}");
    }
});
