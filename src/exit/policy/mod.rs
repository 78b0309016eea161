//! Header policy (draft 6.5): turns a reassembled payload, written by an
//! anonymous and possibly hostile sender, into a message that is safe to
//! hand to SMTP.
//!
//! What [`Policy::apply`] does:
//!
//! * Parses the payload with `mail-parser`; anything that is not a message
//!   with at least one recipient is refused with a typed [`PolicyError`].
//! * Takes the recipients from `To:`, `Cc:` and `Bcc:` (deduplicated,
//!   case-insensitively). Every address must be a plain ASCII
//!   `local@domain` whose domain has at least one dot and is not an IP
//!   address (`a@127.0.0.1`, `a@[10.0.0.1]`; public addresses pass only
//!   with `allow_ip_literals`); otherwise the whole message is refused.
//! * Drops the managed headers ([`MANAGED_HEADERS`]: `From`, `Sender`,
//!   `Date`, `Message-ID`, `Bcc`, `Received`, `Return-Path`) whatever the
//!   configuration says, then every header matching the deny list (default
//!   [`DEFAULT_DENY_HEADERS`]) and, when an allow list is configured,
//!   every header not on it (`To` and `Cc` are implicitly allowed). Header
//!   lines whose field name is not valid, or that do not start a line, are
//!   dropped.
//! * Inserts the operator's `From:` (whether or not the sender wrote one),
//!   a `Date:` with the exit's own time (UTC, so the sender's clock and
//!   time zone are not revealed), a fresh random `Message-ID:` at the
//!   exit's domain, and the configured `Comments:` line, ending with the
//!   operator's abuse contact ([`Policy::for_exit`]).
//! * Copies the kept headers' raw bytes (their folding included) and the
//!   body bytes unchanged, except that line ends are normalised: a bare LF
//!   or a bare CR becomes CRLF, and a missing final line end is added.
//!   RFC 5322 (2.3) allows CR and LF in a body only together as CRLF and
//!   RFC 5321 (2.3.8) forbids an SMTP client to send them alone; a bare CR
//!   passed on is what "SMTP smuggling" uses (`\r.\r\n` taken as the end of
//!   the data by some servers). Normalised, every line end is a CRLF that
//!   the SMTP client dot-stuffs. Header lines holding a bare CR, a NUL, an
//!   over-long line (> 998 bytes) or a broken fold are refused: they are
//!   how header injection is attempted.
//!
//! The envelope sender is the operator's address, never anything the sender
//! supplied.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::SystemTime;

use crate::net::is_host_name;
use lettre::Address;
use lettre::message::Mailbox;

use mail_parser::{Header, HeaderName, HeaderValue, MessageParser};
use mimix_settings::printable_ascii;

use super::address::{addr_str, envelope_address, find, recipient};
use super::delivery::Delivery;
pub use super::error::PolicyError;
pub use config::{
    DEFAULT_COMMENTS, DEFAULT_DENY_HEADERS, DEFAULT_FROM, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECIPIENTS, MANAGED_HEADERS, MAX_PAYLOAD, PolicyConfig,
};
use config::{MAX_COMMENTS, MIN_MESSAGE_SIZE, Pattern};

mod config;

/// Longest line SMTP allows, without its CRLF (RFC 5321 4.5.3.1.6).
const MAX_LINE: usize = 998;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    from_line: String,
    envelope_from: Address,
    comments_lines: Option<String>,
    message_id_domain: String,
    deny: Vec<Pattern>,
    allow: Vec<Pattern>,
    max_message_size: usize,
    max_recipients: usize,
    allow_ip_literals: bool,
}

/// A payload whose header block is parsed ([`Policy::parse`]).
pub(crate) struct Parsed<'a> {
    payload: &'a [u8],
    /// The header block, ending with a line end (one is added when the
    /// payload ends in a header).
    head: Cow<'a, [u8]>,
    body_start: usize,
    /// The header fields, in order (owned: `head` may be a copy).
    pub(crate) headers: Vec<Header<'static>>,
}

impl Parsed<'_> {
    /// The raw bytes of header `h` (name, colon, value and folds).
    pub(crate) fn raw(&self, h: &Header<'_>) -> Result<&[u8], PolicyError> {
        self.head
            .get(h.offset_field as usize..h.offset_end as usize)
            .ok_or(PolicyError::Unparseable)
    }

    /// The lowercased field name of header `h`, if it is valid.
    pub(crate) fn name(&self, h: &Header<'_>) -> Option<String> {
        raw_field_name(self.raw(h).ok()?, h.name.as_str())
    }

    /// The raw value of header `h` (after the colon, folds included).
    pub(crate) fn value(&self, h: &Header<'_>) -> &[u8] {
        self.head
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default()
    }
}

