//! SMTP settings: the `[exit.smtp]` table and its validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use super::SmtpError;

/// How messages leave the exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpMode {
    /// Through one relay host.
    #[default]
    Relay,
    /// Directly to each recipient domain's MX hosts.
    Mx,
}

/// Transport security towards the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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

/// SMTP settings (the `[exit.smtp]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `relay` (default) or `mx`.
    pub mode: SmtpMode,
    /// Relay host name or IP (relay mode). Default `localhost`.
    pub host: String,
    /// Server port. Default 25 (leave it at 25 in MX mode).
    pub port: u16,
    /// Relay transport security: `none` (default), `starttls`, `tls`.
    pub tls: RelayTls,
    /// Accept an invalid or self-signed relay certificate. Default false.
    pub accept_invalid_certs: bool,
    /// Relay AUTH user name (relay mode only).
    pub username: Option<String>,
    /// Relay AUTH password; prefer `password_file`.
    pub password: Option<Password>,
    /// File holding the relay AUTH password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// EHLO name. Default: the domain of the exit's `from` address.
    pub helo_name: Option<String>,
    /// Timeout to connect and read the greeting and EHLO reply. Default 30s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of each SMTP command. Default 2 minutes.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Timeout of a whole SMTP session, message transfer included.
    /// Default 10 minutes.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Timeout of an MX lookup (MX mode). Default 15s.
    #[serde(with = "humantime_serde")]
    pub dns_timeout: Duration,
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
        }
    }
}

impl SmtpConfig {
    /// Checks the settings without reading any file. AUTH is refused in MX
    /// mode and over plain text to anything but a loopback relay.
    pub fn validate(&self) -> Result<(), SmtpError> {
        let bad = |why| Err(SmtpError::Invalid(why));
        let has_password = self.password.is_some() || self.password_file.is_some();
        if self.password.is_some() && self.password_file.is_some() {
            return bad("both password and password_file are set");
        }
        if has_password != self.username.is_some() {
            return bad("username and a password go together");
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.is_empty() || has_ctl(u))
        {
            return bad("invalid username");
        }
        if self.mode == SmtpMode::Mx && self.username.is_some() {
            return bad("AUTH is for relay mode only");
        }
        if self.username.is_some() && self.tls == RelayTls::None && !is_loopback(&self.host) {
            return bad("AUTH over plain text to a non-loopback relay");
        }
        if self.mode == SmtpMode::Relay
            && (self.host.is_empty() || !self.host.bytes().all(is_host_byte))
        {
            return bad("invalid relay host");
        }
        if self.port == 0 {
            return bad("port 0");
        }
        if self.helo_name.as_deref().is_some_and(|h| !valid_helo(h)) {
            return bad("invalid helo_name");
        }
        let timeouts = [
            self.connect_timeout,
            self.command_timeout,
            self.session_timeout,
            self.dns_timeout,
        ];
        if timeouts.iter().any(Duration::is_zero) {
            return bad("zero timeout");
        }
        Ok(())
    }
}

pub(super) fn read_password(path: &Path) -> Result<Password, SmtpError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SmtpError::PasswordFile {
            path: path.to_owned(),
            source,
        }
    })?);
    let trimmed = text.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() || has_ctl(trimmed) {
        return Err(SmtpError::Invalid(
            "password file is empty or holds control characters",
        ));
    }
    Ok(Password::new(trimmed.to_owned()))
}

fn has_ctl(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_')
}

pub(super) fn valid_helo(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
        let c: SmtpConfig = toml::from_str(
            "mode = \"relay\"\nhost = \"smtp.example.net\"\nport = 587\ntls = \"starttls\"\n\
             username = \"u\"\npassword = \"secret\"\ncommand_timeout = \"45s\"\n",
        )
        .unwrap();
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
        assert!(read_password(&path).is_err());
        assert!(matches!(
            read_password(&dir.path().join("missing")),
            Err(SmtpError::PasswordFile { .. })
        ));
    }
}
