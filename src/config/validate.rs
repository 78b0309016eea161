//! Range checks and the rules between fields.

use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

use lettre::Address;
use lettre::message::Mailbox;
use tracing_subscriber::EnvFilter;

use super::sections::DAY;
use super::{
    Config, ConfigError, ExitConfig, ExitPolicyConfig, KeysConfig, MAX_PAYLOAD, NodeConfig,
    ReplayConfig, SUPPORTED_VERSION, SmtpConfig, SmtpMode, SmtpTls, TorConfig, TorNetworkKind,
    TransportConfig, TransportKind,
};

type Result<T = ()> = std::result::Result<T, ConfigError>;

/// How many days a sender may backdate a packet's timestamp (draft 4.3.1).
const CLIENT_BACKDATING_DAYS: u64 = 3;

/// Smallest `transport.max_body`: an armoured packet posted as a form is
/// about 30 KB.
const MIN_MAX_BODY: u64 = 32 * 1024;

/// Longest chain the packet format allows.
const MAX_CHAIN: u8 = 10;

fn check(ok: bool, field: &str, reason: impl FnOnce() -> String) -> Result {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, reason()))
    }
}

fn positive(d: Duration, field: &str) -> Result {
    check(!d.is_zero(), field, || "must be longer than zero".into())
}

fn whole_days(d: Duration, field: &str) -> Result {
    check(
        d.as_secs().is_multiple_of(DAY.as_secs()) && d.subsec_nanos() == 0,
        field,
        || {
            format!(
                "must be a whole number of days (such as \"7d\"), got {}",
                show(d)
            )
        },
    )
}

fn show(d: Duration) -> String {
    super::serde_helpers::duration::format(d)
}

/// Check the whole configuration; the first problem found is returned.
pub(super) fn validate(c: &Config) -> Result {
    check(
        c.config_version == SUPPORTED_VERSION,
        "config_version",
        || {
            format!(
                "{} is not supported: this mimix reads config_version = {SUPPORTED_VERSION}",
                c.config_version
            )
        },
    )?;
    node(&c.node, c.transport.kind)?;
    transport(&c.transport)?;
    tor(&c.tor)?;
    pool(c)?;
    replay(&c.replay)?;
    keys(&c.keys)?;
    outbound(c)?;
    exit(&c.exit)?;
    directory(c)
}

fn node(n: &NodeConfig, kind: TransportKind) -> Result {
    remailer_name(&n.name, "node.name")?;
    check(!n.data_dir.as_os_str().is_empty(), "node.data_dir", || {
        "must not be empty".into()
    })?;
    if let Some(address) = &n.address {
        let host = base_url_host(address).map_err(|r| ConfigError::invalid("node.address", r))?;
        match kind {
            TransportKind::Tor => check(is_onion(&host), "node.address", || {
                "with the tor transport the published address must be our .onion address \
                 (or leave it out to have it filled in)"
                    .into()
            })?,
            TransportKind::Direct => check(is_loopback_host(&host), "node.address", || {
                "with the direct transport the address must be on 127.0.0.1 or localhost".into()
            })?,
        }
    }
    EnvFilter::builder()
        .parse(&n.log)
        .map(drop)
        .map_err(|e| ConfigError::invalid("node.log", format!("not a valid log filter: {e}")))
}

/// Remailer names: 1 to 32 ASCII letters, digits, `-`, `_` or `.`.
fn remailer_name(name: &str, field: &str) -> Result {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    check(ok, field, || {
        format!("{name:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'")
    })
}

