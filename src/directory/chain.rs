//! Chain selection: which remailers a message's packets travel through.
//!
//! Senders write a chain the way YAMN and Mixmaster users do, as
//! comma-separated hops: `*` for a random remailer, or a remailer's name or
//! address (`*,*,*`, `alpha,*,*`, `*,*,http://xyz.onion`). [`ChainSpec`]
//! parses that text; [`select`] turns it into concrete chains, one per
//! chunk of the message, from the remailers the node knows ([`Candidate`]).
//! [`dummy_chain`] is the node's simpler helper for dummy traffic.
//!
//! # Rules
//!
//! - Remailers are identified by address. Names are not unique: a name
//!   claimed by two remailers is an error that asks for the address, never
//!   a silent pick. Names compare case-insensitively, addresses ignoring
//!   ASCII case and a trailing `/`. Duplicate addresses in the input count
//!   once (the first entry is used).
//! - No remailer appears twice within [`Filters::distance`] hops: hop `i`
//!   differs from hops `i-1 ..= i-distance`, named hops included. Two named
//!   hops that break the rule are an error rather than allowed: a remailer
//!   that sees a packet twice in a row adds no mixing, and a user who wants
//!   that anyway can lower the distance.
//! - Random hops must pass the [`Filters`]; the last hop uses the stricter
//!   `final_min_reliability`. Named hops are used as named, except that a
//!   named last hop must deliver mail when [`Exit::Required`].
//! - All chunks of one message end at the same exit: the exit is chosen
//!   once, then the other hops of each chunk's chain independently.
//!
//! # Search
//!
//! Greedy left-to-right picking is not complete (with one eligible exit it
//! can use that exit early and then find no exit). [`select`] instead runs a
//! randomized backtracking search over at most [`MAX_HOPS`] hops: the
//! random exit is assigned first, then always the open hop with the fewest
//! remaining choices. Before every step the search gives up on a branch
//! when an open hop has no choice left, or when the open hops of some
//! `distance + 1` consecutive hops (which must all differ) have fewer
//! remailers between them than there are hops; the second check makes
//! hopeless requests such as ten different remailers out of nine fail at
//! once instead of after trying every arrangement. Each hop's choices are
//! tried in a fresh random order, so every hop is uniform among the
//! remailers that can still complete a valid chain. The search finds a
//! chain whenever one exists; when none does, the error describes the
//! shallowest dead end met (the one least dependent on the search's own
//! picks): which hop had no remailer left and which filter excluded how
//! many, or which hops had too few remailers to differ.
//!
//! # Layout
//!
//! This file holds the inputs ([`Candidate`], [`Filters`]), [`select`] with
//! the resolution of a spec against the candidates, and [`dummy_chain`];
//! `spec` parses chain text, `search` is the backtracking search, `error`
//! the error type and its texts.

mod error;
mod search;
mod spec;

use std::collections::HashSet;
use std::time::Duration;

use rand::CryptoRng;
use rand::seq::{IndexedRandom, SliceRandom};

pub use error::{ChainError, Exclusions};
use search::{Search, Stuck, near};
pub use spec::{ChainSpec, Hop};

/// Most hops in a chain: the packet format has ten header sections.
pub const MAX_HOPS: usize = 10;
/// Most chunks in a message, as in the packet format.
pub const MAX_CHUNKS: usize = 255;
/// Longest chain text accepted, in bytes.
pub const MAX_SPEC_LEN: usize = 1024;
/// Longest single hop (name or address) accepted, in bytes: the length of
/// the packet's next-hop field.
pub const MAX_HOP_LEN: usize = 80;

/// What chain selection needs to know about one remailer.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The name in its remailer-conf (`Name:`); not unique.
    pub name: String,
    /// Its base URL, e.g. `http://xyz.onion`: the unique key.
    pub address: String,
    /// It delivers mail (`SMTP: Yes`).
    pub exit: bool,
    /// Share of pings answered, 0.0 to 1.0; `None` if not measured yet.
    pub reliability: Option<f64>,
    /// Typical round-trip latency; `None` if not measured yet.
    pub latency: Option<Duration>,
}

