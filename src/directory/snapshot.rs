//! The directory as senders read it: a JSON file with every accepted conf
//! and the published statistics. A node writes `directory.json` in its data
//! directory every few minutes; `mimix remailers update` writes the same
//! file into a sender's state directory from what it fetched over Tor.
//! Senders check every conf again when they read it (validity today,
//! address), so a stale or edited file cannot make them use a bad key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mimix_packet::{Hop, RemailerConf};
use serde::{Deserialize, Serialize};

use super::chain::Candidate;
use super::keyring::canonical;
use super::stats::{StatsDocument, parse_text};

/// The file name, in a node's data directory or a sender's state
/// directory.
pub const FILE: &str = "directory.json";

/// Largest snapshot read.
pub const MAX_LEN: u64 = 16 * 1024 * 1024;

/// The format version written.
const VERSION: u32 = 1;

/// One remailer in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remailer {
    /// Its address (where its conf was fetched from).
    pub address: String,
    /// Its accepted `remailer-conf.txt`.
    pub conf: String,
}

/// What senders read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The format version (1).
    pub version: u32,
    /// When it was made (Unix seconds).
    pub generated_at: u64,
    /// The usable remailers.
    pub remailers: Vec<Remailer>,
    /// The statistics table (`/stats.txt` text), if any.
    pub stats: Option<String>,
}

/// A snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_LEN`].
    #[error("{} is larger than {MAX_LEN} bytes", .0.display())]
    TooLarge(PathBuf),
    /// The file is not a snapshot this version reads.
    #[error("{} is not a directory snapshot: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Snapshot {
    /// A snapshot of `remailers` and `stats` made at `now`.
    pub fn new(remailers: Vec<Remailer>, stats: Option<String>, now: u64) -> Self {
        Self {
            version: VERSION,
            generated_at: now,
            remailers,
            stats,
        }
    }

    /// Writes the snapshot into `dir` (mode 0600, replacing the old one in
    /// one step).
    pub fn write(&self, dir: &Path) -> Result<(), SnapshotError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| SnapshotError::Io { op, path, source }
        };
        let text = serde_json::to_vec(self).map_err(|e| SnapshotError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        f.write_all(&text).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))
    }

    /// Reads the snapshot in `dir`.
    pub fn read(dir: &Path) -> Result<Self, SnapshotError> {
        let path = dir.join(FILE);
        let io = |op| {
            let path = path.clone();
            move |source| SnapshotError::Io { op, path, source }
        };
        let len = std::fs::metadata(&path).map_err(io("reading"))?.len();
        if len > MAX_LEN {
            return Err(SnapshotError::TooLarge(path));
        }
        let bytes = std::fs::read(&path).map_err(io("reading"))?;
        let snap: Self = serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if snap.version != VERSION {
            return Err(SnapshotError::Format {
                path,
                reason: format!("version {} (this mimix reads {VERSION})", snap.version),
            });
        }
        Ok(snap)
    }

    /// The statistics, if present and readable.
    pub fn stats(&self) -> Option<StatsDocument> {
        self.stats.as_deref().and_then(|t| parse_text(t).ok())
    }

    /// The remailers usable on `today`: chain candidates (with the
    /// statistics' figures) and their hops by address. Confs that do not
    /// parse, are not valid today, or name another address are left out.
    pub fn usable(&self, today: u64) -> (Vec<Candidate>, HashMap<String, Hop>) {
        let rows: HashMap<String, _> = self
            .stats()
            .map(|d| {
                d.remailers
                    .into_iter()
                    .map(|r| (r.address.clone(), r))
                    .collect()
            })
            .unwrap_or_default();
        let mut candidates = Vec::new();
        let mut hops = HashMap::new();
        for r in &self.remailers {
            let Ok(conf) = RemailerConf::parse_valid(&r.conf, today) else {
                continue;
            };
            let Some(address) = canonical(&r.address) else {
                continue;
            };
            if canonical(&conf.address).as_deref() != Some(address.as_str()) {
                continue;
            }
            let row = rows.get(&address);
            candidates.push(Candidate {
                name: conf.name.clone(),
                address: address.clone(),
                exit: conf.smtp,
                reliability: row
                    .and_then(|r| r.reliability_permille)
                    .map(|p| f64::from(p) / 1000.0),
                latency: row
                    .and_then(|r| r.latency_secs)
                    .map(|s| Duration::from_secs(u64::from(s))),
            });
            hops.insert(
                address.clone(),
                Hop {
                    key: conf.key,
                    address,
                },
            );
        }
        (candidates, hops)
    }
}
