//! Destination blocklist (draft 6.5): addresses the operator refuses to
//! deliver to, on request of their owners.
//!
//! The file is plain UTF-8 text, one entry per line:
//!
//! ```text
//! # full-line comments start with '#'
//! user@example.com        # one address (case-insensitive)
//! @example.net            # exactly this domain
//! example.org             # this domain and all its subdomains
//! /^abuse-.*@example\.com$/   # a regex, case-insensitive, on the whole address
//! ```
//!
//! Text after an entry must be empty or a `#` comment. A regex is not
//! anchored unless it says so. A missing file is an empty list.
//!
//! The file is re-read when its modification time, size or (on Unix) inode
//! or change time differ from the version last read, checked on every
//! lookup, so edits apply without a restart; [`Blocklist::reload`] re-reads
//! it at once (the node's SIGHUP, see
//! [`Exit::reload_blocklist`](super::Exit::reload_blocklist)). A new
//! version with an error is ignored (logged at warn with its line number, never its content) and the
//! last good list stays in force until the file changes again.
//!
//! Blocked recipients are dropped and counted by the exit, never bounced;
//! the others still get the message.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use regex::{Regex, RegexBuilder};

/// Errors loading a blocklist.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    /// The file could not be read.
    #[error("cannot {op} blocklist {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a valid entry.
    #[error("blocklist line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's content).
        reason: &'static str,
    },
}

/// A parsed list of block rules.
#[derive(Debug, Default)]
pub struct Rules {
    addresses: HashSet<String>,
    exact_domains: HashSet<String>,
    domains: HashSet<String>,
    regexes: Vec<Regex>,
}

impl Rules {
    /// Parses blocklist text.
    pub fn parse(text: &str) -> Result<Self, BlocklistError> {
        let mut rules = Self::default();
        for (i, line) in text.lines().enumerate() {
            rules
                .add_line(line)
                .map_err(|reason| BlocklistError::Syntax {
                    line: i + 1,
                    reason,
                })?;
        }
        Ok(rules)
    }

    fn add_line(&mut self, line: &str) -> Result<(), &'static str> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if let Some(inner) = line.strip_prefix('/') {
            let end = inner.rfind('/').ok_or("regex without closing '/'")?;
            let (pattern, tail) = inner.split_at(end);
            trailing_comment(tail.get(1..).unwrap_or_default())?;
            if pattern.is_empty() {
                return Err("empty regex");
            }
            let re = RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|_| "invalid regex")?;
            self.regexes.push(re);
            return Ok(());
        }
        let (entry, tail) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        trailing_comment(tail)?;
        let entry = entry.to_ascii_lowercase();
        if let Some(domain) = entry.strip_prefix('@') {
            let domain = domain.strip_suffix('.').unwrap_or(domain);
            check_domain(domain)?;
            self.exact_domains.insert(domain.to_owned());
        } else if entry.contains('@') {
            entry
                .parse::<lettre::Address>()
                .map_err(|_| "invalid address")?;
            self.addresses.insert(entry);
        } else {
            let domain = entry.strip_suffix('.').unwrap_or(&entry);
            check_domain(domain)?;
            self.domains.insert(domain.to_owned());
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.addresses.len() + self.exact_domains.len() + self.domains.len() + self.regexes.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `address` (`local@domain`) is blocked.
    pub fn matches(&self, address: &str) -> bool {
        let lower = address.to_ascii_lowercase();
        if self.addresses.contains(&lower) {
            return true;
        }
        let domain = lower.rsplit_once('@').map_or("", |(_, d)| d);
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if self.exact_domains.contains(domain) {
            return true;
        }
        let mut d = domain;
        loop {
            if self.domains.contains(d) {
                return true;
            }
            match d.split_once('.') {
                Some((_, parent)) => d = parent,
                None => break,
            }
        }
        self.regexes.iter().any(|re| re.is_match(address))
    }
}

fn trailing_comment(tail: &str) -> Result<(), &'static str> {
    let tail = tail.trim();
    if tail.is_empty() || tail.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the entry")
    }
}

fn check_domain(d: &str) -> Result<(), &'static str> {
    let ok = !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        });
    if ok { Ok(()) } else { Err("invalid domain") }
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: u64,
    #[cfg(unix)]
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            ino: meta.ino(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct State {
    rules: Arc<Rules>,
    /// The version last looked at (`None`: the file was missing).
    seen: Option<Stamp>,
}

/// The operator's blocklist file, reloaded when it changes.
#[derive(Debug)]
pub struct Blocklist {
    path: PathBuf,
    state: Mutex<State>,
}

impl Blocklist {
    /// Loads the blocklist at `path`; a missing file is an empty list, an
    /// unreadable or invalid one an error.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, BlocklistError> {
        let path = path.into();
        let (rules, seen) = match stat(&path)? {
            None => (Rules::default(), None),
            Some(stamp) => (read(&path)?, Some(stamp)),
        };
        Ok(Self {
            path,
            state: Mutex::new(State {
                rules: Arc::new(rules),
                seen,
            }),
        })
    }

    /// The file this list is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rules in force, after reloading the file if it changed.
    pub fn rules(&self) -> Arc<Rules> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut state);
        Arc::clone(&state.rules)
    }

    /// Reads the file again now, whether or not it looks changed (a file
    /// rewritten within the same second and at the same size does not):
    /// for the node's SIGHUP and for tools that have just written it.
    /// Returns the number of entries in force; on error the previous list
    /// stays in force.
    pub fn reload(&self) -> Result<usize, BlocklistError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = stat(&self.path)?;
        let rules = match stamp {
            None => Rules::default(),
            Some(_) => read(&self.path)?,
        };
        let n = rules.len();
        state.rules = Arc::new(rules);
        state.seen = stamp;
        Ok(n)
    }

    /// Whether `address` is blocked (reloading the file if it changed).
    pub fn is_blocked(&self, address: &lettre::Address) -> bool {
        self.rules().matches(address.as_ref())
    }

    fn refresh(&self, state: &mut State) {
        let stamp = match stat(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "blocklist: keeping the previous list");
                return;
            }
        };
        if stamp == state.seen {
            return;
        }
        state.seen = stamp;
        if stamp.is_none() {
            tracing::info!(path = %self.path.display(), "blocklist file is gone: list is now empty");
            state.rules = Arc::new(Rules::default());
            return;
        }
        match read(&self.path) {
            Ok(rules) => {
                tracing::info!(path = %self.path.display(), entries = rules.len(), "blocklist reloaded");
                state.rules = Arc::new(rules);
            }
            Err(e) => {
                tracing::warn!(error = %e, "blocklist: new version rejected, keeping the previous list");
            }
        }
    }
}

/// The version of the file at `path`, `None` if it is missing.
pub(super) fn stat(path: &Path) -> Result<Option<Stamp>, BlocklistError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BlocklistError::Io {
            op: "stat",
            path: path.to_owned(),
            source,
        }),
    }
}

fn read(path: &Path) -> Result<Rules, BlocklistError> {
    Rules::parse(&read_text(path)?)
}

/// Reads a rules file as UTF-8 text.
pub(super) fn read_text(path: &Path) -> Result<String, BlocklistError> {
    let bytes = std::fs::read(path).map_err(|source| BlocklistError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e
            .as_bytes()
            .get(..e.utf8_error().valid_up_to())
            .unwrap_or_default();
        BlocklistError::Syntax {
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            reason: "not UTF-8",
        }
    })
}

#[cfg(test)]
#[path = "blocklist_tests.rs"]
mod tests;