/// Whether the chain's last hop must deliver mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A mail message: the last hop must be exit-capable.
    Required,
    /// A dummy or test packet: any remailer may be last.
    Any,
}

/// Which remailers random hops may use.
///
/// Unmeasured remailers (`reliability == None`) pass the reliability
/// filters unless `require_measured` is set: a new network has no
/// statistics yet and must still work. A `None` latency never exceeds
/// `max_latency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    /// Lowest reliability for a random hop other than the last (YAMN
    /// `minrel`), 0.0 to 1.0.
    pub min_reliability: f64,
    /// Lowest reliability for a random last hop (YAMN `relfinal`).
    pub final_min_reliability: f64,
    /// Highest latency for a random hop (YAMN `maxlat`).
    pub max_latency: Duration,
    /// Refuse unmeasured remailers for random hops.
    pub require_measured: bool,
    /// No remailer repeats within this many hops; 0 allows repeats.
    pub distance: usize,
}

impl Default for Filters {
    /// 90 % reliability as in the reference Mimix (YAMN's 98 % assumes a
    /// mature, well-pinged network; onion round trips fail more often),
    /// 95 % for the last hop since a lost exit loses every chunk, at most
    /// 2 h latency (YAMN and the reference agree), unmeasured remailers
    /// allowed, and distance 2 as the draft asks for dummies.
    fn default() -> Self {
        Self {
            min_reliability: 0.90,
            final_min_reliability: 0.95,
            max_latency: Duration::from_secs(2 * 3600),
            require_measured: false,
            distance: 2,
        }
    }
}

/// Why a remailer may not be a given random hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    NotExit,
    Unmeasured,
    BelowReliability,
    OverLatency,
}

/// One hop's position in a chain and what its random pick must satisfy.
#[derive(Debug, Clone, Copy)]
struct Position {
    last: bool,
    exit: bool,
}

impl Filters {
    fn check(&self) -> Result<(), ChainError> {
        for (field, value) in [
            ("min_reliability", self.min_reliability),
            ("final_min_reliability", self.final_min_reliability),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ChainError::Filter { field });
            }
        }
        Ok(())
    }

    /// Why `c` may not be a random hop at `at`, if it may not.
    fn reason(&self, c: &Candidate, at: Position) -> Option<Reason> {
        let min = if at.last {
            self.final_min_reliability
        } else {
            self.min_reliability
        };
        if at.exit && !c.exit {
            Some(Reason::NotExit)
        } else if self.require_measured && c.reliability.is_none() {
            Some(Reason::Unmeasured)
        } else if c.reliability.is_some_and(|r| !at_least(r, min)) {
            Some(Reason::BelowReliability)
        } else if c.latency.is_some_and(|l| l > self.max_latency) {
            Some(Reason::OverLatency)
        } else {
            None
        }
    }
}

/// `value >= min`, false for NaN.
fn at_least(value: f64, min: f64) -> bool {
    value >= min
}

/// An address as compared: trimmed, without a trailing `/`, lower case.
fn address_key(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The candidates with duplicate addresses dropped (first kept).
fn distinct(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut seen = HashSet::new();
    candidates
        .iter()
        .filter(|c| seen.insert(address_key(&c.address)))
        .collect()
}

/// Picks a chain for each of `chunks` chunks of one message, all ending at
/// the same remailer, following the rules in the [module docs](self).
/// Returns the chains entry first, each as long as `spec`; fails if a named
/// hop is unknown, ambiguous or breaks a rule, or if no chain exists.
pub fn select<'a, R: CryptoRng + ?Sized>(
    spec: &ChainSpec,
    candidates: &'a [Candidate],
    filters: &Filters,
    exit: Exit,
    chunks: usize,
    rng: &mut R,
) -> Result<Vec<Vec<&'a Candidate>>, ChainError> {
    if !(1..=MAX_CHUNKS).contains(&chunks) {
        return Err(ChainError::Chunks { chunks });
    }
    filters.check()?;
    let problem = Problem::new(spec, distinct(candidates), filters, exit)?;
    let first = problem.solve(None, rng)?;
    let exit_pick = first.last().copied();
    let mut chains = vec![first];
    for _ in 1..chunks {
        chains.push(problem.solve(exit_pick, rng)?);
    }
    Ok(chains
        .iter()
        .map(|chain| problem.remailers(chain))
        .collect())
}

