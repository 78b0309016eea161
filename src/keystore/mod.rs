//! Our own keys: the secret key files, their rotation, and the
//! `remailer-conf.txt` we publish.
//!
//! Key files live in `<data_dir>/keys/<keyid>.pem` (PKCS#1 PEM, mode 0600);
//! their validity dates live in the store. A key is valid from the day it
//! was made for `lifetime` days; a successor is made `renew_before` days
//! before the newest key expires, and from then on the successor is the one
//! advertised. An old key still decrypts until it expired `grace` days ago;
//! then its file is overwritten with zeros and removed, and the in-memory
//! key is dropped (the RSA backends clear it).

pub mod backup;
mod config;
pub mod files;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mimix_packet::conf::epoch_day_to_date;
use mimix_packet::crypto::KeyGenError;
use mimix_packet::peel::KeyRing;
use mimix_packet::{KeyId, RemailerConf, SecretKey};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};
pub use config::KeysConfig;
use files::{KeyFileError, read_secret_file, write_secret_file};

/// Most known remailers listed in our published conf (at most 80 bytes
/// each, so the conf stays far below the 64 KiB clients accept).
const MAX_KNOWN_PUBLISHED: usize = 256;

/// The store's metadata entry listing our keys.
const META_KEYS: &str = "keystore.keys";

/// Why the keystore failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A key file could not be read or written safely.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// A key file does not hold a usable RSA key.
    #[error("key file {path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// A key file's key ID differs from the one recorded for it.
    #[error("key file {0} does not hold the key recorded for it")]
    WrongKey(PathBuf),
    /// Generating a key failed.
    #[error("generating a key: {0}")]
    Generate(#[from] KeyGenError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key metadata in the store is unreadable.
    #[error("key metadata in the store is corrupt: {0}")]
    Meta(String),
    /// Deleting an expired key's file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The operation needs a current key and there is none.
    #[error("no valid key")]
    NoKey,
}

/// Makes new key pairs; tests substitute pre-generated keys.
pub trait KeyGenerator: Send {
    /// A new key of `bits` and its PKCS#1 PEM.
    fn generate(&mut self, bits: usize) -> Result<(SecretKey, Zeroizing<String>), KeyGenError>;
}

/// Generates keys with the system's randomness (through aws-lc-rs).
#[derive(Debug, Default)]
pub struct SystemKeyGenerator;

impl KeyGenerator for SystemKeyGenerator {
    fn generate(&mut self, bits: usize) -> Result<(SecretKey, Zeroizing<String>), KeyGenError> {
        SecretKey::generate(bits)
    }
}

/// What the store records about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Hex key ID; the file is `<key_id>.pem`.
    pub key_id: String,
    /// First valid day (epoch day).
    pub valid_from: u64,
    /// Last valid day (epoch day).
    pub valid_to: u64,
}

struct Entry {
    meta: KeyMeta,
    key: SecretKey,
}

/// What one rotation step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Key IDs generated.
    pub created: Vec<String>,
    /// Key IDs deleted.
    pub deleted: Vec<String>,
}

