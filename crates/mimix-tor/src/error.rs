//! The error type of the Tor client side of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from configuring, starting or using a [`TorTransport`](crate::TorTransport)
/// or an [`OnionService`](crate::OnionService).
#[derive(Debug, thiserror::Error)]
pub enum TorError {
    /// A value in the [`TorConfig`](crate::TorConfig) is not valid.
    #[error("invalid Tor network configuration: {0}")]
    InvalidNetwork(String),
    /// Arti rejected the configuration we built for it.
    #[error("Arti configuration rejected: {0}")]
    Config(String),
    /// A file system operation on a state, cache or key path failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file or key directory can be read or written by other users.
    #[error(
        "{} has mode {mode:o}: key material must be readable only by its owner (0600 files, 0700 directories)",
        path.display()
    )]
    InsecurePermissions {
        /// The offending file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The Arti client could not be created.
    #[error("cannot create the Tor client: {0}")]
    Create(#[source] arti_client::Error),
    /// Bootstrapping onto the Tor network failed.
    #[error("cannot bootstrap onto the Tor network: {0}")]
    Bootstrap(#[source] arti_client::Error),
    /// Opening a stream over Tor failed.
    #[error("cannot connect over Tor: {0}")]
    Connect(#[source] arti_client::Error),
    /// Opening a stream over Tor took longer than the dial timeout.
    #[error("connecting over Tor timed out after {0:?}")]
    DialTimeout(Duration),
    /// The onion service nickname is not valid (letters, digits, `-` and `_`).
    #[error("invalid onion service nickname: {0}")]
    InvalidNickname(String),
    /// The onion service could not be launched.
    #[error("cannot launch the onion service: {0}")]
    Launch(String),
    /// The onion service has no identity key, so it has no address.
    #[error("the onion service has no identity key")]
    NoOnionAddress,
    /// The onion service did not publish a descriptor within the time allowed.
    #[error("the onion service was not published within {0:?}")]
    PublishTimeout(Duration),
    /// The onion service stopped or broke before it was published.
    #[error("the onion service cannot be published: {0}")]
    PublishFailed(String),
}
