//! Secret files on disk: written 0600 and fsync'd, refused when readable by
//! anyone but the owner.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A secret file could not be read or written safely.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error("{path} is accessible by other users (mode {mode:o}); run: chmod 600 {path}")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file already exists.
    #[error("{0} already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    /// The file is not UTF-8 text.
    #[error("{0} is not a text file")]
    NotText(PathBuf),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyFileError + 'a {
    move |source| KeyFileError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Reads a secret text file, refusing one that others can access.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let meta = fs::metadata(path).map_err(io("reading", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io("reading", path))?);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(KeyFileError::NotText(path.to_owned())),
    }
}

/// Writes a new secret file with mode 0600 and syncs it (and its directory)
/// to disk. Never overwrites.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists(path.to_owned())
            } else {
                io("creating", path)(e)
            }
        })?;
    f.write_all(contents).map_err(io("writing", path))?;
    f.sync_all().map_err(io("syncing", path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secret_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_secret_file(&p, b"secret").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret_file(&p).unwrap().as_str(), "secret");
        assert!(matches!(
            write_secret_file(&p, b"x"),
            Err(KeyFileError::Exists(_))
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_file(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }
}
