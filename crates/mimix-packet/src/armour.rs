//! ASCII armour (wire format 6.1 and 6.2).
//!
//! [`armour`] emits exactly what the reference accepts: LF line ends, the
//! `Version:` line and a blank line, base64 in 76-column lines.
//! [`dearmour`] accepts that, CRLF line ends, trailing whitespace, lines
//! before the BEGIN line (and ignores anything after END), and any base64
//! line width; it is strict about the alphabet, the padding and the size.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::layout::{PACKET_LEN, Packet};

/// The first armour line.
pub const BEGIN: &str = "-----BEGIN MIMIX MESSAGE-----";
/// The last armour line.
pub const END: &str = "-----END MIMIX MESSAGE-----";
/// The version we write: one line, informational only.
pub const VERSION: &str = "0.1-alpha1";
/// Width of the base64 lines we write.
const LINE: usize = 76;
/// Longest armour text we look at. A packet's armour is about 27.7 KB.
pub const MAX_ARMOUR_LEN: usize = 64 * 1024;

/// Why armour text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArmourError {
    /// The text is longer than [`MAX_ARMOUR_LEN`].
    #[error("armour text too long ({0} bytes)")]
    TooLong(usize),
    /// No `-----BEGIN MIMIX MESSAGE-----` line.
    #[error("no BEGIN MIMIX MESSAGE line")]
    NoBegin,
    /// No `Version:` line after BEGIN.
    #[error("no Version line")]
    NoVersion,
    /// No `-----END MIMIX MESSAGE-----` line.
    #[error("no END MIMIX MESSAGE line")]
    NoEnd,
    /// A character outside the base64 alphabet, or misplaced padding.
    #[error("invalid base64 on armour line {0}")]
    Base64(usize),
    /// The base64 text's length or `=` padding is wrong.
    #[error("invalid base64 length or padding")]
    Padding,
    /// The decoded packet is not 20480 bytes.
    #[error("decoded packet is {0} bytes, not 20480")]
    Size(usize),
}

/// Armours a packet with our version string.
pub fn armour(packet: &Packet) -> String {
    armour_with_version(packet, VERSION)
}

/// Armours a packet with the given version string (CR and LF removed).
pub fn armour_with_version(packet: &Packet, version: &str) -> String {
    let b64 = STANDARD.encode(packet.as_bytes());
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 100);
    out.push_str(BEGIN);
    out.push_str("\nVersion: ");
    out.extend(version.chars().filter(|c| *c != '\r' && *c != '\n'));
    out.push_str("\n\n");
    for line in b64.as_bytes().chunks(LINE) {
        // Base64 output is ASCII.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Decodes armour text into a packet.
pub fn dearmour(text: &str) -> Result<Packet, ArmourError> {
    if text.len() > MAX_ARMOUR_LEN {
        return Err(ArmourError::TooLong(text.len()));
    }
    let mut lines = text.split('\n').map(|l| l.trim_end()).enumerate();
    lines
        .by_ref()
        .find(|(_, l)| *l == BEGIN)
        .ok_or(ArmourError::NoBegin)?;
    // Armour headers up to the first blank line (or the first base64 line
    // when there is no blank line); one of them must be `Version:`.
    let mut version = false;
    let mut b64 = String::with_capacity(PACKET_LEN * 4 / 3 + 4);
    let mut end = false;
    let mut in_headers = true;
    for (n, line) in lines {
        if line == END {
            end = true;
            break;
        }
        if in_headers {
            if line.starts_with("Version:") {
                version = true;
                continue;
            }
            if line.is_empty() || is_header_line(line) {
                if line.is_empty() && version {
                    in_headers = false;
                }
                continue;
            }
            if !version {
                return Err(ArmourError::NoVersion);
            }
            in_headers = false;
        }
        if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return Err(ArmourError::Base64(n + 1));
        }
        b64.push_str(line);
    }
    if !version {
        return Err(ArmourError::NoVersion);
    }
    if !end {
        return Err(ArmourError::NoEnd);
    }
    let bytes = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| ArmourError::Padding)?;
    Packet::from_bytes(&bytes).ok_or(ArmourError::Size(bytes.len()))
}

/// `Name: value` with a token name, as armour headers look.
fn is_header_line(line: &str) -> bool {
    match line.split_once(": ") {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Packet {
        let bytes: Vec<u8> = (0..PACKET_LEN).map(|i| (i * 7 % 251) as u8).collect();
        Packet::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn armour_layout_matches_the_reference() {
        let text = armour(&sample());
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], BEGIN);
        assert_eq!(lines[1], "Version: 0.1-alpha1");
        assert_eq!(lines[2], "");
        assert!(lines[3..362].iter().all(|l| l.len() == 76));
        assert_eq!(lines[362].len(), 24);
        assert_eq!(lines[363], END);
        assert_eq!(lines[364], "");
        assert_eq!(lines.len(), 365);
        assert_eq!(dearmour(&text).unwrap(), sample());
    }

    #[test]
    fn crlf_and_trailing_space_accepted() {
        let text = armour(&sample()).replace('\n', " \r\n");
        assert_eq!(dearmour(&text).unwrap(), sample());
    }

    #[test]
    fn alphabet_padding_and_size_are_strict() {
        let text = armour(&sample());
        let starred = text.replacen("\n\n", "\n\n*", 1);
        assert_eq!(dearmour(&starred), Err(ArmourError::Base64(4)));
        let bad_pad = text.replace("=\n", "\n");
        assert_eq!(dearmour(&bad_pad), Err(ArmourError::Padding));
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.remove(10);
        assert_eq!(dearmour(&lines.join("\n")), Err(ArmourError::Size(20423)));
        assert!(matches!(
            dearmour(&"A".repeat(MAX_ARMOUR_LEN + 1)),
            Err(ArmourError::TooLong(_))
        ));
        assert_eq!(dearmour("nothing"), Err(ArmourError::NoBegin));
        let no_end = text.replace(END, "");
        assert_eq!(dearmour(&no_end), Err(ArmourError::NoEnd));
        let no_version = text.replace("Version: 0.1-alpha1\n", "");
        assert_eq!(dearmour(&no_version), Err(ArmourError::NoVersion));
    }
}
