//! The destination blocklist file ([`crate::exit::blocklist::Rules`]).
//!
//! Properties: parsing is line by line (the text parses if and only if
//! every line parses alone, and an error names the first line that fails
//! alone, with the same reason); CRLF line ends change nothing; the list
//! has at most one entry per entry line; and every accepted entry blocks
//! what it says, case-insensitively: an address blocks itself, `@domain`
//! blocks that domain and not its subdomains, a bare domain blocks the
//! domain and its subdomains. Regex entries are only run (on a probe
//! derived from the input), not checked.

use super::{Violation, ensure};
use crate::exit::blocklist::{BlocklistError, Rules};

const TARGET: &str = "blocklist";

/// Runs one blocklist text; names the outcome: `accepted`, `empty`
/// (accepted with no entries) or `refused`.
pub fn check(data: &[u8]) -> Result<&'static str, Violation> {
    let text = String::from_utf8_lossy(data);
    let parsed = Rules::parse(&text);
    let first_bad = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| verdict(&Rules::parse(l)).map(|(_, r)| (i + 1, r)));
    let got = verdict(&parsed);
    ensure(got == first_bad, TARGET, || {
        format!("whole text: {got:?}, line by line: {first_bad:?}")
    })?;
    let crlf = Rules::parse(&text.replace('\n', "\r\n"));
    ensure(
        verdict(&crlf) == got && len(&crlf) == len(&parsed),
        TARGET,
        || "CRLF line ends change the result".into(),
    )?;
    let Ok(rules) = parsed else {
        return Ok("refused");
    };
    let entry_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .count();
    ensure(rules.len() <= entry_lines, TARGET, || {
        format!("{} entries from {entry_lines} entry lines", rules.len())
    })?;
    for line in text.lines() {
        entry_blocks(line, &rules)?;
    }
    // Regexes and the lookup itself run on a probe made of the input.
    let probe: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let _ = rules.matches(&probe);
    let _ = rules.matches(&format!("x@{probe}"));
    Ok(if rules.is_empty() {
        "empty"
    } else {
        "accepted"
    })
}

/// The line and reason of a refusal (an I/O error cannot come from text;
/// it shows as line 0).
fn verdict(r: &Result<Rules, BlocklistError>) -> Option<(usize, &'static str)> {
    match r {
        Err(BlocklistError::Syntax { line, reason }) => Some((*line, reason)),
        Err(BlocklistError::Io { .. }) => Some((0, "io")),
        Ok(_) => None,
    }
}

fn len(r: &Result<Rules, BlocklistError>) -> Option<usize> {
    r.as_ref().ok().map(Rules::len)
}

/// Checks that the entry on `line` (accepted) blocks what it names, in the
/// whole list and in a list of that line alone.
fn entry_blocks(line: &str, rules: &Rules) -> Result<(), Violation> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with('/') {
        return Ok(());
    }
    let entry = t.split(char::is_whitespace).next().unwrap_or_default();
    let alone = Rules::parse(line).map_err(|e| Violation::Property {
        target: TARGET,
        what: format!("an accepted line refused alone: {e}"),
    })?;
    let (hits, misses): (Vec<String>, Vec<String>) = if let Some(d) = entry.strip_prefix('@') {
        let d = d.strip_suffix('.').unwrap_or(d);
        (
            vec![format!("someone@{d}"), format!("Someone@{}.", upper(d))],
            vec![format!("someone@sub.{d}"), format!("someone@x{d}")],
        )
    } else if entry.contains('@') {
        (
            vec![entry.to_owned(), upper(entry)],
            vec![format!("x{entry}.x")],
        )
    } else {
        let d = entry.strip_suffix('.').unwrap_or(entry);
        (
            vec![
                format!("someone@{d}"),
                format!("someone@sub.{}", upper(d)),
                format!("someone@a.b.{d}."),
            ],
            vec![format!("someone@{d}x")],
        )
    };
    for a in &hits {
        ensure(rules.matches(a) && alone.matches(a), TARGET, || {
            format!("entry {entry:?} does not block {a:?}")
        })?;
    }
    for a in &misses {
        ensure(!alone.matches(a), TARGET, || {
            format!("entry {entry:?} alone blocks {a:?}")
        })?;
    }
    Ok(())
}

fn upper(s: &str) -> String {
    s.to_ascii_uppercase()
}
