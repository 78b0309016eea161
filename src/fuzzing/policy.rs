//! The exit's header policy ([`crate::exit::policy::Policy::apply`]).
//!
//! Input: byte 0 picks one of four policies (the default; an allow list;
//! small limits with a custom deny list and no `Comments:`; a long folded
//! `Comments:` and a custom `Message-ID` domain), the rest is the payload.
//!
//! Properties of a delivered message:
//!
//! * it is no larger than the limit, and every line ends in CRLF (no bare
//!   CR or LF anywhere);
//! * the header block is well formed: lines of at most 998 bytes without
//!   NUL, field lines with a valid name and a colon, folds only after a
//!   field; it starts with the exit's own `From:`, `Date:` and
//!   `Message-ID:` (and `Comments:` when configured), and none of those
//!   appears again;
//! * every other header line is a line of the sender's header, of a field
//!   the policy keeps (never managed, never denied, allowed when an allow
//!   list is set): nothing is injected;
//! * the body is the sender's body with its line ends made CRLF;
//! * the recipients are distinct plain ASCII addresses with a dotted
//!   domain, at most the limit, and the envelope sender is the operator's;
//! * applying the policy to its own output gives the same message (same
//!   time and random draws) and a subset of the recipients (blind copies
//!   are not in the output), or no recipients at all.
//!
//! A refusal must be one of the payload errors, and an oversized payload
//! is always refused as too large.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Violation, ensure};
use crate::exit::Delivery;
use crate::exit::policy::{MANAGED_HEADERS, Policy, PolicyConfig, PolicyError};

const TARGET: &str = "policy";

/// The time every message is dated (2026-11-28, the vectors' day).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(20_786 * 86_400)
}

/// A payload every policy delivers, to learn its `From:` line.
const REFERENCE: &[u8] = b"To: a@example.org\r\n\r\nhi\r\n";

/// One of the policies the fuzzer picks from.
struct Preset {
    policy: Policy,
    config: PolicyConfig,
    /// The `From:` line (with CRLF) the policy writes.
    from_line: Vec<u8>,
}

fn presets() -> Result<&'static [Preset], Violation> {
    static PRESETS: OnceLock<Result<Vec<Preset>, String>> = OnceLock::new();
    PRESETS
        .get_or_init(build_presets)
        .as_deref()
        .map_err(|e| Violation::Harness(e.clone()))
}

fn build_presets() -> Result<Vec<Preset>, String> {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let configs = [
        PolicyConfig::default(),
        PolicyConfig {
            from: "Anonymous <anon@remailer.example>".into(),
            allow_headers: strings(&["Subject", "In-Reply-To", "References", "X-*", "Content-*"]),
            ..PolicyConfig::default()
        },
        PolicyConfig {
            from: "\"Anonymous, Esq.\" <anon@remailer.example>".into(),
            envelope_from: Some("bounces@remailer.example".into()),
            comments: Some(String::new()),
            deny_headers: Some(strings(&["X-*", "Subject", "Comments"])),
            max_message_size: 1024,
            max_recipients: 2,
            ..PolicyConfig::default()
        },
        PolicyConfig {
            comments: Some(format!("{} end", "a long comment word ".repeat(20))),
            message_id_domain: Some("ids.remailer.example".into()),
            deny_headers: Some(strings(&["Comments", "Reply-To", "List-*"])),
            max_recipients: 1000,
            ..PolicyConfig::default()
        },
    ];
    configs
        .into_iter()
        .map(|config| {
            let policy = Policy::new(&config).map_err(|e| e.to_string())?;
            let d = apply(&policy, REFERENCE).map_err(|e| e.to_string())?;
            let end = find(&d.message, b"\r\n").ok_or("reference has no line")?;
            let from_line = d.message.get(..end + 2).unwrap_or_default().to_vec();
            Ok(Preset {
                policy,
                config,
                from_line,
            })
        })
        .collect()
}

fn apply(policy: &Policy, payload: &[u8]) -> Result<Delivery, PolicyError> {
    policy.apply(payload, now(), &mut StdRng::seed_from_u64(7))
}

/// Runs one input; names the outcome: `delivered`, `delivered bcc only`
/// (a second pass finds no recipient), or the refusal (`unparseable`,
/// `malformed`, `no_recipients`, `invalid_address`, `too_many`,
/// `too_large`).
pub fn check(data: &[u8]) -> Result<&'static str, Violation> {
    let presets = presets()?;
    let (Some(&pick), Some(payload)) = (data.first(), data.get(1..)) else {
        return Ok("no_recipients");
    };
    let preset = presets
        .get(usize::from(pick) % presets.len())
        .ok_or_else(|| Violation::Harness("no presets".into()))?;
    let result = apply(&preset.policy, payload);
    if payload.len() > preset.config.max_message_size {
        ensure(
            matches!(result, Err(PolicyError::TooLarge { .. })),
            TARGET,
            || format!("oversized payload gave {result:?}"),
        )?;
    }
    match result {
        Ok(d) => delivered(preset, payload, &d),
        Err(e) => refused(&e),
    }
}