impl Policy {
    /// Validates `config` and builds the policy.
    pub fn new(config: &PolicyConfig) -> Result<Self, PolicyError> {
        Self::build(config, "")
    }

    /// As [`Policy::new`], with `Abuse: <abuse_contact>` at the end of the
    /// `Comments:` header (nothing for an empty contact).
    pub fn for_exit(config: &PolicyConfig, abuse_contact: &str) -> Result<Self, PolicyError> {
        Self::build(config, abuse_contact)
    }

    fn build(config: &PolicyConfig, abuse_contact: &str) -> Result<Self, PolicyError> {
        let (from_line, from_addr) = render_from(&config.from)?;
        let envelope_from = match &config.envelope_from {
            Some(s) => {
                envelope_address(s).ok_or_else(|| PolicyError::BadEnvelopeFrom(s.clone()))?
            }
            None => from_addr.clone(),
        };
        let message_id_domain = match &config.message_id_domain {
            Some(d) => d.clone(),
            None => from_addr.domain().to_owned(),
        };
        if !is_host_name(&message_id_domain) {
            return Err(PolicyError::BadDomain(message_id_domain));
        }
        let comments_lines = render_comments(config.comments_text(), abuse_contact)?;
        let patterns = |list: &[String]| -> Result<Vec<_>, _> {
            list.iter().map(|p| Pattern::parse(p)).collect()
        };
        let deny = patterns(&config.deny_list())?;
        let allow = patterns(&config.allow_headers)?;
        if config.max_message_size < MIN_MESSAGE_SIZE {
            return Err(PolicyError::BadLimit("max_message_size below 1024"));
        }
        if config.max_recipients == 0 {
            return Err(PolicyError::BadLimit("max_recipients is 0"));
        }
        Ok(Self {
            from_line,
            envelope_from,
            comments_lines,
            message_id_domain,
            deny,
            allow,
            max_message_size: config.max_message_size,
            max_recipients: config.max_recipients,
            allow_ip_literals: config.allow_ip_literals,
        })
    }

    /// The SMTP envelope sender.
    pub fn envelope_from(&self) -> &Address {
        &self.envelope_from
    }

    /// The domain Message-IDs are generated at (also a sensible EHLO name).
    pub fn domain(&self) -> &str {
        &self.message_id_domain
    }

