//! Peer base URLs (`http://host[:port]`) and the policy deciding which
//! hosts a transport may reach.

use std::fmt;

use hyper::Uri;

use crate::net::{is_direct_host, is_host_name, is_onion};

/// Why a peer URL was refused. Every variant is permanent: retrying the
/// same URL cannot succeed.
///
/// Messages never contain the URL itself: a next-hop address is part of a
/// chain and must not end up in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not an absolute URI.
    #[error("peer URL is malformed")]
    Malformed,
    /// The scheme is not `http` (onion services need no TLS; others are
    /// not spoken).
    #[error("peer URL scheme {0:?} is not supported (only http)")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("peer URL has no host")]
    NoHost,
    /// The URL carries `user@` information.
    #[error("peer URL must not contain user information")]
    UserInfo,
    /// The URL has a path other than `/`, or a query.
    #[error("peer URL must be a base URL without path or query")]
    PathOrQuery,
    /// The port is 0.
    #[error("peer URL port is invalid")]
    BadPort,
    /// The host is neither a DNS name, an IPv4 address nor a bracketed
    /// IPv6 address.
    #[error("peer URL host is not a valid host name")]
    BadHost,
    /// The host is not reachable under the dialer's policy.
    #[error("peer host is not allowed by the {policy} transport policy")]
    NotAllowed {
        /// The policy that refused the host.
        policy: PeerPolicy,
    },
}

/// A parsed next-hop base URL: `http://host[:port]`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerUrl {
    host: String,
    port: u16,
    explicit_port: bool,
}

impl PeerUrl {
    /// Parses a base URL of the form `http://host[:port]` (a trailing `/`
    /// is tolerated). Any other scheme, user information, a path, a query
    /// or port 0 is refused. The host is lower-cased.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let uri: Uri = text.parse().map_err(|_| UrlError::Malformed)?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(UrlError::UnsupportedScheme(other.to_owned())),
            None => return Err(UrlError::Malformed),
        }
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::UserInfo);
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let ipv6 = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        if !ipv6 && !is_host_name(host) {
            return Err(UrlError::BadHost);
        }
        let path_ok = matches!(uri.path(), "" | "/");
        if !path_ok || uri.query().is_some() || text.ends_with('?') || text.contains('#') {
            return Err(UrlError::PathOrQuery);
        }
        // `Authority::port_u16` reads an out-of-range port as none at all,
        // so the port text is checked here.
        let port_text = authority.as_str().get(host.len()..).unwrap_or_default();
        let (port, explicit_port) = match port_text.strip_prefix(':') {
            None if port_text.is_empty() => (80, false),
            None => return Err(UrlError::Malformed),
            Some(digits) => match digits.parse::<u16>() {
                Ok(p) if p != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => (p, true),
                _ => return Err(UrlError::BadPort),
            },
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            explicit_port,
        })
    }

    /// The host, lower-cased (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 unless given).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The value of the `Host` header: the host, with `:port` only if the
    /// URL named a port other than 80 (as python-requests sends it).
    pub fn host_header(&self) -> String {
        if self.explicit_port && self.port != 80 {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.host_header())
    }
}

/// Which peer hosts a transport may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerPolicy {
    /// Only `127.0.0.1` and `localhost`: the insecure loopback transport
    /// for development and tests.
    LoopbackOnly,
    /// Only `.onion` hosts: the Tor transport's default.
    OnionOnly,
    /// `.onion` hosts and clearnet hosts (still over Tor): only when the
    /// operator explicitly allows clearnet peers.
    OnionOrClearnet,
}

impl PeerPolicy {
    /// The one place where a peer URL is checked against a policy.
    pub fn check(self, url: &PeerUrl) -> Result<(), UrlError> {
        let host = url.host();
        let allowed = match self {
            Self::LoopbackOnly => is_direct_host(host),
            Self::OnionOnly => is_onion(host),
            Self::OnionOrClearnet => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(UrlError::NotAllowed { policy: self })
        }
    }
}

