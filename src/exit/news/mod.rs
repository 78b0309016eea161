//! Usenet posting at the exit (draft 4.1: the payload "can be an e-mail
//! message, a Usenet message, or a dummy"; wire format 7: the payload is a
//! plain RFC 2822 message, so a post is one with a `Newsgroups:` header).
//!
//! Off by default (`exit.news.mode`). When on, a reassembled payload with a
//! `Newsgroups:` header is a post ([`is_post`]). [`News::prepare`] polices
//! it with the same header policy as mail ([`Policy`]: the operator's
//! `From:`, the exit's `Date:`, `Message-ID:` and `Comments:`, the deny
//! and allow lists, the size limit), and with the rules of draft 6.5
//! against unauthorised control messages. A post is refused, and counted
//! by reason ([`NewsRefusal`]), when it
//!
//! * is a control message: a `Control:`, `Also-Control:` or `Supersedes:`
//!   header, a `Subject:` starting with `cmsg`, or a group of the `control`
//!   hierarchy;
//! * carries `Approved:` (which would bypass a moderator);
//! * names more groups than `exit.news.max_groups` (default 3) in
//!   `Newsgroups:` or in `Followup-To:`;
//! * names a group on the newsgroup blocklist ([`groups`]), in either;
//! * names no group, an invalid or reserved one, or two `Newsgroups:`;
//! * also names mail recipients (`To:`, `Cc:`, `Bcc:`).
//!
//! The checked group lists replace the sender's headers. The post then
//! goes to a mail2news gateway by SMTP (an [`Outgoing::News`] delivery
//! with a `To:` of the gateway) or to an NNTP server ([`Outgoing::Post`],
//! posted by [`News::post`] with [`crate::exit::nntp`]); both travel
//! through the mail queue, retried by the one queue worker.

pub mod config;
pub mod groups;

#[cfg(test)]
mod tests;

use lettre::Address;

pub use config::{DEFAULT_MAX_GROUPS, NewsConfig, NewsMode};
use groups::{GroupRules, header_line, parse_list};

use super::address::{addr_str, find};
use super::delivery::Delivery;
use super::error::PolicyError;
use super::nntp::{Article, NntpClient, NntpError};
use super::outgoing::Outgoing;
use super::policy::Policy;
use super::smtp::{DeliveryFailure, DeliveryResult, FailureKind};
use super::watched::Watched;
use super::{ExitError, address};
use crate::safelog::{bytes, sensitive};

/// The mail queue's routing hint for a post (see
/// [`crate::exit::Exit::destination`]); not a domain a recipient can have.
pub const NEWS_HINT: &str = "[news]";

/// Sender headers a post never keeps: the exit writes the checked group
/// lists itself, and the news server its own trace headers.
const NEWS_DROP: &[&str] = &[
    "newsgroups",
    "followup-to",
    "to",
    "cc",
    "path",
    "xref",
    "lines",
];

/// Why a post is refused (counted as `news_refused_<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NewsRefusal {
    /// A control message: `Control:`, `Also-Control:` or `Supersedes:`, a
    /// `cmsg` subject, or a `control.*` group.
    #[error("a control message")]
    Control,
    /// An `Approved:` header.
    #[error("an Approved header")]
    Approved,
    /// More groups than allowed in `Newsgroups:` or `Followup-To:`.
    #[error("{} groups, at most {max} allowed", sensitive(found))]
    Crosspost {
        /// Distinct groups found.
        found: usize,
        /// Configured limit.
        max: usize,
    },
    /// A group on the newsgroup blocklist.
    #[error("a blocked newsgroup")]
    Blocked,
    /// No `Newsgroups:`, two of them, an empty list, or an invalid or
    /// reserved group name.
    #[error("missing, invalid or reserved newsgroups")]
    BadGroups,
    /// Mail recipients in a post.
    #[error("a post with mail recipients")]
    WithRecipients,
}

impl NewsRefusal {
    /// A short stable name, the suffix of the `news_refused_<reason>`
    /// counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Approved => "approved",
            Self::Crosspost { .. } => "crosspost",
            Self::Blocked => "blocked",
            Self::BadGroups => "bad_groups",
            Self::WithRecipients => "with_recipients",
        }
    }
}

/// A policed article for an NNTP server, and the groups it names (for the
/// blocklist check before each attempt).
#[derive(Clone, PartialEq, Eq)]
pub struct Post {
    /// The groups of `Newsgroups:` and `Followup-To:`.
    pub groups: Vec<String>,
    /// The article, CRLF line ends.
    pub message: Vec<u8>,
}

impl std::fmt::Debug for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Post")
            .field("groups", &sensitive(&self.groups))
            .field("message", &bytes(self.message.len()))
            .finish()
    }
}

const POST_MAGIC: &[u8] = b"MIMIX-POST 1\r\n";