/// Our keys.
pub struct Keystore {
    dir: PathBuf,
    store: Store,
    policy: KeysConfig,
    keys: Vec<Entry>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("dir", &self.dir)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Keystore {
    /// Loads the keys recorded in `store` from `dir`. Refuses unreadable
    /// key files and files other users can read.
    pub fn open(dir: &Path, store: Store, policy: KeysConfig) -> Result<Self, KeystoreError> {
        mimix_settings::fs::create_private_dir(dir).map_err(|source| KeystoreError::Io {
            op: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let metas = recorded_keys(&store)?;
        let mut keys = Vec::with_capacity(metas.len());
        for meta in metas {
            let path = dir.join(format!("{}.pem", meta.key_id));
            let pem = read_secret_file(&path)?;
            let key = SecretKey::from_pem(&pem).map_err(|e| KeystoreError::BadKey {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if key.key_id().to_hex() != meta.key_id {
                return Err(KeystoreError::WrongKey(path));
            }
            keys.push(Entry { meta, key });
        }
        Ok(Self {
            dir: dir.to_owned(),
            store,
            policy,
            keys,
        })
    }

    fn save(&self) -> Result<(), KeystoreError> {
        let metas: Vec<&KeyMeta> = self.keys.iter().map(|e| &e.meta).collect();
        let bytes = serde_json::to_vec(&metas).map_err(|e| KeystoreError::Meta(e.to_string()))?;
        self.store.meta_put(META_KEYS, &bytes)?;
        Ok(())
    }

    /// Brings the keys up to date for `today`: makes a key when
    /// [`Keystore::needs_key`] says so, and deletes keys whose grace period
    /// is over ([`Keystore::prune`]). Generating a key takes seconds; a
    /// caller that shares the keystore behind a lock generates the key
    /// outside it and hands it to [`Keystore::add_key`] instead.
    pub fn rotate(
        &mut self,
        today: u64,
        generator: &mut dyn KeyGenerator,
    ) -> Result<Rotation, KeystoreError> {
        let mut done = Rotation::default();
        if self.needs_key(today) {
            let (key, pem) = generator.generate(self.policy.bits())?;
            done.created.extend(self.add_key(today, key, &pem)?);
        }
        done.deleted = self.prune(today)?;
        Ok(done)
    }

    /// Whether a new key is due on `today`: none is valid, or the newest
    /// expires within `renew_before` days.
    pub fn needs_key(&self, today: u64) -> bool {
        let metas: Vec<KeyMeta> = self.metas();
        next_key_day(&metas, today, self.policy.renew_before_days()) <= today
    }

    /// The size of the keys [`Keystore::add_key`] expects.
    pub fn key_bits(&self) -> usize {
        self.policy.bits()
    }

    /// Installs `key` (with its PKCS#1 `pem`), valid from `today`, if a key
    /// is still due (another caller may have installed one meanwhile).
    /// Returns the new key's ID, or `None` when it was not needed.
    pub fn add_key(
        &mut self,
        today: u64,
        key: SecretKey,
        pem: &str,
    ) -> Result<Option<String>, KeystoreError> {
        if !self.needs_key(today) {
            return Ok(None);
        }
        let valid_to = today.saturating_add(self.policy.lifetime_days());
        let meta = KeyMeta {
            key_id: key.key_id().to_hex(),
            valid_from: today,
            valid_to,
        };
        // File first, then the record: a crash in between leaves an
        // unreferenced file, never a record without its key.
        write_secret_file(
            &self.dir.join(format!("{}.pem", meta.key_id)),
            pem.as_bytes(),
        )?;
        let id = meta.key_id.clone();
        self.keys.push(Entry { meta, key });
        self.save()?;
        info!(valid_to = %epoch_day_to_date(valid_to), "generated a new remailer key");
        Ok(Some(id))
    }

    /// Deletes the keys whose grace period ended before `today`, and key
    /// files no record names. Returns the deleted key IDs.
    pub fn prune(&mut self, today: u64) -> Result<Vec<String>, KeystoreError> {
        let mut deleted = Vec::new();
        let grace = self.policy.grace_days();
        let (expired, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|e| e.meta.valid_to.saturating_add(grace) < today);
        self.keys = kept;
        if !expired.is_empty() {
            // Forget the keys before removing their files: a crash in
            // between leaves a file the next rotation does not know about,
            // which `wipe_unreferenced` removes.
            self.save()?;
            for e in expired {
                let path = self.dir.join(format!("{}.pem", e.meta.key_id));
                wipe_file(&path)?;
                deleted.push(e.meta.key_id);
            }
            info!(count = deleted.len(), "deleted expired remailer keys");
        }
        self.wipe_unreferenced()?;
        Ok(deleted)
    }

    /// Removes `*.pem` files in the key directory that no record names
    /// (left by a crash during rotation).
    fn wipe_unreferenced(&self) -> Result<(), KeystoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| KeystoreError::Io {
            op: "listing",
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pem")) else {
                continue;
            };
            if KeyId::from_hex(stem).is_some() && !self.keys.iter().any(|e| e.meta.key_id == stem) {
                warn!("removing a key file left over from an interrupted rotation");
                wipe_file(&entry.path())?;
            }
        }
        Ok(())
    }

    /// The key to advertise on `today`: the newest valid one.
    pub fn current(&self, today: u64) -> Option<&SecretKey> {
        self.current_entry(today).map(|e| &e.key)
    }

    fn current_entry(&self, today: u64) -> Option<&Entry> {
        self.keys
            .iter()
            .filter(|e| e.meta.valid_from <= today && today <= e.meta.valid_to)
            .max_by_key(|e| e.meta.valid_from)
    }

    /// Metadata of every key held (including those in their grace period).
    pub fn metas(&self) -> Vec<KeyMeta> {
        self.keys.iter().map(|e| e.meta.clone()).collect()
    }

    /// Our `remailer-conf.txt` for `today`, advertising the current key
    /// (and the operator's `abuse` contact, if any).
    #[allow(clippy::too_many_arguments)]
    pub fn remailer_conf(
        &self,
        name: &str,
        address: &str,
        smtp: bool,
        abuse: Option<&str>,
        known: &[String],
        today: u64,
    ) -> Result<String, KeystoreError> {
        let e = self.current_entry(today).ok_or(KeystoreError::NoKey)?;
        Ok(RemailerConf {
            name: name.to_owned(),
            address: address.to_owned(),
            key: e.key.public().clone(),
            valid_from: e.meta.valid_from,
            valid_to: e.meta.valid_to,
            smtp,
            abuse: abuse.map(str::to_owned),
            // Bounded so the conf stays well inside what clients parse.
            known: known
                .iter()
                .filter(|k| *k != address)
                .take(MAX_KNOWN_PUBLISHED)
                .cloned()
                .collect(),
        }
        .to_text())
    }
}

impl KeyRing for Keystore {
    fn secret_key(&self, id: &KeyId) -> Option<&SecretKey> {
        self.keys
            .iter()
            .find(|e| e.key.key_id() == *id)
            .map(|e| &e.key)
    }
}

/// The keys recorded in `store`: their metadata only, without reading the
/// key files (for `mimix status` and the admin listener).
pub fn recorded_keys(store: &Store) -> Result<Vec<KeyMeta>, KeystoreError> {
    match store.meta_get(META_KEYS)? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Meta(e.to_string()))
        }
        None => Ok(Vec::new()),
    }
}

