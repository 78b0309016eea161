//! The Tor transport: peers are dialled through the embedded Arti client
//! of [`mimix_tor`], and the node's own onion service feeds
//! [`Server::serve_connection`](super::Server::serve_connection).
//!
//! Every stream to one peer host shares an isolation token; streams to
//! different peers never share a circuit.

use std::io;
use std::sync::Arc;

use mimix_tor::{TorError, TorTransport};

use super::{BoxStream, DialFuture, Dialer, PeerPolicy};

/// Dials peers over Tor.
#[derive(Debug, Clone)]
pub struct TorDialer {
    /// The process's Tor client.
    tor: Arc<TorTransport>,
    /// [`PeerPolicy::OnionOnly`] unless clearnet peers are allowed.
    policy: PeerPolicy,
}

impl TorDialer {
    /// A dialer that reaches `.onion` peers only.
    pub fn new(tor: Arc<TorTransport>) -> Self {
        Self {
            tor,
            policy: PeerPolicy::OnionOnly,
        }
    }

    /// A dialer that also reaches clearnet peers (still over Tor, through
    /// exit relays). Only when the operator allows clearnet peers.
    pub fn allowing_clearnet(tor: Arc<TorTransport>) -> Self {
        Self {
            tor,
            policy: PeerPolicy::OnionOrClearnet,
        }
    }
}

impl Dialer for TorDialer {
    fn policy(&self) -> PeerPolicy {
        self.policy
    }

    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            // Checked again here so that an onion-only dialer alone never
            // leaves the Tor network through an exit.
            if self.policy == PeerPolicy::OnionOnly && !host.ends_with(".onion") {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the Tor transport only dials onion services",
                ));
            }
            match self.tor.dial(host, port).await {
                Ok(stream) => Ok(Box::new(stream) as BoxStream),
                Err(e @ TorError::DialTimeout(_)) => {
                    Err(io::Error::new(io::ErrorKind::TimedOut, e))
                }
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }
}