/// A resolved spec: the known remailers, and for each hop either the named
/// remailer or the remailers its filters allow.
struct Problem<'a, 'f> {
    known: Vec<&'a Candidate>,
    filters: &'f Filters,
    exit: Exit,
    named: Vec<Option<usize>>,
    allowed: Vec<Vec<usize>>,
}

impl<'a, 'f> Problem<'a, 'f> {
    fn new(
        spec: &ChainSpec,
        known: Vec<&'a Candidate>,
        filters: &'f Filters,
        exit: Exit,
    ) -> Result<Self, ChainError> {
        let named = spec
            .hops()
            .iter()
            .zip(1..)
            .map(|(hop, n)| resolve(n, hop, &known))
            .collect::<Result<Vec<_>, _>>()?;
        let mut problem = Self {
            known,
            filters,
            exit,
            named,
            allowed: Vec::new(),
        };
        problem.check_named()?;
        problem.allowed = (0..problem.named.len())
            .map(|hop| problem.filtered(hop))
            .collect();
        Ok(problem)
    }

    fn len(&self) -> usize {
        self.named.len()
    }

    fn position(&self, hop: usize) -> Position {
        let last = hop + 1 == self.len();
        Position {
            last,
            exit: last && self.exit == Exit::Required,
        }
    }

    fn name_of(&self, index: usize) -> String {
        self.known
            .get(index)
            .map_or_else(String::new, |c| c.name.clone())
    }

    /// Named exits deliver mail; named hops keep the distance.
    fn check_named(&self) -> Result<(), ChainError> {
        let last = self.len().saturating_sub(1);
        if let Some(Some(i)) = self.named.get(last) {
            let delivers = self.known.get(*i).is_some_and(|c| c.exit);
            if self.position(last).exit && !delivers {
                let (hop, name) = (last + 1, self.name_of(*i));
                return Err(ChainError::NotExit { hop, name });
            }
        }
        let d = self.filters.distance;
        for (a, x) in self.named.iter().enumerate() {
            for (b, y) in self.named.iter().enumerate().skip(a + 1).take(d) {
                if let (Some(x), Some(y)) = (x, y)
                    && x == y
                {
                    return Err(ChainError::NamedTooClose {
                        first: a + 1,
                        second: b + 1,
                        name: self.name_of(*x),
                        distance: d,
                    });
                }
            }
        }
        Ok(())
    }

    /// The remailers random hop `hop` may be: those passing the filters.
    fn filtered(&self, hop: usize) -> Vec<usize> {
        let at = self.position(hop);
        (0..self.known.len())
            .filter(|&i| {
                self.known
                    .get(i)
                    .is_some_and(|c| self.filters.reason(c, at).is_none())
            })
            .collect()
    }

    /// One chain, as indices into `known`, ending at `exit` if given.
    fn solve<R: CryptoRng + ?Sized>(
        &self,
        exit: Option<usize>,
        rng: &mut R,
    ) -> Result<Vec<usize>, ChainError> {
        let last = self.len().saturating_sub(1);
        let mut fixed = self.named.clone();
        if let (Some(e), Some(f)) = (exit, fixed.get_mut(last)) {
            *f = Some(e);
        }
        let mut domains = self.allowed.clone();
        for d in &mut domains {
            d.shuffle(rng);
        }
        let mut search = Search::new(domains, fixed, self.filters.distance, last);
        match search.solve() {
            Ok(()) => Ok(search.chain()),
            Err(stuck) => Err(self.explain(stuck)),
        }
    }

    fn explain(&self, stuck: Stuck) -> ChainError {
        match stuck {
            Stuck::Hop { hop, assigned } => self.exclusions(hop, &assigned),
            Stuck::Window {
                first,
                last,
                needed,
                available,
                ..
            } => ChainError::Repeats {
                first: first + 1,
                last: last + 1,
                needed,
                available,
                distance: self.filters.distance,
            },
        }
    }

