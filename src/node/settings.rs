//! The `[node]` table: who this node is and where it keeps its data.

use std::path::PathBuf;

use mimix_settings::{Checked, Invalid, check, path};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::directory::is_remailer_name;

/// The name the example configuration and the built-in defaults carry: a
/// node never publishes it (a network of defaults would be a network of
/// name clashes), see [`NodeConfig::check_named`].
pub const PLACEHOLDER_NAME: &str = "mimix";

/// `[node]`: who this node is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The remailer's name, published as `Name:` in `remailer-conf.txt`
    /// (ASCII letters, digits, `-`, `_`, `.`; at most 32 characters).
    pub name: String,
    /// Where the node keeps its store, keys and Tor state. When the file
    /// leaves it out, it is `$XDG_DATA_HOME/mimix` or
    /// `~/.local/share/mimix`, resolved at load time.
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub data_dir: PathBuf,
    /// The published base URL (`http://host[:port]`, no path). Optional:
    /// with the Tor transport it is filled with the onion address at run
    /// time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether this node delivers mail (an exit, `SMTP: Yes`) or only
    /// forwards packets (a middle node).
    pub smtp_exit: bool,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    pub log: String,
    /// Whether identifying values (packet IDs, addresses, sizes,
    /// recipients) are scrubbed from debug logs (see
    /// [`safelog`](crate::safelog)). Turn it off only to debug a test
    /// network.
    pub safe_logging: bool,
    /// The text served as `/help.txt`; unset: a built-in page saying what
    /// this remailer is and how to use it.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub help_file: Option<PathBuf>,
    /// The operator's OpenPGP public key, served as `/adminkey.txt`;
    /// unset: 404.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub admin_key_file: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: PLACEHOLDER_NAME.into(),
            data_dir: PathBuf::new(),
            address: None,
            smtp_exit: false,
            log: "info".into(),
            safe_logging: true,
            help_file: None,
            admin_key_file: None,
        }
    }
}

impl NodeConfig {
    /// Checks every value; fields are named relative to the table. Whether
    /// `address` suits the transport is checked by the configuration, which
    /// sees both tables.
    pub fn validate(&self) -> Checked {
        check(is_remailer_name(&self.name), "name", || {
            format!(
                "{:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'",
                self.name
            )
        })?;
        check(!self.data_dir.as_os_str().is_empty(), "data_dir", || {
            "must not be empty".into()
        })?;
        // tracing-subscriber 0.3 panics on some non-ASCII directives with
        // white space around them (it slices the untrimmed text at the
        // trimmed text's offsets); log targets are ASCII anyway.
        check(
            self.log.bytes().all(|b| b.is_ascii_graphic()),
            "log",
            || "must be printable ASCII without spaces".into(),
        )?;
        EnvFilter::builder()
            .parse(&self.log)
            .map(drop)
            .map_err(|e| Invalid::new("log", format!("not a valid log filter: {e}")))
    }

    /// Checks that the node has a name of its own, not the placeholder: run
    /// before a node publishes its conf (the configuration itself is valid
    /// with the placeholder, so that `status` and `conf` work before one
    /// is chosen).
    pub fn check_named(&self) -> Checked {
        check(
            !self.name.eq_ignore_ascii_case(PLACEHOLDER_NAME),
            "name",
            || {
                format!(
                    "is still the placeholder {PLACEHOLDER_NAME:?}: choose the name this remailer \
                 publishes (`mimix init --name NAME`, or set [node] name)"
                )
            },
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log_filters_must_be_ascii_without_spaces() {
        let with = |log: &str| NodeConfig {
            log: log.into(),
            data_dir: PathBuf::from("/d"),
            ..NodeConfig::default()
        };
        assert!(with("info,mimix::node=debug").validate().is_ok());
        // Found by the config fuzz target: this made the filter parser
        // panic (a byte offset inside the two-byte character).
        for bad in [
            "info, \u{e9}=debug",
            "\u{e9}",
            "info, mimix=debug",
            "info\t",
        ] {
            let e = with(bad).validate().unwrap_err();
            assert_eq!(e.field, "log", "{bad:?}");
        }
    }
}
