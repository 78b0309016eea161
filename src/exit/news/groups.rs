//! Newsgroup names (RFC 5536 3.1.4), the group lists of `Newsgroups:` and
//! `Followup-To:`, and the newsgroup blocklist.
//!
//! The blocklist file is plain UTF-8 text, one pattern per line:
//!
//! ```text
//! # full-line comments start with '#'
//! alt.binaries.*      # '*' matches any characters, dots included
//! *.test              # every group ending in .test
//! comp.lang.c?        # '?' matches one character
//! ```
//!
//! A pattern matches a whole group name, case-insensitively. Text after a
//! pattern must be empty or a `#` comment. The file is re-read when it
//! changes ([`crate::exit::watched`]); a missing file blocks nothing.

use regex::{Regex, RegexBuilder};

use super::NewsRefusal;
use crate::exit::blocklist::BlocklistError;

/// Longest newsgroup name accepted.
pub const MAX_NAME: usize = 128;

/// Parsed newsgroup blocklist patterns.
#[derive(Debug, Default)]
pub struct GroupRules {
    patterns: Vec<Regex>,
}

impl GroupRules {
    /// Parses blocklist text (see the module docs).
    pub fn parse(text: &str) -> Result<Self, BlocklistError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let syntax = |reason| BlocklistError::Syntax {
                line: i + 1,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, tail) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let tail = tail.trim();
            if !(tail.is_empty() || tail.starts_with('#')) {
                return Err(syntax("unexpected text after the pattern"));
            }
            patterns.push(wildmat(pattern).ok_or_else(|| syntax("invalid newsgroup pattern"))?);
        }
        Ok(Self { patterns })
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `group` matches a pattern.
    pub fn matches(&self, group: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(group))
    }
}

/// A pattern of name characters, `*` and `?` as an anchored,
/// case-insensitive regex.
fn wildmat(pattern: &str) -> Option<Regex> {
    let ok = pattern
        .bytes()
        .all(|b| b == b'*' || b == b'?' || b == b'.' || is_component_char(b));
    if !ok || pattern.len() > MAX_NAME {
        return None;
    }
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    RegexBuilder::new(&re).case_insensitive(true).build().ok()
}

/// RFC 5536 `component-char`: letters, digits, `+`, `-` and `_`.
fn is_component_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'_')
}

/// Whether `name` is a newsgroup name: dot-separated non-empty components
/// of letters, digits, `+`, `-` and `_`, at most [`MAX_NAME`] bytes.
pub fn is_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(is_component_char))
}

/// Whether `name` is the control hierarchy (`control`, `control.*`).
pub fn is_control(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "control" || lower.starts_with("control.")
}

/// Names no post may name (RFC 5536 3.1.4): `junk`, `all`, `ctl`, `to.*`
/// and `poster` (which only `Followup-To:` may hold, alone).
fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(lower.as_str(), "junk" | "all" | "ctl" | "poster") || lower.starts_with("to.")
}

/// The groups of a `Newsgroups:` or `Followup-To:` value (raw, folds
/// included): comma-separated names, white space around them ignored,
/// repeats (any case) counted once. Refused: an empty list or item, an
/// invalid or reserved name, the control hierarchy, more than `max`
/// groups. `Followup-To: poster` (alone) is the empty list.
pub fn parse_list(value: &[u8], max: usize, followup: bool) -> Result<Vec<String>, NewsRefusal> {
    let text = std::str::from_utf8(value).map_err(|_| NewsRefusal::BadGroups)?;
    let text: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let text = text.trim();
    if followup && text.eq_ignore_ascii_case("poster") {
        return Ok(Vec::new());
    }
    let mut groups: Vec<String> = Vec::new();
    for item in text.split(',') {
        let name = item.trim_matches([' ', '\t']);
        if is_control(name) {
            return Err(NewsRefusal::Control);
        }
        if !is_name(name) || is_reserved(name) {
            return Err(NewsRefusal::BadGroups);
        }
        if !groups.iter().any(|g| g.eq_ignore_ascii_case(name)) {
            groups.push(name.to_owned());
        }
    }
    if groups.len() > max {
        return Err(NewsRefusal::Crosspost {
            found: groups.len(),
            max,
        });
    }
    Ok(groups)
}

