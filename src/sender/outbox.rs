//! The sender's durable outbox: messages `mimix send --queue` left for
//! `mimix sender` to send at its next cover-traffic tick ([`super::cover`]).
//!
//! One file per message in the outbox directory (mode 0700), written
//! atomically (a temporary file in the same directory, synced, renamed) with
//! mode 0600: `<queued-at seconds>-<random>.msg`, holding one line of JSON
//! ([`Meta`]: when it was queued, the chain string and options, failed
//! attempts and when it may be tried again) and then the message itself.
//! File names sort by queueing time, so the oldest message goes first
//! (within one second, in random order).
//!
//! The outbox is bounded ([`Caps`]): a message that would pass the count
//! or the byte cap is refused with an error saying which. A message given
//! up on (still failing after its retry period) is moved to `failed/`
//! below the outbox, where the sender can read it; it no longer counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file name ending of a queued message.
const EXT: &str = "msg";

/// The subdirectory of messages given up on.
pub const FAILED: &str = "failed";

/// Longest [`Meta`] line read back.
const MAX_META: u64 = 4096;

/// Why the outbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file or directory operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The outbox directory is not private.
    #[error(transparent)]
    Dir(#[from] mimix_settings::fs::PrivateDirError),
    /// The outbox holds as many messages as it may.
    #[error("the outbox is full: {count} messages queued, at most {max} (max_messages)")]
    FullCount {
        /// Messages queued.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// The message would take the outbox past its byte cap.
    #[error(
        "the outbox is full: {queued} bytes queued, {adding} more would pass {max} (max_bytes)"
    )]
    FullBytes {
        /// Bytes queued.
        queued: u64,
        /// The message's size.
        adding: u64,
        /// The cap.
        max: u64,
    },
    /// A queued file is not one the outbox wrote.
    #[error("{}: not an outbox entry ({reason})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The outbox's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most messages queued.
    pub max_messages: usize,
    /// Most bytes queued (messages and their metadata).
    pub max_bytes: u64,
}

/// What is kept with a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// When it was queued (seconds since the epoch).
    pub queued_at: u64,
    /// The chain string (`mimix send --chain`).
    pub chain: String,
    /// Copies of every chunk.
    pub copies: usize,
    /// Whether to gzip it before splitting.
    pub gzip: bool,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be tried before this (seconds since the epoch).
    pub not_before: u64,
}

/// A queued message as listed: its file and metadata.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its file.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: Meta,
    /// Its file's size.
    pub bytes: u64,
}

/// Seconds since the epoch of `t`.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    caps: Caps,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError {
    let path = path.to_owned();
    move |source| OutboxError::Io { op, path, source }
}

impl Outbox {
    /// Opens (creating it, mode 0700) the outbox at `dir`.
    pub fn open(dir: &Path, caps: Caps) -> Result<Self, OutboxError> {
        mimix_settings::fs::private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            caps,
        })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every queued message, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, OutboxError> {
        let mut paths = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let path = e.map_err(io("listing", &self.dir))?.path();
            if path.extension().is_some_and(|x| x == EXT) && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        paths.into_iter().map(|p| read_meta(&p)).collect()
    }

    /// Queues `message`, refusing it if the outbox would pass its caps.
    pub fn put(&self, message: &[u8], meta: &Meta, rand: u64) -> Result<PathBuf, OutboxError> {
        let entries = self.list()?;
        if entries.len() >= self.caps.max_messages {
            return Err(OutboxError::FullCount {
                count: entries.len(),
                max: self.caps.max_messages,
            });
        }
        let queued: u64 = entries.iter().map(|e| e.bytes).sum();
        let adding = message.len() as u64 + MAX_META;
        if queued.saturating_add(adding) > self.caps.max_bytes {
            return Err(OutboxError::FullBytes {
                queued,
                adding,
                max: self.caps.max_bytes,
            });
        }
        let path = self
            .dir
            .join(format!("{:020}-{rand:016x}.{EXT}", meta.queued_at));
        self.write(&path, meta, message)?;
        Ok(path)
    }

    /// The oldest message that may be tried at `now`, with its text.
    pub fn next_due(&self, now: SystemTime) -> Result<Option<(Entry, Vec<u8>)>, OutboxError> {
        let now = secs(now);
        let Some(entry) = self.list()?.into_iter().find(|e| e.meta.not_before <= now) else {
            return Ok(None);
        };
        let message = read_message(&entry.path)?;
        Ok(Some((entry, message)))
    }

    /// Removes a message that was sent.
    pub fn remove(&self, entry: &Entry) -> Result<(), OutboxError> {
        std::fs::remove_file(&entry.path).map_err(io("removing", &entry.path))?;
        self.sync()
    }

    /// Records a failed attempt: the message waits `delay` from `now`.
    pub fn retry_later(
        &self,
        entry: &Entry,
        message: &[u8],
        now: SystemTime,
        delay: Duration,
    ) -> Result<(), OutboxError> {
        let mut meta = entry.meta.clone();
        meta.attempts = meta.attempts.saturating_add(1);
        meta.not_before = secs(now).saturating_add(delay.as_secs().max(1));
        self.write(&entry.path, &meta, message)
    }

    /// Moves a message given up on to `failed/`; returns where it is now.
    pub fn give_up(&self, entry: &Entry) -> Result<PathBuf, OutboxError> {
        let failed = self.dir.join(FAILED);
        mimix_settings::fs::private_dir(&failed)?;
        let name = entry.path.file_name().unwrap_or_default();
        let to = failed.join(name);
        std::fs::rename(&entry.path, &to).map_err(io("moving", &entry.path))?;
        self.sync()?;
        Ok(to)
    }

    /// Writes `path` atomically: a synced temporary file (mode 0600)
    /// renamed over it, then the directory synced.
    fn write(&self, path: &Path, meta: &Meta, message: &[u8]) -> Result<(), OutboxError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io("creating a temporary file in", &self.dir))?;
        let line = serde_json::to_string(meta).map_err(|e| OutboxError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let f = tmp.as_file_mut();
        f.write_all(line.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.write_all(message))
            .and_then(|()| f.sync_all())
            .map_err(io("writing", tmp.path()))?;
        tmp.persist(path).map_err(|e| OutboxError::Io {
            op: "renaming into",
            path: path.to_owned(),
            source: e.error,
        })?;
        self.sync()
    }

    fn sync(&self) -> Result<(), OutboxError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))
    }
}