fn transport(t: &TransportConfig) -> Result {
    positive(t.connect_timeout, "transport.connect_timeout")?;
    positive(t.request_timeout, "transport.request_timeout")?;
    positive(t.header_read_timeout, "transport.header_read_timeout")?;
    positive(t.body_read_timeout, "transport.body_read_timeout")?;
    check(t.max_body >= MIN_MAX_BODY, "transport.max_body", || {
        format!(
            "{} bytes is too small: a packet needs about 30 KB; use at least {MIN_MAX_BODY}",
            t.max_body
        )
    })?;
    check(t.max_conf_size >= 4096, "transport.max_conf_size", || {
        format!("{} bytes is too small; use at least 4096", t.max_conf_size)
    })?;
    check(
        (1..=65_536).contains(&t.max_connections),
        "transport.max_connections",
        || format!("must be 1 to 65536, got {}", t.max_connections),
    )?;
    if t.kind == TransportKind::Direct {
        check(t.listen.ip().is_loopback(), "transport.listen", || {
            format!(
                "the direct transport is plain, insecure HTTP and listens on loopback only; \
                 {} is not a loopback address",
                t.listen.ip()
            )
        })?;
    }
    Ok(())
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn tor(t: &TorConfig) -> Result {
    let nick_ok = (1..=64).contains(&t.service_nickname.len())
        && t.service_nickname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    check(nick_ok, "tor.service_nickname", || {
        "must be 1 to 64 ASCII letters, digits, '-' or '_'".into()
    })?;
    check(t.state_dir != t.cache_dir, "tor.cache_dir", || {
        "must differ from tor.state_dir".into()
    })?;
    match t.network {
        TorNetworkKind::Public => {
            let only_custom = |field: &str| {
                Err(ConfigError::invalid(
                    field,
                    "only used with network = \"custom\"",
                ))
            };
            if !t.authorities.is_empty() {
                return only_custom("tor.authorities");
            }
            if !t.fallbacks.is_empty() {
                return only_custom("tor.fallbacks");
            }
            if t.hsdir_interval.is_some() {
                return only_custom("tor.hsdir_interval");
            }
        }
        TorNetworkKind::Custom => {
            check(!t.authorities.is_empty(), "tor.authorities", || {
                "a custom network needs at least one authority".into()
            })?;
            check(!t.fallbacks.is_empty(), "tor.fallbacks", || {
                "a custom network needs at least one fallback relay".into()
            })?;
            for (i, a) in t.authorities.iter().enumerate() {
                check(
                    is_hex40(&a.v3ident),
                    &format!("tor.authorities[{i}].v3ident"),
                    || "must be 40 hex digits".into(),
                )?;
                check(
                    !a.dirports.is_empty(),
                    &format!("tor.authorities[{i}].dirports"),
                    || "must list at least one address".into(),
                )?;
            }
            for (i, f) in t.fallbacks.iter().enumerate() {
                check(
                    is_hex40(&f.rsa_identity),
                    &format!("tor.fallbacks[{i}].rsa_identity"),
                    || "must be 40 hex digits".into(),
                )?;
                let ed_ok = f.ed_identity.len() == 43
                    && f.ed_identity
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
                check(ed_ok, &format!("tor.fallbacks[{i}].ed_identity"), || {
                    "must be 43 characters of unpadded base64".into()
                })?;
                check(
                    !f.orports.is_empty(),
                    &format!("tor.fallbacks[{i}].orports"),
                    || "must list at least one address".into(),
                )?;
            }
            if let Some(d) = t.hsdir_interval {
                let ok = !d.is_zero() && d.as_secs().is_multiple_of(60) && d.subsec_nanos() == 0;
                check(ok, "tor.hsdir_interval", || {
                    format!("must be a whole number of minutes, got {}", show(d))
                })?;
            }
        }
    }
    Ok(())
}

fn pool(c: &Config) -> Result {
    let p = &c.pool;
    check(
        p.interval >= Duration::from_secs(1),
        "pool.interval",
        || "must be at least 1s".into(),
    )?;
    check(
        p.rate.is_finite() && p.rate > 0.0 && p.rate <= 1.0,
        "pool.rate",
        || format!("must be a fraction in (0, 1], got {}", p.rate),
    )?;
    let d = &c.dummies;
    for (mean, field) in [
        (d.per_inbound_mean, "dummies.per_inbound_mean"),
        (d.per_round_mean, "dummies.per_round_mean"),
    ] {
        check(
            mean.is_finite() && (0.0..=10.0).contains(&mean),
            field,
            || format!("must be a mean number of dummies from 0 to 10, got {mean}"),
        )?;
    }
    check(
        (1..=MAX_CHAIN).contains(&d.chain_length),
        "dummies.chain_length",
        || format!("must be 1 to {MAX_CHAIN} hops, got {}", d.chain_length),
    )
}

fn replay(r: &ReplayConfig) -> Result {
    whole_days(r.timestamp_max_age, "replay.timestamp_max_age")?;
    whole_days(r.timestamp_max_future, "replay.timestamp_max_future")?;
    let min_age = CLIENT_BACKDATING_DAYS + 1;
    check(
        r.max_age_days() >= min_age,
        "replay.timestamp_max_age",
        || {
            format!(
                "must be at least {min_age}d: senders may backdate timestamps by up to \
             {CLIENT_BACKDATING_DAYS} days, got {}",
                show(r.timestamp_max_age)
            )
        },
    )?;
    // A packet is acceptable from `max_future` before its timestamp day until
    // the end of the day `max_age` after it: its ID must be remembered that
    // long after it was first seen.
    let needed = r.timestamp_max_age + r.timestamp_max_future + DAY;
    check(r.retention >= needed, "replay.retention", || {
        format!(
            "{} is shorter than the time a packet stays acceptable \
             (timestamp_max_age + timestamp_max_future + 1d = {}): replays would get through",
            show(r.retention),
            show(needed)
        )
    })
}

fn keys(k: &KeysConfig) -> Result {
    check(
        (2048..=4096).contains(&k.bits) && k.bits.is_multiple_of(256),
        "keys.bits",
        || format!("must be 2048 to 4096 and a multiple of 256, got {}", k.bits),
    )?;
    whole_days(k.lifetime, "keys.lifetime")?;
    whole_days(k.renew_before, "keys.renew_before")?;
    whole_days(k.grace, "keys.grace")?;
    check(k.renew_before >= DAY, "keys.renew_before", || {
        "must be at least 1d, so that the next key is published before this one expires".into()
    })?;
    check(k.renew_before < k.lifetime, "keys.renew_before", || {
        format!(
            "must be shorter than keys.lifetime ({}), got {}",
            show(k.lifetime),
            show(k.renew_before)
        )
    })
}

fn outbound(c: &Config) -> Result {
    let o = &c.outbound;
    check(
        o.retry_initial >= Duration::from_secs(1),
        "outbound.retry_initial",
        || "must be at least 1s".into(),
    )?;
    check(o.retry_max >= o.retry_initial, "outbound.retry_max", || {
        "must be at least outbound.retry_initial".into()
    })?;
    check(
        o.give_up_after >= o.retry_initial,
        "outbound.give_up_after",
        || "must be at least outbound.retry_initial".into(),
    )?;
    check(
        (1..=1024).contains(&o.concurrency),
        "outbound.concurrency",
        || format!("must be 1 to 1024, got {}", o.concurrency),
    )
}

fn exit(e: &ExitConfig) -> Result {
    check(
        !e.blocklist.as_os_str().is_empty(),
        "exit.blocklist",
        || "must not be empty".into(),
    )?;
    policy(&e.policy)?;
    smtp(&e.smtp)?;
    let r = &e.retry;
    check(
        r.initial >= Duration::from_secs(1),
        "exit.retry.initial",
        || "must be at least 1s".into(),
    )?;
    check(r.max >= r.initial, "exit.retry.max", || {
        "must be at least exit.retry.initial".into()
    })?;
    check(
        r.give_up_after >= r.initial,
        "exit.retry.give_up_after",
        || "must be at least exit.retry.initial".into(),
    )?;
    positive(e.reassembly.expiry, "exit.reassembly.expiry")?;
    check(
        e.reassembly.max_partial_sets >= 1,
        "exit.reassembly.max_partial_sets",
        || "must be at least 1".into(),
    )
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn policy(p: &ExitPolicyConfig) -> Result {
    let from = Mailbox::from_str(&p.from)
        .ok()
        .filter(|_| printable_ascii(&p.from))
        .ok_or_else(|| {
            ConfigError::invalid(
                "exit.policy.from",
                format!("{:?} is not a mailbox in printable ASCII", p.from),
            )
        })?;
    let anonymous = from
        .name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().contains("anonymous"));
    check(anonymous, "exit.policy.from", || {
        "the display name must contain \"Anonymous\", as in \
         \"Anonymous Remailer <nobody@example.org>\""
            .into()
    })?;
    if let Some(env) = &p.envelope_from {
        check(
            printable_ascii(env) && Address::from_str(env).is_ok(),
            "exit.policy.envelope_from",
            || format!("{env:?} is not an email address"),
        )?;
    }
    if let Some(comments) = &p.comments {
        check(
            comments.len() <= 900 && printable_ascii(comments),
            "exit.policy.comments",
            || "must be at most 900 characters of printable ASCII on one line".into(),
        )?;
    }
    if let Some(domain) = &p.message_id_domain {
        check(
            is_host_name(domain),
            "exit.policy.message_id_domain",
            || format!("{domain:?} is not a domain name"),
        )?;
    }
    let lists = [
        (
            "exit.policy.deny_headers",
            p.deny_headers.as_deref().unwrap_or_default(),
        ),
        ("exit.policy.allow_headers", p.allow_headers.as_slice()),
    ];
    for (field, list) in lists {
        for (i, h) in list.iter().enumerate() {
            // A field name (printable ASCII but ':'), optionally ending in '*'.
            let name = h.strip_suffix('*').unwrap_or(h);
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| (33..=126).contains(&b) && b != b':' && b != b'*');
            check(ok, &format!("{field}[{i}]"), || {
                format!("{h:?} is not a header field name or a prefix ending in '*'")
            })?;
        }
    }
    check(
        (1024..=4 * MAX_PAYLOAD).contains(&p.max_message_size),
        "exit.policy.max_message_size",
        || {
            format!(
                "must be 1024 to {} bytes, got {}",
                4 * MAX_PAYLOAD,
                p.max_message_size
            )
        },
    )?;
    check(
        (1..=1000).contains(&p.max_recipients),
        "exit.policy.max_recipients",
        || format!("must be 1 to 1000, got {}", p.max_recipients),
    )
}

