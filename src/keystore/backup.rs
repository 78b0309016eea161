//! Backups of what makes a node itself and cannot be made again: its
//! remailer keys (the PEM files and their validity, which the store
//! records) and its onion service's identity key (its address).
//!
//! A backup is one JSON file, mode 0600, never overwritten:
//!
//! ```text
//! { "format": "mimix-key-backup", "version": 1,
//!   "remailer_keys": [ { "key_id", "valid_from", "valid_to", "pem" } ],
//!   "onion": { "address": "xxxx.onion", "files": [ { "name", "text" } ] } }
//! ```
//!
//! Both directions need the node stopped (its store is locked while it
//! runs). A restore goes into a data directory without keys of its own,
//! checks every key (a PEM's key ID, the onion key's address) before it
//! writes anything, and writes key files before the records that name
//! them, as key generation does.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use mimix_packet::SecretKey;
use mimix_tor::{TorConfig, identity};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::files::{KeyFileError, read_secret_file, write_secret_file};
use super::{KeyMeta, KeystoreError, META_KEYS, recorded_keys};
use crate::store::{Store, StoreError};

/// The `format` of a backup file.
pub const FORMAT: &str = "mimix-key-backup";
/// The only `version` this build reads and writes.
pub const VERSION: u32 = 1;
/// Largest backup file read (a few keys are a few KiB).
const MAX_FILE: u64 = 1 << 20;

/// Why a backup could not be made or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store could not be opened or read (locked: the node runs).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A remailer key could not be read or checked.
    #[error(transparent)]
    Keys(#[from] KeystoreError),
    /// A key file could not be read or written safely.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// The onion service key could not be read or checked.
    #[error("onion service key: {0}")]
    Onion(#[from] mimix_tor::TorError),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a backup this build can read.
    #[error("{path} is not a mimix key backup: {reason}")]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node already has keys; a restore never mixes two identities.
    #[error("{0}: this node already has keys; restore into a fresh data directory")]
    HasKeys(PathBuf),
    /// A key in the backup does not match what the backup says of it.
    #[error("the backup's {0}")]
    Mismatch(String),
}

/// One remailer key and its validity.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct RemailerKey {
    key_id: String,
    valid_from: u64,
    valid_to: u64,
    pem: String,
}

/// One file of the onion service's identity key.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct OnionFile {
    name: String,
    text: String,
}

/// The onion service's identity.
#[derive(Serialize, Deserialize)]
struct Onion {
    address: String,
    files: Vec<OnionFile>,
}

/// A backup file's contents.
#[derive(Serialize, Deserialize)]
struct Backup {
    format: String,
    version: u32,
    remailer_keys: Vec<RemailerKey>,
    onion: Option<Onion>,
}

/// What a backup holds or a restore wrote: key IDs and the onion address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The remailer keys' IDs.
    pub key_ids: Vec<String>,
    /// The onion address, when the backup holds the onion identity.
    pub onion_address: Option<String>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
    let path = path.to_owned();
    move |source| BackupError::Io { op, path, source }
}

/// Writes a backup of the keys in `keys_dir` (recorded in the store at
/// `store_dir`) and of the onion identity under `tor` to the new file `out`.
pub fn export(
    store_dir: &Path,
    keys_dir: &Path,
    tor: &TorConfig,
    out: &Path,
) -> Result<Summary, BackupError> {
    if !store_dir.is_dir() {
        return Err(BackupError::Io {
            op: "reading",
            path: store_dir.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let store = Store::open(store_dir)?;
    let mut remailer_keys = Vec::new();
    for meta in recorded_keys(&store)? {
        let pem = read_secret_file(&keys_dir.join(format!("{}.pem", meta.key_id)))?;
        remailer_keys.push(RemailerKey {
            key_id: meta.key_id,
            valid_from: meta.valid_from,
            valid_to: meta.valid_to,
            pem: pem.to_string(),
        });
    }
    let onion = match identity::onion_address(tor)? {
        Some(address) => Some(Onion {
            address,
            files: read_onion_files(tor)?,
        }),
        None => None,
    };
    let backup = Backup {
        format: FORMAT.into(),
        version: VERSION,
        remailer_keys,
        onion,
    };
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&backup).map_err(|e| BackupError::Mismatch(e.to_string()))?,
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io("creating", out))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("writing", out))?;
    Ok(summary(&backup))
}

