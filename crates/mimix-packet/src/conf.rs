//! `remailer-conf.txt`: how a remailer publishes its key (wire format 8).
//!
//! ```text
//! Name: delta
//! Address: http://delta.example.onion:8080
//! KeyID: f990844051c799eb20e2fe498e89c2c2
//! Valid From: 2026-11-29
//! Valid To: 2027-08-26
//! SMTP: Yes
//! Abuse: abuse@example.org
//!
//! -----BEGIN PUBLIC KEY-----
//! ...
//! -----END PUBLIC KEY-----
//!
//! Known remailers:-
//! http://alpha.example.onion
//! ```
//!
//! `Abuse:` (the operator's contact for abuse reports and opt-outs) is
//! ours: the reference keeps unknown keys and ignores them, and so does
//! [`RemailerConf::parse`] with any other key.
//!
//! Dates are epoch days here; [`date_to_epoch_day`] and
//! [`epoch_day_to_date`] convert them to and from `YYYY-MM-DD`.

use crate::crypto::digest::md5;
use crate::crypto::{KeyId, PublicKey};
use crate::layout::NEXT_HOP_LEN;

/// Longest conf text we parse.
pub const MAX_CONF_LEN: usize = 64 * 1024;
/// Most known-remailer lines we keep.
pub const MAX_KNOWN: usize = 1024;
/// Longest `Abuse:` value kept.
pub const MAX_ABUSE: usize = 200;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Why a conf was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// Longer than [`MAX_CONF_LEN`], or its canonical text
    /// ([`RemailerConf::to_text`]) would be.
    #[error("remailer-conf is too long ({0} bytes)")]
    TooLong(usize),
    /// Not two or three blank-line-separated sections.
    #[error("remailer-conf must have 2 or 3 sections, found {0}")]
    Sections(usize),
    /// A required field is missing.
    #[error("remailer-conf has no {0} field")]
    Missing(&'static str),
    /// A field's value is malformed.
    #[error("remailer-conf field {0} is malformed")]
    Field(&'static str),
    /// Section 2 is not a PEM public key.
    #[error("remailer-conf key block is not an RSA public key PEM")]
    Key,
    /// The PEM is not in the exact layout the key ID is computed over.
    #[error("remailer-conf key block is not in canonical PEM layout")]
    NonCanonicalPem,
    /// MD5 of the key block differs from the KeyID field.
    #[error("remailer-conf KeyID does not match its key")]
    KeyIdMismatch,
    /// Section 3 does not start with `Known remailers`.
    #[error("remailer-conf third section is not a known-remailers list")]
    KnownList,
    /// `Valid From` is after today.
    #[error("remailer-conf key is not valid yet")]
    NotYetValid,
    /// `Valid To` is before today.
    #[error("remailer-conf key has expired")]
    Expired,
}

/// A parsed `remailer-conf.txt`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemailerConf {
    /// Free-text name.
    pub name: String,
    /// Base URL where the remailer receives packets.
    pub address: String,
    /// The public key; its ID matches the `KeyID` field.
    pub key: PublicKey,
    /// First day the key is valid (epoch day).
    pub valid_from: u64,
    /// Last day the key is valid (epoch day).
    pub valid_to: u64,
    /// Whether the remailer delivers mail (can be an exit).
    pub smtp: bool,
    /// The operator's abuse contact (`Abuse:`), if published; a value
    /// that is not printable or longer than [`MAX_ABUSE`] is ignored.
    pub abuse: Option<String>,
    /// Base URLs of other remailers it knows.
    pub known: Vec<String>,
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn date_to_epoch_day(s: &str) -> Option<u64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    let d: u8 = d.parse().ok()?;
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    u64::try_from(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY).ok()
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn epoch_day_to_date(day: u64) -> String {
    let jd = i64::try_from(day)
        .ok()
        .and_then(|d| d.checked_add(UNIX_EPOCH_JULIAN_DAY))
        .and_then(|d| i32::try_from(d).ok())
        .and_then(|d| time::Date::from_julian_day(d).ok());
    match jd {
        Some(date) => format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        None => "9999-12-31".to_owned(),
    }
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_control())
}

fn address_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= NEXT_HOP_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

