//! The keyring: every remailer this node knows or has heard of, the conf
//! it last accepted from each, and the rules a conf must pass.
//!
//! A remailer is identified by its address (its onion URL); its name is
//! only a label, and two onions claiming one name are both kept and
//! reported ([`Keyring::clashes`]), never merged. A conf is accepted only
//! when:
//!
//! * it parses, its `KeyID` is the MD5 of its key and its validity dates
//!   hold today ([`RemailerConf::parse_valid`]);
//! * its `Address:` is exactly the URL it was fetched from, so no onion can
//!   plant a key for another;
//! * a configured name, if any, is the conf's name;
//! * a new key respects the rotation rules: its `Valid From` is not older
//!   than the current key's (no rollback), and the current key is within
//!   [`DirectoryConfig::key_change_window`] of its expiry (or already
//!   expired). Until then the old key stays in use.
//!
//! # Discovery
//!
//! New remailers come from the `Known remailers:` list of accepted confs
//! (at most [`DirectoryConfig::max_new_per_fetch`] per fetch) and from the
//! next hops of packets this node forwarded ([`Keyring::hear_of`]). They
//! are *candidates* until their own conf has been fetched from their own
//! address; candidates are capped ([`DirectoryConfig::max_candidates`]), and
//! so is the whole keyring ([`DirectoryConfig::max_remailers`]), so a
//! hostile conf listing thousands of remailers adds a handful.
//!
//! # Ageing
//!
//! A known remailer whose conf has not been fetched for
//! [`DirectoryConfig::dead_after`] is dead (kept, shown, not used); one not
//! heard from for [`DirectoryConfig::forget_after`] is forgotten, as is a
//! candidate never reached within [`DirectoryConfig::candidate_ttl`].
//! Seeds are never forgotten.

use std::collections::{BTreeMap, HashMap};

use mimix_packet::{ConfError, RemailerConf};
use serde::{Deserialize, Serialize};

use super::DirectoryConfig;
use crate::transport::{PeerPolicy, PeerUrl};

/// How the node came to know a remailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Configured (a seed or a listed remailer): never forgotten.
    Seed,
    /// Listed in another remailer's conf, or a next hop of a packet.
    Discovered,
}

/// A key a remailer used before its current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    /// Its key ID (hex).
    pub key_id: String,
    /// Its last valid day (epoch day).
    pub valid_to: u64,
}

/// What the keyring records about one remailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its address, as a canonical base URL: the key of the keyring.
    pub address: String,
    /// How it came to be known.
    pub origin: Origin,
    /// The name the configuration gives it, if any: its conf must carry
    /// that name.
    pub configured_name: Option<String>,
    /// The last accepted conf, as text; `None` for a candidate.
    pub conf: Option<String>,
    /// Whether the conf comes from a local file (never fetched).
    pub pinned: bool,
    /// Keys it used before the current one (at most [`MAX_RETIRED`]).
    pub retired: Vec<RetiredKey>,
    /// When it was first heard of (Unix seconds).
    pub first_seen: u64,
    /// When its conf was last fetched and accepted.
    pub last_ok: Option<u64>,
    /// Why its last conf was refused, if it was.
    pub last_refusal: Option<Refusal>,
    /// Fetch attempts that failed since the last success.
    pub failures: u32,
    /// When its conf is next due to be fetched.
    pub next_fetch: u64,
}

impl Entry {
    /// A remailer first heard of `now`, by `origin`, with no conf yet and
    /// due to be fetched at once.
    fn new(address: String, origin: Origin, now: u64) -> Self {
        Self {
            address,
            origin,
            configured_name: None,
            conf: None,
            pinned: false,
            retired: Vec::new(),
            first_seen: now,
            last_ok: None,
            last_refusal: None,
            failures: 0,
            next_fetch: now,
        }
    }
}

/// Most retired keys kept per remailer.
pub const MAX_RETIRED: usize = 4;

/// Why a fetched conf was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The conf does not parse, its key ID is wrong, or it is not valid
    /// today.
    #[error("invalid conf: {0}")]
    Invalid(String),
    /// The conf's `Address:` is not the URL it was fetched from.
    #[error("conf names another address than the one it was fetched from")]
    AddressMismatch,
    /// The conf's name is not the one configured for this address.
    #[error("conf names another remailer than configured")]
    NameMismatch,
    /// The new key is older than the current one.
    #[error("new key is older than the current one")]
    KeyRollback,
    /// The key changed while the current one is far from expiry.
    #[error("key changed long before the current one was due to rotate")]
    KeyChangedEarly,
}

impl Refusal {
    /// A short name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::AddressMismatch => "address_mismatch",
            Self::NameMismatch => "name_mismatch",
            Self::KeyRollback => "key_rollback",
            Self::KeyChangedEarly => "key_changed_early",
        }
    }
}

/// What accepting a conf did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Whether the remailer's key changed.
    pub new_key: bool,
    /// Candidates added from its `Known remailers:` list.
    pub discovered: usize,
    /// Listed remailers passed over because a cap was reached.
    pub capped: usize,
}

