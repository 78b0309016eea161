//! The `[tor]` table: which Tor network Arti joins, our onion service's
//! nickname, and where Arti keeps its state.
//!
//! [`TorConfig`] is the one type for these settings: the daemon's TOML
//! table deserialises into it, [`TorConfig::validate`] checks it, the test
//! network harness fills one in ([`testnet`](crate::testnet)), and
//! [`TorTransport::start`](crate::TorTransport::start) turns it into an
//! Arti configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use arti_client::config::TorClientConfigBuilder;
use arti_client::config::dir::FallbackDir;
use mimix_settings::{Checked, Invalid, check, duration, path};
use serde::{Deserialize, Serialize};
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::TorError;

/// How often a client that is not ready warns, by default.
const DEFAULT_BOOTSTRAP_WARNING: Duration = Duration::from_secs(5 * 60);

/// Which Tor network to join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// The public Tor network, with Arti's built-in authorities and
    /// fallbacks.
    #[default]
    Public,
    /// A private network given by `authorities` and `fallbacks`, such as the
    /// [`testnet`](crate::testnet) one. Arti is also told that all relays may
    /// share one address (the subnet-family rule is switched off) and that
    /// local addresses are acceptable, as a network on one host needs.
    Custom,
}

/// A directory authority of a custom network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// The authority's v3 identity: 40 hex digits, the `fingerprint` of its
    /// `authority_certificate`.
    pub v3ident: String,
    /// Its directory ports (uploads, downloads and votes); at least one.
    pub dirports: Vec<SocketAddr>,
}

/// A relay that Arti may fetch the directory from before it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackRelay {
    /// RSA identity fingerprint, 40 hex digits.
    pub rsa_identity: String,
    /// Ed25519 identity, unpadded base64 (43 characters).
    pub ed_identity: String,
    /// Its onion-router ports (directory requests go over these); at least
    /// one.
    pub orports: Vec<SocketAddr>,
}

/// The `[tor]` table: the embedded Tor client and our onion service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorConfig {
    /// Public or custom network.
    pub network: NetworkKind,
    /// Custom network only: its directory authorities (at least one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<Authority>,
    /// Custom network only: its fallback directory relays (at least one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<FallbackRelay>,
    /// Custom network only: onion-service time period, whole minutes, when
    /// the network overrides it (C tor with `TestingTorNetwork`: 120m).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub hsdir_interval: Option<Duration>,
    /// Nickname of our onion service; its key, hence the onion address, is
    /// stored under this name (letters, digits, `-`, `_`).
    pub service_nickname: String,
    /// Arti's persistent state, including the onion service key. Empty
    /// until the daemon's configuration fills in its default
    /// (`<data_dir>/tor/state`).
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub state_dir: PathBuf,
    /// Arti's directory cache. Empty until the daemon's configuration fills
    /// in its default (`<data_dir>/tor/cache`).
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub cache_dir: PathBuf,
    /// Most streams one client (one rendezvous circuit) may hold open on
    /// our onion service at once; a circuit that opens more is torn down
    /// (C tor's `HiddenServiceMaxStreams` with
    /// `HiddenServiceMaxStreamsCloseCircuit`).
    pub max_streams_per_circuit: u32,
    /// While the client is not ready (bootstrapping, or the network lost),
    /// a warning saying how long and why is logged this often.
    #[serde(with = "duration")]
    pub bootstrap_warning: Duration,
}

impl Default for TorConfig {
    fn default() -> Self {
        Self {
            network: NetworkKind::Public,
            authorities: Vec::new(),
            fallbacks: Vec::new(),
            hsdir_interval: None,
            service_nickname: "mimix".into(),
            state_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            max_streams_per_circuit: 64,
            bootstrap_warning: DEFAULT_BOOTSTRAP_WARNING,
        }
    }
}

impl TorConfig {
    /// The public network with Arti's files in `state_dir` and `cache_dir`.
    pub fn public(state_dir: PathBuf, cache_dir: PathBuf) -> Self {
        Self {
            state_dir,
            cache_dir,
            ..Self::default()
        }
    }