impl RemailerConf {
    /// Parses a conf as the reference client does, more strictly: every
    /// field is checked, the key block must be the canonical PEM, and its
    /// MD5 must equal `KeyID`. Validity dates are checked separately by
    /// [`Self::check_valid`].
    pub fn parse(text: &str) -> Result<Self, ConfError> {
        if text.len() > MAX_CONF_LEN {
            return Err(ConfError::TooLong(text.len()));
        }
        let text = text.replace("\r\n", "\n");
        let sections: Vec<&str> = text.trim_end_matches('\n').split("\n\n").collect();
        if !(2..=3).contains(&sections.len()) {
            return Err(ConfError::Sections(sections.len()));
        }
        let (mut name, mut address, mut key_id, mut from, mut to, mut smtp) =
            (None, None, None, None, None, None);
        let mut abuse = None;
        for line in sections[0].lines() {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let v = v.trim_end();
            match k.to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "address" => address = Some(v),
                "keyid" => key_id = Some(v),
                "valid from" => from = Some(v),
                "valid to" => to = Some(v),
                "smtp" => smtp = Some(v),
                "abuse" => abuse = Some(v),
                _ => {}
            }
        }
        let name = name.ok_or(ConfError::Missing("Name"))?;
        if !printable(name) {
            return Err(ConfError::Field("Name"));
        }
        let address = address.ok_or(ConfError::Missing("Address"))?;
        if !address_ok(address) {
            return Err(ConfError::Field("Address"));
        }
        let key_id = KeyId::from_hex(
            &key_id
                .ok_or(ConfError::Missing("KeyID"))?
                .to_ascii_lowercase(),
        )
        .ok_or(ConfError::Field("KeyID"))?;
        let valid_from = date_to_epoch_day(from.ok_or(ConfError::Missing("Valid From"))?)
            .ok_or(ConfError::Field("Valid From"))?;
        let valid_to = date_to_epoch_day(to.ok_or(ConfError::Missing("Valid To"))?)
            .ok_or(ConfError::Field("Valid To"))?;
        let smtp = smtp
            .ok_or(ConfError::Missing("SMTP"))?
            .eq_ignore_ascii_case("yes");

        let pem = sections[1];
        if !pem.starts_with("-----BEGIN PUBLIC KEY-----")
            || !pem.ends_with("-----END PUBLIC KEY-----")
        {
            return Err(ConfError::Key);
        }
        if KeyId(md5(pem.as_bytes())) != key_id {
            return Err(ConfError::KeyIdMismatch);
        }
        let key = PublicKey::from_pem(pem).map_err(|_| ConfError::Key)?;
        if key.pem() != pem {
            return Err(ConfError::NonCanonicalPem);
        }