impl Post {
    /// Serialises the post for the mail queue (kept apart from raw
    /// payloads like an encoded [`Delivery`]).
    pub fn encode(&self) -> Vec<u8> {
        let groups = self.groups.join(",");
        let mut out = Vec::with_capacity(POST_MAGIC.len() + groups.len() + self.message.len() + 2);
        out.extend_from_slice(POST_MAGIC);
        out.extend_from_slice(groups.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.message);
        out
    }

    /// Whether `bytes` is an encoded post.
    pub fn is_encoded(bytes: &[u8]) -> bool {
        bytes.starts_with(POST_MAGIC)
    }

    /// Parses what [`Post::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        let rest = bytes
            .strip_prefix(POST_MAGIC)
            .ok_or(PolicyError::BadEncoding)?;
        let end = find(rest, b"\r\n").ok_or(PolicyError::BadEncoding)?;
        let (line, message) = rest.split_at(end);
        let line = std::str::from_utf8(line).map_err(|_| PolicyError::BadEncoding)?;
        let groups: Vec<String> = line.split(',').map(str::to_owned).collect();
        let message = message.get(2..).unwrap_or_default();
        if message.is_empty() || !groups.iter().all(|g| groups::is_name(g)) {
            return Err(PolicyError::BadEncoding);
        }
        Ok(Self {
            groups,
            message: message.to_vec(),
        })
    }
}

/// Whether the header block of `payload` has a `Newsgroups:` field (a
/// quick look: [`News::prepare`] parses it properly).
pub fn is_post(payload: &[u8]) -> bool {
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if name.len() < line.len() && name.eq_ignore_ascii_case(b"newsgroups") {
            return true;
        }
    }
    false
}

/// Where posts go.
enum Poster {
    /// By mail to this mail2news gateway.
    Gateway(Address),
    /// To this news server.
    Nntp(NntpClient),
}

/// The exit's Usenet side: the news policy and the way out.
pub struct News {
    max_groups: usize,
    blocklist: Option<Watched<GroupRules>>,
    poster: Poster,
}

impl std::fmt::Debug for News {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match &self.poster {
            Poster::Gateway(_) => "mail2news",
            Poster::Nntp(_) => "nntp",
        };
        f.debug_struct("News")
            .field("via", &via)
            .field("blocklist", &self.blocklist.as_ref().map(Watched::path))
            .finish_non_exhaustive()
    }
}