    /// This configuration with Arti's files in `state_dir` and `cache_dir`.
    #[must_use]
    pub fn with_dirs(mut self, state_dir: PathBuf, cache_dir: PathBuf) -> Self {
        self.state_dir = state_dir;
        self.cache_dir = cache_dir;
        self
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        let nick_ok = (1..=64).contains(&self.service_nickname.len())
            && self
                .service_nickname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        check(nick_ok, "service_nickname", || {
            "must be 1 to 64 ASCII letters, digits, '-' or '_'".into()
        })?;
        check(self.state_dir != self.cache_dir, "cache_dir", || {
            "must differ from tor.state_dir".into()
        })?;
        check(
            (1..=65_535).contains(&self.max_streams_per_circuit),
            "max_streams_per_circuit",
            || format!("must be 1 to 65535, got {}", self.max_streams_per_circuit),
        )?;
        check(
            self.bootstrap_warning >= Duration::from_secs(1),
            "bootstrap_warning",
            || "must be at least 1s".into(),
        )?;
        match self.network {
            NetworkKind::Public => self.validate_public(),
            NetworkKind::Custom => self.validate_custom(),
        }
    }

    fn validate_public(&self) -> Checked {
        let only_custom = |field: &str| Invalid::new(field, "only used with network = \"custom\"");
        if !self.authorities.is_empty() {
            return Err(only_custom("authorities"));
        }
        if !self.fallbacks.is_empty() {
            return Err(only_custom("fallbacks"));
        }
        if self.hsdir_interval.is_some() {
            return Err(only_custom("hsdir_interval"));
        }
        Ok(())
    }

    fn validate_custom(&self) -> Checked {
        check(!self.authorities.is_empty(), "authorities", || {
            "a custom network needs at least one authority".into()
        })?;
        check(!self.fallbacks.is_empty(), "fallbacks", || {
            "a custom network needs at least one fallback relay".into()
        })?;
        for (i, a) in self.authorities.iter().enumerate() {
            let field = |f: &str| format!("authorities[{i}].{f}");
            check(is_hex40(&a.v3ident), &field("v3ident"), || {
                "must be 40 hex digits".into()
            })?;
            check(!a.dirports.is_empty(), &field("dirports"), || {
                "must list at least one address".into()
            })?;
        }
        for (i, f) in self.fallbacks.iter().enumerate() {
            let field = |name: &str| format!("fallbacks[{i}].{name}");
            check(is_hex40(&f.rsa_identity), &field("rsa_identity"), || {
                "must be 40 hex digits".into()
            })?;
            check(
                ed_identity(&f.ed_identity).is_ok(),
                &field("ed_identity"),
                || "must be 43 characters of unpadded base64".into(),
            )?;
            check(!f.orports.is_empty(), &field("orports"), || {
                "must list at least one address".into()
            })?;
        }
        if let Some(d) = self.hsdir_interval {
            check(hsdir_minutes(d).is_some(), "hsdir_interval", || {
                format!(
                    "must be a whole number of minutes, got {}",
                    duration::format(d)
                )
            })?;
        }
        Ok(())
    }

