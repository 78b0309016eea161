//! The HTTP transport between remailers (wire format, section 6.3).
//!
//! Hops talk HTTP/1.1: a packet travels as `POST <base>/collector.py/msg`
//! with an `application/x-www-form-urlencoded` body whose field `base64`
//! holds the armoured packet text, and a node publishes its
//! `remailer-conf.txt` at `GET <base>/remailer-conf.txt`.
//!
//! The module is built around byte **streams**, not TCP:
//!
//! * the server side ([`server::Server`]) serves any
//!   `AsyncRead + AsyncWrite + Unpin + Send` connection with
//!   [`Server::serve_connection`](server::Server::serve_connection), so an
//!   onion service can hand it each rendezvous stream;
//! * the client side ([`client`]) obtains its connection from a [`Dialer`],
//!   which also declares which peer URLs it may reach ([`PeerPolicy`]).
//!
//! Messages are always framed with `Content-Length`, never by closing the
//! connection, because over Tor a close can surface as an error.
//!
//! # Security
//!
//! The only transport implemented here, [`loopback`], is **insecure**: it
//! is plain HTTP over TCP without Tor, giving neither anonymity nor
//! confidentiality of the traffic pattern. It is restricted to `127.0.0.1`
//! and `localhost` and is meant for development and tests only. In
//! production the same server and client code run over onion services.

mod admission;
pub mod client;
mod config;
mod files;
pub mod form;
pub mod loopback;
pub mod peer;
pub mod rate;
pub mod server;
pub mod tor;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_client;
#[cfg(test)]
mod tests_server;

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use client::{
    ClientError, ClientLimits, fetch_conf, fetch_page, post_packet, post_packet_form,
};
pub use config::{TransportConfig, TransportKind};
pub use files::raise_open_files;
pub use loopback::LoopbackDialer;
pub use peer::{PeerPolicy, PeerUrl, UrlError};
pub use rate::MinRate;
pub use server::{Collector, Rejection, ServeError, Server, ServerLimits, Source, serve_tcp};
pub use tor::TorDialer;

/// The path packets are posted to.
pub const COLLECTOR_PATH: &str = "/collector.py/msg";

/// The path a node publishes its `remailer-conf.txt` at.
pub const CONF_PATH: &str = "/remailer-conf.txt";

/// The path a node publishes its remailer statistics at.
pub const STATS_PATH: &str = "/stats.txt";

/// The path of the help page (draft 6.2, over HTTP).
pub const HELP_PATH: &str = "/help.txt";

/// The path of the operator's OpenPGP key (draft 6.2, over HTTP).
pub const ADMINKEY_PATH: &str = "/adminkey.txt";

/// The path of the recipient opt-out page.
pub const BLOCKME_PATH: &str = "/blockme.txt";

/// The public pages besides the conf; every other path is a 404.
pub const PAGES: [&str; 4] = [STATS_PATH, HELP_PATH, ADMINKEY_PATH, BLOCKME_PATH];

/// A bidirectional byte stream to or from a peer: a TCP connection, an Arti
/// data stream, or an in-memory pipe in tests.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T> AsyncStream for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// A boxed [`AsyncStream`], as returned by a [`Dialer`].
pub type BoxStream = Box<dyn AsyncStream>;

/// The future a [`Dialer`] returns.
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxStream>> + Send + 'a>>;

/// Opens streams to peers: the client side of a transport.
///
/// A dialer is object safe so that the node can hold an `Arc<dyn Dialer>`
/// and choose the loopback or the Tor transport at run time.
pub trait Dialer: Send + Sync {
    /// The peers this dialer may reach. The client checks every URL against
    /// it (with [`PeerPolicy::check`]) before dialling.
    fn policy(&self) -> PeerPolicy;

    /// Opens a stream to `host:port`. `host` has already passed
    /// [`Dialer::policy`].
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a>;
}
