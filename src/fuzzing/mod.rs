//! Checks shared by the fuzz targets under `fuzz/` and the corpus replay
//! test `tests/fuzz_corpus.rs`, for the daemon's parsers of outside input
//! (the codec's own checks are in `mimix_packet::fuzzing`). Not a stable
//! API; compiled only with the `fuzzing` feature.
//!
//! Each check takes the raw fuzzer input, names the outcome it reached
//! (so that the replay test can assert that the corpus reaches every one)
//! and returns `Err` when the parser breaks one of its properties. A panic
//! inside the parser propagates, which is the other failure a fuzzer
//! reports.
//!
//! | check | parser | input |
//! |-------|--------|-------|
//! | [`form::check`] | [`crate::transport::form`] | a POST body |
//! | [`policy::check`] | [`crate::exit::policy`] | a preset byte, then a payload |
//! | [`reassembly::Harness::check`] | [`crate::exit::reassembly`] | a limits byte, then chunk operations |
//! | [`config::check`] | [`crate::config::Config::from_toml_str`] | TOML text |
//! | [`blocklist::check`] | [`crate::exit::blocklist::Rules::parse`] | blocklist text |

pub mod blocklist;
pub mod config;
pub mod form;
pub mod policy;
pub mod reassembly;

/// A broken property, or a harness that could not run.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// A property of the parser under test does not hold.
    #[error("{target}: {what}")]
    Property {
        /// The check that failed (`form`, `policy`, ...).
        target: &'static str,
        /// What does not hold.
        what: String,
    },
    /// The harness itself failed (a store operation, a temporary
    /// directory): not a finding about the parser.
    #[error("harness: {0}")]
    Harness(String),
}

/// `Ok` if `holds`, else a [`Violation::Property`] of `target` saying
/// `what`.
pub(crate) fn ensure(
    holds: bool,
    target: &'static str,
    what: impl FnOnce() -> String,
) -> Result<(), Violation> {
    if holds {
        Ok(())
    } else {
        Err(Violation::Property {
            target,
            what: what(),
        })
    }
}