/// The first day a new key is due, given the keys held: `renew_before`
/// days before the newest key valid by `today` expires, or `today` when
/// there is none.
pub fn next_key_day(keys: &[KeyMeta], today: u64, renew_before_days: u64) -> u64 {
    let newest_to = keys
        .iter()
        .filter(|m| m.valid_from <= today)
        .map(|m| m.valid_to)
        .max();
    match newest_to {
        None => today,
        Some(to) => to.saturating_add(1).saturating_sub(renew_before_days),
    }
}

/// The key advertised on `today`: the newest valid one.
pub fn advertised_key(keys: &[KeyMeta], today: u64) -> Option<&KeyMeta> {
    keys.iter()
        .filter(|m| m.valid_from <= today && today <= m.valid_to)
        .max_by_key(|m| m.valid_from)
}

/// Overwrites a file with zeros, syncs it, and removes it.
fn wipe_file(path: &Path) -> Result<(), KeystoreError> {
    let io = |op| {
        move |source| KeystoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let len = fs::metadata(path).map_err(io("reading"))?.len();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening"))?;
    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.write_all(&zeros).map_err(io("overwriting"))?;
    f.sync_all().map_err(io("syncing"))?;
    drop(f);
    fs::remove_file(path).map_err(io("removing"))
}

#[cfg(test)]
mod tests;
