//! The `[transport]` table: which transport carries packets, and the time
//! and size limits of its HTTP client and server.
//!
//! The table is flat for operators; [`TransportConfig::client_limits`] and
//! [`TransportConfig::server_limits`] give the two halves their settings.
//! Defaults are the limits' own ([`ClientLimits::DEFAULT`],
//! [`ServerLimits::DEFAULT`]), written once there.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use mimix_settings::{Checked, check, duration, positive, size};
use serde::{Deserialize, Serialize};

use super::{ClientLimits, MinRate, ServerLimits};

/// Smallest `max_body`: an armoured packet posted as a form is about 30 KB.
const MIN_MAX_BODY: usize = 32 * 1024;

/// Smallest `max_conf_size`.
const MIN_MAX_CONF: usize = 4096;

/// Which transport carries packets between remailers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// HTTP over an embedded Tor client and a v3 onion service.
    #[default]
    Tor,
    /// Plain HTTP over TCP on loopback, without Tor. **Insecure**: no
    /// anonymity at all; for development and tests only.
    Direct,
}

/// `[transport]`: the HTTP transport between remailers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Tor (the default) or direct (insecure loopback HTTP, for tests).
    pub kind: TransportKind,
    /// The address the direct transport listens on (loopback only). Not
    /// used by the Tor transport.
    pub listen: SocketAddr,
    /// Whether next hops may be clearnet hosts (still reached over Tor).
    /// Without it only `.onion` hops are contacted.
    pub allow_clearnet_hops: bool,
    /// Time allowed to open a stream to a peer.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for one HTTP exchange once the stream is open.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Time a peer gets to send a request head.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a peer gets to send a request body.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Largest request body accepted, in bytes (an armoured packet posted as
    /// a form is about 30 KB).
    #[serde(with = "size")]
    pub max_body: usize,
    /// Largest `remailer-conf.txt` fetched from a peer, in bytes.
    #[serde(with = "size")]
    pub max_conf_size: usize,
    /// Most inbound connections served at once.
    pub max_connections: usize,
    /// Most inbound connections served at once from one source: one
    /// address on the direct transport, one rendezvous circuit on the
    /// onion service.
    pub max_connections_per_source: usize,
    /// Bytes per second a peer must keep sending, on average, while we
    /// wait for a request head or body (after `data_rate_grace`); 0 for no
    /// minimum.
    #[serde(with = "size")]
    pub min_data_rate: u64,
    /// Time a peer gets before `min_data_rate` applies.
    #[serde(with = "duration")]
    pub data_rate_grace: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        let (client, server) = (ClientLimits::DEFAULT, ServerLimits::DEFAULT);
        Self {
            kind: TransportKind::Tor,
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
            allow_clearnet_hops: false,
            connect_timeout: client.connect_timeout,
            request_timeout: client.request_timeout,
            header_read_timeout: server.header_read_timeout,
            body_read_timeout: server.body_read_timeout,
            max_body: server.max_body_bytes,
            max_conf_size: client.max_conf_bytes,
            max_connections: server.max_connections,
            max_connections_per_source: server.max_connections_per_source,
            min_data_rate: server.min_rate.rate,
            data_rate_grace: server.min_rate.grace,
        }
    }
}

impl TransportConfig {
    /// The client's limits.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_conf_bytes: self.max_conf_size,
        }
    }

    /// The server's limits (those the table does not set keep their
    /// defaults).
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            max_body_bytes: self.max_body,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            min_rate: MinRate {
                rate: self.min_data_rate,
                grace: self.data_rate_grace,
            },
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            ..ServerLimits::DEFAULT
        }
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        positive(self.connect_timeout, "connect_timeout")?;
        positive(self.request_timeout, "request_timeout")?;
        positive(self.header_read_timeout, "header_read_timeout")?;
        positive(self.body_read_timeout, "body_read_timeout")?;
        check(self.max_body >= MIN_MAX_BODY, "max_body", || {
            format!(
                "{} bytes is too small: a packet needs about 30 KB; use at least {MIN_MAX_BODY}",
                self.max_body
            )
        })?;
        check(self.max_conf_size >= MIN_MAX_CONF, "max_conf_size", || {
            format!(
                "{} bytes is too small; use at least {MIN_MAX_CONF}",
                self.max_conf_size
            )
        })?;
        check(
            (1..=65_536).contains(&self.max_connections),
            "max_connections",
            || format!("must be 1 to 65536, got {}", self.max_connections),
        )?;
        check(
            (1..=self.max_connections).contains(&self.max_connections_per_source),
            "max_connections_per_source",
            || {
                format!(
                    "must be 1 to max_connections ({}), got {}",
                    self.max_connections, self.max_connections_per_source
                )
            },
        )?;
        positive(self.data_rate_grace, "data_rate_grace")?;
        if self.kind == TransportKind::Direct {
            check(self.listen.ip().is_loopback(), "listen", || {
                format!(
                    "the direct transport is plain, insecure HTTP and listens on loopback only; \
                     {} is not a loopback address",
                    self.listen.ip()
                )
            })?;
        }
        Ok(())
    }
}