    /// Writes the network part into an Arti configuration builder.
    pub(crate) fn apply(&self, b: &mut TorClientConfigBuilder) -> Result<(), TorError> {
        if self.network == NetworkKind::Public {
            return Ok(());
        }
        self.validate_custom()
            .map_err(|e| TorError::InvalidNetwork(e.to_string()))?;
        let mut v3idents = Vec::with_capacity(self.authorities.len());
        let mut dirports = Vec::with_capacity(self.authorities.len());
        for a in &self.authorities {
            v3idents.push(rsa_identity(&a.v3ident)?);
            dirports.push(a.dirports.clone());
        }
        let mut fbs = Vec::with_capacity(self.fallbacks.len());
        for f in &self.fallbacks {
            let mut fb = FallbackDir::builder();
            fb.rsa_identity(rsa_identity(&f.rsa_identity)?)
                .ed_identity(ed_identity(&f.ed_identity)?);
            fb.orports().extend(f.orports.iter().copied());
            fbs.push(fb);
        }
        let net = b.tor_network();
        net.set_fallback_caches(fbs);
        let auth = net.authorities();
        auth.set_v3idents(v3idents);
        auth.set_uploads(dirports.clone());
        auth.set_downloads(dirports.clone());
        auth.set_votes(dirports);
        // Every relay of a one-host network shares 127.0.0.1: without this,
        // Arti puts them all in one family and cannot build onion-service
        // circuits, though bootstrap succeeds.
        b.path_rules()
            .ipv4_subnet_family_prefix(33)
            .ipv6_subnet_family_prefix(129);
        b.address_filter().allow_local_addrs(true);
        if let Some(d) = self.hsdir_interval {
            let minutes = hsdir_minutes(d).ok_or_else(|| {
                TorError::InvalidNetwork(format!("hsdir_interval {d:?} is not whole minutes"))
            })?;
            b.override_net_params()
                .insert("hsdir_interval".into(), minutes);
        }
        Ok(())
    }
}

/// `d` in whole minutes, if it is a positive whole number of them that
/// Arti's parameter can hold.
fn hsdir_minutes(d: Duration) -> Option<i32> {
    let whole = !d.is_zero() && d.as_secs().is_multiple_of(60) && d.subsec_nanos() == 0;
    whole
        .then(|| i32::try_from(d.as_secs() / 60).ok())
        .flatten()
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse a 40-hex-digit RSA identity fingerprint.
fn rsa_identity(hex: &str) -> Result<RsaIdentity, TorError> {
    RsaIdentity::from_hex(hex)
        .ok_or_else(|| TorError::InvalidNetwork(format!("bad RSA identity {hex:?}")))
}

/// Parse an unpadded base64 ed25519 identity.
fn ed_identity(b64: &str) -> Result<Ed25519Identity, TorError> {
    let plain = b64.len() == 43
        && b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    plain
        .then(|| Ed25519Identity::from_base64(b64))
        .flatten()
        .ok_or_else(|| TorError::InvalidNetwork(format!("bad ed25519 identity {b64:?}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use arti_client::TorClientConfig;

    fn sample() -> TorConfig {
        TorConfig {
            network: NetworkKind::Custom,
            authorities: vec![Authority {
                v3ident: "A".repeat(40),
                dirports: vec!["127.0.0.1:7100".parse().unwrap()],
            }],
            fallbacks: vec![FallbackRelay {
                rsa_identity: "B".repeat(40),
                ed_identity: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA".into(),
                orports: vec!["127.0.0.1:7000".parse().unwrap()],
            }],
            hsdir_interval: Some(Duration::from_secs(7200)),
            ..TorConfig::public("/s".into(), "/c".into())
        }
    }

    #[test]
    fn toml_round_trip() {
        for config in [TorConfig::public("/s".into(), "/c".into()), sample()] {
            let text = toml::to_string(&config).unwrap();
            let back: TorConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, config, "{text}");
            back.validate().unwrap();
        }
        let public: TorConfig = toml::from_str("network = \"public\"\n").unwrap();
        assert_eq!(public.network, NetworkKind::Public);
    }

    #[test]
    fn custom_network_builds_an_arti_config() {
        let mut b = TorClientConfig::builder();
        sample().apply(&mut b).unwrap();
        b.build().unwrap();
    }

    #[test]
    fn bad_identities_are_rejected() {
        let mut net = sample();
        net.authorities[0].v3ident = "not hex".into();
        let err = net.apply(&mut TorClientConfig::builder()).unwrap_err();
        assert!(matches!(err, TorError::InvalidNetwork(_)), "{err}");
        assert_eq!(net.validate().unwrap_err().field, "authorities[0].v3ident");

        let empty = TorConfig {
            authorities: vec![],
            fallbacks: vec![],
            hsdir_interval: None,
            ..sample()
        };
        assert!(empty.apply(&mut TorClientConfig::builder()).is_err());
    }
}
