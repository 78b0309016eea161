//! The remailers this node knows: a keyring that learns the network by
//! itself, measures every remailer, and picks chains from it.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | [`keyring`] | known and candidate remailers, the rules a conf must pass (its `Address:` is the onion it was fetched from), discovery caps, ageing |
//! | [`fetch`] | the conf fetches, served by the [`queue`](crate::queue) worker |
//! | [`pinger`] | pings through every remailer and back, matched on arrival |
//! | [`stats`] | reliability and latency per remailer; the `/stats.txt` format |
//! | [`chain`] | chain strings (`*,*,*`), filters, distance, one exit for all chunks |
//! | [`snapshot`] | what senders read: the accepted confs and the stats |
//!
//! [`Directory`] is the node's view: the keyring and the statistics in
//! memory, every change written through to the store. It is seeded from
//! the configuration (`[directory] seeds` and `remailers`).

pub mod chain;
pub mod fetch;
pub mod keyring;
pub mod pinger;
pub mod snapshot;
pub mod stats;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use mimix_packet::Hop;
use mimix_settings::{Checked, Invalid, check, days, duration, hours, path, positive};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::store::{Store, StoreError, Table};
use crate::transport::{PeerPolicy, PeerUrl};
use chain::Candidate;
use keyring::{Entry, Keyring, Standing};
use stats::{RemailerStats, StatsConfig};

/// Whether `name` is a remailer name mimix publishes and accepts in its
/// configuration: 1 to 32 ASCII letters, digits, `-`, `_` or `.`.
pub fn is_remailer_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A remailer known from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownRemailer {
    /// Its name, as in its `remailer-conf.txt`.
    pub name: String,
    /// Its base URL (`http://host[:port]`).
    pub address: String,
    /// A local copy of its `remailer-conf.txt`; without it the conf is
    /// fetched from `<address>/remailer-conf.txt`.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub conf: Option<PathBuf>,
}

/// `[directory]`: how this node learns the network (see [`keyring`] for
/// the rules behind each setting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Remailers to start from, by address (onion URLs); the rest of the
    /// network is learnt from their confs.
    pub seeds: Vec<String>,
    /// Remailers known by name and address, optionally with a local copy
    /// of their conf (which is then never fetched).
    pub remailers: Vec<KnownRemailer>,
    /// How often each remailer's conf is fetched again, on average; every
    /// fetch is scheduled at a random time between half and one and a half
    /// times this, so nodes never fetch in lockstep.
    #[serde(with = "duration")]
    pub refresh: Duration,
    /// Most conf fetches at once.
    pub concurrency: usize,
    /// Most remailers kept in all (known and candidates).
    pub max_remailers: usize,
    /// Most candidates (heard of, conf not yet fetched) at once.
    pub max_candidates: usize,
    /// Most new candidates one conf's `Known remailers:` list may add.
    pub max_new_per_fetch: usize,
    /// A candidate not reached within this long is dropped.
    #[serde(with = "duration")]
    pub candidate_ttl: Duration,
    /// A remailer whose conf could not be fetched for this long is dead:
    /// not used for chains, not published as known.
    #[serde(with = "duration")]
    pub dead_after: Duration,
    /// A remailer not heard from for this long is forgotten (seeds never
    /// are).
    #[serde(with = "duration")]
    pub forget_after: Duration,
    /// A remailer may replace its key only when its current key expires
    /// within this long (the draft rotates keys about a month before they
    /// expire).
    #[serde(with = "duration")]
    pub key_change_window: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            seeds: Vec::new(),
            remailers: Vec::new(),
            refresh: hours(3),
            concurrency: 4,
            max_remailers: 500,
            max_candidates: 50,
            max_new_per_fetch: 5,
            candidate_ttl: days(1),
            dead_after: days(2),
            forget_after: days(30),
            key_change_window: days(60),
        }
    }
}

