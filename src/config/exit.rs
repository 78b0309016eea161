//! The `[exit]` table: reassembly, header policy, blocklist and SMTP
//! delivery at an exit node. Field names follow the exit module's own
//! settings so that converting is a field-by-field copy.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::serde_helpers::{duration, path, size};

/// Largest message a Mimix packet chain carries: 255 chunks of 10240
/// bytes.
pub const MAX_PAYLOAD: u64 = 255 * 10_240;

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// `[exit]`: everything an exit node needs (used only with
/// `node.smtp_exit = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitConfig {
    /// File of blocked destination addresses; a missing file blocks
    /// nothing. Default: `<data_dir>/blocklist.txt`.
    #[serde(with = "path")]
    pub blocklist: PathBuf,
    /// `[exit.policy]`: header rewriting and limits.
    pub policy: ExitPolicyConfig,
    /// `[exit.smtp]`: how mail leaves the exit.
    pub smtp: SmtpConfig,
    /// `[exit.retry]`: retries of temporarily failed deliveries.
    pub retry: MailRetryConfig,
    /// `[exit.reassembly]`: incomplete multi-chunk messages.
    pub reassembly: ReassemblyConfig,
}

impl Default for ExitConfig {
    fn default() -> Self {
        Self {
            blocklist: PathBuf::new(),
            policy: ExitPolicyConfig::default(),
            smtp: SmtpConfig::default(),
            retry: MailRetryConfig::default(),
            reassembly: ReassemblyConfig::default(),
        }
    }
}

/// `[exit.policy]`: what delivered mail looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitPolicyConfig {
    /// The `From:` of delivered mail: a mailbox in printable ASCII whose
    /// display name contains "Anonymous" (draft 6.5).
    pub from: String,
    /// SMTP envelope sender (where bounces go); unset: the address of
    /// `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope_from: Option<String>,
    /// Text of the `Comments:` header; unset: the exit's built-in text;
    /// empty: no header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// Domain of generated `Message-ID`s; unset: the domain of `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id_domain: Option<String>,
    /// Sender headers removed (names or `prefix*`, any case); unset: the
    /// exit's built-in list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_headers: Option<Vec<String>>,
    /// If not empty, only these sender headers (and `To`/`Cc`) pass.
    pub allow_headers: Vec<String>,
    /// Largest payload accepted and message delivered, in bytes.
    #[serde(with = "size")]
    pub max_message_size: u64,
    /// Most distinct recipients per message.
    pub max_recipients: usize,
}

impl Default for ExitPolicyConfig {
    fn default() -> Self {
        Self {
            from: "Anonymous Remailer <nobody@localhost>".into(),
            envelope_from: None,
            comments: None,
            message_id_domain: None,
            deny_headers: None,
            allow_headers: Vec::new(),
            max_message_size: MAX_PAYLOAD + 16_384,
            max_recipients: 10,
        }
    }
}

/// How an exit hands mail over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpMode {
    /// Through one relay (smarthost) given by `host` and `port`.
    #[default]
    Relay,
    /// Straight to each recipient domain's MX hosts.
    Mx,
}

/// Transport security of the connection to the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (only sensible to a relay on this host).
    #[default]
    None,
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// `[exit.smtp]`: the SMTP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay through a smarthost, or deliver to MX hosts.
    pub mode: SmtpMode,
    /// Relay mode: the relay's host name or address.
    pub host: String,
    /// Server port (leave it at 25 in MX mode).
    pub port: u16,
    /// Relay mode: transport security.
    pub tls: SmtpTls,
    /// Relay mode: accept an invalid or self-signed certificate.
    pub accept_invalid_certs: bool,
    /// Relay mode: SMTP AUTH user name, with `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Relay mode: file holding the SMTP AUTH password (a trailing newline
    /// is ignored). Passwords are never written in this file.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_file: Option<PathBuf>,
    /// Name sent in EHLO; unset: the domain of `policy.from`.
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
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            mode: SmtpMode::Relay,
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            accept_invalid_certs: false,
            username: None,
            password_file: None,
            helo_name: None,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(600),
            dns_timeout: Duration::from_secs(15),
        }
    }
}

/// `[exit.retry]`: retries of deliveries that failed temporarily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailRetryConfig {
    /// Wait before the first retry; doubled after each failure.
    #[serde(with = "duration")]
    pub initial: Duration,
    /// Longest wait between retries.
    #[serde(with = "duration")]
    pub max: Duration,
    /// A message still undelivered this long after it was queued is
    /// dropped.
    #[serde(with = "duration")]
    pub give_up_after: Duration,
}

impl Default for MailRetryConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5 * 60),
            max: Duration::from_secs(6 * 3600),
            give_up_after: days(5),
        }
    }
}

/// `[exit.reassembly]`: incomplete multi-chunk messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyConfig {
    /// How long an incomplete message is kept after its first chunk.
    #[serde(with = "duration")]
    pub expiry: Duration,
    /// Most incomplete messages kept at once (each can hold up to 2.6 MB);
    /// chunks that would start one more are dropped.
    pub max_partial_sets: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            expiry: days(28),
            max_partial_sets: 256,
        }
    }
}
