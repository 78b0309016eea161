//! SMTP settings: the `[exit.smtp]` table and its validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mimix_settings::{Checked, check, duration, path, positive, printable_ascii};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use super::SmtpError;
use crate::net::{is_host_name, is_loopback};

/// How messages leave the exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpMode {
    /// Through one relay host.
    #[default]
    Relay,
    /// Directly to each recipient domain's MX hosts.
    Mx,
}

/// Transport security towards the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// Plain text (fine for a relay on the same machine).
    #[default]
    None,
    /// STARTTLS, required.
    Starttls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

/// A password, wiped from memory when dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(p: String) -> Self {
        Self(Zeroizing::new(p))
    }

    /// The password text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// `[exit.smtp]`: how mail leaves the exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `relay` (default) or `mx`.
    pub mode: SmtpMode,
    /// Relay mode: the relay's host name or address. Default `localhost`.
    pub host: String,
    /// Server port. Default 25 (leave it at 25 in MX mode).
    pub port: u16,
    /// Relay transport security: `none` (default), `starttls`, `tls`.
    pub tls: RelayTls,
    /// Relay mode: accept an invalid or self-signed certificate.
    pub accept_invalid_certs: bool,
    /// Relay mode: SMTP AUTH user name, with `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A password given by a program rather than a file (never read from
    /// or written to the configuration file).
    #[serde(skip)]
    pub password: Option<Password>,
    /// Relay mode: file holding the SMTP AUTH password (a trailing newline
    /// is ignored). Passwords are never written in the configuration.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_file: Option<PathBuf>,
    /// Name sent in EHLO; unset: the domain of the exit's `from` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    /// Time to connect and read the greeting and the EHLO reply.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for each SMTP command.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Time allowed for a whole SMTP session, message transfer included.
    #[serde(with = "duration")]
    pub session_timeout: Duration,
    /// MX mode: time allowed for an MX lookup.
    #[serde(with = "duration")]
    pub dns_timeout: Duration,
    /// MX mode: whether mail exchangers at loopback, private, link-local
    /// or other non-public addresses may be contacted. Default false: a
    /// recipient domain whose MX (or address) points into the exit's own
    /// network is refused.
    pub allow_private_mx: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            mode: SmtpMode::Relay,
            host: "localhost".to_owned(),
            port: 25,
            tls: RelayTls::None,
            accept_invalid_certs: false,
            username: None,
            password: None,
            password_file: None,
            helo_name: None,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(600),
            dns_timeout: Duration::from_secs(15),
            allow_private_mx: false,
        }
    }
}

impl SmtpConfig {
    /// Checks the settings without reading any file; fields are named
    /// relative to the table. AUTH is refused in MX mode and over plain
    /// text to anything but a relay on this machine.
    pub fn validate(&self) -> Checked {
        let has_password = self.password.is_some() || self.password_file.is_some();
        check(
            !(self.password.is_some() && self.password_file.is_some()),
            "password_file",
            || "a password is given twice".into(),
        )?;
        match self.mode {
            SmtpMode::Relay => self.validate_relay(has_password)?,
            SmtpMode::Mx => check(self.username.is_none() && !has_password, "username", || {
                "credentials are only used with mode = \"relay\"".into()
            })?,
        }
        check(self.port != 0, "port", || "must not be 0".into())?;
        if let Some(helo) = &self.helo_name {
            check(is_host_name(helo), "helo_name", || {
                format!("{helo:?} is not a host name")
            })?;
        }
        positive(self.connect_timeout, "connect_timeout")?;
        positive(self.command_timeout, "command_timeout")?;
        positive(self.session_timeout, "session_timeout")?;
        positive(self.dns_timeout, "dns_timeout")
    }

    fn validate_relay(&self, has_password: bool) -> Checked {
        let ipv6 = self.host.parse::<std::net::Ipv6Addr>().is_ok();
        check(is_host_name(&self.host) || ipv6, "host", || {
            format!("{:?} is not a host name or address", self.host)
        })?;
        check(self.username.is_some() == has_password, "username", || {
            "username and password_file go together: set both or neither".into()
        })?;
        if let Some(user) = &self.username {
            check(
                !user.is_empty() && printable_ascii(user),
                "username",
                || "must be printable ASCII".into(),
            )?;
            check(
                self.tls != RelayTls::None || is_loopback(&self.host),
                "tls",
                || "refusing to send SMTP credentials to a remote relay without TLS".into(),
            )?;
        }
        Ok(())
    }
}

