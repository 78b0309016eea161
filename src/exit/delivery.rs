//! A message ready for SMTP, and the address checks it relies on.

use std::str::FromStr;

use lettre::Address;

use super::policy::PolicyError;

/// A message ready for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SMTP envelope sender (the operator's address).
    pub envelope_from: Address,
    /// SMTP envelope recipients, distinct, ASCII.
    pub envelope_to: Vec<Address>,
    /// The complete message, CRLF line ends, ending in CRLF.
    pub message: Vec<u8>,
}

const ENCODING_MAGIC: &[u8] = b"MIMIX-DELIVERY 1\r\n";

impl Delivery {
    /// Serialises the delivery (envelope and message) for a queue. A queue
    /// must keep encoded deliveries apart from raw payloads: decoding
    /// sender-supplied bytes as a delivery would bypass the policy.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 64 * (self.envelope_to.len() + 2));
        out.extend_from_slice(ENCODING_MAGIC);
        for a in std::iter::once(&self.envelope_from).chain(&self.envelope_to) {
            out.extend_from_slice(addr_str(a).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.message);
        out
    }

    /// Parses what [`Delivery::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut rest = bytes
            .strip_prefix(ENCODING_MAGIC)
            .ok_or(PolicyError::BadEncoding)?;
        let mut addrs = Vec::new();
        loop {
            let end = find(rest, b"\r\n").ok_or(PolicyError::BadEncoding)?;
            let (line, tail) = rest.split_at(end);
            rest = tail.get(2..).ok_or(PolicyError::BadEncoding)?;
            if line.is_empty() {
                break;
            }
            let text = std::str::from_utf8(line).map_err(|_| PolicyError::BadEncoding)?;
            addrs.push(envelope_address(text).ok_or(PolicyError::BadEncoding)?);
        }
        let mut addrs = addrs.into_iter();
        let envelope_from = addrs.next().ok_or(PolicyError::BadEncoding)?;
        Ok(Self {
            envelope_from,
            envelope_to: addrs.collect(),
            message: rest.to_vec(),
        })
    }
}

/// Validates a recipient (or envelope) address: ASCII, parseable, a dotted
/// domain that is not an IP literal.
pub fn recipient(s: &str) -> Result<Address, PolicyError> {
    if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(PolicyError::InvalidAddress);
    }
    let addr = Address::from_str(s).map_err(|_| PolicyError::InvalidAddress)?;
    let domain = addr.domain();
    if domain.starts_with('[') || !domain.contains('.') {
        return Err(PolicyError::InvalidAddress);
    }
    Ok(addr)
}

/// Any ASCII address without controls (the envelope sender may be
/// `nobody@localhost`).
pub(super) fn envelope_address(s: &str) -> Option<Address> {
    let plain = s.is_ascii() && !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    plain.then(|| Address::from_str(s).ok()).flatten()
}

/// The text of an address.
pub(crate) fn addr_str(a: &Address) -> &str {
    a.as_ref()
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
