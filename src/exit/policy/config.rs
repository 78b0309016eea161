//! The `[exit.policy]` table: the operator's `From:`, the header lists and
//! the limits, and the header-name patterns those lists are made of.

use mimix_settings::{Checked, Invalid, check, size};
use serde::{Deserialize, Serialize};

use super::{Policy, PolicyError, is_ftext};

/// The default operator `From:`.
pub const DEFAULT_FROM: &str = "Anonymous Remailer <nobody@localhost>";

/// The default `Comments:` text.
pub const DEFAULT_COMMENTS: &str = "This message was sent through an anonymous remailer. \
     Replying to the sender is not possible.";

/// Largest reassembled payload (255 chunks of 10240 bytes).
pub const MAX_PAYLOAD: usize = mimix_packet::layout::MAX_MESSAGE_LEN;

/// Smallest `max_message_size` accepted.
pub(super) const MIN_MESSAGE_SIZE: usize = 1024;

/// Largest `max_message_size` accepted (room for decompressed payloads).
const MAX_MESSAGE_SIZE: usize = 4 * MAX_PAYLOAD;

/// Largest `max_recipients` accepted.
const MAX_RECIPIENTS: usize = 1000;

/// Longest `Comments:` text.
pub(super) const MAX_COMMENTS: usize = 900;

/// Default size limit of the delivered message: the largest payload plus
/// room for the headers the exit adds.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = MAX_PAYLOAD + 16_384;

/// Default limit on distinct recipients per message.
pub const DEFAULT_MAX_RECIPIENTS: usize = 10;

/// Headers always removed from the sender's message, whatever the
/// configuration: the exit writes its own `From`, `Date` and `Message-ID`;
/// `Bcc` would reveal blind recipients; the rest would forge an origin.
pub const MANAGED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Date",
    "Message-ID",
    "Bcc",
    "Received",
    "Return-Path",
];

/// Default deny list. Entries are field names, or prefixes ending in `*`,
/// compared case-insensitively. It removes: forged origin and trace
/// headers, software and client fingerprints, authentication results and
/// signatures, headers that send notifications or bounces to third parties,
/// Usenet posting and control headers (draft 6.5), the sender's own
/// `Comments` (the exit adds its own) and length headers.
pub const DEFAULT_DENY_HEADERS: &[&str] = &[
    "Resent-*",
    "X-Originating-IP",
    "X-Sender",
    "X-Mailer",
    "X-Newsreader",
    "User-Agent",
    "Organization",
    "X-Authenticated-*",
    "X-Original-*",
    "X-Envelope-*",
    "Delivered-To",
    "Apparently-To",
    "DKIM-Signature",
    "DomainKey-Signature",
    "ARC-*",
    "Authentication-Results",
    "Received-SPF",
    "Errors-To",
    "Return-Receipt-To",
    "Disposition-Notification-To",
    "Disposition-Notification-Options",
    "Comments",
    "Newsgroups",
    "Control",
    "Also-Control",
    "Approved",
    "Supersedes",
    "Path",
    "NNTP-*",
    "Injection-*",
    "X-Trace",
    "X-Complaints-To",
    "Content-Length",
    "Lines",
];

/// `[exit.policy]`: what delivered mail looks like, and the limits on
/// what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The `From:` put on every message; its display name must contain
    /// "Anonymous" (any case) so recipients can filter (draft 6.5).
    /// Default [`DEFAULT_FROM`].
    pub from: String,
    /// SMTP envelope sender (where bounces go). Default: the address of
    /// `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope_from: Option<String>,
    /// Text of the `Comments:` header (printable ASCII, folded
    /// automatically); empty for none. Default [`DEFAULT_COMMENTS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// Domain of generated Message-IDs. Default: the domain of `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id_domain: Option<String>,
    /// Sender headers to drop (names or `prefix*`, case-insensitive).
    /// Default [`DEFAULT_DENY_HEADERS`]; setting it replaces that list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_headers: Option<Vec<String>>,
    /// If not empty, only these sender headers (and To/Cc) pass; the deny
    /// list still applies. Default empty (everything not denied passes).
    pub allow_headers: Vec<String>,
    /// Largest payload accepted and message delivered, in bytes. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`].
    #[serde(with = "size")]
    pub max_message_size: usize,
    /// Most distinct recipients per message. Default
    /// [`DEFAULT_MAX_RECIPIENTS`].
    pub max_recipients: usize,
    /// Whether a recipient domain may be a public IP address
    /// (`a@[192.0.2.1]`). Loopback, private and other non-public addresses
    /// are refused either way. Default false.
    pub allow_ip_literals: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            from: DEFAULT_FROM.to_owned(),
            envelope_from: None,
            comments: None,
            message_id_domain: None,
            deny_headers: None,
            allow_headers: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            allow_ip_literals: false,
        }
    }
}

impl PolicyConfig {
    /// The `Comments:` text in effect.
    pub fn comments_text(&self) -> &str {
        self.comments.as_deref().unwrap_or(DEFAULT_COMMENTS)
    }

    /// The deny list in effect.
    pub fn deny_list(&self) -> Vec<String> {
        match &self.deny_headers {
            Some(list) => list.clone(),
            None => DEFAULT_DENY_HEADERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    /// Checks every setting (as [`Policy::new`] does); fields are named
    /// relative to the table.
    pub fn validate(&self) -> Checked {
        let lists = [
            (
                "deny_headers",
                self.deny_headers.as_deref().unwrap_or_default(),
            ),
            ("allow_headers", self.allow_headers.as_slice()),
        ];
        for (field, list) in lists {
            for (i, h) in list.iter().enumerate() {
                Pattern::parse(h)
                    .map_err(|e| Invalid::new(format!("{field}[{i}]"), e.to_string()))?;
            }
        }
        check(
            (MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&self.max_message_size),
            "max_message_size",
            || {
                format!(
                    "must be {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE} bytes, got {}",
                    self.max_message_size
                )
            },
        )?;
        check(
            (1..=MAX_RECIPIENTS).contains(&self.max_recipients),
            "max_recipients",
            || format!("must be 1 to {MAX_RECIPIENTS}, got {}", self.max_recipients),
        )?;
        Policy::new(self).map(drop).map_err(|e| {
            let field = match e {
                PolicyError::BadEnvelopeFrom(_) => "envelope_from",
                PolicyError::BadComments(_) => "comments",
                PolicyError::BadDomain(_) => "message_id_domain",
                _ => "from",
            };
            Invalid::new(field, e.to_string())
        })
    }
}

/// A header name pattern: exact name or prefix (lowercased).
#[derive(Debug, Clone)]
pub(super) enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub(super) fn parse(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadPattern(s.to_owned());
        let (body, prefix) = match s.strip_suffix('*') {
            Some(p) => (p, true),
            None => (s, false),
        };
        if body.is_empty() || !body.bytes().all(|b| is_ftext(b) && b != b'*') {
            return Err(bad());
        }
        let body = body.to_ascii_lowercase();
        Ok(if prefix {
            Self::Prefix(body)
        } else {
            Self::Exact(body)
        })
    }

    pub(super) fn matches(&self, lower_name: &str) -> bool {
        match self {
            Self::Exact(n) => lower_name == n,
            Self::Prefix(p) => lower_name.starts_with(p.as_str()),
        }
    }
}
