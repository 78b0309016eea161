//! Permission checks on the onion-service key material.
//!
//! Arti checks its own directories with `fs-mistrust` (and this crate makes
//! sure that check cannot be switched off by the environment). This module
//! adds a stricter, explicit rule for the keystore: no key file and no
//! keystore directory may grant any access to the group or to others.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::TorError;

/// Permission bits that must be clear on key files and key directories.
const GROUP_OTHER: u32 = 0o077;

/// The keystore directory inside an Arti state directory.
pub(crate) fn keystore_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("keystore")
}

/// Check that the keystore under `state_dir` (if any) is private: every
/// directory at most 0700 and every file at most 0600, and that
/// `state_dir` itself is not writable by the group or others.
///
/// Returns [`TorError::InsecurePermissions`] naming the first offender.
pub fn check_key_permissions(state_dir: &Path) -> Result<(), TorError> {
    let meta = match fs::metadata(state_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TorError::Io {
                op: "inspect",
                path: state_dir.to_owned(),
                source,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TorError::InsecurePermissions {
            path: state_dir.to_owned(),
            mode,
        });
    }
    let keystore = keystore_dir(state_dir);
    if keystore.exists() {
        check_tree(&keystore)?;
    }
    Ok(())
}

/// Recursively check one keystore directory and everything under it.
fn check_tree(dir: &Path) -> Result<(), TorError> {
    check_private(dir)?;
    let entries = fs::read_dir(dir).map_err(|source| TorError::Io {
        op: "list",
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| TorError::Io {
            op: "list",
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|source| TorError::Io {
            op: "inspect",
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            check_tree(&path)?;
        } else {
            check_private(&path)?;
        }
    }
    Ok(())
}

/// Fail if `path` grants any permission to its group or to others.
fn check_private(path: &Path) -> Result<(), TorError> {
    let meta = fs::metadata(path).map_err(|source| TorError::Io {
        op: "inspect",
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER != 0 {
        return Err(TorError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Create `dir` (and missing parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), TorError> {
    mimix_settings::fs::create_private_dir(dir).map_err(|source| TorError::Io {
        op: "create directory",
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn private_keystore_passes_and_leaks_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        // No state directory yet: nothing to protect.
        check_key_permissions(&state).unwrap();

        let hs = keystore_dir(&state).join("hss").join("node");
        create_private_dir(&hs).unwrap();
        let key = hs.join("ks_hs_id.ed25519_expanded_private");
        fs::write(&key, b"secret").unwrap();
        set_mode(&key, 0o600);
        check_key_permissions(&state).unwrap();

        set_mode(&key, 0o644);
        match check_key_permissions(&state) {
            Err(TorError::InsecurePermissions { path, mode }) => {
                assert_eq!(path, key);
                assert_eq!(mode, 0o644);
            }
            other => panic!("expected a permission error, got {other:?}"),
        }
        set_mode(&key, 0o600);

        set_mode(&hs, 0o750);
        match check_key_permissions(&state) {
            Err(TorError::InsecurePermissions { path, .. }) => assert_eq!(path, hs),
            other => panic!("expected a permission error, got {other:?}"),
        }
        set_mode(&hs, 0o700);

        set_mode(&state, 0o777);
        assert!(matches!(
            check_key_permissions(&state),
            Err(TorError::InsecurePermissions { .. })
        ));
    }
}
