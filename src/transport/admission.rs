//! Connections per source: where a peer comes from, and how many
//! connections one source may hold at once.
//!
//! On the direct transport a source is the peer's IP address. On the
//! onion service every stream comes from some rendezvous circuit, and
//! nothing about the client behind it is known (that is the point of
//! Tor); the circuit is the source there. What Arti's onion service hands
//! over with a stream is the stream request and, through the rendezvous
//! request it came from, which circuit it is on (`mimix_tor` numbers the
//! circuits: [`mimix_tor::CircuitId`]); no client identity, address or
//! key. So:
//!
//! * possible: at most `max_connections_per_source` connections per
//!   circuit here, and Arti tearing down a circuit that opens more than
//!   `tor.max_streams_per_circuit` streams at once;
//! * not possible: telling two circuits of one client apart from two
//!   clients. A client that wants more slots builds more circuits, each
//!   costing it an introduction and a rendezvous; only the introduction
//!   points' rate limit and proof of work (Arti's, not enabled here) bound
//!   how fast it can. Against many circuits, the connection limit and the
//!   minimum data rate are what keep slots free.
//!
//! A stream whose source is unknown is not limited per source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A TCP peer's address (the direct transport).
    Address(IpAddr),
    /// A rendezvous circuit of our onion service, by its number.
    Circuit(u64),
    /// Unknown: not limited per source.
    Unknown,
}

/// Open connections per source, at most `max` each.
#[derive(Debug)]
pub(super) struct Sources {
    max: usize,
    open: Mutex<HashMap<Source, usize>>,
}

/// One connection counted against its source; released when dropped.
#[derive(Debug)]
pub(super) struct SourceSlot {
    sources: Arc<Sources>,
    source: Source,
}

impl Sources {
    /// At most `max` connections per source.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `source`, or `None` if the source already
    /// has `max` open.
    pub(super) fn claim(self: &Arc<Self>, source: Source) -> Option<SourceSlot> {
        if source != Source::Unknown {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(source).or_default();
            if *n >= self.max {
                return None;
            }
            *n += 1;
        }
        Some(SourceSlot {
            sources: Arc::clone(self),
            source,
        })
    }

    /// Connections open from `source`.
    #[cfg(test)]
    pub(super) fn open(&self, source: Source) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&source).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if self.source == Source::Unknown {
            return;
        }
        let mut open = self.sources.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn each_source_gets_its_share() {
        let sources = Sources::new(2);
        let a = Source::Address("127.0.0.2".parse().unwrap());
        let c = Source::Circuit(7);
        let a1 = sources.claim(a).unwrap();
        let _a2 = sources.claim(a).unwrap();
        assert!(sources.claim(a).is_none(), "a third from the same address");
        let _c1 = sources.claim(c).unwrap();
        let unknown: Vec<_> = (0..5).map(|_| sources.claim(Source::Unknown)).collect();
        assert!(unknown.iter().all(Option::is_some));
        drop(a1);
        assert_eq!(sources.open(a), 1);
        let _a3 = sources.claim(a).unwrap();
        drop(_a3);
        drop(_a2);
        assert_eq!(sources.open(a), 0);
        assert!(sources.open.lock().unwrap().get(&a).is_none());
    }
}
