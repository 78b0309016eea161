//! Host names: the one place that says what a host name, an onion host and
//! a loopback host are. Configuration checks, the transports' peer policy
//! and the exit's address checks all ask here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The IP address `host` names, if it is an address literal rather than a
/// name: a dotted IPv4 address or an IPv6 address, with or without the
/// brackets of an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    bare.parse().ok()
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, shared (CGNAT), documentation, benchmarking, multicast,
/// broadcast, reserved or unspecified. An IPv4-mapped IPv6 address is
/// judged as its IPv4 address. (`IpAddr::is_global` is not stable yet.)
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0])
        || ip.to_ipv4().is_some_and(|_| first == 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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

    #[test]
    fn ip_literals_and_public_addresses() {
        for (lit, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("[10.0.0.1]", "10.0.0.1"),
            ("[IPv6:2001:db8::1]", "2001:db8::1"),
            ("::1", "::1"),
            ("192.0.2.7.", "192.0.2.7"),
        ] {
            assert_eq!(ip_literal(lit), Some(ip.parse().unwrap()), "{lit}");
        }
        for name in ["example.org", "1.example", "mx.10.in-addr.arpa", ""] {
            assert_eq!(ip_literal(name), None, "{name}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2a00:1450::1", "::ffff:8.8.8.8"] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
    }
}
