//! MX routing for direct delivery: which hosts to try for a domain, in
//! which order (RFC 5321 5.1), and how recipients are grouped by domain.
//!
//! The DNS lookup is behind [`MxResolver`] so the routing can be tested
//! without a network; [`HickoryResolver`] is the real one.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use lettre::Address;

/// Errors setting up the resolver.
#[derive(Debug, thiserror::Error)]
pub enum MxError {
    /// The system resolver configuration could not be read or used.
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Preference: lower is tried first.
    pub preference: u16,
    /// The mail exchanger's host name (a trailing dot is allowed).
    pub exchange: String,
}

/// The answer to an MX query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// The domain has these MX records.
    Records(Vec<MxRecord>),
    /// The domain exists but has no MX records: deliver to its A/AAAA.
    NoRecords,
    /// The domain does not exist (NXDOMAIN).
    NoSuchDomain,
}

/// A future returned by [`MxResolver::lookup_mx`].
pub type MxFuture<'a> = Pin<Box<dyn Future<Output = Result<MxAnswer, String>> + Send + 'a>>;

/// A future returned by [`MxResolver::lookup_ip`].
pub type IpFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>>;

/// Looks up MX records and mail exchangers' addresses. An `Err` is a
/// temporary failure (retry later).
pub trait MxResolver: Send + Sync + 'static {
    /// Looks up the MX records of `domain`.
    fn lookup_mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a>;

    /// The addresses of the host `host` (an address literal stands for
    /// itself). The default asks the system resolver.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> IpFuture<'a> {
        Box::pin(async move {
            if let Some(ip) = crate::net::ip_literal(host) {
                return Ok(vec![ip]);
            }
            let addrs = tokio::net::lookup_host((host, 25))
                .await
                .map_err(|e| e.to_string())?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Keeps the addresses a mail exchanger may be contacted at: public ones
/// only, unless `allow_private`.
pub fn permitted_addresses(addrs: Vec<IpAddr>, allow_private: bool) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(addrs.len());
    for ip in addrs {
        if (allow_private || crate::net::is_public_ip(ip)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The system's DNS resolver (`/etc/resolv.conf`), via hickory.
pub struct HickoryResolver {
    resolver: TokioResolver,
}

impl HickoryResolver {
    /// A resolver using the system configuration, with `timeout` per query.
    pub fn from_system(timeout: Duration) -> Result<Self, MxError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| MxError::Setup(e.to_string()))?;
        builder.options_mut().timeout = timeout;
        let resolver = builder.build().map_err(|e| MxError::Setup(e.to_string()))?;
        Ok(Self { resolver })
    }
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HickoryResolver")
    }
}

impl MxResolver for HickoryResolver {
    fn lookup_mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a> {
        Box::pin(async move {
            // Fully qualified: no search-domain expansion.
            let fqdn = format!("{}.", domain.trim_end_matches('.'));
            match self.resolver.mx_lookup(fqdn.as_str()).await {
                Ok(lookup) => {
                    let records: Vec<MxRecord> = lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some(MxRecord {
                                preference: mx.preference,
                                exchange: mx.exchange.to_ascii(),
                            }),
                            _ => None,
                        })
                        .collect();
                    Ok(if records.is_empty() {
                        MxAnswer::NoRecords
                    } else {
                        MxAnswer::Records(records)
                    })
                }
                Err(e) if e.is_nx_domain() => Ok(MxAnswer::NoSuchDomain),
                Err(e) if e.is_no_records_found() => Ok(MxAnswer::NoRecords),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn lookup_ip<'a>(&'a self, host: &'a str) -> IpFuture<'a> {
        Box::pin(async move {
            if let Some(ip) = crate::net::ip_literal(host) {
                return Ok(vec![ip]);
            }
            let fqdn = format!("{}.", host.trim_end_matches('.'));
            match self.resolver.lookup_ip(fqdn.as_str()).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Why a domain has no route (permanent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// NXDOMAIN.
    NoSuchDomain,
    /// A null MX (RFC 7505): the domain accepts no mail.
    NullMx,
    /// A special-use name (`.onion`, `.invalid`, `.localhost`, ...) that
    /// has no place in public DNS.
    SpecialUse,
    /// Every mail exchanger resolves only to addresses that may not be
    /// contacted (loopback, private, ...: see [`permitted_addresses`]).
    PrivateAddress,
}

/// Top-level names never delivered to directly.
const SPECIAL_USE: &[&str] = &["onion", "invalid", "localhost", "local", "test", "arpa"];

/// Whether `domain` is a special-use name.
pub fn is_special_use(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let tld = d.rsplit('.').next().unwrap_or_default();
    SPECIAL_USE.contains(&tld)
}

/// The hosts to try for `domain`, most preferred first: MX exchanges by
/// ascending preference (ties by name, so the order is deterministic;
/// RFC 5321 only suggests shuffling ties for load spreading), or the domain
/// itself when it has no MX records (implicit MX, RFC 5321 5.1).
pub fn route(domain: &str, answer: &MxAnswer) -> Result<Vec<String>, NoRoute> {
    match answer {
        MxAnswer::NoSuchDomain => Err(NoRoute::NoSuchDomain),
        MxAnswer::NoRecords => Ok(vec![domain.trim_end_matches('.').to_owned()]),
        MxAnswer::Records(records) => {
            let mut hosts: Vec<(u16, String)> = records
                .iter()
                .map(|r| {
                    let host = r.exchange.trim_end_matches('.').to_ascii_lowercase();
                    (r.preference, host)
                })
                .collect();
            hosts.sort();
            let mut out: Vec<String> = Vec::with_capacity(hosts.len());
            for (_, h) in hosts {
                if !h.is_empty() && !out.contains(&h) {
                    out.push(h);
                }
            }
            // A null MX is the exchange "." (empty after trimming).
            if out.is_empty() {
                Err(NoRoute::NullMx)
            } else {
                Ok(out)
            }
        }
    }
}

/// Groups recipients by lowercased domain, domains in sorted order and
/// recipients in their original order.
pub fn group_by_domain(recipients: &[Address]) -> BTreeMap<String, Vec<Address>> {
    let mut groups: BTreeMap<String, Vec<Address>> = BTreeMap::new();
    for r in recipients {
        groups
            .entry(r.domain().to_ascii_lowercase())
            .or_default()
            .push(r.clone());
    }
    groups
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.to_owned(),
        }
    }

    #[test]
    fn mx_hosts_in_preference_order() {
        let answer = MxAnswer::Records(vec![
            mx(20, "backup.example.com."),
            mx(5, "primary.example.com."),
            mx(10, "b.example.com."),
            mx(10, "A.example.com."),
        ]);
        assert_eq!(
            route("example.com", &answer).unwrap(),
            [
                "primary.example.com",
                "a.example.com",
                "b.example.com",
                "backup.example.com"
            ]
        );
    }

    #[test]
    fn duplicate_exchanges_are_tried_once() {
        let answer = MxAnswer::Records(vec![mx(10, "mx.example.com."), mx(20, "MX.example.com")]);
        assert_eq!(route("example.com", &answer).unwrap(), ["mx.example.com"]);
    }

    #[test]
    fn no_mx_falls_back_to_the_domain() {
        assert_eq!(
            route("example.org.", &MxAnswer::NoRecords).unwrap(),
            ["example.org"]
        );
    }

    #[test]
    fn null_mx_and_nxdomain_have_no_route() {
        let null = MxAnswer::Records(vec![mx(0, ".")]);
        assert_eq!(route("example.com", &null), Err(NoRoute::NullMx));
        assert_eq!(
            route("nope.example", &MxAnswer::NoSuchDomain),
            Err(NoRoute::NoSuchDomain)
        );
    }

    #[test]
    fn private_exchanger_addresses_are_dropped() {
        let ips: Vec<IpAddr> = ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "8.8.8.8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let public: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap()];
        assert_eq!(permitted_addresses(ips.clone(), false), public);
        assert_eq!(permitted_addresses(ips, true).len(), 4);
    }

    #[tokio::test]
    async fn the_default_lookup_takes_literals_as_they_are() {
        struct NoMx;
        impl MxResolver for NoMx {
            fn lookup_mx<'a>(&'a self, _: &'a str) -> MxFuture<'a> {
                Box::pin(async { Ok(MxAnswer::NoRecords) })
            }
        }
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(NoMx.lookup_ip("127.0.0.2.").await.unwrap(), [ip]);
    }

    #[test]
    fn special_use_names() {
        assert!(is_special_use("abcdef.onion"));
        assert!(is_special_use("x.INVALID."));
        assert!(is_special_use("localhost"));
        assert!(!is_special_use("example.com"));
    }

    #[test]
    fn recipients_grouped_by_domain() {
        let rcpts: Vec<Address> = ["a@X.example", "b@y.example", "c@x.example", "d@y.example"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let groups = group_by_domain(&rcpts);
        let got: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(d, v)| (d, v.iter().map(|a| a.to_string()).collect()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "x.example".to_owned(),
                    vec!["a@X.example".to_owned(), "c@x.example".to_owned()]
                ),
                (
                    "y.example".to_owned(),
                    vec!["b@y.example".to_owned(), "d@y.example".to_owned()]
                ),
            ]
        );
    }
}