fn read_onion_files(tor: &TorConfig) -> Result<Vec<OnionFile>, BackupError> {
    let dir = identity::identity_dir(tor);
    let mut files = Vec::new();
    for name in identity::identity_files(tor)? {
        let text = read_secret_file(&dir.join(&name))?;
        files.push(OnionFile {
            name,
            text: text.to_string(),
        });
    }
    Ok(files)
}

fn summary(b: &Backup) -> Summary {
    Summary {
        key_ids: b.remailer_keys.iter().map(|k| k.key_id.clone()).collect(),
        onion_address: b.onion.as_ref().map(|o| o.address.clone()),
    }
}

/// Reads and checks the backup at `path` without writing anything.
fn read(path: &Path) -> Result<Backup, BackupError> {
    let not = |reason: String| BackupError::NotABackup {
        path: path.to_owned(),
        reason,
    };
    let len = std::fs::metadata(path).map_err(io("reading", path))?.len();
    if len > MAX_FILE {
        return Err(not(format!("{len} bytes, more than {MAX_FILE}")));
    }
    let text = read_secret_file(path)?;
    let b: Backup = serde_json::from_str(&text).map_err(|e| not(e.to_string()))?;
    if b.format != FORMAT || b.version != VERSION {
        return Err(not(format!("format {:?} version {}", b.format, b.version)));
    }
    for k in &b.remailer_keys {
        let key = SecretKey::from_pem(&k.pem).map_err(|e| not(format!("key {}: {e}", k.key_id)))?;
        if key.key_id().to_hex() != k.key_id {
            return Err(BackupError::Mismatch(format!(
                "key {} has another key ID",
                k.key_id
            )));
        }
    }
    if let Some(o) = &b.onion {
        if o.files.is_empty() {
            return Err(not("an onion identity without key files".into()));
        }
        if let Some(f) = o
            .files
            .iter()
            .find(|f| !identity::is_identity_file_name(&f.name))
        {
            return Err(not(format!("onion key file name {:?}", f.name)));
        }
    }
    Ok(b)
}

/// Restores the backup at `path` into a node without keys: the remailer
/// keys into `keys_dir` and the store at `store_dir`, the onion identity
/// under `tor` (whose address must then be the backup's).
pub fn import(
    path: &Path,
    store_dir: &Path,
    keys_dir: &Path,
    tor: &TorConfig,
) -> Result<Summary, BackupError> {
    let backup = read(path)?;
    let store = Store::open(store_dir)?;
    if !recorded_keys(&store)?.is_empty() {
        return Err(BackupError::HasKeys(keys_dir.to_owned()));
    }
    if backup.onion.is_some() && !identity::identity_files(tor)?.is_empty() {
        return Err(BackupError::HasKeys(identity::identity_dir(tor)));
    }
    if let Some(onion) = &backup.onion {
        restore_onion(onion, tor)?;
    }
    mimix_settings::fs::create_private_dir(keys_dir).map_err(io("creating", keys_dir))?;
    let mut metas = Vec::new();
    for k in &backup.remailer_keys {
        let file = keys_dir.join(format!("{}.pem", k.key_id));
        write_secret_file(&file, k.pem.as_bytes())?;
        metas.push(KeyMeta {
            key_id: k.key_id.clone(),
            valid_from: k.valid_from,
            valid_to: k.valid_to,
        });
    }
    let bytes = serde_json::to_vec(&metas).map_err(|e| BackupError::Mismatch(e.to_string()))?;
    store.meta_put(META_KEYS, &bytes)?;
    Ok(summary(&backup))
}

/// Writes the onion identity files, then checks the address they give.
fn restore_onion(onion: &Onion, tor: &TorConfig) -> Result<(), BackupError> {
    let dir = identity::identity_dir(tor);
    mimix_settings::fs::create_private_dir(&dir).map_err(io("creating", &dir))?;
    for f in &onion.files {
        write_secret_file(&dir.join(&f.name), f.text.as_bytes())?;
    }
    match identity::onion_address(tor)? {
        Some(a) if a == onion.address => Ok(()),
        got => {
            for f in &onion.files {
                let _ = std::fs::remove_file(dir.join(&f.name));
            }
            Err(BackupError::Mismatch(format!(
                "onion key gives {}, not {}",
                got.as_deref().unwrap_or("no address"),
                onion.address
            )))
        }
    }
}