impl DirectoryConfig {
    /// Checks every entry (names valid and distinct, addresses base URLs
    /// and distinct); fields are named relative to the table. Whether the
    /// transport reaches an address is checked by the configuration.
    pub fn validate(&self) -> Checked {
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for (i, r) in self.remailers.iter().enumerate() {
            let field = |f: &str| format!("remailers[{i}].{f}");
            check(is_remailer_name(&r.name), &field("name"), || {
                format!(
                    "{:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'",
                    r.name
                )
            })?;
            let url = PeerUrl::parse(&r.address)
                .map_err(|e| Invalid::new(field("address"), format!("{:?}: {e}", r.address)))?;
            check(names.insert(r.name.as_str()), &field("name"), || {
                format!("{:?} is listed twice", r.name)
            })?;
            check(addresses.insert(url), &field("address"), || {
                "listed twice".into()
            })?;
        }
        for (i, s) in self.seeds.iter().enumerate() {
            PeerUrl::parse(s)
                .map_err(|e| Invalid::new(format!("seeds[{i}]"), format!("{s:?}: {e}")))?;
        }
        self.validate_schedule()
    }

    fn validate_schedule(&self) -> Checked {
        positive(self.refresh, "refresh")?;
        check((1..=64).contains(&self.concurrency), "concurrency", || {
            format!("must be 1 to 64, got {}", self.concurrency)
        })?;
        check(
            (1..=100_000).contains(&self.max_remailers),
            "max_remailers",
            || format!("must be 1 to 100000, got {}", self.max_remailers),
        )?;
        check(
            self.max_candidates <= self.max_remailers,
            "max_candidates",
            || "must be at most max_remailers".into(),
        )?;
        check(
            self.max_new_per_fetch <= self.max_candidates,
            "max_new_per_fetch",
            || "must be at most max_candidates".into(),
        )?;
        positive(self.candidate_ttl, "candidate_ttl")?;
        positive(self.dead_after, "dead_after")?;
        check(self.forget_after >= self.dead_after, "forget_after", || {
            "must be at least dead_after".into()
        })
    }

    /// Every configured address: seeds and listed remailers.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.seeds
            .iter()
            .map(String::as_str)
            .chain(self.remailers.iter().map(|r| r.address.as_str()))
    }
}