/// Longest SMTP password read from a file.
pub const MAX_SMTP_PASSWORD_LEN: usize = 1024;

pub(super) fn read_password(path: &Path) -> Result<Password, SmtpError> {
    read_password_file(path, MAX_SMTP_PASSWORD_LEN).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidData {
            SmtpError::PasswordText(path.to_owned())
        } else {
            SmtpError::PasswordFile {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Reads a password file (SMTP's or NNTP's): one line of at most `max`
/// bytes after trimming trailing CR/LF, UTF-8, no control characters. A
/// longer file is refused without being read in full. Bad text is an
/// [`std::io::ErrorKind::InvalidData`] error.
pub(crate) fn read_password_file(path: &Path, max: usize) -> std::io::Result<Password> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Zeroizing::new(Vec::new());
    // Two more bytes than allowed leave room for a CRLF; anything longer
    // is refused below rather than read in full.
    file.take(max as u64 + 3).read_to_end(&mut bytes)?;
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let trimmed = text.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() || trimmed.len() > max || has_ctl(trimmed) {
        return Err(bad());
    }
    Ok(Password::new(trimmed.to_owned()))
}

fn has_ctl(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_localhost_relay_without_tls() {
        let c = SmtpConfig::default();
        assert_eq!(
            (c.mode, c.host.as_str(), c.port, c.tls),
            (SmtpMode::Relay, "localhost", 25, RelayTls::None)
        );
        c.validate().unwrap();
    }

    #[test]
    fn config_parses_from_toml() {
        let mut c: SmtpConfig = toml::from_str(
            "mode = \"relay\"\nhost = \"smtp.example.net\"\nport = 587\ntls = \"starttls\"\n\
             username = \"u\"\ncommand_timeout = \"45s\"\n",
        )
        .unwrap();
        // Passwords never come from the configuration file.
        assert!(toml::from_str::<SmtpConfig>("password = \"secret\"").is_err());
        c.password = Some(Password::new("secret".into()));
        assert_eq!(c.port, 587);
        assert_eq!(c.tls, RelayTls::Starttls);
        assert_eq!(c.command_timeout, Duration::from_secs(45));
        assert_eq!(c.connect_timeout, Duration::from_secs(30));
        assert!(!format!("{c:?}").contains("secret"));
        c.validate().unwrap();
        assert!(toml::from_str::<SmtpConfig>("hots = \"x\"").is_err());
        let mx: SmtpConfig = toml::from_str("mode = \"mx\"").unwrap();
        assert_eq!(mx.mode, SmtpMode::Mx);
    }

    #[test]
    fn unsafe_combinations_are_refused() {
        let auth_plain = SmtpConfig {
            host: "smtp.example.net".into(),
            username: Some("u".into()),
            password: Some(Password::new("p".into())),
            ..SmtpConfig::default()
        };
        assert!(auth_plain.validate().is_err());
        let local = SmtpConfig {
            host: "127.0.0.1".into(),
            ..auth_plain.clone()
        };
        local.validate().unwrap();
        let no_user = SmtpConfig {
            username: None,
            ..local.clone()
        };
        assert!(no_user.validate().is_err());
        let mx_auth = SmtpConfig {
            mode: SmtpMode::Mx,
            ..local
        };
        assert!(mx_auth.validate().is_err());
        let bad_helo = SmtpConfig {
            helo_name: Some("a b".into()),
            ..SmtpConfig::default()
        };
        assert!(bad_helo.validate().is_err());
        let zero = SmtpConfig {
            command_timeout: Duration::ZERO,
            ..SmtpConfig::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        assert_eq!(read_password(&path).unwrap().expose(), "hunter2");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_password(&path),
            Err(SmtpError::PasswordText(_))
        ));
        std::fs::write(&path, "x".repeat(MAX_SMTP_PASSWORD_LEN + 1)).unwrap();
        assert!(matches!(
            read_password(&path),
            Err(SmtpError::PasswordText(_))
        ));
        assert!(matches!(
            read_password(&dir.path().join("missing")),
            Err(SmtpError::PasswordFile { .. })
        ));
    }
}
