//! Recipient opt-out: `/blockme.txt` tells people who do not want mail
//! from this remailer how to stop it, and [`add`], [`remove`] and
//! [`entries`] (`mimix block add|remove|list`) edit the exit's blocklist
//! file ([`super::blocklist`]).
//!
//! Nothing a stranger does blocks an address: the page asks the owner to
//! write to the operator's abuse contact, and only the operator adds the
//! entry, after checking that the request comes from the address (or the
//! domain's postmaster). An opt-out by mail with a confirmation token is
//! not built. The running node reads the file again when it changes (on
//! its next lookup), so an entry applies without a restart; the file is
//! replaced atomically, so the node never reads half of it.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::blocklist::{BlocklistError, Rules};

/// Why the blocklist could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The entry is not a valid blocklist entry.
    #[error("not a blocklist entry ({0}): give an address, @domain, domain or /regex/")]
    Entry(&'static str),
    /// The file as it is (or would be) does not parse; nothing was written.
    #[error(transparent)]
    File(#[from] BlocklistError),
}

/// `/blockme.txt` for the remailer `name`. `exit` says whether it
/// delivers mail; `contact` is the operator's abuse contact (for a middle
/// node only one configured explicitly).
pub fn page(name: &str, exit: bool, contact: Option<&str>) -> String {
    let contact_line = match contact {
        Some(c) => format!("The operator's contact for opt-outs and abuse reports: {c}\n"),
        None => "The operator has published no contact address.\n".to_owned(),
    };
    if !exit {
        return format!(
            "Opting out of mail from {name}\n\n\
             {name} is a middle node of the Mimix anonymous remailer network: it only\n\
             passes encrypted packets between remailers and delivers no mail to anyone.\n\
             Mail leaves the network at exit remailers; each exit publishes how to opt\n\
             out of its mail at its own /blockme.txt.\n\n{contact_line}"
        );
    }
    format!(
        "Opting out of mail from {name}\n\n\
         {name} is an exit of the Mimix anonymous remailer network: it delivers mail\n\
         written by anonymous senders, and does not know who they are. Every message\n\
         it delivers says so in its Comments: header.\n\n\
         If you do not want mail from this remailer, the operator adds your address\n\
         (or, at a postmaster's request, a whole domain) to its blocklist. Mail to a\n\
         blocked address is then dropped here and never delivered; the sender is not\n\
         told.\n\n\
         How to ask: write to the contact below from the address you want blocked\n\
         (for a domain, from its postmaster), naming the address or the domain. The\n\
         operator checks that the request comes from its owner and adds the entry by\n\
         hand. Nothing on this page or on this server blocks anyone by itself, so\n\
         that no one can block someone else's mail without the owner's or the\n\
         operator's consent.\n\n{contact_line}"
    )
}

/// The entry of one blocklist line (regexes verbatim, the rest in lower
/// case), or `None` for a blank or comment line.
fn entry_of(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if let Some(inner) = line.strip_prefix('/') {
        let end = inner.rfind('/').map_or(line.len(), |i| i + 2);
        return Some(line.get(..end).unwrap_or(line).to_owned());
    }
    let entry = line.split_whitespace().next().unwrap_or(line);
    Some(entry.to_ascii_lowercase())
}

/// The entry `text` as it is written to the file, after checking it.
fn checked_entry(text: &str) -> Result<String, OptOutError> {
    let text = text.trim();
    if text.is_empty() || text.contains(['\n', '\r', '#']) {
        return Err(OptOutError::Entry("empty, several lines or a comment"));
    }
    let entry = entry_of(text).ok_or(OptOutError::Entry("empty"))?;
    if entry.len() != text.len() {
        return Err(OptOutError::Entry("more than one word"));
    }
    match Rules::parse(&entry) {
        Ok(_) => Ok(entry),
        Err(BlocklistError::Syntax { reason, .. }) => Err(OptOutError::Entry(reason)),
        Err(e) => Err(e.into()),
    }
}

/// The file's text; a missing file is empty.
fn read(path: &Path) -> Result<String, OptOutError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(OptOutError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The entries of the blocklist at `path`, in file order.
pub fn entries(path: &Path) -> Result<Vec<String>, OptOutError> {
    Ok(read(path)?.lines().filter_map(entry_of).collect())
}

/// Adds `entry` to the blocklist at `path` (creating the file); returns
/// `false` when it was there already.
pub fn add(path: &Path, entry: &str) -> Result<bool, OptOutError> {
    let entry = checked_entry(entry)?;
    let mut text = read(path)?;
    if text.lines().filter_map(entry_of).any(|e| e == entry) {
        return Ok(false);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    text.push('\n');
    write(path, &text)?;
    Ok(true)
}

/// Removes every line holding `entry` from the blocklist at `path`;
/// returns `false` when there was none.
pub fn remove(path: &Path, entry: &str) -> Result<bool, OptOutError> {
    let entry = checked_entry(entry)?;
    let text = read(path)?;
    let mut kept = String::with_capacity(text.len());
    let mut removed = false;
    for line in text.lines() {
        if entry_of(line).is_some_and(|e| e == entry) {
            removed = true;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if removed {
        write(path, &kept)?;
    }
    Ok(removed)
}

/// Replaces the file at `path` with `text` atomically, after checking
/// that the node will accept it; keeps the old file's mode and, where
/// allowed, its owner.
fn write(path: &Path, text: &str) -> Result<(), OptOutError> {
    Rules::parse(text)?;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| OptOutError::Io { op, path, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("write", tmp.path()))?;
    if let Ok(old) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), old.permissions())
            .map_err(io("set permissions of", tmp.path()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Best effort: only root may give the file to its old owner.
            let _ = std::os::unix::fs::chown(tmp.path(), Some(old.uid()), Some(old.gid()));
        }
    }
    tmp.persist(path)
        .map_err(|e| io("replace", path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::exit::blocklist::Blocklist;

    #[test]
    fn add_list_remove_round_trip_and_the_node_sees_each_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocklist.txt");
        std::fs::write(&path, "# operator notes\nold@example.com  # 2019\n").unwrap();
        let list = Blocklist::load(&path).unwrap();
        let alice = "alice@example.org".parse().unwrap();
        assert!(!list.is_blocked(&alice));

        assert!(add(&path, " Alice@Example.ORG ").unwrap());
        assert!(!add(&path, "alice@example.org").unwrap(), "already there");
        assert!(list.is_blocked(&alice), "reloaded without a restart");
        assert!(add(&path, "@spam.example").unwrap());
        assert!(add(&path, "/^x-.*@example\\.net$/").unwrap());
        assert_eq!(
            entries(&path).unwrap(),
            [
                "old@example.com",
                "alice@example.org",
                "@spam.example",
                "/^x-.*@example\\.net$/"
            ]
        );
        assert!(remove(&path, "ALICE@example.org").unwrap());
        assert!(!remove(&path, "alice@example.org").unwrap());
        assert!(!list.is_blocked(&alice));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# operator notes\nold@example.com  # 2019\n"));
    }

    #[test]
    fn bad_entries_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocklist.txt");
        for bad in ["", "a b", "x@", "/unclosed", "a@b # c", "two\nlines", "/(/"] {
            assert!(
                matches!(add(&path, bad), Err(OptOutError::Entry(_))),
                "{bad:?}"
            );
        }
        assert!(!path.exists());
        std::fs::write(&path, "not an entry at all\n").unwrap();
        assert!(matches!(
            add(&path, "a@example.org"),
            Err(OptOutError::File(_))
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "not an entry at all\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocklist.txt");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        add(&path, "a@example.org").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn the_page_says_who_can_block() {
        let p = page("exit1", true, Some("abuse@example.org"));
        assert!(p.contains("abuse@example.org"));
        assert!(p.contains("operator checks that the request comes from its owner"));
        let m = page("mid", false, None);
        assert!(m.contains("delivers no mail"));
    }
}
