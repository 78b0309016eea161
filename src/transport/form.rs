//! The form body of a packet POST: `base64=<armour>`, URL-encoded exactly as
//! python-requests encodes `data={'base64': text}` (Python 3
//! `urllib.parse.quote_plus`).

/// The form field holding the armoured packet.
pub const FIELD: &str = "base64";

/// The marker a submission must contain to be accepted, as the reference
/// collector checks.
pub const BEGIN_MARKER: &str = "-----BEGIN MIMIX MESSAGE-----";

/// Why a form body was refused. The messages are short public reasons,
/// sent back to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The body has no `base64` field.
    #[error("missing base64 field")]
    MissingField,
    /// The body has the `base64` field more than once.
    #[error("duplicate base64 field")]
    DuplicateField,
    /// The field does not contain the armour's BEGIN line.
    #[error("no Mimix message in base64 field")]
    NotArmour,
}

/// Encodes `armoured` as the complete form body `base64=...`.
///
/// ASCII letters, digits and `_.-~` stay as they are, a space becomes `+`
/// and every other byte becomes `%XX` with upper-case hex digits.
pub fn encode_packet_form(armoured: &str) -> String {
    let mut out = String::with_capacity(FIELD.len() + 1 + armoured.len() * 11 / 10 + 64);
    out.push_str(FIELD);
    out.push('=');
    quote_plus_into(armoured.as_bytes(), &mut out);
    out
}

/// Extracts the armoured packet text from a form body.
///
/// The field must occur exactly once and contain [`BEGIN_MARKER`]; other
/// fields are ignored. Invalid UTF-8 in the decoded value is replaced (the
/// packet decoder then rejects the armour).
pub fn decode_packet_form(body: &[u8]) -> Result<String, FormError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == FIELD {
            if found.is_some() {
                return Err(FormError::DuplicateField);
            }
            found = Some(value.into_owned());
        }
    }
    let value = found.ok_or(FormError::MissingField)?;
    if value.contains(BEGIN_MARKER) {
        Ok(value)
    } else {
        Err(FormError::NotArmour)
    }
}

fn quote_plus_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const PACKET: &str = include_str!("../../tests/vectors/samples/http-post-packet.txt");
    const BODY: &str = include_str!("../../tests/vectors/samples/http-post-body.txt");

    #[test]
    fn encodes_the_sample_byte_for_byte() {
        assert_eq!(encode_packet_form(PACKET).as_bytes(), BODY.as_bytes());
    }

    #[test]
    fn decodes_the_sample_to_the_packet() {
        assert_eq!(decode_packet_form(BODY.as_bytes()).unwrap(), PACKET);
    }

    #[test]
    fn quotes_like_python() {
        // Expected values from Python 3 urllib.parse.quote_plus.
        let body = encode_packet_form("a b+c/d=e:f\n~*_.-\u{e9}");
        assert_eq!(body, "base64=a+b%2Bc%2Fd%3De%3Af%0A~%2A_.-%C3%A9");
        assert_eq!(
            decode_packet_form(encode_packet_form(&format!("{BEGIN_MARKER}\u{e9} ~*")).as_bytes())
                .unwrap(),
            format!("{BEGIN_MARKER}\u{e9} ~*")
        );
    }

    #[test]
    fn refuses_bad_forms() {
        assert_eq!(decode_packet_form(b""), Err(FormError::MissingField));
        assert_eq!(decode_packet_form(b"mimix=x"), Err(FormError::MissingField));
        assert_eq!(
            decode_packet_form(b"base64=hello"),
            Err(FormError::NotArmour)
        );
        let twice = format!(
            "{}&{}",
            encode_packet_form(PACKET),
            encode_packet_form(PACKET)
        );
        assert_eq!(
            decode_packet_form(twice.as_bytes()),
            Err(FormError::DuplicateField)
        );
        let extra = format!("x=1&{}&y=2", encode_packet_form(PACKET));
        assert_eq!(decode_packet_form(extra.as_bytes()).unwrap(), PACKET);
    }
}
