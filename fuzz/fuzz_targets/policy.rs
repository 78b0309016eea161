//! The exit's header policy on a preset byte and a payload: delivered
//! messages are valid CRLF mail with nothing injected (see
//! `mimix::fuzzing::policy`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mimix::fuzzing::policy::check(data) {
        panic!("{e}");
    }
});