/// Why a remailer's conf could not be used, or the directory not stored.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A local conf file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A conf was refused.
    #[error("remailer-conf of {name}: {source}")]
    Refused {
        /// The remailer's configured name.
        name: String,
        /// Why it was refused.
        source: keyring::Refusal,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The remailers a node at `ours` knows alive at `now` (Unix seconds) by
/// its store, read without writing anything: what the node's conf lists,
/// for `mimix conf` while the node is stopped.
pub fn stored_alive(
    store: &Store,
    config: &DirectoryConfig,
    ours: &str,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    let mut ring = Keyring::new(config, Some(ours), None);
    for (_, entry) in store.table_all::<Entry>(Table::Keyring)? {
        ring.restore(entry);
    }
    Ok(ring.alive_addresses(now))
}

/// The node's directory: the keyring and the statistics, written through
/// to the store.
#[derive(Debug)]
pub struct Directory {
    keyring: RwLock<Keyring>,
    stats: RwLock<BTreeMap<String, RemailerStats>>,
    stats_config: StatsConfig,
    store: Store,
}

impl Directory {
    /// The directory kept in `store`, seeded from `config` at `now` (Unix
    /// seconds), for a node at `ours` whose transport reaches `policy`.
    /// Local conf files are read and checked; those that cannot be used are
    /// reported in the returned errors (the remailer stays, to be fetched).
    pub fn open(
        config: &DirectoryConfig,
        store: Store,
        ours: Option<&str>,
        policy: PeerPolicy,
        now: u64,
    ) -> Result<(Self, Vec<DirectoryError>), DirectoryError> {
        let mut ring = Keyring::new(config, ours, Some(policy));
        for (_, entry) in store.table_all::<Entry>(Table::Keyring)? {
            ring.restore(entry);
        }
        let stats: BTreeMap<String, RemailerStats> =
            store.table_all(Table::Stats)?.into_iter().collect();
        let dir = Self {
            keyring: RwLock::new(ring),
            stats: RwLock::new(stats),
            stats_config: StatsConfig {
                dead_after: config.dead_after,
                ..StatsConfig::default()
            },
            store,
        };
        let mut errors = Vec::new();
        for seed in &config.seeds {
            dir.seed(seed, None)?;
        }
        for r in &config.remailers {
            if dir.read().is_ours(&r.address) {
                continue;
            }
            dir.seed(&r.address, Some(&r.name))?;
            if let Some(path) = &r.conf
                && let Err(e) = dir.pin(r, path, now)
            {
                errors.push(e);
            }
        }
        Ok((dir, errors))
    }

    fn seed(&self, address: &str, name: Option<&str>) -> Result<(), DirectoryError> {
        let mut ring = self.write();
        if let Some(e) = ring.add_seed(address, name, 0) {
            self.store.table_put(Table::Keyring, &e.address, e)?;
        }
        Ok(())
    }

    /// Accepts the local conf of `r` (never fetched afterwards).
    fn pin(&self, r: &KnownRemailer, path: &PathBuf, now: u64) -> Result<(), DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.clone(),
            source,
        })?;
        let mut ring = self.write();
        ring.accept(&r.address, &text, now, u64::MAX, true)
            .map_err(|source| DirectoryError::Refused {
                name: r.name.clone(),
                source,
            })?;
        if let Some(e) = ring.get(&r.address) {
            self.store.table_put(Table::Keyring, &e.address, e)?;
        }
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, Keyring> {
        self.keyring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Keyring> {
        self.keyring.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the keyring, then writes the entries named in what it
    /// returns (blocking).
    pub(crate) fn update<T>(
        &self,
        f: impl FnOnce(&mut Keyring) -> (T, Vec<String>),
    ) -> Result<T, StoreError> {
        let mut ring = self.write();
        let (out, changed) = f(&mut ring);
        for address in changed {
            match ring.get(&address) {
                Some(e) => self.store.table_put(Table::Keyring, &e.address, e)?,
                None => self.store.table_delete(Table::Keyring, &address)?,
            }
        }
        Ok(out)
    }

    /// Reads the keyring.
    pub fn with_keyring<T>(&self, f: impl FnOnce(&Keyring) -> T) -> T {
        f(&self.read())
    }

    /// Whether `address` is in the keyring (known or candidate).
    pub fn knows(&self, address: &str) -> bool {
        self.read().get(address).is_some()
    }

    /// Notes a next hop seen at `now` (blocking: a new candidate is
    /// stored). Returns whether it was new.
    pub fn hear_of(&self, address: &str, now: u64) -> bool {
        let added = self.update(|ring| match ring.hear_of(address, now) {
            Some(e) => (true, vec![e.address.clone()]),
            None => (false, Vec::new()),
        });
        match added {
            Ok(new) => {
                if new {
                    debug!("heard of a new remailer");
                }
                new
            }
            Err(e) => {
                warn!("storing a new remailer: {e}");
                false
            }
        }
    }

    /// Forgets what aged out at `now` (blocking).
    pub fn age(&self, now: u64) -> Result<usize, StoreError> {
        let gone = self.update(|ring| {
            let gone = ring.age(now);
            (gone.len(), gone)
        })?;
        Ok(gone)
    }

    /// The remailers usable for chains at `now`, with their statistics.
    pub fn candidates(&self, now: u64) -> Vec<Candidate> {
        let rows = self.stats_rows(now);
        self.read()
            .usable(now)
            .into_iter()
            .map(|(e, conf)| {
                let row = rows.get(&e.address);
                Candidate {
                    name: conf.name.clone(),
                    address: e.address.clone(),
                    exit: conf.smtp,
                    reliability: row
                        .and_then(|r| r.reliability_permille)
                        .map(|p| f64::from(p) / 1000.0),
                    latency: row
                        .and_then(|r| r.latency_secs)
                        .map(|s| std::time::Duration::from_secs(u64::from(s))),
                }
            })
            .collect()
    }

    /// The chain hop (key and address) of `address`.
    pub fn hop(&self, address: &str) -> Option<Hop> {
        let ring = self.read();
        let conf = ring.conf(address)?;
        Some(Hop {
            key: conf.key.clone(),
            address: address.to_owned(),
        })
    }

    /// Every usable remailer at `now`, as chain hops.
    pub fn hops(&self, now: u64) -> Vec<Hop> {
        self.read()
            .usable(now)
            .into_iter()
            .map(|(e, c)| Hop {
                key: c.key.clone(),
                address: e.address.clone(),
            })
            .collect()
    }

    /// Addresses of the remailers alive at `now`: what our conf lists.
    pub fn addresses(&self, now: u64) -> Vec<String> {
        self.read().alive_addresses(now)
    }

    /// How many remailers are known and alive at `now`, and how many are
    /// candidates.
    pub fn counts(&self, now: u64) -> (usize, usize) {
        let ring = self.read();
        let alive = ring
            .entries()
            .filter(|e| ring.standing(e, now) == Standing::Alive)
            .count();
        let candidates = ring
            .entries()
            .filter(|e| ring.standing(e, now) == Standing::Candidate)
            .count();
        (alive, candidates)
    }

    /// The statistics of every remailer, summarised at `now`.
    pub fn stats_rows(&self, now: u64) -> BTreeMap<String, stats::StatsRow> {
        let in_flight = pinger::in_flight(&self.store, now);
        let ring = self.read();
        let stats = self.stats.read().unwrap_or_else(|e| e.into_inner());
        ring.entries()
            .filter_map(|e| {
                let conf = ring.conf(&e.address)?;
                let mut s = stats.get(&e.address).cloned().unwrap_or_else(|| {
                    RemailerStats::new(conf.name.clone(), e.address.clone(), conf.smtp, None)
                });
                s.name.clone_from(&conf.name);
                s.exit = conf.smtp;
                s.key_valid_to = Some(conf.valid_to);
                let flying = in_flight.get(&e.address).copied().unwrap_or(0);
                Some((
                    e.address.clone(),
                    s.summarize(flying, now, &self.stats_config),
                ))
            })
            .collect()
    }

    /// Records in the statistics of `address` (blocking).
    pub(crate) fn record_stats(
        &self,
        address: &str,
        f: impl FnOnce(&mut RemailerStats, &StatsConfig),
    ) -> Result<(), StoreError> {
        let (name, exit) = self
            .read()
            .conf(address)
            .map(|c| (c.name.clone(), c.smtp))
            .unwrap_or_default();
        let mut all = self.stats.write().unwrap_or_else(|e| e.into_inner());
        let s = all
            .entry(address.to_owned())
            .or_insert_with(|| RemailerStats::new(name, address.to_owned(), exit, None));
        f(s, &self.stats_config);
        self.store.table_put(Table::Stats, address, s)
    }

    /// The published statistics table at `now` (`/stats.txt`).
    pub fn stats_text(&self, now: u64) -> String {
        let rows = self.stats_rows(now).into_values().collect();
        stats::render_text(&stats::StatsDocument::new(
            rows,
            now,
            self.stats_config.days(),
        ))
    }

    /// What senders read: the usable remailers' confs and the statistics
    /// at `now`.
    pub fn snapshot(&self, now: u64) -> snapshot::Snapshot {
        let remailers = self
            .read()
            .usable(now)
            .into_iter()
            .filter_map(|(e, _)| {
                Some(snapshot::Remailer {
                    address: e.address.clone(),
                    conf: e.conf.clone()?,
                })
            })
            .collect();
        snapshot::Snapshot::new(remailers, Some(self.stats_text(now)), now)
    }

    /// The store the directory writes to.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}
