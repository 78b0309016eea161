//! A message ready for SMTP, and its encoding for the mail queue.

use lettre::Address;

use super::address::{addr_str, envelope_address, find};
use super::error::PolicyError;
use crate::safelog::{bytes, sensitive};

/// A message ready for SMTP. Its `Debug` output shows no address and no
/// text ([`crate::safelog`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SMTP envelope sender (the operator's address).
    pub envelope_from: Address,
    /// SMTP envelope recipients, distinct, ASCII.
    pub envelope_to: Vec<Address>,
    /// The complete message, CRLF line ends, ending in CRLF.
    pub message: Vec<u8>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope_to", &sensitive(&self.envelope_to))
            .field("recipients", &sensitive(self.envelope_to.len()))
            .field("message", &bytes(self.message.len()))
            .finish_non_exhaustive()
    }
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
