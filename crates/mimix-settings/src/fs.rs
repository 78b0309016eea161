//! Private directories: where mimix keeps its store, keys and Tor state.
//!
//! Every such directory is made here, with mode 0700 from the start (never
//! created loosely and tightened later), and an existing one that group or
//! others can enter is refused, with the `chmod` that fixes it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A private directory could not be made or is not private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// Creating or inspecting the directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may use the directory.
    #[error("{} is accessible by other users (mode {mode:o}); run: chmod 700 {}", path.display(), path.display())]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Creates `dir` and its missing parents with mode 0700, or checks that an
/// existing `dir` is accessible only by its owner.
pub fn private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let io = |op| {
        move |source| PrivateDirError::Io {
            op,
            path: dir.to_owned(),
            source,
        }
    };
    create_private_dir(dir).map_err(io("creating"))?;
    let mode = std::fs::metadata(dir)
        .map_err(io("reading"))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateDirError::Permissions {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700; an existing
/// directory is left as it is (for callers that check it another way).
#[allow(
    clippy::disallowed_methods,
    reason = "the one place directories are made"
)]
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn made_private_and_loose_ones_refused() {
        let base = std::env::temp_dir().join(format!("mimix-settings-fs-{}", std::process::id()));
        let dir = base.join("a").join("b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.join("a")), 0o700, "parents are private too");
        private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = private_dir(&dir).unwrap_err();
        assert!(
            matches!(err, PrivateDirError::Permissions { mode: 0o750, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
