//! The loopback transport: plain HTTP over TCP on `127.0.0.1`.
//!
//! **Insecure.** This transport does not use Tor: traffic is unencrypted
//! and both ends see each other's addresses. It exists for development and
//! tests only, and its [`LoopbackDialer`] refuses every host except
//! `127.0.0.1` and `localhost` ([`PeerPolicy::LoopbackOnly`]). The server
//! side is [`serve_tcp`](super::serve_tcp) on a listener the caller binds
//! (which should be a loopback address).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpStream;

use super::{BoxStream, DialFuture, Dialer, PeerPolicy};

/// Dials peers over plain TCP on the loopback interface.
///
/// **Insecure**: no Tor, for development and tests only. `localhost` is
/// mapped to `127.0.0.1` without a name lookup; every other host is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackDialer;

impl Dialer for LoopbackDialer {
    fn policy(&self) -> PeerPolicy {
        PeerPolicy::LoopbackOnly
    }

    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            // Checked again here so that the dialer alone never leaves the
            // machine, whatever its caller did.
            if !crate::net::is_direct_host(host) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the loopback transport only dials 127.0.0.1",
                ));
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}
