//! The remailers this node knows: their addresses and published keys, used
//! for dummy chains (and, later, pinger statistics and chain selection).
//!
//! Each known remailer comes from the configuration. Its
//! `remailer-conf.txt` is read from a local file when one is configured,
//! otherwise fetched from `<address>/remailer-conf.txt` over the transport
//! and refreshed periodically. A conf is only used while it parses, its
//! key ID matches its key, its address matches the configured one, and its
//! key is valid today.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::RwLock;

use mimix_packet::{Hop, RemailerConf};
use mimix_settings::{Checked, Invalid, check, path};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::transport::{ClientLimits, Dialer, PeerUrl, fetch_conf};

/// Whether `name` is a remailer name mimix publishes and accepts in its
/// configuration: 1 to 32 ASCII letters, digits, `-`, `_` or `.`.
pub fn is_remailer_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A remailer known from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownRemailer {
    /// Its name, as in its `remailer-conf.txt`.
    pub name: String,
    /// Its base URL (`http://host[:port]`).
    pub address: String,
    /// A local copy of its `remailer-conf.txt`; without it the conf is
    /// fetched from `<address>/remailer-conf.txt`.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub conf: Option<PathBuf>,
}

/// `[directory]`: the remailers this node knows about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Known remailers, used for dummy chains and peer checks.
    pub remailers: Vec<KnownRemailer>,
}

impl DirectoryConfig {
    /// Checks every entry (names valid and distinct, addresses base URLs
    /// and distinct); fields are named relative to the table. Whether the
    /// transport reaches an address is checked by the configuration.
    pub fn validate(&self) -> Checked {
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for (i, r) in self.remailers.iter().enumerate() {
            let field = |f: &str| format!("remailers[{i}].{f}");
            check(is_remailer_name(&r.name), &field("name"), || {
                format!(
                    "{:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'",
                    r.name
                )
            })?;
            let url = PeerUrl::parse(&r.address)
                .map_err(|e| Invalid::new(field("address"), format!("{:?}: {e}", r.address)))?;
            check(names.insert(r.name.as_str()), &field("name"), || {
                format!("{:?} is listed twice", r.name)
            })?;
            check(addresses.insert(url), &field("address"), || {
                "listed twice".into()
            })?;
        }
        Ok(())
    }
}

/// Why a remailer's conf could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The local conf file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The conf is malformed or its key is not valid today.
    #[error("remailer-conf of {name}: {source}")]
    Conf {
        /// The remailer's configured name.
        name: String,
        /// Why it was refused.
        source: mimix_packet::ConfError,
    },
    /// The conf describes a different remailer than configured.
    #[error("remailer-conf of {0} names another remailer or address")]
    Mismatch(String),
    /// Fetching the conf failed.
    #[error("fetching the remailer-conf of {name}: {source}")]
    Fetch {
        /// The remailer's configured name.
        name: String,
        /// The transport error.
        source: crate::transport::ClientError,
    },
}

#[derive(Debug, Clone)]
struct Peer {
    known: KnownRemailer,
    conf: Option<RemailerConf>,
}

/// The known remailers.
#[derive(Debug, Default)]
pub struct Directory {
    peers: RwLock<Vec<Peer>>,
}

fn check_conf(
    known: &KnownRemailer,
    text: &str,
    today: u64,
) -> Result<RemailerConf, DirectoryError> {
    let conf = RemailerConf::parse_valid(text, today).map_err(|source| DirectoryError::Conf {
        name: known.name.clone(),
        source,
    })?;
    if conf.name != known.name
        || conf.address.trim_end_matches('/') != known.address.trim_end_matches('/')
    {
        return Err(DirectoryError::Mismatch(known.name.clone()));
    }
    Ok(conf)
}

