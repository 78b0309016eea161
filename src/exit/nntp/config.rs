//! NNTP settings: the `[exit.news.nntp]` table, its validation and the
//! password file.
//!
//! The password is only ever read from `password_file` (never inline in the
//! configuration), held in a [`Password`] that is wiped on drop and prints
//! as `Password(..)`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mimix_settings::{Checked, check, duration, path, positive};
use serde::{Deserialize, Serialize};

use super::NntpError;
use super::wire::MAX_LINE;
use crate::exit::smtp::{Password, read_password_file};
use crate::net::{is_host_name, is_loopback};

/// Longest user name or password: `AUTHINFO PASS ` plus CRLF must fit in
/// one 512-octet command line (RFC 3977 section 3.1).
pub const MAX_CREDENTIAL_LEN: usize = MAX_LINE - "AUTHINFO PASS \r\n".len();

/// Transport security towards the news server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NntpTls {
    /// Plain text (fine for a server on the same machine).
    #[default]
    None,
    /// STARTTLS (RFC 4642), required: the session fails without it.
    Starttls,
    /// Implicit TLS from the first byte (NNTPS, usually port 563).
    Tls,
}

/// A user name and its password for `AUTHINFO USER/PASS` (RFC 4643).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Password,
}

/// `[exit.news.nntp]`: the news server posts go to (with
/// `exit.news.mode = "nntp"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NntpConfig {
    /// News server host name or IP address. Default `localhost`.
    pub host: String,
    /// Server port. Default: 119, or 563 with `tls = "tls"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Transport security: `none` (default), `starttls`, `tls`.
    pub tls: NntpTls,
    /// Accept an invalid or self-signed server certificate. Default false.
    pub accept_invalid_certs: bool,
    /// `AUTHINFO USER` name; needs `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the `AUTHINFO PASS` password (trailing newline ignored).
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_file: Option<PathBuf>,
    /// Timeout of each of: TCP connect, TLS handshake, greeting. Default 30s.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Timeout of each command and its reply; the article transfer and the
    /// server's verdict on it count as one command. Default 2 minutes.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Timeout of a whole session, up to the server's verdict on the
    /// article. Default 10 minutes.
    #[serde(with = "duration")]
    pub session_timeout: Duration,
}

impl Default for NntpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: None,
            tls: NntpTls::None,
            accept_invalid_certs: false,
            username: None,
            password_file: None,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(600),
        }
    }
}

impl NntpConfig {
    /// The port to connect to: `port`, else 563 for implicit TLS, else 119.
    pub fn port(&self) -> u16 {
        match (self.port, self.tls) {
            (Some(p), _) => p,
            (None, NntpTls::Tls) => 563,
            (None, _) => 119,
        }
    }

    /// Checks the settings without reading any file; fields are named
    /// relative to the table. `AUTHINFO` is refused over plain text to
    /// anything but a server on this machine.
    pub fn validate(&self) -> Checked {
        let ipv6 = self.host.parse::<std::net::Ipv6Addr>().is_ok();
        check(is_host_name(&self.host) || ipv6, "host", || {
            format!("{:?} is not a host name or address", self.host)
        })?;
        check(self.port != Some(0), "port", || "must not be 0".into())?;
        check(
            !self.accept_invalid_certs || self.tls != NntpTls::None,
            "accept_invalid_certs",
            || "only means something with tls".into(),
        )?;
        check(
            self.username.is_some() == self.password_file.is_some(),
            "username",
            || "username and password_file go together: set both or neither".into(),
        )?;
        if let Some(user) = &self.username {
            check(valid_username(user), "username", || {
                "must be 1 to 496 characters without spaces or controls".into()
            })?;
            check(
                self.tls != NntpTls::None || is_loopback(&self.host),
                "tls",
                || "refusing to send NNTP credentials to a remote server without TLS".into(),
            )?;
        }
        positive(self.connect_timeout, "connect_timeout")?;
        positive(self.command_timeout, "command_timeout")?;
        positive(self.session_timeout, "session_timeout")
    }

    /// Reads the credentials, if a user name is configured.
    pub fn credentials(&self) -> Result<Option<Credentials>, NntpError> {
        let (Some(username), Some(path)) = (&self.username, &self.password_file) else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            username: username.clone(),
            password: read_password(path)?,
        }))
    }
}