/// Reads the metadata line of `path`.
fn read_meta(path: &Path) -> Result<Entry, OutboxError> {
    let file = std::fs::File::open(path).map_err(io("opening", path))?;
    let bytes = file.metadata().map_err(io("reading", path))?.len();
    let mut line = Vec::new();
    BufReader::new(file)
        .take(MAX_META)
        .read_until(b'\n', &mut line)
        .map_err(io("reading", path))?;
    let corrupt = |reason: String| OutboxError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if line.pop() != Some(b'\n') {
        return Err(corrupt("no metadata line".into()));
    }
    let meta = serde_json::from_slice(&line).map_err(|e| corrupt(e.to_string()))?;
    Ok(Entry {
        path: path.to_owned(),
        meta,
        bytes,
    })
}

/// Reads the message of `path` (what follows the metadata line).
fn read_message(path: &Path) -> Result<Vec<u8>, OutboxError> {
    let text = std::fs::read(path).map_err(io("reading", path))?;
    let start = text.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(text.get(start..).unwrap_or_default().to_vec())
}

/// A message's metadata as the tests write it: queued at `queued_at`,
/// chain `*,*`, one copy, never tried.
#[cfg(test)]
pub(crate) fn meta(queued_at: u64) -> Meta {
    Meta {
        queued_at,
        chain: "*,*".into(),
        copies: 1,
        gzip: false,
        attempts: 0,
        not_before: 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn oldest_first_private_and_retried_later() {
        let tmp = tempfile::tempdir().unwrap();
        let caps = Caps {
            max_messages: 10,
            max_bytes: 1 << 20,
        };
        let outbox = Outbox::open(&tmp.path().join("outbox"), caps).unwrap();
        let second = outbox.put(b"To: b@x\n\ntwo", &meta(200), 7).unwrap();
        let first = outbox.put(b"To: a@x\n\none", &meta(100), 9).unwrap();
        let mode = std::fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let (entry, text) = outbox.next_due(now).unwrap().unwrap();
        assert_eq!(
            (entry.path.clone(), text.as_slice()),
            (first, &b"To: a@x\n\none"[..])
        );
        outbox
            .retry_later(&entry, &text, now, Duration::from_secs(60))
            .unwrap();
        let (next, _) = outbox.next_due(now).unwrap().unwrap();
        assert_eq!(next.path, second, "the retried one waits");
        let later = now + Duration::from_secs(60);
        let (again, text) = outbox.next_due(later).unwrap().unwrap();
        assert_eq!((again.meta.attempts, again.meta.not_before), (1, 1060));
        assert_eq!(text, b"To: a@x\n\none");
        outbox.remove(&again).unwrap();
        let moved = outbox.give_up(&next).unwrap();
        assert!(moved.starts_with(tmp.path().join("outbox").join(FAILED)));
        assert!(outbox.next_due(later).unwrap().is_none());
    }

    #[test]
    fn caps_refuse_with_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let caps = Caps {
            max_messages: 2,
            max_bytes: MAX_META + 150,
        };
        let outbox = Outbox::open(&tmp.path().join("outbox"), caps).unwrap();
        outbox.put(&[b'a'; 10], &meta(1), 1).unwrap();
        let e = outbox.put(&[b'a'; 200], &meta(2), 2).unwrap_err();
        assert!(e.to_string().contains("max_bytes"), "{e}");
        outbox.put(&[b'a'; 10], &meta(3), 3).unwrap();
        let e = outbox.put(&[b'a'; 1], &meta(4), 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the outbox is full: 2 messages queued, at most 2 (max_messages)"
        );
        assert_eq!(outbox.list().unwrap().len(), 2);
    }
}