impl News {
    /// The news side for `config`, `None` when posting is off. Reads the
    /// newsgroup blocklist and, for NNTP, the password file.
    pub fn new(config: &NewsConfig) -> Result<Option<Self>, ExitError> {
        config
            .validate()
            .map_err(|e| ExitError::Config(e.within("news")))?;
        let poster = match config.mode {
            NewsMode::Off => return Ok(None),
            NewsMode::Mail2news => {
                let text = config.gateway.as_deref().unwrap_or_default();
                let gateway = address::recipient(text, false).map_err(|_| {
                    ExitError::Config(mimix_settings::Invalid::new(
                        "news.gateway",
                        "not a mail address",
                    ))
                })?;
                Poster::Gateway(gateway)
            }
            NewsMode::Nntp => Poster::Nntp(NntpClient::new(config.nntp.clone())?),
        };
        let blocklist = Some(&config.blocklist)
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| Watched::load(p, "newsgroup blocklist", GroupRules::parse))
            .transpose()?;
        Ok(Some(Self {
            max_groups: config.max_groups,
            blocklist,
            poster,
        }))
    }

    /// The key of the mail queue's per-destination cap for posts: the
    /// news server, or the gateway's domain (which the caller maps to the
    /// SMTP relay in relay mode), as `Err`.
    pub fn destination(&self) -> Result<String, String> {
        match &self.poster {
            Poster::Nntp(c) => Ok(format!("nntp:{}:{}", c.config().host, c.config().port())),
            Poster::Gateway(a) => Err(a.domain().to_ascii_lowercase()),
        }
    }

    /// Whether a group of `groups` is on the blocklist (reading the file
    /// again if it changed).
    pub fn blocked(&self, groups: &[String]) -> bool {
        let Some(list) = &self.blocklist else {
            return false;
        };
        let rules = list.rules();
        groups.iter().any(|g| rules.matches(g))
    }

    /// Polices the post `payload` (see the module docs), dating it `now`
    /// and drawing its Message-ID from `rng`.
    pub fn prepare<R: rand::CryptoRng + ?Sized>(
        &self,
        policy: &Policy,
        payload: &[u8],
        now: std::time::SystemTime,
        rng: &mut R,
    ) -> Result<Outgoing, PolicyError> {
        let refuse = |r| Err(PolicyError::News(r));
        let parsed = policy.parse(payload)?;
        let (mut newsgroups, mut followup) = (None, None);
        for h in &parsed.headers {
            let Some(name) = parsed.name(h) else {
                continue;
            };
            let value = parsed.value(h);
            match name.as_str() {
                "control" | "also-control" | "supersedes" => return refuse(NewsRefusal::Control),
                "approved" => return refuse(NewsRefusal::Approved),
                "subject" if is_cmsg(value) => return refuse(NewsRefusal::Control),
                "to" | "cc" | "bcc" if !value.trim_ascii().is_empty() => {
                    return refuse(NewsRefusal::WithRecipients);
                }
                "newsgroups" if newsgroups.replace(value).is_some() => {
                    return refuse(NewsRefusal::BadGroups);
                }
                "followup-to" if followup.replace(value).is_some() => {
                    return refuse(NewsRefusal::BadGroups);
                }
                _ => {}
            }
        }
        let max = self.max_groups;
        let to = |r: NewsRefusal| PolicyError::News(r);
        let groups =
            parse_list(newsgroups.ok_or(to(NewsRefusal::BadGroups))?, max, false).map_err(to)?;
        let followups = followup
            .map(|v| parse_list(v, max, true))
            .transpose()
            .map_err(to)?;
        let mut all = groups.clone();
        for g in followups.iter().flatten() {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(g)) {
                all.push(g.clone());
            }
        }
        if self.blocked(&all) {
            return refuse(NewsRefusal::Blocked);
        }
        let mut headers = Vec::new();
        if let Poster::Gateway(gateway) = &self.poster {
            headers.extend_from_slice(format!("To: <{}>\r\n", addr_str(gateway)).as_bytes());
        }
        headers.extend_from_slice(header_line("Newsgroups", &groups).as_bytes());
        match &followups {
            Some(f) if f.is_empty() => headers.extend_from_slice(b"Followup-To: poster\r\n"),
            Some(f) => headers.extend_from_slice(header_line("Followup-To", f).as_bytes()),
            None => {}
        }
        headers.extend_from_slice(&policy.kept_headers(&parsed, NEWS_DROP)?);
        let message = policy.assemble(&parsed, &headers, now, rng)?;
        Ok(match &self.poster {
            Poster::Gateway(gateway) => Outgoing::News(Delivery {
                envelope_from: policy.envelope_from().clone(),
                envelope_to: vec![gateway.clone()],
                message,
            }),
            Poster::Nntp(_) => Outgoing::Post(Post {
                groups: all,
                message,
            }),
        })
    }

    /// Posts `post` to the news server once, checking the blocklist first
    /// (it may have changed since [`News::prepare`]).
    pub async fn post(&self, post: &Post) -> DeliveryResult {
        let Poster::Nntp(client) = &self.poster else {
            let f = DeliveryFailure::new(FailureKind::NoRoute, "news posting by NNTP is off");
            return DeliveryResult::Failed(f);
        };
        if self.blocked(&post.groups) {
            let f = DeliveryFailure::new(FailureKind::Blocked, "a newsgroup is blocked");
            return DeliveryResult::Failed(f);
        }
        let sent = match Article::new(&post.message) {
            Ok(article) => client.post(&article).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => DeliveryResult::Delivered,
            Err(e) if e.is_permanent() => DeliveryResult::Failed(failure(&e)),
            Err(e) => DeliveryResult::Retry(failure(&e)),
        }
    }
}

/// Whether a `Subject:` value starts with the `cmsg` of old-style control
/// messages (son-of-RFC-1036 5.1).
fn is_cmsg(value: &[u8]) -> bool {
    let v = value.trim_ascii_start();
    let word = v.get(..4).unwrap_or_default();
    word.eq_ignore_ascii_case(b"cmsg") && v.get(4).is_none_or(|b| b.is_ascii_whitespace())
}

/// An NNTP failure as a delivery failure: the kind and code are safe to
/// log, the detail (server text) only at debug.
fn failure(e: &NntpError) -> DeliveryFailure {
    let kind = match e {
        NntpError::Reply { .. } | NntpError::BadArticle(_) if e.is_permanent() => {
            FailureKind::Rejected
        }
        NntpError::Reply { .. } => FailureKind::Deferred,
        NntpError::Connect(_) | NntpError::Io { .. } | NntpError::Closed { .. } => {
            FailureKind::Connection
        }
        NntpError::Timeout { .. } | NntpError::SessionTimeout => FailureKind::Timeout,
        NntpError::Tls(_) | NntpError::TlsSetup(_) => FailureKind::Tls,
        _ => FailureKind::Protocol,
    };
    let detail = match e {
        NntpError::Reply { text, .. } => format!("{e}: {text}"),
        _ => e.to_string(),
    };
    DeliveryFailure {
        kind,
        code: e.code(),
        detail,
    }
}
