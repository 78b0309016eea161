//! The `[admin]` table: where the admin listener listens and whether it
//! serves Prometheus metrics.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mimix_settings::{Checked, check};
use serde::{Deserialize, Serialize};

/// The admin socket's file name, in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// Longest unix socket path the kernel takes (`sun_path` is 108 bytes,
/// one of them the final NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where the admin listener listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AdminListen {
    /// No listener.
    Off,
    /// A unix socket `admin.sock` in the data directory, mode 0600.
    #[default]
    Unix,
    /// A TCP port on a loopback address.
    Tcp(SocketAddr),
}

impl fmt::Display for AdminListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Unix => f.write_str("unix"),
            Self::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for AdminListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "unix" => Ok(Self::Unix),
            other => other.parse().map(Self::Tcp).map_err(|_| {
                format!(
                    "{other:?} is not \"unix\", \"off\" or a loopback address such as \
                     \"127.0.0.1:9180\""
                )
            }),
        }
    }
}

impl TryFrom<String> for AdminListen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AdminListen> for String {
    fn from(l: AdminListen) -> String {
        l.to_string()
    }
}

/// Where a client reaches a running node's admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// A loopback TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// `[admin]`: the local admin listener (status, metrics, status page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `"unix"` (the default), a loopback `"127.0.0.1:PORT"`, or `"off"`.
    pub listen: AdminListen,
    /// Whether `/metrics` serves Prometheus text.
    pub metrics: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: AdminListen::Unix,
            metrics: false,
        }
    }
}

impl AdminConfig {
    /// Where the listener of a node with this data directory is, if it has
    /// one.
    pub fn endpoint(&self, data_dir: &Path) -> Option<Endpoint> {
        match self.listen {
            AdminListen::Off => None,
            AdminListen::Unix => Some(Endpoint::Unix(data_dir.join(ADMIN_SOCKET))),
            AdminListen::Tcp(a) => Some(Endpoint::Tcp(a)),
        }
    }

    /// Checks every value; fields are named relative to the table. The
    /// socket path's length depends on `node.data_dir` and is checked by
    /// the configuration.
    pub fn validate(&self) -> Checked {
        if let AdminListen::Tcp(a) = self.listen {
            check(a.ip().is_loopback(), "listen", || {
                format!(
                    "the admin listener is for this machine only; {} is not a loopback address",
                    a.ip()
                )
            })?;
            check(a.port() != 0, "listen", || {
                "needs a fixed port, so that `mimix status` can find it".into()
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn listen_values_parse_and_print() {
        for text in ["off", "unix", "127.0.0.1:9180", "[::1]:9180"] {
            let l: AdminListen = text.parse().unwrap();
            assert_eq!(l.to_string(), text);
        }
        let err = "9180".parse::<AdminListen>().unwrap_err();
        assert!(err.contains("loopback address"), "{err}");
    }

    #[test]
    fn only_loopback_with_a_port() {
        let c = |listen: &str| AdminConfig {
            listen: listen.parse().unwrap(),
            metrics: true,
        };
        assert!(c("127.0.0.1:9180").validate().is_ok());
        assert!(c("unix").validate().is_ok());
        let e = c("0.0.0.0:9180").validate().unwrap_err();
        assert_eq!(e.field, "listen");
        assert!(e.reason.contains("not a loopback"), "{e}");
        let e = c("127.0.0.1:0").validate().unwrap_err();
        assert!(e.reason.contains("fixed port"), "{e}");
    }

    #[test]
    fn endpoints() {
        let dir = Path::new("/d");
        let c = AdminConfig::default();
        assert_eq!(
            c.endpoint(dir),
            Some(Endpoint::Unix(PathBuf::from("/d/admin.sock")))
        );
        let off = AdminConfig {
            listen: AdminListen::Off,
            metrics: false,
        };
        assert_eq!(off.endpoint(dir), None);
    }
}
