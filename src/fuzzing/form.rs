//! The packet POST's form body ([`crate::transport::form`]).
//!
//! Properties: [`decode_packet_form`] agrees with an independent model of
//! `application/x-www-form-urlencoded` decoding (split on `&`, the name
//! before the first `=`, `+` is a space, `%XX` a byte, other `%` literal,
//! then lossy UTF-8): the same field found, the same duplicate and missing
//! verdicts; an accepted value contains the armour's BEGIN line and
//! survives [`encode_packet_form`] and decoding unchanged; and the input
//! read as text, encoded, uses only the unreserved characters, `+`, `%`
//! and upper-case hex, and decodes back to itself (or to `NotArmour`).

use super::{Violation, ensure};
use crate::transport::form::{
    BEGIN_MARKER, FIELD, FormError, decode_packet_form, encode_packet_form,
};

const TARGET: &str = "form";

/// Runs one POST body; names the outcome: `accepted`, `missing`,
/// `duplicate` or `not_armour`.
pub fn check(data: &[u8]) -> Result<&'static str, Violation> {
    let got = decode_packet_form(data);
    let expected = model(data);
    ensure(got == expected, TARGET, || {
        format!(
            "decoded {:?}, model says {:?}",
            brief(&got),
            brief(&expected)
        )
    })?;
    if let Ok(value) = &got {
        ensure(value.contains(BEGIN_MARKER), TARGET, || {
            "accepted a value without the BEGIN line".into()
        })?;
        let again = decode_packet_form(encode_packet_form(value).as_bytes());
        ensure(again.as_ref() == Ok(value), TARGET, || {
            format!("re-encoding an accepted value gave {:?}", brief(&again))
        })?;
    }
    encode_round_trip(&String::from_utf8_lossy(data))?;
    Ok(match got {
        Ok(_) => "accepted",
        Err(FormError::MissingField) => "missing",
        Err(FormError::DuplicateField) => "duplicate",
        Err(FormError::NotArmour) => "not_armour",
    })
}

/// Encodes `text` as a form and decodes it again.
fn encode_round_trip(text: &str) -> Result<(), Violation> {
    let body = encode_packet_form(text);
    let value = body.strip_prefix("base64=").unwrap_or_default();
    ensure(body.starts_with("base64="), TARGET, || {
        "encoded form does not start with base64=".into()
    })?;
    ensure(is_quoted(value), TARGET, || {
        "encoded value is not what quote_plus writes".into()
    })?;
    let expected = if text.contains(BEGIN_MARKER) {
        Ok(text.to_owned())
    } else {
        Err(FormError::NotArmour)
    };
    let got = decode_packet_form(body.as_bytes());
    ensure(got == expected, TARGET, || {
        format!("encoded text decoded to {:?}", brief(&got))
    })
}

/// Whether `value` holds only what `quote_plus` writes: unreserved
/// characters, `+`, and `%` followed by two upper-case hex digits.
fn is_quoted(value: &str) -> bool {
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        let ok = match b {
            b'%' => (0..2).all(|_| {
                bytes
                    .next()
                    .is_some_and(|h| b"0123456789ABCDEF".contains(&h))
            }),
            _ => b.is_ascii_alphanumeric() || b"_.-~+".contains(&b),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The independent model of [`decode_packet_form`].
fn model(body: &[u8]) -> Result<String, FormError> {
    let mut found: Option<String> = None;
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i), pair.get(i + 1..)),
            None => (Some(pair), None),
        };
        let name = String::from_utf8_lossy(&unquote(name.unwrap_or_default())).into_owned();
        if name != FIELD {
            continue;
        }
        if found.is_some() {
            return Err(FormError::DuplicateField);
        }
        found = Some(String::from_utf8_lossy(&unquote(value.unwrap_or_default())).into_owned());
    }
    match found {
        None => Err(FormError::MissingField),
        Some(v) if v.contains(BEGIN_MARKER) => Ok(v),
        Some(_) => Err(FormError::NotArmour),
    }
}

/// `+` to space, `%XX` (either case) to its byte, anything else as is.
fn unquote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let hex = |j: usize| s.get(j).and_then(|&c| char::from(c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or_default());
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A decode result without the (long) packet text.
fn brief(r: &Result<String, FormError>) -> Result<usize, FormError> {
    r.as_ref().map(String::len).map_err(|e| *e)
}
