//! Why the exit does not deliver a payload, or refuses its settings.

/// A reason a payload is not delivered, or a configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The payload is not an RFC 2822 message.
    #[error("payload is not a parseable message")]
    Unparseable,
    /// A header line is malformed in a way that could inject headers.
    #[error("malformed header line: {0}")]
    MalformedHeader(&'static str),
    /// The message names no recipient.
    #[error("message has no recipients")]
    NoRecipients,
    /// A recipient in To/Cc/Bcc is not an acceptable address.
    #[error("invalid recipient address")]
    InvalidAddress,
    /// A recipient's domain is an IP address (refused unless
    /// `allow_ip_literals`, and always when the address is not public).
    #[error("recipient domain is an IP address")]
    IpLiteral,
    /// More distinct recipients than allowed.
    #[error(
        "{} recipients, at most {max} allowed",
        crate::safelog::sensitive(found)
    )]
    TooManyRecipients {
        /// Distinct recipients found.
        found: usize,
        /// Configured limit.
        max: usize,
    },
    /// The payload or the resulting message exceeds the size limit.
    #[error(
        "message of {} bytes exceeds the limit of {max}",
        crate::safelog::sensitive(size)
    )]
    TooLarge {
        /// Size in bytes.
        size: usize,
        /// Configured limit.
        max: usize,
    },
    /// Every recipient is on the destination blocklist.
    #[error("all {} recipients are blocked", crate::safelog::sensitive(.0))]
    AllRecipientsBlocked(usize),
    /// Every recipient had its deliveries for the day, or the day's
    /// rate-limit table was full ([`crate::exit::limit`]).
    #[error("all {} recipients are over the rate limit", crate::safelog::sensitive(.0))]
    AllRecipientsRateLimited(usize),
    /// The rate-limit counters could not be read or written; the message
    /// is dropped rather than sent uncounted.
    #[error("the rate-limit counters are unavailable")]
    RateLimitUnavailable,
    /// The clock is outside the range a `Date:` header can express.
    #[error("clock out of range for a Date header")]
    ClockOutOfRange,
    /// An encoded [`Delivery`] is malformed.
    #[error("malformed encoded delivery")]
    BadEncoding,
    /// A Usenet post the news policy refuses.
    #[error("post refused: {0}")]
    News(#[from] super::news::NewsRefusal),
    /// A compressed payload that could not be inflated.
    #[error("compressed payload refused: {0}")]
    Gzip(#[from] super::gzip::GzipError),
    /// Configuration: `from` is not a mailbox with a display name
    /// containing "Anonymous" in printable ASCII.
    #[error("invalid exit from {0:?}: {1}")]
    BadFrom(String, &'static str),
    /// Configuration: `envelope_from` is not a valid ASCII address.
    #[error("invalid envelope_from {0:?}")]
    BadEnvelopeFrom(String),
    /// Configuration: `comments` holds control characters or is too long.
    #[error("invalid comments: {0}")]
    BadComments(&'static str),
    /// Configuration: `message_id_domain` is not a domain name.
    #[error("invalid message_id_domain {0:?}")]
    BadDomain(String),
    /// Configuration: a header pattern is not a field name or `prefix*`.
    #[error("invalid header pattern {0:?}")]
    BadPattern(String),
    /// Configuration: a size or count limit is out of range.
    #[error("invalid limit: {0}")]
    BadLimit(&'static str),
}

impl PolicyError {
    /// The counter this refusal is counted under besides `exit_rejected`,
    /// for the refusals of posts (`news_refused_<reason>`) and compressed
    /// payloads (`gzip_refused_<reason>`).
    pub fn counter(&self) -> Option<String> {
        match self {
            Self::News(r) => Some(format!("news_refused_{}", r.reason())),
            Self::Gzip(g) => Some(format!("gzip_refused_{}", g.reason())),
            _ => None,
        }
    }
}
