//! Mail addresses and domains as the exit checks them: recipients,
//! envelope addresses, and the domain a message is routed to.

use std::str::FromStr;

use lettre::Address;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

use super::error::PolicyError;

/// Validates a recipient address: ASCII, parseable, with a dotted domain.
/// A domain that is an IP address (`a@127.0.0.1`, `a@[10.0.0.1]`) is
/// refused ([`PolicyError::IpLiteral`]) unless `ip_literals` allows it,
/// and even then when the address is not public (loopback, private,
/// link-local, ...): mail to it would reach the exit's own network.
pub fn recipient(s: &str, ip_literals: bool) -> Result<Address, PolicyError> {
    if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(PolicyError::InvalidAddress);
    }
    let addr = Address::from_str(s).map_err(|_| PolicyError::InvalidAddress)?;
    let domain = addr.domain();
    if let Some(ip) = crate::net::ip_literal(domain) {
        if !ip_literals || !crate::net::is_public_ip(ip) {
            return Err(PolicyError::IpLiteral);
        }
        return Ok(addr);
    }
    if domain.starts_with('[') || !domain.contains('.') {
        return Err(PolicyError::InvalidAddress);
    }
    Ok(addr)
}

/// Any ASCII address without controls (the envelope sender may be
/// `nobody@localhost`).
pub(crate) fn envelope_address(s: &str) -> Option<Address> {
    let plain = s.is_ascii() && !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    plain.then(|| Address::from_str(s).ok()).flatten()
}

/// The text of an address.
pub(crate) fn addr_str(a: &Address) -> &str {
    a.as_ref()
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The lower-cased domain of the first recipient (`To:`, then `Cc:`, then
/// `Bcc:`) of a raw payload, or an empty string when there is none: the
/// destination the mail queue caps deliveries under. Only the header is
/// parsed; the policy checks the message properly when it is delivered.
pub fn first_recipient_domain(payload: &[u8]) -> String {
    let Some(message) = MessageParser::new().parse_headers(payload) else {
        return String::new();
    };
    for name in [HeaderName::To, HeaderName::Cc, HeaderName::Bcc] {
        let Some(HeaderValue::Address(list)) = message.header(name) else {
            continue;
        };
        if let Some(domain) = list
            .iter()
            .filter_map(|a| a.address())
            .find_map(|a| a.rsplit_once('@').map(|(_, d)| d))
        {
            return domain.to_ascii_lowercase();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literal_recipients_are_refused() {
        for s in [
            "a@127.0.0.1",
            "b@10.0.0.1",
            "c@[10.0.0.1]",
            "d@[127.0.0.1]",
            "e@[IPv6:::1]",
            "f@192.168.0.10",
        ] {
            assert_eq!(recipient(s, false), Err(PolicyError::IpLiteral), "{s}");
            assert_eq!(recipient(s, true), Err(PolicyError::IpLiteral), "{s}");
        }
        assert_eq!(recipient("g@8.8.8.8", false), Err(PolicyError::IpLiteral));
        assert!(recipient("g@8.8.8.8", true).is_ok());
        assert!(recipient("h@example.org", false).is_ok());
        assert_eq!(
            recipient("i@localhost", false),
            Err(PolicyError::InvalidAddress)
        );
    }

    #[test]
    fn routes_by_the_first_recipient_domain() {
        let route = |p: &[u8]| first_recipient_domain(p);
        assert_eq!(
            route(b"To: A <a@Example.ORG>, b@x.net\n\nhi"),
            "example.org"
        );
        assert_eq!(route(b"Cc: c@cc.example\nTo: \n\nhi"), "cc.example");
        assert_eq!(route(b"Subject: none\n\nhi"), "");
        assert_eq!(route(b"\xff\xfe"), "");
    }
}