    /// Why no remailer could be hop `hop` once the hops in `assigned` were.
    fn exclusions(&self, hop: usize, assigned: &[Option<usize>]) -> ChainError {
        let at = self.position(hop);
        let d = self.filters.distance;
        let mut ex = Exclusions {
            known: self.known.len(),
            not_exit: 0,
            unmeasured: 0,
            below_reliability: 0,
            over_latency: 0,
            within_distance: 0,
            last: at.last,
            min_reliability: if at.last {
                self.filters.final_min_reliability
            } else {
                self.filters.min_reliability
            },
            max_latency: self.filters.max_latency,
            distance: d,
        };
        for (i, c) in self.known.iter().enumerate() {
            let used = || {
                let mut hops = assigned.iter().enumerate();
                hops.any(|(j, a)| *a == Some(i) && near(hop, j, d))
            };
            let count = match self.filters.reason(c, at) {
                Some(Reason::NotExit) => &mut ex.not_exit,
                Some(Reason::Unmeasured) => &mut ex.unmeasured,
                Some(Reason::BelowReliability) => &mut ex.below_reliability,
                Some(Reason::OverLatency) => &mut ex.over_latency,
                None if used() => &mut ex.within_distance,
                None => continue,
            };
            *count += 1;
        }
        ChainError::NoneQualify {
            hop: hop + 1,
            exit: at.exit,
            excluded: ex,
        }
    }

    fn remailers(&self, chain: &[usize]) -> Vec<&'a Candidate> {
        chain
            .iter()
            .filter_map(|&i| self.known.get(i).copied())
            .collect()
    }
}

/// Finds the remailer a named hop means: `None` for a random hop.
fn resolve(hop: usize, spec: &Hop, known: &[&Candidate]) -> Result<Option<usize>, ChainError> {
    match spec {
        Hop::Random => Ok(None),
        Hop::Name(name) => resolve_name(hop, name, known).map(Some),
        Hop::Address(address) => {
            let key = address_key(address);
            let found = known.iter().position(|c| address_key(&c.address) == key);
            found.map(Some).ok_or_else(|| ChainError::UnknownAddress {
                hop,
                address: address.clone(),
            })
        }
    }
}

fn resolve_name(hop: usize, name: &str, known: &[&Candidate]) -> Result<usize, ChainError> {
    let key = name.to_lowercase();
    let hits: Vec<(usize, &&Candidate)> = known
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.trim().to_lowercase() == key)
        .collect();
    match hits.as_slice() {
        [(one, _)] => Ok(*one),
        [] => Err(ChainError::UnknownName {
            hop,
            name: name.to_owned(),
        }),
        many => Err(ChainError::NameClash {
            hop,
            name: name.to_owned(),
            addresses: many.iter().map(|(_, c)| c.address.clone()).collect(),
        }),
    }
}

/// A random chain of `len` hops (at most [`MAX_HOPS`]) for a dummy message,
/// with no remailer repeated within `distance` hops and no filters or exit
/// rule. With `distance` or fewer distinct remailers a full chain may be
/// impossible, so the chain is shortened to one hop per remailer. Returns
/// `None` for no candidates or `len` 0.
pub fn dummy_chain<'a, R: CryptoRng + ?Sized>(
    candidates: &'a [Candidate],
    len: usize,
    distance: usize,
    rng: &mut R,
) -> Option<Vec<&'a Candidate>> {
    let known = distinct(candidates);
    let len = len.min(MAX_HOPS);
    let len = if known.len() > distance {
        len
    } else {
        len.min(known.len())
    };
    let mut chain: Vec<usize> = Vec::with_capacity(len);
    for hop in 0..len {
        let recent = chain
            .get(hop.saturating_sub(distance)..)
            .unwrap_or_default();
        let options: Vec<usize> = (0..known.len()).filter(|i| !recent.contains(i)).collect();
        chain.push(*options.choose(rng)?);
    }
    let chain: Vec<&Candidate> = chain
        .iter()
        .filter_map(|&i| known.get(i).copied())
        .collect();
    (!chain.is_empty()).then_some(chain)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
