//! Tor for mimix: an embedded Arti client behind a small, non-generic API,
//! and a private loopback Tor network for tests.
//!
//! Arti's types are generic over a runtime and monomorphise heavily; this
//! crate instantiates them once so that the daemon crate only sees plain
//! structs, boxed streams and boxed futures:
//!
//! - [`TorTransport`]: one bootstrapped Arti client per process. It dials
//!   `host:port` over Tor with one isolation token per destination host, so
//!   streams to different peers never share a circuit, and it launches
//!   onion services.
//! - [`OnionService`] and [`IncomingStreams`]: a v3 onion service whose
//!   identity key persists in Arti's keystore under the state directory, so
//!   its address survives restarts. Only streams to port 80 are accepted.
//! - [`TorConfig`]: the daemon's `[tor]` table (serde, defaults and
//!   validation): which Tor network to use, the public one or a custom one,
//!   the onion service's nickname, and Arti's directories.
//! - [`identity`]: the onion service's identity key without Tor: its
//!   address before the first launch, and its files for backup.
//! - [`testnet`]: starts a private C-tor network on 127.0.0.1 and returns the
//!   matching custom [`TorConfig`].
//!
//! # Streams between Arti peers end with an error, not EOF
//!
//! When an Arti onion service closes a stream, the Arti client's reader sees
//! an error (an END cell with reason MISC) rather than a clean end of file,
//! and may lose data it had buffered. Protocols carried over these streams
//! must frame their messages (for HTTP: `Content-Length`) and must never use
//! end of file as a message delimiter. On the service side, the streams
//! handed out by [`IncomingStreams`] wait briefly, on shutdown, for the
//! client to hang up first.

mod about;
mod bootstrap;
mod config;
mod error;
pub mod identity;
mod perms;
mod service;
pub mod testnet;
mod transport;

pub use about::{ARTI_FEATURES, ARTI_VERSION};
pub use bootstrap::BootstrapProgress;
pub use config::{Authority, FallbackRelay, NetworkKind, TorConfig};
pub use error::TorError;
pub use perms::check_key_permissions;
pub use service::{CircuitId, IncomingStreams, ONION_SERVICE_PORT, OnionService, PublishState};
pub use transport::{DEFAULT_DIAL_TIMEOUT, TorTransport};

/// A bidirectional byte stream: what [`TorTransport::dial`] returns and what
/// [`IncomingStreams`] yields.
///
/// Implemented for every tokio `AsyncRead + AsyncWrite + Unpin + Send` type.
pub trait AsyncReadWrite: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T> AsyncReadWrite for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

/// A boxed [`AsyncReadWrite`] stream.
pub type BoxedStream = Box<dyn AsyncReadWrite>;