/// What the policy made of an input, for reading a finding: the
/// recipients and the message of the first pass, then of a second pass
/// over the first's output.
pub fn explain(data: &[u8]) -> Result<String, Violation> {
    let presets = presets()?;
    let pick = usize::from(data.first().copied().unwrap_or(0)) % presets.len().max(1);
    let preset = presets
        .get(pick)
        .ok_or_else(|| Violation::Harness("no presets".into()))?;
    let mut out = format!("preset {pick}\n");
    let mut input = data.get(1..).unwrap_or_default().to_vec();
    for pass in 1..=2 {
        match apply(&preset.policy, &input) {
            Ok(d) => {
                let to: Vec<&str> = d.envelope_to.iter().map(AsRef::as_ref).collect();
                let text = String::from_utf8_lossy(&d.message)
                    .escape_debug()
                    .to_string();
                out.push_str(&format!("pass {pass}: to {to:?}\n{text}\n"));
                input = d.message;
            }
            Err(e) => {
                out.push_str(&format!("pass {pass}: {e:?}\n"));
                break;
            }
        }
    }
    Ok(out)
}

fn refused(e: &PolicyError) -> Result<&'static str, Violation> {
    Ok(match e {
        PolicyError::Unparseable => "unparseable",
        PolicyError::MalformedHeader(_) => "malformed",
        PolicyError::NoRecipients => "no_recipients",
        PolicyError::InvalidAddress => "invalid_address",
        PolicyError::IpLiteral => "ip_literal",
        PolicyError::TooManyRecipients { .. } => "too_many",
        PolicyError::TooLarge { .. } => "too_large",
        other => {
            return Err(Violation::Property {
                target: TARGET,
                what: format!("a payload gave a non-payload error: {other}"),
            });
        }
    })
}

fn delivered(preset: &Preset, payload: &[u8], d: &Delivery) -> Result<&'static str, Violation> {
    let m = &d.message;
    let max = preset.config.max_message_size;
    ensure(m.len() <= max, TARGET, || {
        format!("message of {} bytes over {max}", m.len())
    })?;
    crlf_only(m)?;
    let sep = find(m, b"\r\n\r\n").ok_or_else(|| prop("no header/body separator".into()))?;
    let head = m.get(..sep + 2).unwrap_or_default();
    let body = m.get(sep + 4..).unwrap_or_default();
    let start = body_start(payload);
    let sender_head = payload.get(..start).unwrap_or_default();
    header_block(preset, head, sender_head)?;
    let expected = crlf_body(payload.get(start..).unwrap_or_default());
    ensure(body == expected.as_slice(), TARGET, || {
        "body is not the sender's body with CRLF line ends".into()
    })?;
    recipients(preset, d)?;
    second_pass(preset, d)
}

/// Every CR is followed by LF and every LF preceded by CR; the message
/// ends in CRLF.
fn crlf_only(m: &[u8]) -> Result<(), Violation> {
    for (i, w) in m.windows(2).enumerate() {
        ensure(w[0] != b'\r' || w[1] == b'\n', TARGET, || {
            format!("bare CR at byte {i}")
        })?;
        ensure(w[1] != b'\n' || w[0] == b'\r', TARGET, || {
            format!("bare LF at byte {}", i + 1)
        })?;
    }
    ensure(
        m.ends_with(b"\r\n") && m.first() != Some(&b'\n'),
        TARGET,
        || "message does not end in CRLF".into(),
    )
}

/// The header block (each line with its CRLF) against the policy and the
/// sender's header.
fn header_block(preset: &Preset, head: &[u8], sender_head: &[u8]) -> Result<(), Violation> {
    let lines: Vec<&[u8]> = head
        .strip_suffix(b"\r\n")
        .unwrap_or(head)
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        ensure(line.len() <= 998 && !line.contains(&0), TARGET, || {
            format!("header line {i} too long or with NUL")
        })?;
        let fold = matches!(line.first(), Some(b' ' | b'\t'));
        ensure(i > 0 || !fold, TARGET, || {
            "header starts with a fold".into()
        })?;
        ensure(fold || field_name(line).is_some(), TARGET, || {
            format!("header line {i} is neither a field nor a fold")
        })?;
    }
    let from = preset.from_line.strip_suffix(b"\r\n").unwrap_or_default();
    ensure(lines.first() == Some(&from), TARGET, || {
        "first line is not the exit's From".into()
    })?;
    ensure(
        lines.get(1).is_some_and(|l| l.starts_with(b"Date: ")),
        TARGET,
        || "second line is not the exit's Date".into(),
    )?;
    let id_ok = lines.get(2).is_some_and(|l| message_id_ok(preset, l));
    ensure(id_ok, TARGET, || {
        "third line is not the exit's Message-ID".into()
    })?;
    let mut rest = lines.get(3..).unwrap_or_default();
    if preset
        .config
        .comments_text()
        .split_whitespace()
        .next()
        .is_some()
    {
        ensure(
            rest.first().is_some_and(|l| l.starts_with(b"Comments:")),
            TARGET,
            || "configured Comments missing".into(),
        )?;
        let folds = rest
            .iter()
            .skip(1)
            .take_while(|l| l.first() == Some(&b' '))
            .count();
        rest = rest.get(1 + folds..).unwrap_or_default();
    }
    sender_lines(preset, rest, sender_head)
}