/// Reads a password file: at most [`MAX_CREDENTIAL_LEN`] bytes after
/// trimming trailing CR/LF, UTF-8, no control characters.
pub fn read_password(path: &Path) -> Result<Password, NntpError> {
    read_password_file(path, MAX_CREDENTIAL_LEN).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidData {
            NntpError::PasswordText(path.to_owned())
        } else {
            NntpError::PasswordFile {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= MAX_CREDENTIAL_LEN
        && !u.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn field(c: &NntpConfig) -> String {
        c.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_plain_localhost_119() {
        let c = NntpConfig::default();
        assert_eq!(
            (c.host.as_str(), c.port(), c.tls),
            ("localhost", 119, NntpTls::None)
        );
        c.validate().unwrap();
        let tls = NntpConfig {
            tls: NntpTls::Tls,
            ..NntpConfig::default()
        };
        assert_eq!(tls.port(), 563);
    }

    #[test]
    fn parses_from_toml_and_refuses_unknown_fields() {
        let c: NntpConfig = toml::from_str(
            "host = \"news.example.net\"\nport = 563\ntls = \"tls\"\n\
             username = \"u\"\npassword_file = \"/run/pw\"\ncommand_timeout = \"45s\"\n",
        )
        .unwrap();
        assert_eq!((c.port(), c.tls), (563, NntpTls::Tls));
        assert_eq!(c.command_timeout, Duration::from_secs(45));
        assert_eq!(c.connect_timeout, Duration::from_secs(30));
        c.validate().unwrap();
        assert!(toml::from_str::<NntpConfig>("hots = \"x\"").is_err());
        assert!(toml::from_str::<NntpConfig>("password = \"inline\"").is_err());
        assert!(toml::from_str::<NntpConfig>("tls = \"maybe\"").is_err());
        assert!(toml::from_str::<NntpConfig>("password_file = \"\"").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let base = NntpConfig::default();
        let auth = NntpConfig {
            username: Some("u".into()),
            password_file: Some("/pw".into()),
            ..base.clone()
        };
        auth.validate().unwrap();
        let cases = [
            (
                NntpConfig {
                    host: "a b".into(),
                    ..base.clone()
                },
                "host",
            ),
            (
                NntpConfig {
                    port: Some(0),
                    ..base.clone()
                },
                "port",
            ),
            (
                NntpConfig {
                    accept_invalid_certs: true,
                    ..base.clone()
                },
                "accept_invalid_certs",
            ),
            (
                NntpConfig {
                    password_file: None,
                    ..auth.clone()
                },
                "username",
            ),
            (
                NntpConfig {
                    username: Some("a b".into()),
                    ..auth.clone()
                },
                "username",
            ),
            (
                NntpConfig {
                    host: "news.example.net".into(),
                    ..auth.clone()
                },
                "tls",
            ),
            (
                NntpConfig {
                    session_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "session_timeout",
            ),
        ];
        for (c, want) in &cases {
            assert_eq!(field(c), *want, "{c:?}");
        }
        let remote_tls = NntpConfig {
            host: "news.example.net".into(),
            tls: NntpTls::Starttls,
            ..auth
        };
        remote_tls.validate().unwrap();
    }

    #[test]
    fn password_file_is_read_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter 2\r\n").unwrap();
        let pw = read_password(&path).unwrap();
        assert_eq!(pw.expose(), "hunter 2");
        assert_eq!(format!("{pw:?}"), "Password(..)");
        for bad in ["\n", "a\u{7}b\n"] {
            std::fs::write(&path, bad).unwrap();
            assert!(matches!(
                read_password(&path),
                Err(NntpError::PasswordText(_))
            ));
        }
        std::fs::write(&path, "x".repeat(MAX_CREDENTIAL_LEN)).unwrap();
        read_password(&path).unwrap();
        std::fs::write(&path, "x".repeat(MAX_CREDENTIAL_LEN + 1)).unwrap();
        assert!(read_password(&path).is_err());
        std::fs::write(&path, "x".repeat(1 << 20)).unwrap();
        assert!(read_password(&path).is_err());
        assert!(matches!(
            read_password(&dir.path().join("missing")),
            Err(NntpError::PasswordFile { .. })
        ));
        let c = NntpConfig {
            username: Some("u".into()),
            password_file: Some(dir.path().join("missing")),
            ..NntpConfig::default()
        };
        assert!(c.credentials().is_err());
        assert!(NntpConfig::default().credentials().unwrap().is_none());
    }
}