fn smtp(s: &SmtpConfig) -> Result {
    match s.mode {
        SmtpMode::Relay => {
            check(is_host_name(&s.host), "exit.smtp.host", || {
                format!("{:?} is not a host name or address", s.host)
            })?;
            check(
                s.username.is_some() == s.password_file.is_some(),
                "exit.smtp.username",
                || "username and password_file go together: set both or neither".into(),
            )?;
            if let Some(user) = &s.username {
                check(
                    !user.is_empty() && printable_ascii(user),
                    "exit.smtp.username",
                    || "must be printable ASCII".into(),
                )?;
                check(
                    s.tls != SmtpTls::None || is_loopback_host(&s.host),
                    "exit.smtp.tls",
                    || "refusing to send SMTP credentials to a remote relay without TLS".into(),
                )?;
            }
        }
        SmtpMode::Mx => {
            check(
                s.username.is_none() && s.password_file.is_none(),
                "exit.smtp.username",
                || "credentials are only used with mode = \"relay\"".into(),
            )?;
        }
    }
    check(s.port != 0, "exit.smtp.port", || "must not be 0".into())?;
    if let Some(helo) = &s.helo_name {
        check(is_host_name(helo), "exit.smtp.helo_name", || {
            format!("{helo:?} is not a host name")
        })?;
    }
    positive(s.connect_timeout, "exit.smtp.connect_timeout")?;
    positive(s.command_timeout, "exit.smtp.command_timeout")?;
    positive(s.session_timeout, "exit.smtp.session_timeout")?;
    positive(s.dns_timeout, "exit.smtp.dns_timeout")
}