/// The sender's lines that passed: each one a line of the sender's
/// header, each field one the policy keeps.
fn sender_lines(preset: &Preset, rest: &[&[u8]], sender_head: &[u8]) -> Result<(), Violation> {
    let theirs: HashSet<&[u8]> = sender_head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let deny = preset.config.deny_list();
    for line in rest {
        ensure(theirs.contains(line), TARGET, || {
            "a header line not in the sender's header".into()
        })?;
        let Some(name) = field_name(line) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let managed = MANAGED_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&name));
        let denied = deny.iter().any(|p| pattern_matches(p, &name));
        let allow = &preset.config.allow_headers;
        let allowed = allow.is_empty()
            || name == "to"
            || name == "cc"
            || allow.iter().any(|p| pattern_matches(p, &name));
        ensure(!managed && !denied && allowed, TARGET, || {
            format!("sender header {name:?} passed against the policy")
        })?;
    }
    Ok(())
}

fn message_id_ok(preset: &Preset, line: &[u8]) -> bool {
    let domain = preset
        .config
        .message_id_domain
        .clone()
        .or_else(|| {
            let from = String::from_utf8_lossy(&preset.from_line).into_owned();
            let at = from.rfind('@')?;
            let end = from.rfind('>')?;
            from.get(at + 1..end).map(str::to_owned)
        })
        .unwrap_or_default();
    let Some(inner) = line
        .strip_prefix(b"Message-ID: <")
        .and_then(|l| l.strip_suffix(format!("@{domain}>").as_bytes()))
    else {
        return false;
    };
    inner.len() == 32
        && inner
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn recipients(preset: &Preset, d: &Delivery) -> Result<(), Violation> {
    let n = d.envelope_to.len();
    let max = preset.config.max_recipients;
    ensure((1..=max).contains(&n), TARGET, || {
        format!("{n} recipients, limit {max}")
    })?;
    let mut seen = HashSet::new();
    for a in &d.envelope_to {
        let s: &str = a.as_ref();
        ensure(seen.insert(s.to_ascii_lowercase()), TARGET, || {
            "a recipient twice".into()
        })?;
        let domain = s.rsplit_once('@').map_or("", |(_, d)| d);
        let plain = s.bytes().all(|b| b.is_ascii_graphic());
        ensure(
            plain && domain.contains('.') && !domain.starts_with('['),
            TARGET,
            || "a recipient that is not a plain dotted address".into(),
        )?;
    }
    ensure(
        d.envelope_from == *preset.policy.envelope_from(),
        TARGET,
        || "envelope sender is not the operator's".into(),
    )
}

fn second_pass(preset: &Preset, d: &Delivery) -> Result<&'static str, Violation> {
    match apply(&preset.policy, &d.message) {
        Ok(again) => {
            ensure(again.message == d.message, TARGET, || {
                "the policy applied to its own output changes it".into()
            })?;
            // Distinct case-insensitively: the first pass may have kept
            // another spelling from a blind copy.
            let first: HashSet<String> = d.envelope_to.iter().map(lower).collect();
            ensure(
                again.envelope_to.iter().all(|a| first.contains(&lower(a))),
                TARGET,
                || "a second pass finds a new recipient".into(),
            )?;
            Ok("delivered")
        }
        Err(PolicyError::NoRecipients) => Ok("delivered bcc only"),
        Err(e) => Err(prop(format!("the policy refuses its own output: {e}"))),
    }
}

fn lower(a: &lettre::Address) -> String {
    let s: &str = a.as_ref();
    s.to_ascii_lowercase()
}

/// The field name of a header line, if it has a valid one.
fn field_name(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line.get(..colon)?;
    let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
    valid.then(|| String::from_utf8_lossy(name).into_owned())
}

/// A deny or allow pattern (`Name` or `Prefix*`) against a lowercase name.
fn pattern_matches(pattern: &str, lower: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    match p.strip_suffix('*') {
        Some(prefix) => lower.starts_with(prefix),
        None => lower == p,
    }
}

/// Where the sender's body starts: after the first empty line (LF or
/// CRLF), else at the end.
fn body_start(p: &[u8]) -> usize {
    if p.starts_with(b"\n") {
        return 1;
    }
    if p.starts_with(b"\r\n") {
        return 2;
    }
    let lf = find(p, b"\n\n").map(|i| i + 2);
    let crlf = find(p, b"\n\r\n").map(|i| i + 3);
    match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(p.len()),
    }
}

/// The body with every line end (CRLF, bare LF, bare CR) made CRLF and a
/// final CRLF added to a non-empty body.
fn crlf_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16 + 2);
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn prop(what: String) -> Violation {
    Violation::Property {
        target: TARGET,
        what,
    }
}