/// The state of a remailer as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Heard of, conf not fetched yet.
    Candidate,
    /// Conf accepted, recently enough.
    Alive,
    /// Conf not fetched for `dead_after`.
    Dead,
}

/// The keyring: entries by address, with their parsed confs.
#[derive(Debug, Default)]
pub struct Keyring {
    entries: BTreeMap<String, Entry>,
    parsed: HashMap<String, RemailerConf>,
    config: DirectoryConfig,
    /// Our own address: never a candidate.
    ours: Option<String>,
    /// The peers the transport reaches: others are never candidates.
    policy: Option<PeerPolicy>,
}

/// The canonical form of a remailer address, if it is one.
pub fn canonical(address: &str) -> Option<String> {
    PeerUrl::parse(address).ok().map(|u| u.to_string())
}

impl Keyring {
    /// An empty keyring with these settings, for a node at `ours` whose
    /// transport reaches the peers `policy` allows.
    pub fn new(config: &DirectoryConfig, ours: Option<&str>, policy: Option<PeerPolicy>) -> Self {
        Self {
            config: config.clone(),
            ours: ours.and_then(canonical),
            policy,
            ..Self::default()
        }
    }

    /// Puts back an entry read from the store (its conf parsed again; an
    /// unreadable conf makes it a candidate; our own address is skipped).
    pub fn restore(&mut self, mut entry: Entry) {
        if self.ours.as_deref() == Some(entry.address.as_str()) {
            return;
        }
        if let Some(text) = &entry.conf {
            match RemailerConf::parse(text) {
                Ok(conf) => {
                    self.parsed.insert(entry.address.clone(), conf);
                }
                Err(_) => entry.conf = None,
            }
        }
        self.entries.insert(entry.address.clone(), entry);
    }

    /// Adds a configured remailer (idempotent): a seed, with the name the
    /// configuration gives it, due to be fetched at `now`. Our own address
    /// is skipped (a network's shared list names every node).
    pub fn add_seed(&mut self, address: &str, name: Option<&str>, now: u64) -> Option<&Entry> {
        let address = canonical(address)?;
        if self.ours.as_deref() == Some(address.as_str()) {
            return None;
        }
        let e = self
            .entries
            .entry(address.clone())
            .or_insert_with(|| Entry::new(address, Origin::Seed, now));
        e.origin = Origin::Seed;
        e.configured_name = name.map(str::to_owned);
        Some(e)
    }

    /// Whether `address` is this node's own.
    pub fn is_ours(&self, address: &str) -> bool {
        self.ours.is_some() && self.ours == canonical(address)
    }

    /// The entry for `address`.
    pub fn get(&self, address: &str) -> Option<&Entry> {
        self.entries.get(&canonical(address)?)
    }