impl Directory {
    /// A directory of the configured remailers, with local conf files read.
    /// Remailers whose file cannot be used are kept (without a key) and
    /// reported in the returned errors.
    pub fn new(known: &[KnownRemailer], today: u64) -> (Self, Vec<DirectoryError>) {
        let mut errors = Vec::new();
        let peers = known
            .iter()
            .map(|k| {
                let conf = k.conf.as_ref().and_then(|path| {
                    let r = std::fs::read_to_string(path)
                        .map_err(|source| DirectoryError::Read {
                            path: path.clone(),
                            source,
                        })
                        .and_then(|text| check_conf(k, &text, today));
                    r.map_err(|e| errors.push(e)).ok()
                });
                Peer {
                    known: k.clone(),
                    conf,
                }
            })
            .collect();
        (
            Self {
                peers: RwLock::new(peers),
            },
            errors,
        )
    }

    /// Fetches the confs of remailers without a local file. Returns how many
    /// remailers have a usable key afterwards.
    pub async fn refresh(&self, dialer: &dyn Dialer, limits: &ClientLimits, today: u64) -> usize {
        let todo: Vec<KnownRemailer> = self
            .read()
            .iter()
            .filter(|p| p.known.conf.is_none())
            .map(|p| p.known.clone())
            .collect();
        for k in todo {
            let result = match fetch_conf(dialer, &k.address, limits).await {
                Ok(text) => check_conf(&k, &text, today),
                Err(source) => Err(DirectoryError::Fetch {
                    name: k.name.clone(),
                    source,
                }),
            };
            match result {
                Ok(conf) => {
                    debug!("fetched a remailer-conf");
                    self.set(&k.name, Some(conf));
                }
                Err(e @ DirectoryError::Fetch { .. }) => debug!("{e}"),
                Err(e) => warn!("{e}"),
            }
        }
        // Drop keys that expired since they were fetched.
        let mut peers = self.write();
        for p in peers.iter_mut() {
            if p.conf
                .as_ref()
                .is_some_and(|c| c.check_valid(today).is_err())
            {
                p.conf = None;
            }
        }
        peers.iter().filter(|p| p.conf.is_some()).count()
    }

    fn set(&self, name: &str, conf: Option<RemailerConf>) {
        if let Some(p) = self.write().iter_mut().find(|p| p.known.name == name) {
            p.conf = conf;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Peer>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Peer>> {
        self.peers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every remailer with a key valid on `today`, as chain hops.
    pub fn hops(&self, today: u64) -> Vec<Hop> {
        self.read()
            .iter()
            .filter_map(|p| p.conf.as_ref())
            .filter(|c| c.check_valid(today).is_ok())
            .map(|c| Hop {
                key: c.key.clone(),
                address: c.address.clone(),
            })
            .collect()
    }

    /// Whether some remailer has no usable key yet.
    pub fn incomplete(&self) -> bool {
        self.read().iter().any(|p| p.conf.is_none())
    }

    /// Addresses of all configured remailers (for our published conf).
    pub fn addresses(&self) -> Vec<String> {
        self.read()
            .iter()
            .map(|p| p.known.address.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn vector_conf(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/vectors/remailers/{name}/remailer-conf.txt"))
    }

    #[test]
    fn local_confs_are_checked() {
        const DAY: u64 = 20786;
        let known = vec![
            KnownRemailer {
                name: "alpha".into(),
                address: "http://alpha.example.onion".into(),
                conf: Some(vector_conf("alpha")),
            },
            // Wrong address for this conf.
            KnownRemailer {
                name: "beta".into(),
                address: "http://other.example.onion".into(),
                conf: Some(vector_conf("beta")),
            },
            KnownRemailer {
                name: "gamma".into(),
                address: "http://gamma.example.onion".into(),
                conf: Some(PathBuf::from("/nonexistent/conf")),
            },
            KnownRemailer {
                name: "delta".into(),
                address: "http://delta.example.onion:8080".into(),
                conf: Some(vector_conf("delta")),
            },
        ];
        let (dir, errors) = Directory::new(&known, DAY);
        assert_eq!(errors.len(), 2);
        assert!(matches!(errors[0], DirectoryError::Mismatch(_)));
        assert!(matches!(errors[1], DirectoryError::Read { .. }));
        let hops = dir.hops(DAY);
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[1].address, "http://delta.example.onion:8080");
        // Keys expire.
        assert!(dir.hops(DAY + 400).is_empty());
        assert_eq!(dir.addresses().len(), 4);
    }
}