    /// Applies the policy to `payload`, dating the message `now` and drawing
    /// the Message-ID from `rng`.
    pub fn apply<R: rand::CryptoRng + ?Sized>(
        &self,
        payload: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Delivery, PolicyError> {
        let parsed = self.parse(payload)?;
        let mut recipients = Vec::new();
        let mut seen = HashSet::new();
        for h in &parsed.headers {
            if matches!(h.name, HeaderName::To | HeaderName::Cc | HeaderName::Bcc) {
                let found = (&mut recipients, &mut seen);
                collect_recipients(&h.value, found, self.allow_ip_literals)?;
            }
        }
        let kept = self.kept_headers(&parsed, &[])?;
        if recipients.is_empty() {
            return Err(PolicyError::NoRecipients);
        }
        if recipients.len() > self.max_recipients {
            return Err(PolicyError::TooManyRecipients {
                found: recipients.len(),
                max: self.max_recipients,
            });
        }
        Ok(Delivery {
            envelope_from: self.envelope_from.clone(),
            envelope_to: recipients,
            message: self.assemble(&parsed, &kept, now, rng)?,
        })
    }

    /// Checks the size of `payload` and parses its header block. An empty
    /// header block is [`PolicyError::NoRecipients`].
    pub(crate) fn parse<'a>(&self, payload: &'a [u8]) -> Result<Parsed<'a>, PolicyError> {
        let max = self.max_message_size;
        if payload.len() > max {
            return Err(PolicyError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let body_start = body_start(payload);
        let head = terminated(payload.get(..body_start).ok_or(PolicyError::Unparseable)?);
        if head.trim_ascii().is_empty() {
            return Err(PolicyError::NoRecipients);
        }
        // `None` means that not one header field was found.
        let parsed = MessageParser::default()
            .parse_headers(head.as_ref())
            .ok_or(PolicyError::NoRecipients)?
            .into_owned();
        let headers = parsed
            .parts
            .into_iter()
            .next()
            .map(|p| p.headers)
            .unwrap_or_default();
        Ok(Parsed {
            payload,
            head,
            body_start,
            headers,
        })
    }

    /// The sender's headers that pass (see [`Policy::keeps`]; the fields
    /// named in `also_drop`, lowercase, do not), as CRLF lines.
    pub(crate) fn kept_headers(
        &self,
        parsed: &Parsed<'_>,
        also_drop: &[&str],
    ) -> Result<Vec<u8>, PolicyError> {
        let mut kept = Vec::with_capacity(parsed.head.len() + 512);
        for h in &parsed.headers {
            let raw = parsed.raw(h)?;
            let start = h.offset_field as usize;
            // A field must start a line: the parser also reads one out of
            // an indented (folded) line, which would lose its indent here.
            let line_start = start == 0 || parsed.head.get(start - 1) == Some(&b'\n');
            let Some(name) = raw_field_name(raw, h.name.as_str()).filter(|_| line_start) else {
                continue;
            };
            if self.keeps(&name) && !also_drop.contains(&name.as_str()) {
                push_header(raw, &mut kept)?;
            }
        }
        Ok(kept)
    }

    /// The message: the exit's `From:`, `Date:` (`now`), a fresh
    /// `Message-ID:` (from `rng`) and `Comments:`, then `headers` (CRLF
    /// lines), a blank line and the body of `parsed` with CRLF line ends.
    pub(crate) fn assemble<R: rand::CryptoRng + ?Sized>(
        &self,
        parsed: &Parsed<'_>,
        headers: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Vec<u8>, PolicyError> {
        let body = parsed.payload.get(parsed.body_start..).unwrap_or_default();
        let mut message = Vec::with_capacity(headers.len() + body.len() + 512);
        message.extend_from_slice(self.from_line.as_bytes());
        let date = OffsetDateTime::from(now)
            .format(&Rfc2822)
            .map_err(|_| PolicyError::ClockOutOfRange)?;
        message.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let domain = &self.message_id_domain;
        message.extend_from_slice(format!("Message-ID: <{id}@{domain}>\r\n").as_bytes());
        if let Some(c) = &self.comments_lines {
            message.extend_from_slice(c.as_bytes());
        }
        message.extend_from_slice(headers);
        message.extend_from_slice(b"\r\n");
        push_body(body, &mut message);
        let max = self.max_message_size;
        if message.len() > max {
            return Err(PolicyError::TooLarge {
                size: message.len(),
                max,
            });
        }
        Ok(message)
    }

    /// Whether a sender header with this (lowercase) name passes.
    fn keeps(&self, lower: &str) -> bool {
        if MANAGED_HEADERS
            .iter()
            .any(|m| m.eq_ignore_ascii_case(lower))
        {
            return false;
        }
        if self.deny.iter().any(|p| p.matches(lower)) {
            return false;
        }
        self.allow.is_empty()
            || lower == "to"
            || lower == "cc"
            || self.allow.iter().any(|p| p.matches(lower))
    }
}

fn collect_recipients(
    value: &HeaderValue<'_>,
    (out, seen): (&mut Vec<Address>, &mut HashSet<String>),
    ip_literals: bool,
) -> Result<(), PolicyError> {
    let list = match value {
        HeaderValue::Address(a) => a,
        HeaderValue::Empty => return Ok(()),
        _ => return Err(PolicyError::InvalidAddress),
    };
    for a in list.iter() {
        let text = a.address().ok_or(PolicyError::InvalidAddress)?;
        let addr = recipient(text, ip_literals)?;
        if seen.insert(addr_str(&addr).to_ascii_lowercase()) {
            out.push(addr);
        }
    }
    Ok(())
}

/// Offset of the body: just after the first empty line, or the end.
fn body_start(payload: &[u8]) -> usize {
    let mut pos = 0;
    while pos < payload.len() {
        let rest = payload.get(pos..).unwrap_or_default();
        let line_len = find(rest, b"\n").map_or(rest.len(), |i| i + 1);
        let line = rest.get(..line_len).unwrap_or_default();
        pos += line_len;
        if line == b"\n" || line == b"\r\n" {
            return pos;
        }
    }
    payload.len()
}

/// The header with a final line end. `mail-parser` drops the last address
/// of a header that ends the input without one, which would pass that
/// address on in the header unchecked (found by the policy fuzz target).
fn terminated(head: &[u8]) -> Cow<'_, [u8]> {
    if head.is_empty() || head.ends_with(b"\n") {
        Cow::Borrowed(head)
    } else {
        let mut owned = head.to_vec();
        owned.push(b'\n');
        Cow::Owned(owned)
    }
}

/// The lowercased field name of a raw header, if it is a valid name equal
/// to what the parser saw. The obsolete form with white space before the
/// colon (`Name :`) is not valid: passed through verbatim it would make an
/// invalid header line, so such headers are dropped.
fn raw_field_name(raw: &[u8], parsed: &str) -> Option<String> {
    let colon = raw.iter().position(|&b| b == b':')?;
    let name = raw.get(..colon)?;
    if name.is_empty() || !name.iter().copied().all(is_ftext) {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    name.eq_ignore_ascii_case(parsed)
        .then(|| name.to_ascii_lowercase())
}

/// Appends one raw header (with its folds) as CRLF lines, refusing lines
/// that could smuggle in other headers.
fn push_header(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PolicyError> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            return Err(PolicyError::MalformedHeader("bare CR"));
        }
        if line.contains(&0) {
            return Err(PolicyError::MalformedHeader("NUL byte"));
        }
        if line.len() > MAX_LINE {
            return Err(PolicyError::MalformedHeader("line longer than 998 bytes"));
        }
        if i > 0 {
            let folded = matches!(line.first(), Some(b' ' | b'\t'));
            if !folded || line.iter().all(|b| matches!(b, b' ' | b'\t')) {
                return Err(PolicyError::MalformedHeader("broken fold"));
            }
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Appends the body with every line end a CRLF (a bare LF or a bare CR
/// becomes CRLF), ending it with CRLF.
fn push_body(body: &[u8], out: &mut Vec<u8>) {
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                bytes.next_if_eq(&b'\n');
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !body.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
}

fn render_from(from: &str) -> Result<(String, Address), PolicyError> {
    let bad = |why| PolicyError::BadFrom(from.to_owned(), why);
    if !printable_ascii(from) {
        return Err(bad("must be printable ASCII"));
    }
    let mailbox = Mailbox::from_str(from).map_err(|_| bad("not a mailbox"))?;
    let name = mailbox.name.as_deref().unwrap_or_default().trim();
    if !name.to_ascii_lowercase().contains("anonymous") {
        return Err(bad("display name must contain \"Anonymous\""));
    }
    let addr = envelope_address(addr_str(&mailbox.email)).ok_or(bad("invalid address"))?;
    let plain = name
        .bytes()
        .all(|b| b == b' ' || b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b));
    let shown = if plain {
        name.to_owned()
    } else {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    };
    Ok((format!("From: {shown} <{addr}>\r\n"), addr))
}

/// The folded `Comments:` header with `Abuse: <abuse>` at its end, or
/// `None` for an empty text and contact.
fn render_comments(text: &str, abuse: &str) -> Result<Option<String>, PolicyError> {
    for part in [text, abuse] {
        if !part
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
        {
            return Err(PolicyError::BadComments(
                "must be printable ASCII on one line",
            ));
        }
    }
    if text.len() > MAX_COMMENTS {
        return Err(PolicyError::BadComments("longer than 900 bytes"));
    }
    let contact = abuse.split_ascii_whitespace().next().map(|_| "Abuse:");
    let mut words = text
        .split_ascii_whitespace()
        .chain(contact)
        .chain(abuse.split_ascii_whitespace())
        .peekable();
    if words.peek().is_none() {
        return Ok(None);
    }
    let mut out = String::from("Comments:");
    let mut line_len = out.len();
    for w in words {
        if w.len() > 900 {
            return Err(PolicyError::BadComments("a word is longer than 900 bytes"));
        }
        if line_len + 1 + w.len() > 76 && line_len > "Comments:".len() {
            out.push_str("\r\n");
            line_len = 0;
        }
        let _ = write!(out, " {w}");
        line_len += 1 + w.len();
    }
    out.push_str("\r\n");
    Ok(Some(out))
}

/// RFC 5322 field-name characters: printable ASCII except colon.
pub(super) fn is_ftext(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

#[cfg(test)]
mod tests;
