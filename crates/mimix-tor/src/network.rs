//! Which Tor network Arti joins.

use std::net::SocketAddr;

use arti_client::config::TorClientConfigBuilder;
use arti_client::config::dir::FallbackDir;
use serde::{Deserialize, Serialize};
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::TorError;

/// The Tor network to join.
///
/// In TOML, `{ kind = "public" }` or
///
/// ```toml
/// kind = "custom"
/// hsdir_interval = 120
/// [[authorities]]
/// v3ident = "<40 hex digits>"
/// dirports = ["127.0.0.1:7100"]
/// [[fallbacks]]
/// rsa_identity = "<40 hex digits>"
/// ed_identity = "<unpadded base64>"
/// orports = ["127.0.0.1:7000"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TorNetwork {
    /// The public Tor network, with Arti's built-in authorities and fallbacks.
    #[default]
    Public,
    /// A private network such as the [`testnet`](crate::testnet) one.
    ///
    /// Arti is also told that all relays may share one address (the
    /// subnet-family rule is switched off) and that local addresses are
    /// acceptable, as a network on one host needs.
    Custom {
        /// The directory authorities.
        authorities: Vec<Authority>,
        /// The relays Arti first fetches the directory from (at least one).
        fallbacks: Vec<FallbackRelay>,
        /// Length in minutes of the onion-service time period, if the
        /// network overrides it (C tor with `TestingTorNetwork` uses 120).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hsdir_interval: Option<u32>,
    },
}

/// A directory authority of a custom network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// The authority's v3 identity: the hex fingerprint of its
    /// `authority_certificate`.
    pub v3ident: String,
    /// Its directory ports, used for uploads, downloads and votes.
    pub dirports: Vec<SocketAddr>,
}

/// A relay that Arti may fetch the directory from before it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackRelay {
    /// The relay's RSA identity fingerprint, 40 hex digits.
    pub rsa_identity: String,
    /// The relay's ed25519 identity, unpadded base64.
    pub ed_identity: String,
    /// Its onion-router ports (directory requests go over these).
    pub orports: Vec<SocketAddr>,
}

impl TorNetwork {
    /// Write this network into an Arti configuration builder.
    pub(crate) fn apply(&self, b: &mut TorClientConfigBuilder) -> Result<(), TorError> {
        let TorNetwork::Custom {
            authorities,
            fallbacks,
            hsdir_interval,
        } = self
        else {
            return Ok(());
        };
        if authorities.is_empty() {
            return Err(TorError::InvalidNetwork("no authorities".into()));
        }
        if fallbacks.is_empty() {
            return Err(TorError::InvalidNetwork("no fallback relays".into()));
        }
        let mut v3idents = Vec::with_capacity(authorities.len());
        let mut dirports = Vec::with_capacity(authorities.len());
        for a in authorities {
            v3idents.push(rsa_identity(&a.v3ident)?);
            if a.dirports.is_empty() {
                return Err(TorError::InvalidNetwork(format!(
                    "authority {} has no dirports",
                    a.v3ident
                )));
            }
            dirports.push(a.dirports.clone());
        }
        let mut fbs = Vec::with_capacity(fallbacks.len());
        for f in fallbacks {
            if f.orports.is_empty() {
                return Err(TorError::InvalidNetwork(format!(
                    "fallback {} has no orports",
                    f.rsa_identity
                )));
            }
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
        if let Some(minutes) = hsdir_interval {
            let minutes = i32::try_from(*minutes).map_err(|_| {
                TorError::InvalidNetwork(format!("hsdir_interval {minutes} is too large"))
            })?;
            b.override_net_params()
                .insert("hsdir_interval".into(), minutes);
        }
        Ok(())
    }
}

/// Parse a 40-hex-digit RSA identity fingerprint.
fn rsa_identity(hex: &str) -> Result<RsaIdentity, TorError> {
    RsaIdentity::from_hex(hex)
        .ok_or_else(|| TorError::InvalidNetwork(format!("bad RSA identity {hex:?}")))
}

/// Parse an unpadded base64 ed25519 identity.
fn ed_identity(b64: &str) -> Result<Ed25519Identity, TorError> {
    Ed25519Identity::from_base64(b64)
        .ok_or_else(|| TorError::InvalidNetwork(format!("bad ed25519 identity {b64:?}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use arti_client::TorClientConfig;

    fn sample() -> TorNetwork {
        TorNetwork::Custom {
            authorities: vec![Authority {
                v3ident: "A".repeat(40),
                dirports: vec!["127.0.0.1:7100".parse().unwrap()],
            }],
            fallbacks: vec![FallbackRelay {
                rsa_identity: "B".repeat(40),
                ed_identity: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA".into(),
                orports: vec!["127.0.0.1:7000".parse().unwrap()],
            }],
            hsdir_interval: Some(120),
        }
    }

    #[test]
    fn toml_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Wrapper {
            network: TorNetwork,
        }
        for network in [TorNetwork::Public, sample()] {
            let w = Wrapper { network };
            let text = toml::to_string(&w).unwrap();
            let back: Wrapper = toml::from_str(&text).unwrap();
            assert_eq!(back, w, "{text}");
        }
        let public: Wrapper = toml::from_str("[network]\nkind = \"public\"\n").unwrap();
        assert_eq!(public.network, TorNetwork::Public);
    }

    #[test]
    fn custom_network_builds_an_arti_config() {
        let mut b = TorClientConfig::builder();
        sample().apply(&mut b).unwrap();
        b.build().unwrap();
    }

    #[test]
    fn bad_identities_are_rejected() {
        let TorNetwork::Custom {
            mut authorities,
            fallbacks,
            hsdir_interval,
        } = sample()
        else {
            panic!("sample is custom");
        };
        authorities[0].v3ident = "not hex".into();
        let net = TorNetwork::Custom {
            authorities,
            fallbacks,
            hsdir_interval,
        };
        let err = net.apply(&mut TorClientConfig::builder()).unwrap_err();
        assert!(matches!(err, TorError::InvalidNetwork(_)), "{err}");

        let empty = TorNetwork::Custom {
            authorities: vec![],
            fallbacks: vec![],
            hsdir_interval: None,
        };
        assert!(empty.apply(&mut TorClientConfig::builder()).is_err());
    }
}