        let mut known = Vec::new();
        if let Some(list) = sections.get(2) {
            let mut lines = list.lines();
            if !lines
                .next()
                .is_some_and(|l| l.starts_with("Known remailers"))
            {
                return Err(ConfError::KnownList);
            }
            for l in lines.map(str::trim).filter(|l| !l.is_empty()) {
                if known.len() >= MAX_KNOWN {
                    break;
                }
                if address_ok(l) && l != address && !known.iter().any(|k| k == l) {
                    known.push(l.to_owned());
                }
            }
        }
        let abuse = abuse
            .filter(|a| printable(a) && a.len() <= MAX_ABUSE && a.trim() == *a)
            .map(str::to_owned);
        let conf = Self {
            name: name.to_owned(),
            address: address.to_owned(),
            key,
            valid_from,
            valid_to,
            smtp,
            abuse,
            known,
        };
        // The canonical text can be a few bytes longer than the input
        // (`SMTP: No`, `Known remailers:-`, the final LF): refuse a conf
        // whose own text would not parse back.
        let len = conf.to_text().len();
        if len > MAX_CONF_LEN {
            return Err(ConfError::TooLong(len));
        }
        Ok(conf)
    }

    /// Checks that the key is valid on `today` (an epoch day).
    pub fn check_valid(&self, today: u64) -> Result<(), ConfError> {
        if self.valid_from > today {
            return Err(ConfError::NotYetValid);
        }
        if self.valid_to < today {
            return Err(ConfError::Expired);
        }
        Ok(())
    }

    /// Parses and checks validity on `today`.
    pub fn parse_valid(text: &str, today: u64) -> Result<Self, ConfError> {
        let conf = Self::parse(text)?;
        conf.check_valid(today)?;
        Ok(conf)
    }

    /// The text exactly as the reference serves it (with an `Abuse:` line
    /// after `SMTP:` when there is a contact).
    pub fn to_text(&self) -> String {
        let abuse = match &self.abuse {
            Some(a) => format!("Abuse: {a}\n"),
            None => String::new(),
        };
        let mut out = format!(
            "Name: {}\nAddress: {}\nKeyID: {}\nValid From: {}\nValid To: {}\nSMTP: {}\n{abuse}\n{}\n\nKnown remailers:-\n",
            self.name,
            self.address,
            self.key.key_id(),
            epoch_day_to_date(self.valid_from),
            epoch_day_to_date(self.valid_to),
            if self.smtp { "Yes" } else { "No" },
            self.key.pem(),
        );
        for k in &self.known {
            out.push_str(k);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(date_to_epoch_day("1970-01-01"), Some(0));
        assert_eq!(date_to_epoch_day("2026-11-29"), Some(20786));
        assert_eq!(epoch_day_to_date(20786), "2026-11-29");
        assert_eq!(date_to_epoch_day("2026-02-30"), None);
        assert_eq!(date_to_epoch_day("26-11-29"), None);
        assert_eq!(date_to_epoch_day("1969-12-31"), None);
    }

    #[test]
    fn abuse_line_round_trips_and_unknown_keys_are_ignored() {
        let delta = include_str!("../../../tests/vectors/remailers/delta/remailer-conf.txt");
        let plain = RemailerConf::parse(delta).unwrap();
        assert_eq!(plain.abuse, None);
        assert_eq!(plain.to_text(), delta, "no Abuse: line, the reference text");
        let text = delta.replacen(
            "SMTP: Yes\n",
            "SMTP: Yes\nAbuse: abuse@example.org\nColour: blue\n",
            1,
        );
        let conf = RemailerConf::parse(&text).unwrap();
        assert_eq!(conf.abuse.as_deref(), Some("abuse@example.org"));
        let ours = conf.to_text();
        assert!(ours.contains("SMTP: Yes\nAbuse: abuse@example.org\n\n-----BEGIN"));
        assert_eq!(RemailerConf::parse(&ours).unwrap(), conf);
        let long = delta.replacen(
            "SMTP: Yes\n",
            &format!("SMTP: Yes\nAbuse: {}\n", "a".repeat(201)),
            1,
        );
        assert_eq!(RemailerConf::parse(&long).unwrap().abuse, None);
    }

    /// A conf just under the size limit whose canonical text is longer
    /// than the input (empty SMTP value, short list heading, no final LF)
    /// is refused rather than accepted with a text that cannot parse back.
    #[test]
    fn canonical_text_stays_within_the_limit() {
        let delta = include_str!("../../../tests/vectors/remailers/delta/remailer-conf.txt");
        let (head, _) = delta.split_once("\n\nKnown").unwrap();
        let mut text = format!("{}\n\nKnown remailers", head.replace("SMTP: Yes", "SMTP: "));
        for i in 0.. {
            let line = format!("\nhttp://{i:0>66}.onion");
            if text.len() + line.len() > MAX_CONF_LEN {
                break;
            }
            text.push_str(&line);
        }
        let pad = "x".repeat(MAX_CONF_LEN - text.len());
        let text = text.replacen("Name: delta", &format!("Name: delta{pad}"), 1);
        assert_eq!(text.len(), MAX_CONF_LEN);
        assert!(matches!(
            RemailerConf::parse(&text),
            Err(ConfError::TooLong(n)) if n > MAX_CONF_LEN
        ));
        // Five bytes shorter, it is accepted and its text parses back.
        let text = text.replacen(&"x".repeat(5), "", 1);
        let conf = RemailerConf::parse(&text).unwrap();
        assert_eq!(RemailerConf::parse(&conf.to_text()).unwrap(), conf);
    }
}
