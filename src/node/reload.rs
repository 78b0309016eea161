//! What a running node takes from a new configuration (SIGHUP).
//!
//! Live: `/help.txt` and `/adminkey.txt` (`node.help_file`,
//! `node.admin_key_file`, read again) and the exit's blocklist (read
//! again, see [`Exit::reload_blocklist`](crate::exit::Exit::reload_blocklist)).
//! The log filter and log file (`node.log`, `node.log_file`) are live too,
//! but belong to the process's logger, which the command line owns.
//! Every other setting is fixed for the run: a change to one is reported
//! by name ([`Reloaded::kept`]) and takes effect at the next start.

use toml::Value;

use std::sync::Arc;

use super::shared::Shared;
use super::{Node, NodeError, start};
use crate::config::Config;
use crate::exit::Exit;

/// Settings changed live, or owned by the logger: never reported as kept.
const LIVE: [&str; 4] = [
    "node.log",
    "node.log_file",
    "node.help_file",
    "node.admin_key_file",
];

/// What [`Reloader::reload`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Whether an operator's admin key page is served.
    pub admin_key: bool,
    /// Entries in the exit's blocklist now, if it has one.
    pub blocklist: Option<usize>,
    /// Settings that differ from the running ones but cannot change while
    /// the node runs (dotted names, `pool.interval`): kept until a restart.
    pub kept: Vec<String>,
}

/// Applies a new configuration to a running node; made by
/// [`Node::reloader`], usable while [`Node::wait`] runs.
#[derive(Debug, Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
    exit: Option<Arc<Exit>>,
}

impl Node {
    /// A handle that applies new configurations to this node (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: Arc::clone(&self.shared),
            exit: self.exit.clone(),
        }
    }
}

impl Reloader {
    /// Applies what can change live from `new` (see the module
    /// documentation). The pages are read before anything changes: if one
    /// cannot be read, nothing does. Blocking (file reads).
    pub fn reload(&self, new: &Config) -> Result<Reloaded, NodeError> {
        let shared = &self.shared;
        let pages = start::read_pages(new)?;
        let admin_key = pages.admin_key.is_some();
        let blocklist = match &self.exit {
            Some(exit) => exit
                .reload_blocklist()
                .map_err(|e| NodeError::Exit(e.to_string()))?,
            None => None,
        };
        shared.set_pages(pages);
        Ok(Reloaded {
            admin_key,
            blocklist,
            kept: changed_settings(&shared.config, new),
        })
    }
}

/// The settings that differ between `running` and `new`, besides the live
/// ones, as dotted names.
pub fn changed_settings(running: &Config, new: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (Value::try_from(running), Value::try_from(new)) else {
        return vec!["(the configuration could not be compared)".into()];
    };
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out.retain(|name| !LIVE.contains(&name.as_str()));
    out
}

fn diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let (Value::Table(ta), Value::Table(tb)) = (a, b) else {
        if a != b {
            out.push(prefix.to_owned());
        }
        return;
    };
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let name = match prefix {
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        match (ta.get(k), tb.get(k)) {
            (Some(x), Some(y)) => diff(&name, x, y, out),
            _ => out.push(name),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn live_settings_are_not_reported_and_others_are_by_name() {
        let running = Config::default_for(Path::new("/data"));
        let mut new = running.clone();
        assert!(changed_settings(&running, &new).is_empty());
        new.node.log = "debug".into();
        new.node.help_file = Some("/data/help.txt".into());
        new.node.log_file = Some("/data/mimix.log".into());
        assert!(changed_settings(&running, &new).is_empty());
        new.pool.interval = Duration::from_secs(60);
        new.node.name = "beta".into();
        new.tor.bootstrap_warning = Duration::from_secs(1);
        assert_eq!(
            changed_settings(&running, &new),
            ["node.name", "pool.interval", "tor.bootstrap_warning"]
        );
    }
}