/// A `Name: a,b,c` header line, folded after commas to keep lines short.
pub fn header_line(name: &str, groups: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for (i, g) in groups.iter().enumerate() {
        let sep = if i == 0 { " " } else { "," };
        if i > 0 && line + 1 + g.len() > 76 {
            out.push_str(",\r\n ");
            line = 1;
        } else {
            out.push_str(sep);
            line += sep.len();
        }
        out.push_str(g);
        line += g.len();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_and_lists() {
        assert!(is_name("alt.test"));
        assert!(is_name("comp.lang.c++"));
        for bad in [
            "",
            "alt..test",
            ".alt",
            "alt.",
            "alt test",
            "alt/test",
            "alt.tést",
        ] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(!is_name(&"a".repeat(MAX_NAME + 1)));
        let list = |v: &[u8], max| parse_list(v, max, false);
        assert_eq!(
            list(b" alt.test,\r\n Alt.Test , misc.test", 3).unwrap(),
            ["alt.test", "misc.test"]
        );
        assert_eq!(
            list(b"a.b,c.d,e.f,g.h", 3),
            Err(NewsRefusal::Crosspost { found: 4, max: 3 })
        );
        for bad in [
            &b""[..],
            b"alt.test,",
            b"a b",
            b"junk",
            b"to.node",
            b"poster",
        ] {
            assert_eq!(list(bad, 3), Err(NewsRefusal::BadGroups), "{bad:?}");
        }
        for ctl in [
            &b"control"[..],
            b"alt.test,control.cancel",
            b"Control.newgroup",
        ] {
            assert_eq!(list(ctl, 3), Err(NewsRefusal::Control), "{ctl:?}");
        }
        assert!(parse_list(b" poster ", 3, true).unwrap().is_empty());
        assert_eq!(parse_list(b"poster", 3, false), Err(NewsRefusal::BadGroups));
    }

    #[test]
    fn header_lines_fold_after_commas() {
        let groups: Vec<String> = (0..8).map(|i| format!("alt.group.number{i}")).collect();
        let line = header_line("Newsgroups", &groups);
        assert!(line.starts_with("Newsgroups: alt.group.number0,alt.group.number1,"));
        assert!(line.lines().all(|l| l.len() <= 78), "{line}");
        assert!(line.contains(",\r\n alt.group"));
        let unfolded: String = line.replace("\r\n ", "");
        assert_eq!(
            unfolded.trim_end(),
            format!("Newsgroups: {}", groups.join(","))
        );
        assert_eq!(
            header_line("Followup-To", &["a.b".into()]),
            "Followup-To: a.b\r\n"
        );
    }

    #[test]
    fn blocklist_patterns_match_whole_names_in_any_case() {
        let r = GroupRules::parse("# blocked\nalt.binaries.*\n*.test  # tests\ncomp.lang.c?\n")
            .unwrap();
        assert_eq!(r.len(), 3);
        for blocked in [
            "alt.binaries.x",
            "ALT.Binaries.pictures.y",
            "misc.test",
            "comp.lang.cc",
        ] {
            assert!(r.matches(blocked), "{blocked}");
        }
        for free in [
            "alt.binaries",
            "misc.testing",
            "comp.lang.c",
            "comp.lang.c.moderated",
        ] {
            assert!(!r.matches(free), "{free}");
        }
        for (text, line) in [
            ("ok.group\nbad pattern here\n", 2),
            ("a(b)\n", 1),
            ("/re/\n", 1),
        ] {
            match GroupRules::parse(text) {
                Err(BlocklistError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(GroupRules::parse("").unwrap().is_empty());
    }
}
