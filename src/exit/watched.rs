//! A rules file re-read when it changes, the way the address blocklist is
//! ([`super::blocklist`]), for other kinds of rules (the newsgroup
//! blocklist, [`super::news::groups`]).
//!
//! The file's version (modification time, size, inode and change time) is
//! compared with the one last read on every lookup; a changed file is
//! parsed again. A version with an error is ignored (logged at warn with
//! its line number, never its content) and the last good rules stay in
//! force. A missing file is the empty (default) rule set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::blocklist::{BlocklistError, Stamp, read_text, stat};

/// Parses the text of a rules file.
pub type Parser<T> = fn(&str) -> Result<T, BlocklistError>;

#[derive(Debug)]
struct State<T> {
    rules: Arc<T>,
    /// The version last looked at (`None`: the file was missing).
    seen: Option<Stamp>,
}

/// A rules file and the rules last read from it.
#[derive(Debug)]
pub struct Watched<T> {
    path: PathBuf,
    /// What the file is, for logs.
    what: &'static str,
    parse: Parser<T>,
    state: Mutex<State<T>>,
}

impl<T: Default> Watched<T> {
    /// Loads the rules at `path` (`what` names them in logs); a missing
    /// file is the default rules, an unreadable or invalid one an error.
    pub fn load(
        path: impl Into<PathBuf>,
        what: &'static str,
        parse: Parser<T>,
    ) -> Result<Self, BlocklistError> {
        let path = path.into();
        let (rules, seen) = match stat(&path)? {
            None => (T::default(), None),
            Some(stamp) => (parse(&read_text(&path)?)?, Some(stamp)),
        };
        Ok(Self {
            path,
            what,
            parse,
            state: Mutex::new(State {
                rules: Arc::new(rules),
                seen,
            }),
        })
    }

    /// The file the rules are read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rules in force, after reading the file again if it changed.
    pub fn rules(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut state);
        Arc::clone(&state.rules)
    }

    fn refresh(&self, state: &mut State<T>) {
        let what = self.what;
        let stamp = match stat(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "{what}: keeping the previous list");
                return;
            }
        };
        if stamp == state.seen {
            return;
        }
        state.seen = stamp;
        if stamp.is_none() {
            tracing::info!(path = %self.path.display(), "{what} file is gone: list is now empty");
            state.rules = Arc::new(T::default());
            return;
        }
        match read_text(&self.path).and_then(|t| (self.parse)(&t)) {
            Ok(rules) => {
                tracing::info!(path = %self.path.display(), "{what} reloaded");
                state.rules = Arc::new(rules);
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what}: new version rejected, keeping the previous list");
            }
        }
    }
}
