//! The onion service's identity key without Tor: its address, made before
//! the first launch, and the files that hold it (for backup and restore).
//!
//! Arti keeps the identity keypair (`KS_hs_id`) in its keystore under the
//! state directory, at `keystore/hss/<nickname>/ks_hs_id.*`. That one key
//! *is* the onion address; every other key of the service (blinded
//! identities, descriptor signing keys) is derived from it or made again
//! per time period.

use std::path::{Path, PathBuf};

use arti_client::TorClient;
use safelog::DisplayRedacted;
use tor_hsservice::{HsNickname, OnionService as ArtiOnionService};
use tor_keymgr::KeystoreSelector;
use tor_rtcompat::PreferredRuntime;

use crate::TorConfig;
use crate::error::TorError;
use crate::perms::{check_key_permissions, keystore_dir};
use crate::transport::client_config;

/// The file-name prefix of the identity keypair in Arti's keystore.
const IDENTITY_PREFIX: &str = "ks_hs_id.";

/// The unlaunched service of `config`, bound to its keystore (no network).
fn service(config: &TorConfig) -> Result<ArtiOnionService, TorError> {
    let nick: HsNickname = config
        .service_nickname
        .parse()
        .map_err(|_| TorError::InvalidNickname(config.service_nickname.clone()))?;
    let mut svc = arti_client::config::onion_service::OnionServiceConfigBuilder::default();
    svc.nickname(nick);
    let svc = svc.build().map_err(|e| TorError::Config(e.to_string()))?;
    let client = client_config(config)?;
    TorClient::<PreferredRuntime>::create_onion_service(&client, svc)
        .map_err(|e| TorError::Launch(e.to_string()))
}

/// The onion address (`xxxx.onion`) the identity key in `config`'s state
/// directory gives, or `None` when there is no key yet (the node never
/// ran and none was made or restored).
pub fn onion_address(config: &TorConfig) -> Result<Option<String>, TorError> {
    if identity_files(config)?.is_empty() {
        return Ok(None);
    }
    check_key_permissions(&config.state_dir)?;
    let address = service(config)?.onion_address();
    Ok(address.map(|a| a.display_unredacted().to_string()))
}

/// Makes the identity key now if there is none (the first launch would),
/// and returns the onion address.
pub fn ensure_identity(config: &TorConfig) -> Result<String, TorError> {
    let id = service(config)?
        .generate_identity_key(KeystoreSelector::Primary)
        .map_err(|e| TorError::Launch(e.to_string()))?;
    check_key_permissions(&config.state_dir)?;
    Ok(id.display_unredacted().to_string())
}

/// The folder of the service's keys in Arti's keystore.
pub fn identity_dir(config: &TorConfig) -> PathBuf {
    keystore_dir(&config.state_dir)
        .join("hss")
        .join(&config.service_nickname)
}

/// The identity key file(s) there (one with Arti's native keystore), by
/// file name; empty when there is none.
pub fn identity_files(config: &TorConfig) -> Result<Vec<String>, TorError> {
    let dir = identity_dir(config);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("reading", &dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error("reading", &dir, source))?;
        if let Some(name) = entry.file_name().to_str()
            && name.starts_with(IDENTITY_PREFIX)
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `name` may be written into [`identity_dir`] by a restore: an
/// identity key file name, no path.
pub fn is_identity_file_name(name: &str) -> bool {
    name.starts_with(IDENTITY_PREFIX)
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name)
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> TorError {
    TorError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}