    /// Every entry, by address.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The accepted conf of `address`.
    pub fn conf(&self, address: &str) -> Option<&RemailerConf> {
        self.parsed.get(address)
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the keyring is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How `address` stands at `now`.
    pub fn standing(&self, e: &Entry, now: u64) -> Standing {
        match e.last_ok {
            _ if e.conf.is_none() => Standing::Candidate,
            _ if e.pinned => Standing::Alive,
            Some(ok) if now.saturating_sub(ok) < self.config.dead_after.as_secs() => {
                Standing::Alive
            }
            _ => Standing::Dead,
        }
    }

    /// The remailers usable on `now` (alive, key valid today), with their
    /// confs, by address.
    pub fn usable(&self, now: u64) -> Vec<(&Entry, &RemailerConf)> {
        let today = now / 86_400;
        self.entries
            .values()
            .filter(|e| self.standing(e, now) == Standing::Alive)
            .filter_map(|e| Some((e, self.parsed.get(&e.address)?)))
            .filter(|(_, c)| c.check_valid(today).is_ok())
            .collect()
    }

    /// Addresses of the remailers alive at `now`: what our conf lists.
    pub fn alive_addresses(&self, now: u64) -> Vec<String> {
        self.usable(now)
            .into_iter()
            .map(|(e, _)| e.address.clone())
            .collect()
    }

    /// Names claimed by more than one address, with those addresses.
    pub fn clashes(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (address, conf) in &self.parsed {
            by_name
                .entry(conf.name.to_ascii_lowercase())
                .or_default()
                .push(address.clone());
        }
        by_name.retain(|_, a| a.len() > 1);
        for addresses in by_name.values_mut() {
            addresses.sort();
        }
        by_name
    }

    /// Addresses due to be fetched at `now` (pinned confs never are).
    pub fn due(&self, now: u64) -> Vec<&Entry> {
        self.entries
            .values()
            .filter(|e| !e.pinned && e.next_fetch <= now)
            .collect()
    }

    /// The earliest time a fetch is due.
    pub fn next_due(&self) -> Option<u64> {
        self.entries
            .values()
            .filter(|e| !e.pinned)
            .map(|e| e.next_fetch)
            .min()
    }

    fn candidates(&self) -> usize {
        self.entries.values().filter(|e| e.conf.is_none()).count()
    }

    /// Notes a remailer heard of (a next hop, a listed address) at `now`:
    /// adds it as a candidate if it is new, reachable and the caps allow.
    /// Returns the new entry.
    pub fn hear_of(&mut self, address: &str, now: u64) -> Option<&Entry> {
        let address = canonical(address)?;
        let reachable = match (self.policy, PeerUrl::parse(&address)) {
            (Some(p), Ok(url)) => p.check(&url).is_ok(),
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        if !reachable
            || self.ours.as_deref() == Some(address.as_str())
            || self.entries.contains_key(&address)
            || self.entries.len() >= self.config.max_remailers
            || self.candidates() >= self.config.max_candidates
        {
            return None;
        }
        let entry = Entry::new(address.clone(), Origin::Discovered, now);
        self.entries.insert(address.clone(), entry);
        self.entries.get(&address)
    }

    /// Checks a conf fetched from `address` at `now`, and accepts it if it
    /// passes; the next fetch is then due at `next`. `pinned` marks a
    /// conf read from a local file. Discovered candidates are added from
    /// its known list.
    pub fn accept(
        &mut self,
        address: &str,
        text: &str,
        now: u64,
        next: u64,
        pinned: bool,
    ) -> Result<Accepted, Refusal> {
        let address = canonical(address).ok_or(Refusal::AddressMismatch)?;
        let result = self.check(&address, text, now);
        let Some(e) = self.entries.get_mut(&address) else {
            return Err(Refusal::AddressMismatch);
        };
        let (conf, new_key) = match result {
            Ok(ok) => ok,
            Err(refusal) => {
                e.last_refusal = Some(refusal.clone());
                return Err(refusal);
            }
        };
        e.conf = Some(conf.to_text());
        e.pinned = pinned;
        e.last_ok = Some(now);
        e.last_refusal = None;
        e.failures = 0;
        e.next_fetch = next;
        if let Some(old) = new_key.then(|| self.parsed.get(&address)).flatten() {
            e.retired.push(RetiredKey {
                key_id: old.key.key_id().to_hex(),
                valid_to: old.valid_to,
            });
            let excess = e.retired.len().saturating_sub(MAX_RETIRED);
            e.retired.drain(..excess);
        }
        let known = conf.known.clone();
        self.parsed.insert(address, conf);
        let mut done = Accepted {
            new_key,
            ..Accepted::default()
        };
        for listed in known {
            if done.discovered >= self.config.max_new_per_fetch {
                done.capped += 1;
            } else if self.hear_of(&listed, now).is_some() {
                done.discovered += 1;
            }
        }
        Ok(done)
    }

    /// The checks of [`Keyring::accept`]: the parsed conf and whether its
    /// key is new.
    fn check(&self, address: &str, text: &str, now: u64) -> Result<(RemailerConf, bool), Refusal> {
        let today = now / 86_400;
        let conf = RemailerConf::parse_valid(text, today)
            .map_err(|e: ConfError| Refusal::Invalid(e.to_string()))?;
        if canonical(&conf.address).as_deref() != Some(address) {
            return Err(Refusal::AddressMismatch);
        }
        let entry = self.entries.get(address);
        if let Some(name) = entry.and_then(|e| e.configured_name.as_deref())
            && !conf.name.eq_ignore_ascii_case(name)
        {
            return Err(Refusal::NameMismatch);
        }
        let Some(old) = self.parsed.get(address) else {
            return Ok((conf, false));
        };
        if old.key.key_id() == conf.key.key_id() {
            return Ok((conf, false));
        }
        if conf.valid_from < old.valid_from {
            return Err(Refusal::KeyRollback);
        }
        let window = self.config.key_change_window.as_secs() / 86_400;
        let old_usable = old.check_valid(today).is_ok();
        if old_usable && old.valid_to > today.saturating_add(window) {
            return Err(Refusal::KeyChangedEarly);
        }
        Ok((conf, true))
    }

    /// Records a failed fetch of `address`; the next is due at `next`.
    pub fn failed(&mut self, address: &str, next: u64) {
        if let Some(e) = canonical(address).and_then(|a| self.entries.get_mut(&a)) {
            e.failures = e.failures.saturating_add(1);
            e.next_fetch = next;
        }
    }

    /// Forgets what has aged out at `now` (see the module docs); returns
    /// the addresses forgotten.
    pub fn age(&mut self, now: u64) -> Vec<String> {
        let (ttl, forget) = (
            self.config.candidate_ttl.as_secs(),
            self.config.forget_after.as_secs(),
        );
        let gone: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.origin != Origin::Seed && !e.pinned)
            .filter(|e| match e.last_ok {
                None => now.saturating_sub(e.first_seen) >= ttl,
                Some(ok) => now.saturating_sub(ok) >= forget,
            })
            .map(|e| e.address.clone())
            .collect();
        for a in &gone {
            self.entries.remove(a);
            self.parsed.remove(a);
        }
        gone
    }

    /// Forgets `address` (an operator's decision).
    pub fn forget(&mut self, address: &str) -> bool {
        let Some(a) = canonical(address) else {
            return false;
        };
        self.parsed.remove(&a);
        self.entries.remove(&a).is_some()
    }
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;