fn directory(c: &Config) -> Result {
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, r) in c.directory.remailers.iter().enumerate() {
        remailer_name(&r.name, &format!("directory.remailers[{i}].name"))?;
        let field = format!("directory.remailers[{i}].address");
        let host =
            base_url_host(&r.address).map_err(|reason| ConfigError::invalid(&field, reason))?;
        let reachable = match c.transport.kind {
            TransportKind::Direct => is_loopback_host(&host),
            TransportKind::Tor => c.transport.allow_clearnet_hops || is_onion(&host),
        };
        check(reachable, &field, || match c.transport.kind {
            TransportKind::Direct => {
                "the direct transport only reaches 127.0.0.1 and localhost".into()
            }
            TransportKind::Tor => "not a .onion address; set transport.allow_clearnet_hops \
                                   to reach clearnet remailers over Tor"
                .into(),
        })?;
        check(
            names.insert(r.name.as_str()),
            &format!("directory.remailers[{i}].name"),
            || format!("{:?} is listed twice", r.name),
        )?;
        let normalised = r.address.trim_end_matches('/').to_ascii_lowercase();
        check(addresses.insert(normalised), &field, || {
            "listed twice".into()
        })?;
    }
    Ok(())
}

/// The lower-cased host of a base URL `http://host[:port]` (a trailing `/`
/// is allowed), or why it is not one.
pub(crate) fn base_url_host(url: &str) -> std::result::Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} must start with http://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url:?} must be a base URL (http://host[:port]) without user, path or query"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?} has an unclosed IPv6 literal"))?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{url:?} has a bad IPv6 literal"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?} is malformed"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if !host.starts_with('[') && !is_host_name(&host) {
        return Err(format!("{url:?} has no valid host"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("{url:?} has a bad port")),
        }
    }
    Ok(host.to_ascii_lowercase())
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and
/// inner `-`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `something.onion`.
fn is_onion(host: &str) -> bool {
    host.strip_suffix(".onion")
        .is_some_and(|label| !label.is_empty() && !label.ends_with('.'))
}

/// The hosts the direct transport reaches.
fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost")
}