impl fmt::Display for PeerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LoopbackOnly => "loopback-only",
            Self::OnionOnly => "onion-only",
            Self::OnionOrClearnet => "onion-or-clearnet",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = PeerUrl::parse("http://alpha.example.onion").unwrap();
        assert_eq!((u.host(), u.port()), ("alpha.example.onion", 80));
        assert_eq!(u.host_header(), "alpha.example.onion");
        assert_eq!(u.to_string(), "http://alpha.example.onion");

        let u = PeerUrl::parse("http://LocalHost:8080/").unwrap();
        assert_eq!((u.host(), u.port()), ("localhost", 8080));
        assert_eq!(u.host_header(), "localhost:8080");

        let u = PeerUrl::parse("http://127.0.0.1:80").unwrap();
        assert_eq!(u.host_header(), "127.0.0.1");
    }

    #[test]
    fn refuses_other_shapes() {
        let cases = [
            (
                "https://a.onion",
                UrlError::UnsupportedScheme("https".into()),
            ),
            ("ftp://a.onion", UrlError::UnsupportedScheme("ftp".into())),
            ("a.onion", UrlError::Malformed),
            ("", UrlError::Malformed),
            ("http://a.onion/collector.py/msg", UrlError::PathOrQuery),
            ("http://a.onion/?x=1", UrlError::PathOrQuery),
            ("http://a.onion?", UrlError::PathOrQuery),
            ("http://user@a.onion", UrlError::UserInfo),
            ("http://a.onion:0", UrlError::BadPort),
            ("http://a.onion:", UrlError::BadPort),
        ];
        for (text, want) in cases {
            let got = PeerUrl::parse(text);
            // Some shapes are already refused by the URI parser itself.
            match got {
                Err(e) => assert!(e == want || e == UrlError::Malformed, "{text}: {e:?}"),
                Ok(u) => panic!("{text} parsed as {u:?}"),
            }
        }
        assert!(PeerUrl::parse("http://a.onion:99999").is_err());
        assert!(PeerUrl::parse(" http://a.onion").is_err());
    }

    #[test]
    fn policy_check() {
        let url = |s| PeerUrl::parse(s).unwrap();
        let lo = PeerPolicy::LoopbackOnly;
        assert!(lo.check(&url("http://127.0.0.1:1234")).is_ok());
        assert!(lo.check(&url("http://localhost")).is_ok());
        for bad in [
            "http://127.0.0.2",
            "http://example.com",
            "http://a.onion",
            "http://[::1]",
        ] {
            assert_eq!(
                lo.check(&url(bad)),
                Err(UrlError::NotAllowed { policy: lo }),
                "{bad}"
            );
        }
        let onion = PeerPolicy::OnionOnly;
        assert!(onion.check(&url("http://alpha.example.onion")).is_ok());
        assert!(onion.check(&url("http://example.com")).is_err());
        assert!(onion.check(&url("http://127.0.0.1")).is_err());
        assert!(onion.check(&url("http://onion")).is_err());
        assert!(onion.check(&url("http://x.onion.evil.com")).is_err());
        let any = PeerPolicy::OnionOrClearnet;
        assert!(any.check(&url("http://example.com")).is_ok());
    }

    #[test]
    fn base_url_forms_from_configs() {
        for (url, host) in [
            ("http://abc.onion", "abc.onion"),
            ("http://ABC.onion:8080/", "abc.onion"),
            ("http://127.0.0.1:80", "127.0.0.1"),
            ("http://[::1]:8080", "[::1]"),
        ] {
            assert_eq!(PeerUrl::parse(url).unwrap().host(), host, "{url}");
        }
        for url in [
            "abc.onion",
            "http://",
            "http://a.onion/path",
            "http://u@a.onion",
            "http://a.onion?q",
            "http://a.onion:0",
            "http://a.onion:99999",
            "http://a.onion:+80",
            "http://a..onion",
            "http://[::1",
            "http://[zz]:80",
            "http://a b.onion",
        ] {
            assert!(PeerUrl::parse(url).is_err(), "{url}");
        }
    }
}
