//! Host names: the one place that says what a host name, an onion host and
//! a loopback host are. Configuration checks, the transports' peer policy
//! and the exit's address checks all ask here.

use std::net::IpAddr;

/// The only hosts the insecure direct transport reaches and publishes.
pub const DIRECT_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// A DNS name or IPv4 address: dot-separated labels of 1 to 63 letters,
/// digits and inner `-`, at most 253 characters in all.
pub fn is_host_name(host: &str) -> bool {
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

/// Whether `host` (lower-case) names an onion service: a non-empty label
/// followed by `.onion`. The address itself is validated by Tor.
pub fn is_onion(host: &str) -> bool {
    host.strip_suffix(".onion")
        .is_some_and(|label| !label.is_empty() && !label.ends_with('.'))
}

/// Whether the direct transport may reach `host` (lower-case): one of
/// [`DIRECT_HOSTS`].
pub fn is_direct_host(host: &str) -> bool {
    DIRECT_HOSTS.contains(&host)
}

/// Whether `host` is this machine: `localhost` (any case) or a loopback IP
/// address (`127.0.0.0/8`, `::1`, with or without brackets).
pub fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in ["a", "mail.example.org", "127.0.0.1", "x-y.z", "ABC.onion"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b",
            "a.b.",
            "smtp example",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
        assert!(!is_host_name(&"a".repeat(64)));
    }

    #[test]
    fn onions_and_loopback() {
        assert!(is_onion("alpha.example.onion"));
        assert!(!is_onion("onion") && !is_onion(".onion") && !is_onion("x.onion.evil.com"));
        assert!(is_direct_host("127.0.0.1") && is_direct_host("localhost"));
        assert!(!is_direct_host("127.0.0.2") && !is_direct_host("[::1]"));
        for lo in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(lo), "{lo}");
        }
        for far in ["10.0.0.1", "example.org", "[::2]"] {
            assert!(!is_loopback(far), "{far}");
        }
    }
}
